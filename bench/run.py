"""Wall time and peak memory of `lossdiag check` against the `import tensorflow, keras` floor.

    python bench/run.py [--repeat N]          # `make bench`

Every run is a fresh process tree. A small wrapper process starts the command, waits for it and
reports its wall time and `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak resident set of the
largest process among all waited-for descendants, so lossdiag's worker (a grandchild) is included.
The figures are medians over N runs; the machine's other load shows up in them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
N_MANY = 20  # losses in fixtures/many_losses.py

# Runs CMD, waits, prints {"wall": seconds, "maxrss_kb": ..., "code": ...} as its last line.
WRAPPER = textwrap.dedent(
    """\
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall": wall, "maxrss_kb": rss, "code": code}))
    """
)

# In one process: probe every loss of a module the way the worker does, timing probe and trace.
TRACE_TIMER = textwrap.dedent(
    """\
    import io, json, sys, time
    from pathlib import Path
    from lossdiag import _tf, worker

    _tf.load(False)
    path = Path(sys.argv[1]).resolve()
    trace_times = []
    original = worker._trace

    def timed(runner, m, seed):
        t0 = time.perf_counter()
        out = original(runner, m, seed)
        if out is not None:
            trace_times.append(time.perf_counter() - t0)
        return out

    worker._trace = timed

    class Clock(io.StringIO):
        starts, per_loss = {}, []

        def write(self, text):
            event = json.loads(text)
            if event.get("event") == "start":
                self.starts[event["name"]] = time.perf_counter()
            elif event.get("event") == "result":
                name = event["measurement"]["name"]
                self.per_loss.append(time.perf_counter() - self.starts[name])
            return len(text)

    channel = Clock()
    request = {"path": str(path), "module": path.stem, "root": str(path.parent), "names": None,
               "skip": [], "probes": {}}
    options = {"legacy": False, "batch_size": 32, "seed": 0, "trace": True}
    worker.check_module(request, options, channel)
    print(json.dumps({"per_loss": channel.per_loss, "trace": trace_times}))
    """
)


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    proc = subprocess.run([PY, "-c", WRAPPER, *cmd], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(cmd: list[str], env: dict[str, str], repeat: int, ok_codes: tuple[int, ...]) -> dict[str, float]:
    walls, rss = [], []
    for _ in range(repeat):
        result = measure(cmd, env, REPO)
        if result["code"] not in ok_codes:
            raise SystemExit(f"bench: {' '.join(cmd)} exited with {result['code']} (expected {ok_codes})")
        walls.append(result["wall"])
        rss.append(result["maxrss_kb"] / 1024)
    return {"wall": statistics.median(walls), "mib": statistics.median(rss), "walls": walls}


def trace_figures(env: dict[str, str]) -> tuple[float, float, int] | None:
    """(median probe time per loss, median trace time per traced loss, losses traced); None if unavailable."""
    try:
        proc = subprocess.run(
            [PY, "-c", TRACE_TIMER, str(REPO / "fixtures" / "many_losses.py")],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception:  # the worker's internals changed: this figure is optional
        return None
    if not data["per_loss"]:
        return None
    trace = statistics.median(data["trace"]) if data["trace"] else 0.0
    return statistics.median(data["per_loss"]), trace, len(data["trace"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    check = [PY, "-m", "lossdiag", "check", "--no-cache"]  # cold runs: the result cache would answer runs 2..N
    # lossdiag's worker imports TensorFlow with oneDNN off (bit-stable sums) and no GPU: the same
    # import with those settings is the floor lossdiag itself can reach.
    worker_env = {"TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow"}
    tf_floor = [PY, "-c", f"import os; os.environ.update({worker_env!r}); import tensorflow, keras"]
    cases = [
        ("a", "floor: python -c 'import tensorflow, keras'", [PY, "-c", "import tensorflow, keras"], (0,)),
        ("a2", "the same import with lossdiag's TF settings", tf_floor, (0,)),
        ("b", "lossdiag check fixtures/seed_losses.py", [*check, "fixtures/seed_losses.py"], (0, 1)),
        ("c", f"lossdiag check fixtures/many_losses.py ({N_MANY} losses)", [*check, "fixtures/many_losses.py"], (0, 1)),
        ("d", "lossdiag check bench/fixtures/no_losses.py", [*check, "bench/fixtures/no_losses.py"], (0,)),
    ]
    print(f"lossdiag benchmark: median of {args.repeat} runs each, fresh processes; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start\n", flush=True)
    results: dict[str, dict[str, float]] = {}
    for key, label, cmd, ok in cases:
        results[key] = median_of(cmd, env, args.repeat, ok)
        r = results[key]
        print(f"  ({key}) {label}: runs {', '.join(f'{w:.2f}' for w in r['walls'])} s", flush=True)
    print()

    a, a2, b, c, d = (results[k] for k in ("a", "a2", "b", "c", "d"))
    label = {key: text for key, text, _, _ in cases}
    rows = [
        ("(a) " + label["a"], f"{a['wall']:.2f} s", f"{a['mib']:.0f} MiB", "the floor", ""),
        ("    " + label["a2"], f"{a2['wall']:.2f} s", f"{a2['mib']:.0f} MiB", "(oneDNN off, no GPU)", ""),
        ("(b) " + label["b"], f"{b['wall']:.2f} s", f"{b['mib']:.0f} MiB",
         f"≤ 1.5× floor = {1.5 * a['wall']:.2f} s", verdict(b["wall"] <= 1.5 * a["wall"])),
        ("(c) " + label["c"], f"{c['wall']:.2f} s", f"{c['mib']:.0f} MiB",
         f"≤ 2× floor = {2 * a['wall']:.2f} s", verdict(c["wall"] <= 2 * a["wall"])),
        ("(d) " + label["d"], f"{d['wall']:.2f} s", f"{d['mib']:.0f} MiB", "< 0.5 s", verdict(d["wall"] < 0.5)),
        ("(e) (b) / (a)", f"{b['wall'] / a['wall']:.2f}×", "", "≤ 1.5×", verdict(b["wall"] <= 1.5 * a["wall"])),
        ("    (c) / (a)", f"{c['wall'] / a['wall']:.2f}×", "", "≤ 2×", verdict(c["wall"] <= 2 * a["wall"])),
        (f"    time per loss, ((c) - (a)) / {N_MANY}", f"{(c['wall'] - a['wall']) / N_MANY:.3f} s", "", "", ""),
        ("    memory (c) - (a)", "", f"{c['mib'] - a['mib']:+.0f} MiB", "within 300 MB (286 MiB)",
         verdict(abs(c["mib"] - a["mib"]) * 1024 * 1024 <= 300e6)),
    ]
    figures = trace_figures(env)
    if figures is not None:
        per_loss, trace, traced = figures
        rows.append(("    in the worker: probe + trace per loss (median)", f"{per_loss:.3f} s", "", "", ""))
        rows.append((f"    in the worker: trace per traced loss ({traced} of {N_MANY})", f"{trace:.3f} s", "", "", ""))
    else:
        rows.append(("    trace time per loss", "n/a", "", "", ""))

    header = ("case", "wall", "peak RSS", "target", "")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    line = "  ".join(f"{{:{'<' if i in (0, 3) else '>'}{w}}}" for i, w in enumerate(widths))
    print(line.format(*header).rstrip())
    print("-" * (sum(widths) + 8))
    for row in rows:
        print(line.format(*row).rstrip())
    print("\npeak RSS: largest single process of the run (ru_maxrss of waited-for descendants).")
    return 0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
