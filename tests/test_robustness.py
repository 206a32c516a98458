"""Never crash, never hang, never leak: bad input becomes a finding (LD001/LD002), the rest of the run is
still checked, and nothing the run started outlives it.

Every case runs the real CLI on a fixture of `fixtures/robustness/` and asserts the finding and its
message, the exit status, and that a correct loss in the same run was still checked (status pass).
Every run carries a marker in its environment and a TMPDIR of its own (tests/leftovers.py): no process
may carry the marker and no file may be in that TMPDIR once the run is over.
Each run costs a TensorFlow import (and the crash cases a worker restart each), so all runs start
together once per module and the tests read their results.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from leftovers import Marked, run_marked, run_marked_many

ROB = "fixtures/robustness"
SEED = "fixtures/seed_losses.py"
MARKER = re.compile(r"#\s*expect:\s*(?P<codes>[\w ,]+)$")
DEFINED = re.compile(r"^\s*(?:def|class)\s+(?P<name>\w+)")
TRACEBACK = "Traceback (most recent call last)"

# name -> (arguments of `lossdiag check`). JSON unless the name says table.
RUNS: dict[str, list[str]] = {
    # A module that pollutes process-wide state at import, then its victim; and a/utils.py next to b/utils.py.
    # --full-import: the polluting statements at import are needed by no loss, so a definitions-only
    # import would skip them; the resets between modules are what these runs test
    "pollution": [f"{ROB}/pollution", f"{ROB}/same_names", "--format", "json", "-v", "--full-import"],
    "victim_alone": [f"{ROB}/pollution/victim.py", "--format", "json", "--full-import"],
    # Losses that fork, write into fds they do not own, leave alarms and closed fds, show addresses.
    "processes": [f"{ROB}/forks.py", f"{ROB}/channel.py", f"{ROB}/signals.py", f"{ROB}/addresses.py",
                  f"{ROB}/import_alarm.py", f"{ROB}/tempdir.py", "--format", "json", "--fail-on", "warning"],
    "backend_default": [SEED, f"{ROB}/global_state_victim.py", "--format", "json"],
    # tf_keras converts losses with autograph, which writes files to TMPDIR that only a clean exit removes.
    "legacy_worker": [f"{ROB}/keras_mix/k2_backend.py", "--legacy-keras", "--format", "json"],
    "import_errors": [f"{ROB}/import_errors", SEED, "--format", "json"],
    "import_errors_table": [f"{ROB}/import_errors", SEED],
    "bad_returns": [f"{ROB}/bad_returns.py", f"{ROB}/interactive.py", "--format", "json"],
    # Every hang or crash restarts the worker (a TensorFlow import each): share runs where options allow.
    "timeouts": [f"{ROB}/hangs.py", f"{ROB}/import_crashes", "--timeout", "2", "--format", "json"],
    "crashes": [f"{ROB}/crashes.py", f"{ROB}/memory_hog.py", "--max-memory", "1500", "--format", "json"],
    # The limit is on what a loss adds to the worker, so one below TensorFlow's own ~550 MiB still runs.
    "small_memory_limit": [SEED, "--max-memory", "64", "--format", "json"],
    "prints_json": [f"{ROB}/prints.py", SEED, "--format", "json"],
    "prints_table_verbose": [f"{ROB}/prints.py", SEED, "-v"],
    "state_all": [f"{ROB}/global_state.py", f"{ROB}/global_state_victim.py", "--format", "json"],
    "state_without_mutators": [
        f"{ROB}/global_state.py::per_sample_mse",
        f"{ROB}/global_state.py::per_sample_mse_logged",
        f"{ROB}/global_state.py::per_sample_noisy_mse",
        f"{ROB}/global_state_victim.py",
        "--format", "json",
    ],
}
# The same arguments, with KERAS_BACKEND set to backends that are not even installed here.
BACKENDS = {"backend_jax": "jax", "backend_torch": "torch"}
ENV: dict[str, dict[str, str]] = {name: {"KERAS_BACKEND": value} for name, value in BACKENDS.items()}
RUNS.update({name: [*RUNS["backend_default"], "-v"] for name in BACKENDS})


class Run:
    def __init__(self, args: list[str], outcome: tuple[int, str, str, Marked]) -> None:
        self.args = args
        self.code, self.out, self.err, self.marked = outcome

    @property
    def data(self) -> dict:
        return json.loads(self.out)

    def result(self, rid: str) -> dict:
        found = [r for r in self.data["results"] if r["id"] == rid]
        assert len(found) == 1, (rid, [r["id"] for r in self.data["results"]])
        return found[0]

    def error(self, file: str) -> dict:
        found = [e for e in self.data["errors"] if e["file"] == file]
        assert len(found) == 1, (file, self.data["errors"])
        return found[0]

    def codes(self, rid: str) -> set[str]:
        return {f["code"] for f in self.result(rid)["findings"] if not f["suppressed"]}

    def message(self, rid: str, code: str) -> str:
        [finding] = [f for f in self.result(rid)["findings"] if f["code"] == code]
        return finding["message"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("runs")
    outcomes = run_marked_many(((["check", *args], REPO, ENV.get(name, {})) for name, args in RUNS.items()), tmp)
    return {name: Run(args, outcome) for (name, args), outcome in zip(RUNS.items(), outcomes, strict=True)}


def markers(path: Path) -> dict[str, set[str]]:
    """{loss name or "<module>": codes} from the fixture's `# expect:` comments."""
    out: dict[str, set[str]] = {}
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        found = MARKER.search(line)
        if found:
            named = DEFINED.match(line)
            out[named.group("name") if named else "<module>"] = {c.strip() for c in found.group("codes").split(",")}
    return out


