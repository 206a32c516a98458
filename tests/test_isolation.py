"""The parent's side of a run: which Keras a module runs on, what it sends back, and that neither the
number of workers nor the machine's load changes a byte of the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, cli_env

from lossdiag import discover, engine, isolation
from lossdiag.isolation import ModuleJob, ModuleOutcome, OutputTail, other_keras_symptom, scrub, switch_reason
from lossdiag.measurement import Layout, LossMeasurement, ProbeSpec, Trial

ROB = REPO / "fixtures" / "robustness"
SPEC = ProbeSpec(("B", 2), ("B", 2), "binary")


# --- the symptom of the other Keras ----------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "AttributeError: module 'keras.backend' has no attribute 'sum'",
        "AttributeError: module 'keras.src.backend' has no attribute 'flatten'",
        "ImportError: cannot import name 'mse' from 'keras.losses' (/venv/keras/losses/__init__.py)",
        "ModuleNotFoundError: no module named 'keras.engine' (is the package installed in this environment?)",
        "ValueError: Invalid value for argument `reduction`. Expected one of {...}. Received: reduction=auto",
        "AttributeError: module 'keras.losses' has no attribute 'Reduction'",
    ],
)
def test_keras2_code_on_keras3_is_recognised(message):
    assert other_keras_symptom(message, legacy=False)
    assert not other_keras_symptom(message, legacy=True)


@pytest.mark.parametrize(
    "message",
    [
        "ImportError: cannot import name 'ops' from 'tf_keras' (/venv/tf_keras/__init__.py)",
        "ModuleNotFoundError: no module named 'tf_keras.ops'",
        "AttributeError: module 'tf_keras' has no attribute 'config'",
        "ModuleNotFoundError: no module named 'tf_keras.saving'",
    ],
)
def test_keras3_code_on_tf_keras_is_recognised(message):
    assert other_keras_symptom(message, legacy=True)
    assert not other_keras_symptom(message, legacy=False)


@pytest.mark.parametrize(
    "message",
    [
        "KeyError: 'beta'",
        "AttributeError: module 'keras.ops' has no attribute 'summ'",  # a typo in Keras-3 code
        "ModuleNotFoundError: no module named 'not_a_real_package_xyz'",
        "ValueError: this loss refuses every batch",
    ],
)
def test_other_errors_are_no_symptom(message):
    assert not other_keras_symptom(message, legacy=False)
    assert not other_keras_symptom(message, legacy=True)


def _measurement(name: str, *errors: str, measured: bool = False) -> LossMeasurement:
    trials = tuple(Trial(SPEC, "ladder", "", e) for e in errors)
    layout = Layout(SPEC, "ladder", "", shapes=((7, (7,)), (32, (32,)))) if measured else None
    return LossMeasurement(name=name, kind="function", file="/m.py", line=1, trials=trials, layout=layout)


def test_a_module_switches_when_every_probe_of_one_loss_shows_the_symptom():
    k2 = "AttributeError: module 'keras.backend' has no attribute 'sum'"
    fine = _measurement("fine", measured=True)
    mixed = _measurement("mixed", k2, "ValueError: shapes")
    broken = _measurement("broken", k2, k2)
    assert switch_reason(ModuleOutcome(measurements=[fine, mixed]), legacy=False) == ""
    reason = switch_reason(ModuleOutcome(measurements=[fine, broken]), legacy=False)
    assert "broken" in reason and "K.sum" in reason
    assert switch_reason(ModuleOutcome(load_error=(k2, 3)), legacy=False).startswith("importing it failed")
    assert switch_reason(ModuleOutcome(load_error=("KeyError: 'beta'", 3)), legacy=False) == ""


# --- text from the worker -------------------------------------------------------------------------


def test_addresses_are_scrubbed_from_messages():
    text = "cannot use <m.Config object at 0x7f3a2b1c0d90> or <function f at 0x7f00aa>, id 0x7ffd5e8a9b10"
    assert scrub(text) == "cannot use <m.Config object> or <function f>, id 0x…"
    where = "/tmp/lossdiag-worker-k2j4_x9/__autograph_generated_filea4x1v1ab.py"
    assert scrub(where) == "/tmp/lossdiag-worker-…/__autograph_generated_file….py"


def test_the_output_tail_is_bounded_and_says_what_it_dropped():
    tail = OutputTail(limit=100)
    for i in range(1000):
        tail.feed(f"line {i}\n".encode())
    assert len(tail.data) <= 200
    text = tail.take()
    first, *rest = text.splitlines()
    assert first.startswith("[") and "earlier bytes of output dropped" in first
    assert rest[-1] == "line 999"
    assert tail.take() == ""


def test_printed_escape_sequences_and_control_bytes_are_removed():
    tail = OutputTail()
    tail.feed(b"\x1b[31mred\x1b[0m \x00\x07bell\r\n")
    assert tail.take() == "red bell"


# --- Keras per module, in one run -------------------------------------------------------------------

MIX = ROB / "keras_mix"


def _jobs(legacy: bool) -> list[ModuleJob]:
    jobs = []
    for path in sorted(MIX.glob("*.py")):
        scan = discover.scan_file(path)
        jobs.append(ModuleJob(path, scan.module, scan.sys_path_root, lines={c.name: c.line for c in scan.candidates},
                              legacy=legacy, scan=scan))
    return jobs


def _codes(outcome: ModuleOutcome, path: Path) -> dict[str, set[str]]:
    out = {}
    for m in outcome.measurements:
        result = engine._result(m, path.name, REPO)
        out[m.name] = {f.code for f in result.findings} or {"pass"}
    return out


def _recorder(calls: list[tuple[str, str | None]]):
    return lambda path, name: calls.append((path, name))


@pytest.fixture(scope="module")
def mixed_runs() -> dict[bool, tuple[dict[Path, ModuleOutcome], list[str], list[tuple[str, str | None]]]]:
    runs = {}
    for legacy in (False, True):
        log: list[str] = []
        calls: list[tuple[str, str | None]] = []
        options = {"batch_size": 32, "seed": 0, "trace": False}
        outcomes = isolation.run_modules(_jobs(legacy), options, 10.0, 4096, log, _recorder(calls))
        runs[legacy] = (outcomes, log, calls)
    return runs


@pytest.mark.tf
@pytest.mark.parametrize("legacy", [False, True], ids=["starting_on_keras3", "starting_on_tf_keras"])
def test_one_run_mixes_keras2_and_keras3_modules(mixed_runs, legacy):
    from test_fixtures import markers

    outcomes, log, _ = mixed_runs[legacy]
    for path in sorted(MIX.glob("*.py")):
        outcome = outcomes[path]
        assert outcome.load_error is None, outcome.load_error
        assert _codes(outcome, path) == markers(path), path.name
        keras2 = path.name.startswith("k2")
        assert outcome.keras.startswith("tf_keras 2.") == keras2, (path.name, outcome.keras)
        assert bool(outcome.switched) == (keras2 != legacy), (path.name, outcome.switched)
        if outcome.switched:
            assert any(str(path) in line and "checked on" in line for line in log)


@pytest.mark.tf
def test_progress_is_told_of_every_module_and_loss(mixed_runs):
    _, _, calls = mixed_runs[False]
    for path in sorted(MIX.glob("*.py")):
        mine = [name for p, name in calls if p == str(path)]
        assert mine[0] is None, mine
        names = {c.name for c in discover.scan_file(path).candidates}
        assert set(mine[1:]) - {None} == names


def test_a_module_is_not_switched_when_the_keras_is_forced():
    job = ModuleJob(Path("/m.py"), "m", Path("/"), legacy=False, switch=False)
    session = isolation.Session([job], {}, 1.0, 64, [])
    outcome = ModuleOutcome(load_error=("ImportError: cannot import name 'mse' from 'keras.losses'", 1))
    run = session.queue[False].popleft()
    run.outcome = outcome
    session._finish(run)
    assert session.outcomes[Path("/m.py")] is outcome and not any(session.queue.values())


# --- byte-identical JSON with more workers and under load ------------------------------------------

DRIVER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path
    from lossdiag import engine
    from lossdiag.report import json as report_json

    jobs, timeout, memory, *targets = sys.argv[1:]
    options = engine.Options(jobs=int(jobs), timeout=float(timeout), max_memory_mb=int(memory))
    sys.stdout.write(report_json.render(engine.check(targets, options, Path.cwd())))
    """
)
FOLDER = ["fixtures/robustness"]


