"""Wall time and peak memory of `lossdiag check` beside the `import tensorflow, keras` floor, in one run.

    python bench/run.py [--repeat N] [--readme]     # `make bench`

Every measurement is a fresh process tree: a small wrapper starts the command, waits for it and reports
its wall time and `getrusage(RUSAGE_CHILDREN).ru_maxrss`, the peak resident set of the largest process
among all waited-for descendants (lossdiag's workers included). Figures are medians over N runs; the
floor is measured in the same run, so the ratios hold on a busy machine too. `--readme` rewrites the
table in README.md between its `bench:start`/`bench:end` markers.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
FOUR = REPO / "bench" / "fixtures" / "four"

WRAPPER = textwrap.dedent(
    """\
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall": wall, "maxrss_kb": rss, "code": proc.returncode, "out": proc.stdout}))
    """
)

MODULE = textwrap.dedent(
    """\
    from keras import ops


    def mse_{i}(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


    def mae_{i}(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)


    def bce_{i}(y_true, y_pred):
        p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        return -ops.mean(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p), axis=-1)


    def summed_{i}(y_true, y_pred):
        return ops.sum(ops.square(y_true - y_pred))


    def pooled_{i}(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred))
    """
)


@dataclass
class Figure:
    wall: float  # median seconds
    mib: float  # median peak RSS
    walls: list[float]
    out: str  # stdout of the last run


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run([PY, "-c", WRAPPER, *cmd], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(cmd: list[str], env: dict[str, str], repeat: int, cwd: Path = REPO, before: object = None) -> Figure:
    walls, rss, out = [], [], ""
    for _ in range(repeat):
        if callable(before):
            before()
        result = measure(cmd, env, cwd)
        if result["code"] not in (0, 1):
            raise SystemExit(f"bench: {' '.join(cmd)} exited with {result['code']}")
        walls.append(result["wall"])
        rss.append(result["maxrss_kb"] / 1024)
        out = result["out"]
    return Figure(statistics.median(walls), statistics.median(rss), walls, out)


def check(*args: str) -> list[str]:
    return [PY, "-m", "lossdiag", "check", *args]


def cached_cases(env: dict[str, str], repeat: int, work: Path) -> tuple[Figure, Figure, int]:
    """The 4 files warm (every file a hit), and one of them edited between runs (only it re-probed)."""
    four = work / "four"
    shutil.copytree(FOUR, four)
    args = check(*(p.name for p in sorted(four.glob("*.py"))), "--format", "json", "--cache-dir", str(work / "cache"))
    subprocess.run(args, cwd=four, env=env, capture_output=True, check=False)  # warm the cache
    warm = median_of(args, env, repeat, four)
    edits = iter(range(10**6))

    def edit() -> None:
        with open(four / "heads.py", "a", encoding="utf-8") as fh:
            fh.write(f"# edit {next(edits)}\n")

    edited = median_of(args, env, repeat, four, before=edit)
    cached = json.loads(edited.out)["summary"].get("cached", 0)
    return warm, edited, cached


def jobs_cases(env: dict[str, str], repeat: int, work: Path) -> tuple[Figure, Figure, bool]:
    """24 modules of 5 losses, cold, with one worker and with two: the same JSON, in less time."""
    many = work / "many"
    many.mkdir()
    for i in range(24):
        (many / f"losses_{i:02d}.py").write_text(MODULE.format(i=i), encoding="utf-8")
    one = median_of(check(".", "--no-cache", "--format", "json", "--jobs", "1"), env, repeat, many)
    two = median_of(check(".", "--no-cache", "--format", "json", "--jobs", "2"), env, repeat, many)
    return one, two, one.out == two.out


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def rows_of(f: dict[str, Figure], cached: int, same: bool) -> list[tuple[str, str, str, str, str]]:
    a = f["floor"].wall

    def ratio(key: str) -> str:
        return f"{f[key].wall:.2f} s ({f[key].wall / a:.2f}×)"

    return [
        ("floor: `import tensorflow, keras`", f"{a:.2f} s", f"{f['floor'].mib:.0f} MiB", "", ""),
        ("seed file, cold (3 losses)", ratio("seed"), f"{f['seed'].mib:.0f} MiB", "≤ 1.2× floor",
         verdict(f["seed"].wall <= 1.2 * a)),
        ("4 files / 14 losses, cold", ratio("four"), f"{f['four'].mib:.0f} MiB", "≤ 1.35× floor",
         verdict(f["four"].wall <= 1.35 * a)),
        ("20 losses, cold", ratio("twenty"), f"{f['twenty'].mib:.0f} MiB", "≤ 1.4× floor",
         verdict(f["twenty"].wall <= 1.4 * a)),
        ("a file with no losses", f"{f['none'].wall:.2f} s", f"{f['none'].mib:.0f} MiB", "< 0.5 s",
         verdict(f["none"].wall < 0.5)),
        ("same 4 files, cached", ratio("warm"), f"{f['warm'].mib:.0f} MiB", "≤ 0.15× floor, no TF",
         verdict(f["warm"].wall <= 0.15 * a and f["warm"].mib < 200)),
        ("one of the 4 files edited", ratio("edited"), f"{f['edited'].mib:.0f} MiB",
         "only that file re-probed", verdict(cached == 10)),
        ("24 modules × 5 losses, `--jobs 1`", ratio("jobs1"), f"{f['jobs1'].mib:.0f} MiB", "", ""),
        ("24 modules × 5 losses, `--jobs 2`", ratio("jobs2"), f"{f['jobs2'].mib:.0f} MiB",
         "≤ 0.8× of `--jobs 1`, same JSON", verdict(f["jobs2"].wall <= 0.8 * f["jobs1"].wall and same)),
        ("every corpus module (`fixtures/corpus`), cold", ratio("corpus"), f"{f['corpus'].mib:.0f} MiB",
         "peak ≤ floor + 300 MiB", verdict(f["corpus"].mib <= f["floor"].mib + 300)),
    ]


def markdown(rows: list[tuple[str, str, str, str, str]], load: float, repeat: int) -> str:
    lines = [
        f"Measured by `make bench` on this project's 2-core machine (median of {repeat} fresh runs each; "
        f"load average {load:.1f} at the start):",
        "",
        "| case | wall | peak RSS | target | |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_readme(table: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- bench:start -->\n", "<!-- bench:end -->"
    if start not in text or end not in text:
        raise SystemExit("bench: README.md has no bench:start/bench:end markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + table + end + tail, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's performance table")
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # lossdiag's own bytecode, as a wheel install has it: this checkout is an editable install, and with
    # PYTHONDONTWRITEBYTECODE every run would compile all of lossdiag again, twice (parent and worker)
    compileall.compile_dir(REPO / "lossdiag", quiet=1)
    load = os.getloadavg()[0]
    print(f"lossdiag benchmark: median of {args.repeat} runs each; {os.cpu_count()} CPUs, load {load:.2f}", flush=True)
    # the worker's own TensorFlow settings (oneDNN off, no GPU): the floor lossdiag itself can reach
    floor_env = {"TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow"}
    cold = [
        ("floor", [PY, "-c", f"import os; os.environ.update({floor_env!r}); import tensorflow, keras"]),
        ("seed", check("--no-cache", "fixtures/seed_losses.py")),
        ("four", check("--no-cache", *(str(p) for p in sorted(FOUR.glob("*.py"))))),
        ("twenty", check("--no-cache", "fixtures/many_losses.py")),
        ("none", check("--no-cache", "bench/fixtures/no_losses.py")),
        ("corpus", check("--no-cache", "fixtures/corpus")),
    ]
    figures: dict[str, Figure] = {}
    for key, cmd in cold:
        figures[key] = median_of(cmd, env, 1 if key == "corpus" else args.repeat)
        print(f"  {key}: {', '.join(f'{w:.2f}' for w in figures[key].walls)} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="lossdiag-bench-") as tmp:
        figures["warm"], figures["edited"], cached = cached_cases(env, args.repeat, Path(tmp))
        figures["jobs1"], figures["jobs2"], same = jobs_cases(env, max(1, args.repeat // 2), Path(tmp))
    rows = rows_of(figures, cached, same)
    table = markdown(rows, load, args.repeat)
    print("\n" + table)
    if args.readme:
        write_readme(table)
        print("README.md: performance table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
