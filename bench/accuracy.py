"""Score lossdiag's verdicts against the `# expect:` markers of fixture modules, with no flags or with shapes.

    python bench/accuracy.py fixtures/corpus            # zero-config: what a new user sees
    python bench/accuracy.py fixtures/corpus --shapes   # with a --probe per loss from its `# probe:` comment

A loss is right when lossdiag reports exactly the codes its marker names (`pass` = no finding,
`skipped` = skipped). The primary verdict is the batch-axis code if any, else the first code, else pass.
Prints every miss, the accuracy per file and overall, and how many correct losses got a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"#\s*expect(?:\[(?P<name>[^\]]+)\])?:\s*(?P<codes>[\w ,]+)$")
PROBE = re.compile(r"^\s*#\s*probe:\s*(?P<spec>\S+)\s*$")
DEFINED = re.compile(r"^\s*(?:def|class)\s+(?P<def>\w+)|^(?P<assign>\w+)\s*(?::[^=]+)?=")
BATCH_CODES = ("LD101", "LD102", "LD103", "LD104", "LD105")


def markers(path: Path) -> dict[str, tuple[frozenset[str], str | None]]:
    """{loss name: (expected codes, its `# probe:` layout or None)}."""
    out: dict[str, tuple[frozenset[str], str | None]] = {}
    probe: str | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if (found := PROBE.match(line)) is not None:
            probe = found.group("spec")
            continue
        found = MARKER.search(line)
        name_match = DEFINED.match(line)
        if found and (name_match or found.group("name")):
            codes = frozenset(c.strip() for c in found.group("codes").split(",") if c.strip())
            name = found.group("name") or name_match.group("def") or name_match.group("assign")  # type: ignore[union-attr]
            out[name] = (codes, probe)
        if line.strip() and not line.lstrip().startswith(("@", "#")):
            probe = None
    return out


def primary(codes: frozenset[str]) -> str:
    batch = sorted(c for c in codes if c in BATCH_CODES)
    if batch:
        return batch[0]
    rest = sorted(c for c in codes if c.startswith("LD"))
    return rest[0] if rest else ("skipped" if "skipped" in codes else "pass")


def run(paths: list[str], probes: dict[str, str], extra: list[str]) -> dict:
    args = [sys.executable, "-m", "lossdiag", "check", *paths, "--format", "json", "--fail-on", "never", *extra]
    for key, spec in sorted(probes.items()):
        args += ["--probe", f"{key}={spec}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1):
        sys.exit(f"lossdiag failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def got_codes(result: dict) -> frozenset[str]:
    if result["status"] == "skipped":
        return frozenset({"skipped"})
    codes = frozenset(f["code"] for f in result["findings"] if not f["suppressed"])
    return codes or frozenset({"pass"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--shapes", action="store_true", help="pin each loss's layout from its `# probe:` comment")
    parser.add_argument("--quiet", "-q", action="store_true", help="only the totals")
    args, extra = parser.parse_known_args()
    files = sorted({p for a in args.paths for p in ([Path(a)] if a.endswith(".py") else Path(a).rglob("*.py"))})
    expected = {f.as_posix(): markers(f) for f in files}
    expected = {f: m for f, m in expected.items() if m}
    probes = {}
    if args.shapes:
        probes = {f"{f}::{name}": spec for f, m in expected.items() for name, (_, spec) in m.items() if spec}
    data = run(sorted(expected), probes, extra)
    results = {(r["file"], r["name"]): r for r in data["results"]}
    per_file: dict[str, Counter[str]] = {}
    flagged_correct: list[str] = []
    for file, losses in sorted(expected.items()):
        tally = per_file.setdefault(file, Counter())
        for name, (codes, _) in sorted(losses.items()):
            result = results.get((file, name))
            got = got_codes(result) if result else frozenset({"missing"})
            tally["losses"] += 1
            tally["exact"] += got == codes
            tally["primary"] += primary(got) == primary(codes)
            if codes == {"pass"} and got != codes:
                flagged_correct.append(f"{file}::{name} {sorted(got)}")
            if got != codes and not args.quiet:
                why = "" if not result or not result["findings"] else result["findings"][0]["message"][:160]
                probe = (result or {}).get("probe") or {}
                print(f"MISS {file}::{name}: want {sorted(codes)} got {sorted(got)} "
                      f"[{probe.get('y_true')}→{probe.get('y_pred')} {probe.get('labels')}] {why}")
    total = sum(per_file.values(), Counter())
    for file, tally in per_file.items():
        print(f"{tally['exact']:3d}/{tally['losses']:<3d} exact  {tally['primary']:3d} primary  {file}")
    n = total["losses"] or 1
    print(f"TOTAL {total['exact']}/{total['losses']} exact ({100 * total['exact'] / n:.1f}%), "
          f"{total['primary']} primary ({100 * total['primary'] / n:.1f}%), "
          f"{len(flagged_correct)} correct losses flagged{' (shapes given)' if args.shapes else ''}")
    for line in flagged_correct:
        print(f"  flagged: {line}")
    errors = [e for e in data["errors"]]
    for e in errors:
        print(f"LOAD {e['file']}: {e['code']} {e['message'][:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