def assert_markers_hold(run: Run, files: list[str]) -> None:
    """Every loss got exactly the codes its marker names; every `# expect: LD001` module is in errors."""
    for file in files:
        for name, codes in markers(REPO / file).items():
            if name == "<module>":
                assert run.error(file)["code"] in codes
            elif codes == {"pass"}:
                result = run.result(f"{file}::{name}")
                assert result["status"] == "pass" and not result["findings"], result
            else:
                assert run.codes(f"{file}::{name}") == codes, run.result(f"{file}::{name}")


# --- usage errors: no TensorFlow needed ----------------------------------------------------------


def test_missing_target_is_a_usage_error_on_one_line():
    code, out, err = run_cli(["check", f"{ROB}/no_such_file.py", SEED, "--format", "json"], cwd=REPO)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "no_such_file.py" in err and "no such file" in err
    assert TRACEBACK not in err


def test_missing_target_among_good_ones_with_verbose_still_one_line():
    code, out, err = run_cli(["check", SEED, "-v", f"{ROB}/missing_dir/"], cwd=REPO)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "missing_dir" in err


# --- modules that cannot be imported (LD001) --------------------------------------------------------


IMPORT_ERRORS = {
    # file: (line, fragments of the message)
    "syntax_error.py": (7, ["SyntaxError", "expected ':'"]),
    "notes.py": (2, ["SyntaxError"]),
    "binary_garbage.py": (None, ["not a Python source file"]),
    "raises_at_import.py": (9, ["KeyError", "beta"]),
    "exits_at_import.py": (13, ["sys.exit(3)"]),
    "missing_package.py": (4, ["ModuleNotFoundError", "not_a_real_package_xyz"]),
}


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(IMPORT_ERRORS))
def test_module_that_cannot_be_imported_is_ld001_with_file_and_line(runs, name):
    run = runs["import_errors"]
    line, fragments = IMPORT_ERRORS[name]
    error = run.error(f"{ROB}/import_errors/{name}")
    assert error["code"] == "LD001"
    assert error["line"] == line
    for fragment in fragments:
        assert fragment in error["message"], error


@pytest.mark.tf
def test_other_files_are_still_checked_next_to_broken_modules(runs):
    run = runs["import_errors"]
    assert run.code == 1
    assert run.result(f"{ROB}/import_errors/imports_fine.py::per_sample_mse")["status"] == "pass"
    assert run.result(f"{SEED}::loss1")["status"] == "pass"
    assert run.codes(f"{SEED}::loss2") == {"LD101"}
    assert len(run.data["errors"]) == len(IMPORT_ERRORS)
    assert run.data["summary"]["losses"] == 4
    assert_markers_hold(run, [f"{ROB}/import_errors/{n}" for n in [*IMPORT_ERRORS, "imports_fine.py"]])


