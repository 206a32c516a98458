"""`lossdiag.check` and `lossdiag.check_loss`: the CLI's verdicts from Python, options validated, the worker kept."""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, cli_env, run_cli

import lossdiag
from lossdiag import api, engine

HERE = Path(__file__).resolve()


# --- no TensorFlow needed --------------------------------------------------------------------------


def test_import_lossdiag_loads_neither_tensorflow_nor_the_engine():
    code = (
        "import sys, lossdiag; assert callable(lossdiag.check) and callable(lossdiag.check_loss); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_engine_option_but_probe_sources_is_an_api_option():
    fields = {f.name for f in dataclasses.fields(engine.Options)}
    assert set(api.OPTION_NAMES) == fields - {"probe_sources"}


@pytest.mark.parametrize("given, message", [
    ({"batch_size": 1}, "batch_size=1: 1 is not in the range 2..1024"),
    ({"timeout": float("nan")}, "timeout=nan: nan is not a finite number"),
    ({"select": ["LD9"]}, "select="),
    ({"probes": {"dice": "y_pred=16"}}, "probes['dice']='y_pred=16': y_pred: the shape must start with the batch axis"),
    ({"legacy_keras": "maybe"}, 'legacy_keras=\'maybe\': expected "auto", true or false'),
    ({"trace": "no"}, "trace='no': expected true or false"),
])  # fmt: skip
def test_a_bad_option_value_is_a_value_error_naming_it(given, message):
    with pytest.raises(ValueError, match=r"^lossdiag: ") as caught:
        api.options(**given)
    assert message in str(caught.value)


def test_an_unknown_option_is_a_type_error_with_the_closest_name():
    with pytest.raises(TypeError, match="unknown option 'batchsize'; did you mean 'batch_size'"):
        lossdiag.check("x.py", batchsize=8)


def test_options_take_python_values_and_come_out_as_the_cli_builds_them(tmp_path):
    spec = lossdiag.ProbeSpec(("B", 2), ("B", 2), "binary")
    given = api.options(select=("LD1",), ignore="LD105", probes={"dice": spec}, legacy_keras=None, cache_dir=tmp_path)
    assert given == {
        "select": ("LD1",), "ignore": ("LD105",), "probes": {"dice": "y_true=B,2;y_pred=B,2;labels=binary"},
        "legacy_keras": None, "cache_dir": str(tmp_path),
    }  # fmt: skip
    built = api.engine_options({"ignore": ("LD105",), "batch_size": 8}, api._file_config(tmp_path, False, []), tmp_path)
    assert built.batch_size == 8 and "LD105" in built.ignore and "LD101" in built.select


def test_usage_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        lossdiag.check("missing.py", cwd=tmp_path, config=False)
    with pytest.raises(ValueError, match="no targets given and no `include`"):
        lossdiag.check(cwd=tmp_path, config=False)
    with pytest.raises(ValueError, match="probe='y_pred=2'"):
        lossdiag.check_loss(len, probe="y_pred=2")


# --- through the worker ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_modules():
    pytest.importorskip("keras")
    sys.path.insert(0, str(FIXTURES))
    import loss_objects
    import seed_losses

    yield seed_losses, loss_objects
    sys.path.remove(str(FIXTURES))


@pytest.mark.tf
def test_check_gives_the_cli_verdicts():
    report = lossdiag.check(["fixtures/seed_losses.py"], cwd=REPO, batch_size=8)
    code, out, err = run_cli(["check", "fixtures/seed_losses.py", "--format", "json", "--batch-size", "8"], REPO)
    assert code == 1, err
    cli = {r["id"]: (r["status"], [f["code"] for f in r["findings"]], r["ratio"]) for r in json.loads(out)["results"]}
    ours = {r.id: (r.status, [f.code for f in r.findings], None if r.ratio is None else round(r.ratio, 4)) for r in report.results}
    assert ours == cli and cli["fixtures/seed_losses.py::loss2"][2] == pytest.approx(8, rel=0.05)


@pytest.mark.tf
def test_check_loss_on_the_seed_bug_with_a_probe_is_the_cli_result(fixture_modules):
    seed_losses, _ = fixture_modules
    result = lossdiag.check_loss(seed_losses.loss2, probe="y_true=B,2;y_pred=B,2;labels=binary", cwd=REPO)
    assert (result.id, result.status, [f.code for f in result.findings]) == (
        "fixtures/seed_losses.py::loss2", "fail", ["LD101"],
    )
    assert result.ratio == pytest.approx(32, rel=0.01)
    assert result.probe is not None and result.probe.source == "given"


@pytest.mark.tf
def test_check_loss_on_a_loss_instance_built_here(fixture_modules):
    import keras

    result = lossdiag.check_loss(keras.losses.MeanSquaredError(reduction="sum"), cwd=REPO)
    (finding,) = result.findings
    assert finding.code == "LD101" and 'reduction="sum"' in finding.message
    assert result.ratio == pytest.approx(32, rel=0.01)


@pytest.mark.tf
def test_check_loss_on_a_partial_points_at_its_function(fixture_modules):
    seed_losses, _ = fixture_modules
    result = lossdiag.check_loss(functools.partial(seed_losses.loss1), cwd=REPO)
    assert (result.id, result.line, result.status) == ("fixtures/seed_losses.py::loss1", 6, "pass")


@pytest.mark.tf
def test_check_loss_on_a_lambda_and_a_suppressed_local_function_points_at_this_file(fixture_modules):
    from keras import ops

    summed = lambda y_true, y_pred: ops.sum(ops.square(y_true - y_pred))  # noqa: E731 - a lambda is what is tested
    result = lossdiag.check_loss(summed, cwd=REPO)
    line = summed.__code__.co_firstlineno
    assert (result.id, result.line, result.file) == ("tests/test_api.py::<lambda>", line, "tests/test_api.py")
    assert [(f.code, f.file, f.line) for f in result.findings] == [("LD101", "tests/test_api.py", line)]

    def summed_on_purpose(y_true, y_pred):  # lossdiag: ignore[LD101]
        return ops.sum(ops.square(y_true - y_pred))

    quiet = lossdiag.check_loss(summed_on_purpose, cwd=REPO)
    assert quiet.status == "pass" and [(f.code, f.suppressed) for f in quiet.findings] == [("LD101", True)]


@pytest.mark.tf
def test_a_hanging_loss_times_out_in_the_worker_and_never_hangs_the_caller():
    def hangs(y_true, y_pred):
        while True:
            time.sleep(1)

    result = lossdiag.check_loss(hangs, cwd=REPO, timeout=2)  # returning at all is the point
    assert result.status == "error" and result.findings[0].code == "LD002"
    assert "timed out after 2 s" in result.findings[0].message


@pytest.mark.tf
def test_check_loss_on_a_metric_built_here_with_a_probe_spec(fixture_modules):
    sys.path.insert(0, str(FIXTURES))
    try:
        import metrics
    finally:
        sys.path.remove(str(FIXTURES))
    spec = lossdiag.ProbeSpec(("B", 4), ("B", 4), "probs")
    result = lossdiag.check_loss(metrics.BatchCountingMAE(name="counts_batches"), probe=spec, cwd=REPO)
    assert (result.id, result.kind, [f.code for f in result.findings]) == (
        "fixtures/metrics.py::BatchCountingMAE", "metric", ["LD101"],
    )
    assert result.probe is not None and (result.probe.y_pred, result.probe.labels) == ((32, 4), "probs")
    assert result.ratio == pytest.approx(32, rel=0.01)
