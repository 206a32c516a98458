"""Every fixture loss gets exactly the codes its `# expect:` marker names, and nothing else."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, validate_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
# The shared run takes the top-level fixtures; the slow robustness folder (hangs, crashes, memory
# blow-ups) is covered by test_robustness.py with short limits, and as is by the whole-folder run.
# `# expect[NAME]: CODES` names the loss itself: a call in compile(), found by use, has no def line
MARKER = re.compile(r"#\s*expect(?:\[(?P<name>[^\]]+)\])?:\s*(?P<codes>[\w ,]+)$")
DEFINED = re.compile(r"^\s*(?:def|class)\s+(?P<def>\w+)|^(?P<assign>\w+)\s*(?::[^=]+)?=")

pytestmark = pytest.mark.tf


def markers(path: Path) -> dict[str, set[str]]:
    """{loss name: expected codes} from `# expect: LD101, LD201` / `# expect: pass` comments."""
    out: dict[str, set[str]] = {}
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        found = MARKER.search(line)
        if not found:
            continue
        name_match = DEFINED.match(line)
        name = "<module>" if name_match is None else name_match.group("def") or name_match.group("assign")
        name = found.group("name") or name
        codes = {c.strip() for c in found.group("codes").split(",") if c.strip()}
        out[name] = codes
    return out


def fixture_files() -> list[Path]:
    """Every marked fixture module, the corpora and training scripts included. The robustness folder
    (hangs, crashes, floods) has its own tests with short limits; `blind/` and `blind2/` are held-out sets
    that `bench/accuracy.py` scores and no test pins, so that they keep measuring how verdicts generalise."""
    return sorted(p for p in FIXTURES.rglob("*.py") if not _held_out(p) and "robustness" not in p.parts and markers(p))


def _held_out(path: Path) -> bool:
    return any(part.startswith("blind") for part in path.parts)


def run_json(*args: str) -> dict:
    env = cli_env()
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", *args, "--format", "json", "--fail-on", "never"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    validate_report(data)
    return data


@pytest.fixture(scope="module")
def report() -> dict:
    return run_json(*(str(p.relative_to(ROOT)) for p in fixture_files()))


@pytest.fixture(scope="module")
def report_untraced() -> dict:
    return run_json(*(str(p.relative_to(ROOT)) for p in fixture_files()), "--no-trace")


def test_no_trace_changes_where_findings_point_never_their_codes(report, report_untraced):
    """Issue 10: the verdict is a measurement; the trace only locates it."""

    def codes(data: dict) -> dict:
        return {r["id"]: sorted(f["code"] for f in r["findings"]) for r in data["results"]}

    assert codes(report_untraced) == codes(report)
    assert any(f["related"] for r in report["results"] for f in r["findings"])
    assert not any(f["related"] for r in report_untraced["results"] for f in r["findings"])


def test_the_fixture_set_is_not_empty():
    names = {p.relative_to(FIXTURES).as_posix() for p in fixture_files()}
    assert {"seed_losses.py", "batch_axis.py", "numerics.py", "shapes.py", "loss_objects.py"} <= names
    assert {"corpus/k2_segmentation.py", "corpus/k3_detection.py", "scripts/train_seed_k2.py"} <= names


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.relative_to(FIXTURES).as_posix())
def test_each_loss_gets_exactly_the_codes_it_was_written_for(report, path):
    expected = markers(path)
    rel = path.relative_to(ROOT).as_posix()
    results = {r["name"]: r for r in report["results"] if r["file"] == rel}
    errors = [e for e in report["errors"] if e["file"] == rel]
    if "<module>" in expected:
        assert {e["code"] for e in errors} == expected.pop("<module>")
    else:
        assert not errors, errors
    assert set(results) == set(expected), "every loss needs a marker, every marker a loss"
    for name, codes in expected.items():
        result = results[name]
        got = {f["code"] for f in result["findings"] if not f["suppressed"]}
        if codes == {"pass"}:
            assert result["status"] == "pass" and not got, (name, result["findings"])
        elif codes == {"skipped"}:
            assert result["status"] == "skipped", (name, result)
        else:
            assert got == codes, (name, [f["message"] for f in result["findings"]])


def test_seed_bug_ratio_is_the_batch_size(report):
    loss2 = next(r for r in report["results"] if r["id"] == "fixtures/seed_losses.py::loss2")
    assert loss2["status"] == "fail"
    assert loss2["ratio"] == pytest.approx(32, rel=0.05)
    assert loss2["output_shape"] == []
    assert loss2["probe"] == {"batch_size": 32, "y_true": [32, 2], "y_pred": [32, 2], "labels": "binary", "source": "inferred"}
    fixed = next(r for r in report["results"] if r["id"] == "fixtures/seed_losses.py::loss2_fixed")
    assert fixed["ratio"] == pytest.approx(1.0, rel=1e-3)
    assert fixed["output_shape"] == [32]


def test_batch_size_8_gives_ratio_8():
    data = run_json("fixtures/seed_losses.py", "--batch-size", "8")
    by_name = {r["name"]: r for r in data["results"]}
    assert by_name["loss2"]["ratio"] == pytest.approx(8, rel=0.05)
    assert [f["code"] for f in by_name["loss2"]["findings"]] == ["LD101"]
    assert by_name["loss1"]["status"] == by_name["loss2_fixed"]["status"] == "pass"


def test_untraceable_loss_keeps_its_verdict_points_at_def_and_v_says_why():
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", "fixtures/batch_axis.py::sums_over_batch_through_numpy",
         "--format", "json", "-v"],
        cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=300,
    )
    assert proc.returncode == 1
    validate_report(json.loads(proc.stdout))
    (result,) = json.loads(proc.stdout)["results"]
    ld101 = next(f for f in result["findings"] if f["code"] == "LD101")
    assert ld101["line"] == result["line"]  # the def line: no trace to point elsewhere
    assert "could not trace it as a graph" in proc.stderr and "numpy" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_trace_flag_keeps_verdicts_and_drops_source_lines():
    traced = run_json("fixtures/seed_losses.py::loss2")
    untraced = run_json("fixtures/seed_losses.py::loss2", "--no-trace")
    (a,), (b,) = traced["results"], untraced["results"]
    assert [f["code"] for f in a["findings"]] == [f["code"] for f in b["findings"]] == ["LD101"]
    assert a["findings"][0]["line"] == 7 and b["findings"][0]["line"] == a["line"]
    assert a["ratio"] == b["ratio"]


@pytest.mark.parametrize("fixture", ["seed_losses.py", "seed_losses_k2.py"])
def test_seed_finding_points_at_the_sum_and_relates_the_slices(report, fixture):
    """Issue 3: the `sum` in the inner function, the slices in the outer one, and keep-the-axis."""
    rel = f"fixtures/{fixture}"
    lines = (ROOT / rel).read_text().splitlines()
    loss2 = next(r for r in report["results"] if r["id"] == f"{rel}::loss2")
    (finding,) = loss2["findings"]
    assert "sum(" in lines[finding["line"] - 1] and "axis=-1" in lines[finding["line"] - 1]
    related = {rel_["line"] for rel_ in finding["related"]}
    assert related == {i + 1 for i, line in enumerate(lines) if "[:, 1]" in line and i + 1 > loss2["line"]
                       and i + 1 < loss2["line"] + 4}
    assert "1:2]" in finding["hint"]


@pytest.mark.slow
def test_check_whole_fixtures_folder_gives_every_marker():
    """Issue 4: `lossdiag check fixtures/` with no option, and each fixture gets exactly its codes."""
    data = run_json("fixtures/")
    for path in sorted(p for p in FIXTURES.rglob("*.py") if not _held_out(p)):  # held out: scored, not pinned
        expected = markers(path)
        rel = path.relative_to(ROOT).as_posix()
        results = {r["name"]: r for r in data["results"] if r["file"] == rel}
        errors = {e["code"] for e in data["errors"] if e["file"] == rel}
        assert errors == expected.pop("<module>", set()), rel
        assert set(results) == set(expected), rel
        for name, codes in expected.items():
            got = {f["code"] for f in results[name]["findings"] if not f["suppressed"]}
            want = set() if codes in ({"pass"}, {"skipped"}) else codes
            assert got == want, (rel, name, [f["message"] for f in results[name]["findings"]])


def test_batch_statistics_have_no_per_sample_numbers(report):
    """Issue 17: R² and correlation losses show n/a with the reason, and a fix about statistics."""
    stats = {r["name"]: r for r in report["results"] if r["file"] == "fixtures/statistics.py"}
    for name in ("r2_over_batch", "pearson_over_batch", "mse_over_batch_range"):
        result = stats[name]
        assert (result["expected"], result["ratio"], result["na_reason"]) == (None, None, "batch statistic"), name
        (finding,) = result["findings"]
        assert "statistic of the whole batch" in finding["message"] and "metric" in finding["hint"], name
    assert stats["r2_per_sample"]["ratio"] == pytest.approx(1.0)


def test_a_training_script_names_the_outputs_its_losses_are_compiled_for(report):
    """Issue 18: `loss2 → YZ` in the table, `outputs` in JSON; the script is judged Keras 2 with no flag."""
    script = {r["name"]: r for r in report["results"] if r["file"] == "fixtures/scripts/train_seed_k2.py"}
    assert script["loss2"]["outputs"] == ["YZ"] and script["loss1"]["outputs"] == ["Z"]
    assert script["loss2"]["ratio"] == pytest.approx(32, rel=0.05)
    assert {r["keras"] for r in script.values()} == {"tf_keras 2.21.0"}