@pytest.mark.tf
def test_table_lists_each_load_error_without_a_traceback(runs):
    run = runs["import_errors_table"]
    assert run.code == 1
    for name in IMPORT_ERRORS:
        assert f"import_errors/{name}" in run.out
    assert run.out.count("LD001") >= len(IMPORT_ERRORS)
    assert "not_a_real_package_xyz" in run.out
    assert TRACEBACK not in run.out + run.err


@pytest.mark.tf
def test_imports_that_hang_crash_or_ask_for_input_are_ld001(runs):
    run = runs["timeouts"]
    base = f"{ROB}/import_crashes"
    assert run.code == 1
    assert "timed out after 2 s" in run.error(f"{base}/hangs_at_import.py")["message"]
    assert "SIGABRT" in run.error(f"{base}/aborts_at_import.py")["message"]
    asks = run.error(f"{base}/asks_at_import.py")
    assert "EOFError" in asks["message"] and asks["line"] == 6
    assert run.result(f"{base}/imports_fine.py::per_sample_mse")["status"] == "pass"
    assert_markers_hold(run, [f"{base}/{p.name}" for p in sorted((REPO / base).glob("*.py"))])


# --- losses that raise or return the wrong thing ----------------------------------------------------


@pytest.mark.tf
def test_loss_that_raises_on_every_probe_is_ld002_with_the_exception(runs):
    run = runs["bad_returns"]
    rid = f"{ROB}/bad_returns.py::raises_every_probe"
    assert run.result(rid)["status"] == "error"
    message = run.message(rid, "LD002")
    assert "ValueError: this loss refuses every batch" in message
    assert TRACEBACK not in message


@pytest.mark.tf
@pytest.mark.parametrize(
    ("name", "fragment"),
    [("returns_none", "None"), ("returns_string", "str"), ("returns_string_tensor", "string tensor")],
)
def test_loss_that_returns_no_number_is_ld002_saying_what_it_returned(runs, name, fragment):
    run = runs["bad_returns"]
    rid = f"{ROB}/bad_returns.py::{name}"
    assert run.codes(rid) == {"LD002"}
    assert run.result(rid)["status"] == "error"
    assert fragment in run.message(rid, "LD002")


@pytest.mark.tf
@pytest.mark.parametrize("name", ["returns_python_float", "returns_list", "returns_int_tensor"])
def test_constant_or_integer_output_has_no_gradient(runs, name):
    # A Python float or list is a constant and an int tensor cuts the gradient: LD202 either way;
    # the value is still measured (no crash, no LD002).
    run = runs["bad_returns"]
    rid = f"{ROB}/bad_returns.py::{name}"
    assert "LD202" in run.codes(rid)
    assert "LD002" not in run.codes(rid)
    assert run.result(rid)["actual"] is not None


@pytest.mark.tf
def test_bad_returns_run_goes_on_to_the_correct_loss(runs):
    run = runs["bad_returns"]
    assert run.code == 1
    assert run.result(f"{ROB}/bad_returns.py::per_sample_mse")["status"] == "pass"
    assert run.data["summary"]["losses"] == 8 + 3  # with interactive.py
    assert_markers_hold(run, [f"{ROB}/bad_returns.py", f"{ROB}/interactive.py"])


# --- losses that hang, crash, blow up memory or read stdin -----------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize("name", ["hangs_forever", "sleeps_forever"])
def test_loss_that_never_returns_times_out(runs, name):
    run = runs["timeouts"]
    rid = f"{ROB}/hangs.py::{name}"
    assert run.codes(rid) == {"LD002"}
    assert "timed out after 2 s" in run.message(rid, "LD002")


@pytest.mark.tf
def test_loss_after_a_hang_is_still_checked(runs):
    run = runs["timeouts"]
    assert run.code == 1
    assert run.result(f"{ROB}/hangs.py::per_sample_mse")["status"] == "pass"
    assert_markers_hold(run, [f"{ROB}/hangs.py"])