def _folder_json(jobs: int, marked) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(jobs), "2", "1500", *FOLDER], cwd=REPO, env=marked.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _burn() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], env=cli_env())


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """The robustness folder with one worker on a machine as idle as it gets, then with one worker and
    with two, side by side, next to two processes that burn a CPU each."""
    from leftovers import Marked

    tmp = tmp_path_factory.mktemp("folder")
    marks = {name: Marked(tmp / name) for name in ("one", "one_loaded", "two_loaded")}
    runs = {"one": _folder_json(1, marks["one"])}
    outputs = {"one": runs["one"].communicate(timeout=1800)}
    burners = [_burn(), _burn()]
    try:
        runs = {"one_loaded": _folder_json(1, marks["one_loaded"]), "two_loaded": _folder_json(2, marks["two_loaded"])}
        outputs.update({name: proc.communicate(timeout=1800) for name, proc in runs.items()})
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    for name, marked in marks.items():
        assert marked.leftovers() == ([], []), name
    return outputs


@pytest.mark.tf
@pytest.mark.slow
def test_the_robustness_folder_gives_the_same_json_under_load(folder_runs):
    idle, _ = folder_runs["one"]
    loaded, err = folder_runs["one_loaded"]
    data = json.loads(idle)
    assert data["summary"]["losses"] > 60 and len(data["errors"]) >= 9
    assert loaded == idle, err[-3000:]


