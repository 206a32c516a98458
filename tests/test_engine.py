"""The engine, with a stand-in worker: measurements become findings, LD004 stays ours, outputs and
the Keras version reach the results."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lossdiag import engine
from lossdiag.isolation import ModuleOutcome
from lossdiag.measurement import Layout, LossMeasurement, ProbeSpec

SCRIPT = textwrap.dedent(
    """\
    from keras import ops


    def loss1(z, zhat):
        return ops.sum(ops.square(z - zhat), axis=-1)


    def loss2(yz, yzhat):
        return loss1(yz[:, 1], yzhat[:, 1])


    model.compile(loss={"Z": loss1, "YZ": loss2})
    """
)


@pytest.fixture
def fake_worker(monkeypatch):
    """Replace the worker: each module's losses get the measurements `made` returns for them."""
    made: dict[str, LossMeasurement] = {}

    def run_modules(jobs, options, timeout, max_memory_mb, log, progress=None, workers=1):
        outcomes = {}
        for job in jobs:
            names = [c.name for c in job.scan.candidates]
            outcomes[job.path] = ModuleOutcome(measurements=[made[n] for n in names], keras="3.15.1")
        return outcomes

    monkeypatch.setattr(engine, "run_modules", run_modules)
    return made


def _per_sample(name: str, path: Path, line: int) -> LossMeasurement:
    layout = Layout(ProbeSpec(("B", 2), ("B", 2), "binary"), "source", "", shapes=((7, (7,)), (32, (32,))),
                    reported=0.5, growth=(1.0, 1.0), expected=0.5, gradient="ok")
    return LossMeasurement(name, "function", str(path), line, layout=layout)


def test_results_name_their_outputs_and_keras(tmp_path, fake_worker):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT, encoding="utf-8")
    fake_worker.update(loss1=_per_sample("loss1", path, 4), loss2=_per_sample("loss2", path, 8))
    report = engine.check(["train.py"], engine.Options(cache=False), tmp_path)
    by_name = {r.name: r for r in report.results}
    assert by_name["loss1"].outputs == ("Z",) and by_name["loss2"].outputs == ("YZ",)
    assert {r.keras for r in report.results} == {"3.15.1"}


def test_a_failure_of_lossdiag_is_ld004_with_its_traceback_for_v(tmp_path, fake_worker):
    """Issue 9, item 5: our errors are ours, never 'the loss raised'; the rest of the report is intact."""
    path = tmp_path / "train.py"
    path.write_text(SCRIPT, encoding="utf-8")
    traceback = 'Traceback (most recent call last):\n  File "probe.py", line 1\nValueError: cannot reshape array'
    fake_worker.update(
        loss1=_per_sample("loss1", path, 4),
        loss2=LossMeasurement("loss2", "function", str(path), 8, internal_error=traceback),
    )
    report = engine.check(["train.py"], engine.Options(cache=False), tmp_path)
    by_name = {r.name: r for r in report.results}
    (finding,) = by_name["loss2"].findings
    assert (finding.code, finding.severity, by_name["loss2"].status) == ("LD004", "error", "error")
    assert "bug in lossdiag" in finding.message and "ValueError: cannot reshape array" in finding.message
    assert "raised" not in finding.message.split("(")[0]
    assert any("lossdiag failed (LD004)" in line and "Traceback" in line for line in report.log)
    assert by_name["loss1"].status == "pass"