@pytest.mark.tf
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("aborts_process", "crashed (SIGABRT)"),
        ("segfaults", "crashed (SIGSEGV)"),
        ("exits_process", "exited with status 7"),
        ("calls_sys_exit", "sys.exit(4)"),
    ],
)
def test_loss_that_ends_the_process_is_ld002_naming_how(runs, name, fragment):
    run = runs["crashes"]
    rid = f"{ROB}/crashes.py::{name}"
    assert run.codes(rid) == {"LD002"}
    assert run.result(rid)["status"] == "error"
    assert fragment in run.message(rid, "LD002")


@pytest.mark.tf
def test_losses_before_and_after_crashes_are_still_checked(runs):
    run = runs["crashes"]
    assert run.code == 0  # LD002 is a warning, which does not fail the run by default
    for name in ("per_sample_mae", "per_sample_mse", "per_sample_mse_again"):
        assert run.result(f"{ROB}/crashes.py::{name}")["status"] == "pass", name
    assert_markers_hold(run, [f"{ROB}/crashes.py"])


@pytest.mark.tf
def test_crashes_show_no_fault_dump_without_verbose(runs):
    run = runs["crashes"]
    for noise in (TRACEBACK, "Fatal Python error", "Current thread", "Extension modules"):
        assert noise not in run.out + run.err, noise


@pytest.mark.tf
def test_loss_that_allocates_too_much_is_stopped(runs):
    run = runs["crashes"]
    rid = f"{ROB}/memory_hog.py::allocates_too_much"
    assert run.code == 0  # LD002 is a warning
    assert run.codes(rid) == {"LD002"}
    assert "used more than 1500 MiB" in run.message(rid, "LD002")
    assert run.result(f"{ROB}/memory_hog.py::per_sample_mse")["status"] == "pass"


@pytest.mark.tf
def test_memory_limit_below_tensorflows_footprint_is_not_an_internal_error(runs):
    run = runs["small_memory_limit"]
    assert run.code == 1
    assert run.result(f"{SEED}::loss1")["status"] == "pass"
    assert run.codes(f"{SEED}::loss2") == {"LD101"}


@pytest.mark.tf
def test_loss_that_reads_stdin_fails_at_once_instead_of_hanging(runs):
    run = runs["bad_returns"]
    assert run.code == 1
    for name in ("asks_for_input", "reads_stdin"):
        message = run.message(f"{ROB}/interactive.py::{name}", "LD002")
        assert "EOFError" in message and "timed out" not in message, message
    assert run.result(f"{ROB}/interactive.py::per_sample_mse")["status"] == "pass"


# --- output of the user's code ------------------------------------------------------------------


PRINTED = ("PRINTED-AT-IMPORT", "PRINTED-TO-STDOUT", "PRINTED-TO-STDERR", "WRITTEN-TO-FD1")


@pytest.mark.tf
def test_printing_losses_leave_the_json_report_clean(runs):
    run = runs["prints_json"]
    data = run.data  # parses: nothing was mixed into stdout
    assert run.code == 1  # the seed file's loss2
    for text in PRINTED:
        assert text not in run.out and text not in run.err, text
    for name in ("prints_to_stdout", "prints_to_stderr", "writes_to_fd1", "per_sample_mse"):
        assert run.result(f"{ROB}/prints.py::{name}")["status"] == "pass", name
    assert run.result(f"{SEED}::loss1")["status"] == "pass"
    assert data["summary"]["losses"] == 7


@pytest.mark.tf
def test_verbose_shows_what_losses_printed_on_stderr_not_in_the_table(runs):
    run = runs["prints_table_verbose"]
    assert run.code == 1
    assert "prints_to_stdout" in run.out and "per_sample_mse" in run.out
    for text in PRINTED:
        assert text not in run.out, text
    for text in PRINTED:  # what the module printed at import too
        assert text in run.err, text


# --- process-wide state -----------------------------------------------------------------------