@pytest.mark.tf
@pytest.mark.slow
def test_two_workers_give_the_same_json_as_one(folder_runs):
    idle, _ = folder_runs["one"]
    two, err = folder_runs["two_loaded"]
    assert two == idle, err[-3000:]


def test_jobs_is_passed_to_the_session(monkeypatch, tmp_path):
    seen = {}

    def fake(jobs, options, timeout, memory, log, progress=None, workers=1):
        seen.update(workers=workers, progress=progress, legacy=[j.legacy for j in jobs], scan=jobs[0].scan)
        return {j.path: ModuleOutcome(keras="3.15.1") for j in jobs}

    monkeypatch.setattr(engine, "run_modules", fake)
    (tmp_path / "m.py").write_text("def dice_loss(y_true, y_pred):\n    return y_pred\n")
    report = engine.check(["m.py"], engine.Options(jobs=3), tmp_path, progress=print)
    assert seen["workers"] == 3 and seen["progress"] is print and seen["legacy"] == [False]
    assert [c.name for c in seen["scan"].candidates] == ["dice_loss"]
    assert report.results == ()  # the fake measured nothing


def test_a_signal_during_a_run_raises_interrupted_with_its_exit_status():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(isolation.Interrupted) as caught:
        with isolation.TerminationSignals() as signals:
            os.kill(os.getpid(), signal.SIGTERM)
            signals.check()
    assert caught.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_without_tf_keras_only_the_keras2_modules_fail_and_reruns_keep_their_keras3_result():
    legacy_job = ModuleJob(Path("/k2.py"), "k2", Path("/"), legacy=True)
    keras3_job = ModuleJob(Path("/k3.py"), "k3", Path("/"), legacy=False)
    session = isolation.Session([legacy_job, keras3_job], {}, 1.0, 64, [])
    first = ModuleOutcome(load_error=("AttributeError: module 'keras.backend' has no attribute 'sum'", 2))
    session.queue[True].append(isolation._Run(keras3_job, True, switched="K.sum", first=first))
    session._cannot_start(True, "cannot import TensorFlow/Keras: ModuleNotFoundError: no module named 'tf_keras'")
    assert "tf_keras" in session.outcomes[Path("/k2.py")].load_error[0]
    assert session.outcomes[Path("/k3.py")] is first
    assert not session.queue[True] and len(session.queue[False]) == 1  # the Keras-3 module still waits
    with pytest.raises(isolation.StartupError):
        session._cannot_start(False, "cannot import TensorFlow/Keras: ImportError")


@pytest.mark.tf
def test_user_code_runs_with_the_cyclic_collector_on_in_every_module(tmp_path):
    # The worker pauses the collector while it imports TensorFlow: the user's imports and losses must not
    # notice, in the first module nor after a module's reset.
    module = textwrap.dedent(
        """\
        import gc

        import keras

        ON_AT_IMPORT = gc.isenabled()


        def mse_{i}(y_true, y_pred):
            if not (ON_AT_IMPORT and gc.isenabled()):
                raise RuntimeError("the cyclic collector is off")
            return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)
        """
    )
    for i in range(2):
        (tmp_path / f"m{i}.py").write_text(module.format(i=i))
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", "m0.py", "m1.py", "--format", "json", "--no-cache"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert [(r["name"], r["findings"]) for r in report["results"]] == [("mse_0", []), ("mse_1", [])]


def test_a_metric_that_takes_the_worker_down_is_reported_as_a_metric(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(
        """\
        import keras


        def crashing_metric(y_true, y_pred):
            import os
            os.abort()


        def mse(y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


        model = keras.Sequential([keras.layers.Dense(1)])
        model.compile(loss=mse, metrics=[crashing_metric])
        """
    ))
    job = ModuleJob(path, "m", tmp_path, scan=discover.scan_file(path, None), lines={"crashing_metric": 4})
    failed = isolation._failed(job, "crashing_metric", "the worker was killed by SIGABRT while probing")
    assert (failed.role, failed.kind, failed.line) == ("metric", "function", 4)
    assert isolation._failed(job, "mse", "it timed out while probing").role == "loss"
