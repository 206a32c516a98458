"""The rule catalogue is complete and documented, and measurements classify into the right codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import validate_report

from lossdiag import rules
from lossdiag.measurement import LossMeasurement, ProbeMeasurement, ProbeSpec
from lossdiag.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
SPEC_TABLE = re.compile(r"^\| (LD\d{3})\s*\| (\w+)\s*\| ([\w-]+)\s*\|", re.MULTILINE)


def test_codes_names_and_severities_match_the_spec():
    spec = (ROOT.parent / "shared" / "SPEC.md")
    if not spec.is_file():
        pytest.skip("shared/SPEC.md is not next to the repository")
    table = {code: (severity, name) for code, severity, name in SPEC_TABLE.findall(spec.read_text())}
    assert table == {r.code: (r.severity, r.name) for r in RULES.values()}


def test_catalogue_is_well_formed():
    assert len({r.name for r in RULES.values()}) == len(RULES)
    for rule in RULES.values():
        assert re.fullmatch(r"LD\d{3}", rule.code)
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.name)
        assert rule.severity in ("error", "warning")
        for text in (rule.summary, rule.what, rule.why, rule.example, rule.use_instead):
            assert text.strip(), rule.code
        doc = rules.rule_doc_markdown(rule)
        for section in ("## What it does", "## Why is this bad?", "## Example", "Use instead:"):
            assert section in doc


def test_readme_rule_table_is_the_catalogue():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (LD\d{3}) \| ([\w-]+) \| (\w+) \| (.+) \|$", readme, re.MULTILINE)
    assert rows == [(r.code, r.name, r.severity, r.summary) for r in RULES.values()]


def test_lookup_by_code_or_name():
    assert rules.lookup("ld101") is RULES["LD101"]
    assert rules.lookup("batch-sum") is RULES["LD101"]
    assert rules.lookup("LD999") is None


def _probe(shapes, reported=1.0, doubled=1.0, **kw) -> ProbeMeasurement:
    return ProbeMeasurement(ProbeSpec(("B", 2), ("B", 2), "binary"), shapes=shapes, reported=reported,
                            reported_doubled=doubled, **kw)


@pytest.mark.parametrize(
    "shapes, doubled, extra, code",
    [
        (((5, (5,)), (7, (7,)), (32, (32,))), 1.0, {}, None),  # per sample
        (((5, (5, 1)), (7, (7, 1)), (32, (32, 1))), 1.0, {}, None),  # keepdims
        (((5, (5, 2)), (7, (7, 2)), (32, (32, 2))), 1.0, {}, None),  # unreduced
        (((5, ()), (7, ()), (32, ())), 2.0, {}, "LD101"),  # summed
        (((5, ()), (7, ()), (32, ())), 1.0, {}, "LD102"),  # averaged
        (((5, (2,)), (7, (2,)), (32, (2,))), 2.0, {}, "LD103"),  # axis 0 reduced, feature kept
        (((5, (10,)), (7, (14,)), (32, (64,))), 1.0, {}, "LD103"),  # batch flattened with features
        (((5, (5, 5)), (7, (7, 7)), (32, (32, 32))), 1.0, {}, "LD104"),  # (B, B)
        (((5, (5,)), (7, (7,)), (32, (32,))), 1.0, {"coupled_from": (0,), "coupled_delta": 0.1}, "LD105"),
    ],
)
def test_classify_batch_axis(shapes, doubled, extra, code):
    codes = [c for c, _ in rules.classify(_probe(shapes, doubled=doubled, gradient="ok", **extra))]
    assert codes == ([] if code is None else [code])


def test_classify_numerics():
    shapes = ((5, (5,)), (7, (7,)), (32, (32,)))
    assert [c for c, _ in rules.classify(_probe(shapes, boundary="NaN in 3 of 32", gradient="ok"))] == ["LD201"]
    assert [c for c, _ in rules.classify(_probe(shapes, gradient="none"))] == ["LD202"]
    assert [c for c, _ in rules.classify(_probe(shapes, gradient="zero"))] == ["LD202"]


def test_findings_carry_evidence_and_ratio():
    probe = _probe(((5, ()), (7, ()), (32, ())), reported=10.58, doubled=21.16, gradient="ok")
    m = LossMeasurement("loss2", "function", "/x/losses.py", 10, probes=(probe,), chosen=0,
                        expected=0.3307, actual=10.58, output_shape=())
    ((code, message, file, line, hint, related),) = rules.findings_for(m)
    assert (code, file, line, related) == ("LD101", "/x/losses.py", 10, ())
    assert "returns shape () at batch size 32" in message and "32.0×" in message and "10.58" in message
    assert "axis=-1" in hint


def test_dense_layouts_decide_for_a_loss_that_accepts_them():
    dense = _probe(((5, (5,)), (7, (7,)), (32, (32,))), gradient="ok")
    sparse = ProbeMeasurement(ProbeSpec(("B",), ("B", 4), "sparse"), shapes=((5, (5, 5)), (32, (32, 32))),
                              reported=1.0, reported_doubled=1.0, gradient="ok")
    assert rules.relevant((dense, sparse)) == [0]
    assert rules.relevant((dense, sparse), name="sparse_focal") == [1]
    assert rules.relevant((ProbeMeasurement(dense.spec, error="boom"), sparse)) == [1]


def test_not_probed_message_lists_the_layouts_and_the_last_error():
    m = LossMeasurement("x", "function", "f.py", 1, probes=(
        ProbeMeasurement(ProbeSpec(("B", 1), ("B", 1), "binary"), error="ValueError: first"),
        ProbeMeasurement(ProbeSpec(("B",), ("B", 4), "sparse"), error="ValueError: last"),
    ))
    message = rules.not_probed_message(m)
    assert "ValueError: last" in message and "(B, 1) binary" in message and "(B,)→(B, 4) sparse" in message


@pytest.mark.tf
def test_every_rule_example_is_flagged_and_its_fix_passes(tmp_path):
    """The docs do not drift from the code: each Example triggers its rule, each Use-instead passes."""
    import json
    import os
    import subprocess
    import sys

    probe_rules = [r for r in RULES.values() if r.code not in ("LD001", "LD002")]
    for rule in probe_rules:
        (tmp_path / f"example_{rule.code.lower()}.py").write_text(rule.example)
        (tmp_path / f"fixed_{rule.code.lower()}.py").write_text(rule.use_instead)
    (tmp_path / "example_ld001.py").write_text(RULES["LD001"].example)
    (tmp_path / "fixed_ld001.py").write_text(RULES["LD001"].use_instead)
    (tmp_path / "example_ld002.py").write_text(RULES["LD002"].example)
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", str(tmp_path), "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, NO_COLOR="1"), timeout=600,
    )
    data = json.loads(proc.stdout)
    validate_report(data)
    by_file: dict[str, set[str]] = {}
    for r in data["results"]:
        by_file.setdefault(r["file"], set()).update(f["code"] for f in r["findings"])
    for rule in probe_rules:
        assert rule.code in by_file[f"example_{rule.code.lower()}.py"], rule.code
        assert by_file[f"fixed_{rule.code.lower()}.py"] == set(), rule.code
    # LD001's example cannot be imported; LD002's raises on every default layout.
    assert [e["code"] for e in data["errors"] if e["file"] == "example_ld001.py"] == ["LD001"]
    assert "fixed_ld001.py" in by_file and by_file["fixed_ld001.py"] == set()
    assert by_file["example_ld002.py"] == {"LD002"}


@pytest.mark.parametrize("error, words", [
    ("timed out after 10 s while probing", "--timeout"),
    ("used more than 4096 MiB of memory while probing", "--max-memory"),
    ("the process crashed (SIGSEGV) while probing", "ended the process"),
    ("building it raised TypeError: x", "module level"),
    (None, "--probe"),
])
def test_not_probed_hint_follows_the_cause(error, words):
    m = LossMeasurement("focal", "function", "f.py", 1, error=error)
    assert words in rules.not_probed_hint(m)