@pytest.mark.tf
def test_losses_that_change_global_state_do_not_change_later_losses(runs):
    with_mutators = runs["state_all"]
    without = runs["state_without_mutators"]
    later = [
        f"{ROB}/global_state.py::per_sample_mse",
        f"{ROB}/global_state.py::per_sample_mse_logged",
        f"{ROB}/global_state.py::per_sample_noisy_mse",  # draws from np.random: seeded per loss
        f"{ROB}/global_state_victim.py::per_sample_mse",
        f"{ROB}/global_state_victim.py::per_sample_bce",  # uses floatx and epsilon
        f"{ROB}/global_state_victim.py::per_sample_noisy_mae",
    ]
    assert [r["id"] for r in without.data["results"]] == later
    for rid in later:
        assert with_mutators.result(rid) == without.result(rid), rid
    assert_markers_hold(with_mutators, [f"{ROB}/global_state.py", f"{ROB}/global_state_victim.py"])


@pytest.mark.tf
def test_a_loss_that_closes_sys_stdout_does_not_end_the_worker(runs):
    run = runs["state_all"]
    assert run.result(f"{ROB}/global_state.py::closes_sys_stdout")["status"] == "pass"
    assert run.result(f"{ROB}/global_state.py::per_sample_mse_logged")["status"] == "pass"


# --- no tracebacks ------------------------------------------------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize("name", [n for n in RUNS if "-v" not in RUNS[n]])
def test_no_run_prints_a_traceback_or_an_internal_error(runs, name):
    run = runs[name]
    assert run.code in (0, 1), run.err  # findings, never 2 (internal error)
    if "json" in run.args:  # 1 exactly when an error-level finding is left (warnings pass by default)
        data = json.loads(run.out)
        levels = ("error", "warning") if "warning" in run.args else ("error",)  # --fail-on warning
        failing = [f for r in data["results"] for f in r["findings"] if f["severity"] in levels and not f["suppressed"]]
        assert run.code == (1 if failing or [e for e in data["errors"] if not e["suppressed"]] else 0)
    assert TRACEBACK not in run.out + run.err
    assert "internal error" not in run.err
    if "json" in run.args:
        json.loads(run.out)


@pytest.mark.tf
def test_a_user_file_named_like_a_stdlib_module_is_checked_and_breaks_nothing(tmp_path):
    """json.py in the working directory must not replace the json module Keras itself imports."""
    (tmp_path / "json.py").write_text(
        "from keras import ops\n\n\ndef per_sample_mse(y_true, y_pred):\n"
        "    print('called')\n    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n"
    )
    rc, out, err = run_cli(["check", "json.py", "-v"], cwd=tmp_path)
    assert rc == 0, (out, err)
    assert "1 loss in 1 file: 1 pass" in out
    # the print runs once per probe call; -v shows it once, with its count
    printed = [line for line in err.splitlines() if line.startswith("called")]
    assert len(printed) == 1 and "(×" in printed[0]


# --- nothing outlives a run ----------------------------------------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(RUNS))
def test_no_run_leaves_a_process_or_a_temporary_file(runs, name):
    processes, files = runs[name].marked.leftovers()
    assert processes == [], f"processes still running after {name}: {processes}"
    assert files == [], f"files left in TMPDIR after {name}: {files}"


# --- state one module changes does not reach the next ------------------------------------------------


@pytest.mark.tf
def test_a_victim_after_a_polluting_module_gets_exactly_its_verdicts_alone(runs):
    polluted, alone = runs["pollution"], runs["victim_alone"]
    victim = f"{ROB}/pollution/victim.py"
    ids = [r["id"] for r in alone.data["results"]]
    assert ids == [f"{victim}::{name}" for name in ("unclipped_bce", "sums_over_features", "warns_on_every_call")]
    for rid in ids:
        assert polluted.result(rid) == alone.result(rid), rid
    assert_markers_hold(polluted, [f"{ROB}/pollution/leaves_a_thread.py", f"{ROB}/pollution/polluter.py", victim])
    assert_markers_hold(alone, [victim])
    assert "put back what it changed: keras.ops.sum" in polluted.err  # -v says what was reset
    assert "the next module gets a fresh worker (1 thread(s) it started still run (meddler))" in polluted.err


