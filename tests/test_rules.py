"""The rule catalogue is complete and documented, and measurements classify into the right codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli_env, validate_report

from lossdiag import rules
from lossdiag.measurement import Coupling, Layout, LossMeasurement, ProbeSpec, Trial
from lossdiag.rules import RULES

ROOT = Path(__file__).resolve().parents[1]


def _layout(shapes, growth=(1.0, 1.0), expected=1.0, reported=1.0, **kw) -> Layout:
    return Layout(ProbeSpec(("B", 2), ("B", 2), "binary"), "ladder", "the default ladder", shapes=shapes,
                  reported=reported, growth=growth, expected=expected, gradient=kw.pop("gradient", "ok"), **kw)


def _m(layout: Layout | None = None, **kw) -> LossMeasurement:
    return LossMeasurement("loss2", "function", "/x/losses.py", 10, layout=layout, **kw)


PER_SAMPLE = ((7, (7,)), (32, (32,)))
SCALAR = ((7, ()), (32, ()))


@pytest.mark.parametrize(
    "shapes, growth, extra, code",
    [
        (PER_SAMPLE, (1.0, 1.0), {}, None),  # per sample
        (((7, (7, 1)), (32, (32, 1))), (1.0, 1.0), {}, None),  # keepdims
        (((7, (7, 2)), (32, (32, 2))), (1.0, 1.0), {}, None),  # unreduced
        (SCALAR, (2.0, 4.0), {}, "LD101"),  # summed: exactly linear
        (SCALAR, (1.0, 1.0), {}, "LD102"),  # averaged
        (SCALAR, (1.76, 2.83), {}, "LD102"),  # a dice with a large smoothing constant grows, but not linearly
        (((7, (2,)), (32, (2,))), (2.0, 4.0), {}, "LD103"),  # axis 0 reduced, feature kept
        (((7, (14,)), (32, (64,))), (1.0, 1.0), {}, "LD103"),  # batch flattened with features
        (((7, (7, 7)), (32, (32, 32))), (1.0, 1.0), {}, "LD104"),  # (B, B)
        (SCALAR, (1.0, 1.0), {"pairing_free": True, "cross_op": "(B,) - (B, 1) -> (B, B)"}, "LD104"),  # a pairing pooled
        (((7, (2,)), (32, (2,))), (1.0, 1.0), {"pairing_free": True}, "LD103"),  # mean(y_true, 0) - mean(y_pred, 0)
        (PER_SAMPLE, (1.0, 1.0), {"coupling": Coupling((0, 1, 2, 3), 0.1, "both")}, "LD105"),
        (PER_SAMPLE, (1.0, 1.0), {"coupling": Coupling((0, 1, 2, 3), 0.1, "targets"), "cross_op": "(B,) - (B, 1) -> (B, B)"},
         "LD104"),
        (PER_SAMPLE, (2.0, 4.0), {"reduction": "sum"}, "LD101"),  # a per-sample call() with reduction="sum"
        (PER_SAMPLE, (1.0, 1.0), {"expected": 32.0}, "LD105"),  # divided by the batch size
    ],
)
def test_batch_axis_verdicts(shapes, growth, extra, code):
    expected = extra.pop("expected", 1.0)
    found = rules.batch_axis.detect(_m(_layout(shapes, growth, expected=expected, **extra)))
    assert (found.code if found else None) == code


def test_reduction_sum_names_the_reduction_and_its_fix():
    found = rules.batch_axis.detect(_m(_layout(PER_SAMPLE, (2.0, 4.0), reduction="sum", reported=32.0)))
    assert found.code == "LD101" and 'reduction="sum"' in found.message
    assert 'reduction="sum_over_batch_size"' in found.hint and "divide" not in found.hint


def test_numerics_and_gradient_detectors():
    assert rules.numerics.detect(_m(_layout(PER_SAMPLE, boundary="NaN in 3 of 32"))).code == "LD201"
    assert rules.numerics.detect(_m(_layout(PER_SAMPLE))) is None
    assert rules.gradient.detect(_m(_layout(PER_SAMPLE, gradient="none"))).code == "LD202"
    assert rules.gradient.detect(_m(_layout(PER_SAMPLE, gradient="zero"))).code == "LD202"
    assert rules.gradient.detect(_m(_layout(PER_SAMPLE))) is None


def test_findings_carry_evidence_and_ratio():
    m = _m(_layout(SCALAR, (2.0, 4.0), expected=0.3307, reported=10.58))
    (found,) = rules.detect(m)
    assert found.code == "LD101"
    assert "returns shape () at batch size 32" in found.message and "32.0×" in found.message
    assert "10.58" in found.message and "doubles" in found.message
    assert "axis=-1" in found.hint
    place = rules.locate(found, m)
    assert (place.file, place.line, place.related) == ("/x/losses.py", 10, ())
    assert "--probe 'loss2=y_true=B,2;y_pred=B,2;labels=binary'" in rules.pin(m)


def test_a_batch_statistic_has_no_per_sample_numbers():
    """An R²: a sample alone has no variance, so its value alone is meaningless (issue 17)."""
    m = _m(_layout(SCALAR, (1.0, 1.0), expected=3.185e6, reported=1.374))
    expected, actual, ratio, why = rules.magnitude(m)
    assert (expected, actual, ratio, why) == (None, 1.374, None, "batch statistic")
    (found,) = rules.detect(m)
    assert found.code == "LD102" and "statistic of the whole batch" in found.message and "3.185e" not in found.message
    assert "metric" in found.hint and "axis" not in found.hint
    nonfinite = _m(_layout(SCALAR, alone_nonfinite=True, expected=None))
    assert rules.magnitude(nonfinite)[3] == "batch statistic"


def test_a_sum_keeps_its_numbers_at_any_batch_size():
    m = _m(_layout(SCALAR, (2.0, 4.0), expected=0.5, reported=128.0))  # batch size 256
    assert rules.magnitude(m)[2] == 256.0


def test_not_probed_message_lists_the_layouts_and_the_last_error():
    m = _m(trials=(
        Trial(ProbeSpec(("B", 1), ("B", 1), "binary"), "ladder", "", "ValueError: first"),
        Trial(ProbeSpec(("B",), ("B", 4), "sparse"), "ladder", "", "ValueError: last"),
    ))
    message = rules.not_probed.message(m)
    assert "ValueError: last" in message and "(B, 1) binary" in message and "(B,) against (B, 4) sparse" in message


def test_internal_errors_are_ours():
    m = _m(internal_error="Traceback ...\nValueError: cannot reshape array")
    assert "bug in lossdiag" in rules.not_probed.internal_message(m)
    assert "ValueError: cannot reshape array" in rules.not_probed.internal_message(m)


@pytest.mark.tf
def test_every_rule_example_is_flagged_and_its_fix_passes(tmp_path):
    """The docs do not drift from the code: each Example triggers its rule, each Use-instead passes."""
    import json
    import subprocess
    import sys

    probe_rules = [r for r in RULES.values() if r.code not in ("LD001", "LD002", "LD003", "LD004")]
    for rule in probe_rules:
        (tmp_path / f"example_{rule.code.lower()}.py").write_text(rule.example)
        (tmp_path / f"fixed_{rule.code.lower()}.py").write_text(rule.use_instead)
    (tmp_path / "example_ld001.py").write_text(RULES["LD001"].example)
    (tmp_path / "fixed_ld001.py").write_text(RULES["LD001"].use_instead)
    (tmp_path / "example_ld002.py").write_text(RULES["LD002"].example)
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", str(tmp_path), "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=600,
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
    assert words in rules.not_probed.hint(m)