@pytest.mark.tf
def test_a_tf_keras_worker_leaves_no_autograph_file(runs):
    run = runs["legacy_worker"]
    assert_markers_hold(run, [f"{ROB}/keras_mix/k2_backend.py"])
    assert run.marked.leftovers() == ([], [])


@pytest.mark.tf
def test_same_named_helpers_in_two_folders_each_import_their_own(runs):
    run = runs["pollution"]
    base = f"{ROB}/same_names"
    assert not run.data["errors"], run.data["errors"]
    assert_markers_hold(run, [f"{base}/a/losses.py", f"{base}/b/losses.py", f"{base}/b/utils.py"])


# --- processes, the channel, signals and fds ------------------------------------------------------


@pytest.mark.tf
def test_losses_that_fork_pass_once_each_and_leave_nothing(runs):
    run = runs["processes"]
    ids = [r["id"] for r in run.data["results"]]
    assert len(ids) == len(set(ids)), "a forked child reported a loss again"
    assert_markers_hold(run, [f"{ROB}/forks.py"])
    assert run.marked.leftovers() == ([], [])


@pytest.mark.tf
def test_garbage_on_low_fds_is_harmless_and_a_forged_message_is_that_losss_failure(runs):
    run = runs["processes"]
    assert run.code == 1
    assert_markers_hold(run, [f"{ROB}/channel.py"])
    message = run.message(f"{ROB}/channel.py::forges_a_channel_message", "LD002")
    assert "channel" in message and "while probing" in message, message
    assert "internal error" not in run.err and TRACEBACK not in run.err


@pytest.mark.tf
def test_alarms_timers_handlers_and_closed_fds_do_not_reach_later_losses(runs):
    assert_markers_hold(runs["processes"], [f"{ROB}/signals.py", f"{ROB}/import_alarm.py"])


@pytest.mark.tf
def test_a_loss_that_removes_the_temporary_folder_does_not_break_the_next(runs):
    assert_markers_hold(runs["processes"], [f"{ROB}/tempdir.py"])


@pytest.mark.tf
def test_no_address_of_an_object_reaches_the_report(runs):
    run = runs["processes"]
    message = run.message(f"{ROB}/addresses.py::raises_with_an_address", "LD002")
    assert "addresses.Config object" in message and "function raises_with_an_address" in message
    assert not re.search(r"0x[0-9a-fA-F]{4,}", run.out), re.findall(r".{40}0x[0-9a-fA-F]+", run.out)


# --- the Keras backend --------------------------------------------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_any_keras_backend_in_the_environment_gives_the_same_json(runs, name):
    default, other = runs["backend_default"], runs[name]
    assert other.code == default.code == 1, other.err
    assert other.out == default.out
    assert f"KERAS_BACKEND={BACKENDS[name]} is not used" in other.err  # -v says so
    assert "on the TensorFlow backend" in other.err


# --- what a loss prints, and how long its calls take -------------------------------------------------


def _peak_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


@pytest.mark.tf
def test_output_floods_are_bounded_and_slow_calls_are_judged_per_call(tmp_path):
    """A loss that writes to fd 1 forever is stopped at --timeout; lossdiag's own memory stays small and no
    temporary file grows; a loss that takes 0.1 s a call (7 s in all) passes with --timeout 2."""
    import subprocess
    import sys
    import time

    marked = Marked(tmp_path)
    with open(tmp_path / "out", "w") as out_file, open(tmp_path / "err", "w") as err_file:  # never a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "lossdiag", "check", f"{ROB}/floods.py", "--timeout", "2", "--format", "json", "-v",
             "--fail-on", "warning"],  # LD002 is a warning: make it fail, so the exit status says it was found
            cwd=REPO, env=marked.env(), stdout=out_file, stderr=err_file,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _peak_rss_kb(proc.pid))
            time.sleep(0.2)
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    run = Run([], (proc.returncode, out, err, marked))
    assert proc.returncode == 1, err
    assert_markers_hold(run, [f"{ROB}/floods.py"])
    assert "timed out after 2 s" in run.message(f"{ROB}/floods.py::floods_fd1_forever", "LD002")
    assert 0 < peak < 400 * 1024, f"lossdiag itself peaked at {peak // 1024} MiB"
    assert "LAST-LINE-OF-THE-FLOOD" in err and "earlier bytes of output dropped" in err
    assert len(err) < 1_000_000
    assert marked.leftovers() == ([], [])


# --- folder walks ----------------------------------------------------------------------------------


@pytest.mark.tf
def test_a_folder_with_a_fifo_a_folder_named_py_and_a_dangling_link_is_checked_with_notes(tmp_path):
    import os

    repo = tmp_path / "repo"
    (repo / "x.py").mkdir(parents=True)  # a folder with a .py name
    (repo / "x.py" / "inner.py").write_text((REPO / SEED).read_text())
    os.mkfifo(repo / "pipe.py")  # opening it for reading would block forever
    (repo / "y.py").symlink_to(repo / "gone.py")
    (repo / "good.py").write_text(
        "from keras import ops\n\n\ndef per_sample_mae(y_true, y_pred):\n"
        "    return ops.mean(ops.abs(y_true - y_pred), axis=-1)\n"
    )
    code, out, err, marked = run_marked(["check", ".", "--format", "json"], repo, tmp_path, timeout=300)
    assert code == 1, err  # the seed bug in x.py/inner.py
    data = json.loads(out)
    assert {r["id"] for r in data["results"]} == {
        "good.py::per_sample_mae", "x.py/inner.py::loss1", "x.py/inner.py::loss2", "x.py/inner.py::loss2_fixed"}
    assert data["notes"] == [
        "pipe.py: skipped, a named pipe, not a regular file",
        "y.py: skipped, a dangling symbolic link",
    ]
    assert [line for line in err.splitlines() if "skipped" in line] == [f"lossdiag: {n}" for n in data["notes"]]
    assert "internal error" not in err and TRACEBACK not in err
    assert marked.leftovers() == ([], [])


# --- ending lossdiag from outside -----------------------------------------------------------------

# name -> (signal, sent to the process group?, sent while TensorFlow is still being imported?)
ENDINGS = {
    "sigint_while_a_loss_hangs": ("SIGINT", False, False),
    "sigint_while_tensorflow_imports": ("SIGINT", False, True),
    "sigterm": ("SIGTERM", False, False),
    "sigterm_to_the_process_group": ("SIGTERM", True, False),
    "sighup": ("SIGHUP", False, False),
    "sigkill": ("SIGKILL", False, False),
}


def _worker_started(marked: Marked) -> bool:
    return any(b"lossdiag.worker" in _cmdline(pid) for pid in marked.processes())


def _loss_started_its_sleeper(marked: Marked) -> bool:
    return any(_cmdline(pid).startswith(b"sleep") for pid in marked.processes())


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _end_a_run(tmp: Path, name: str) -> tuple[int, str, Marked, bool]:
    """Start a run on a loss that spawns a process and hangs, end it with a signal: (status, stderr, ...)."""
    import signal
    import subprocess
    import sys
    import time

    signame, group, early = ENDINGS[name]
    marked = Marked(tmp / name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossdiag", "check", f"{ROB}/termination/spawns_then_hangs.py", "--timeout", "120"],
        cwd=REPO, env=marked.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    ready = _worker_started if early else _loss_started_its_sleeper
    deadline = time.monotonic() + 240
    while not ready(marked) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    reached = ready(marked)
    sig = getattr(signal, signame)
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode(), marked, reached


@pytest.fixture(scope="module")
def endings(tmp_path_factory) -> dict[str, tuple[int, str, Marked, bool]]:
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("endings")
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(ENDINGS, pool.map(lambda name: _end_a_run(tmp, name), ENDINGS), strict=True))


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(ENDINGS))
def test_a_signal_ends_the_run_and_everything_it_started(endings, name):
    import signal

    code, err, marked, reached = endings[name]
    assert reached, "the run never got to the point where the signal is sent"
    sig = getattr(signal, ENDINGS[name][0])
    assert code == (-sig if sig == signal.SIGKILL else 128 + sig), err
    assert TRACEBACK not in err and "internal error" not in err
    processes, files = marked.leftovers(grace=10)
    assert processes == [], [_cmdline(pid) for pid in processes]
    assert files == []
