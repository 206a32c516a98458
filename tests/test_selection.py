"""Which rules run (ruff's select/extend-select/ignore layering, prefixes and names, per-file-ignores,
excludes) and which findings fail the run (--fail-on, --exit-zero)."""

from __future__ import annotations

import json

import pytest
from conftest import SEED_BUG, run_cli, run_cli_many, write

from lossdiag import config, selection, settings
from lossdiag.cli import _exit_status
from lossdiag.engine import is_selected
from lossdiag.models import Finding, LoadError, LossResult, Report
from lossdiag.selection import Layer, enabled_codes


def _codes(ctx, param, given):
    """The command line's reading of repeated CODES options."""
    return tuple(code for text in given for code in settings.BY_NAME["select"].kind.from_text(text))

MEAN_LOSS = """\
from keras import ops


def mean_loss(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))
"""


# --- the decision: prefixes, longest prefix wins -----------------------------------------------


@pytest.mark.parametrize(
    "code, select, ignore, expected",
    [
        ("LD101", (), (), True),  # nothing selected means everything
        ("LD101", ("LD",), (), True),
        ("LD101", ("LD1",), (), True),
        ("LD201", ("LD1",), (), False),
        ("LD101", ("LD101",), (), True),
        ("LD102", ("LD101",), (), False),
        ("LD101", (), ("LD1",), False),
        ("LD201", (), ("LD1",), True),
        ("LD101", ("LD1",), ("LD101",), False),  # the longer ignore wins
        ("LD102", ("LD1",), ("LD101",), True),
        ("LD101", ("LD101",), ("LD1",), True),  # the longer select wins
        ("LD105", ("LD101",), ("LD1",), False),
        ("LD101", ("LD1",), ("LD1",), False),  # a tie ignores
        ("LD202", ("LD2", "LD101"), ("LD20",), False),
        ("LD201", ("LD201",), ("LD20", "LD2"), True),
    ],
)
def test_is_selected(code, select, ignore, expected):
    assert is_selected(code, select, ignore) is expected


@pytest.mark.parametrize(
    "given, expected",
    [
        (("LD101",), ("LD101",)),
        (("ld1",), ("LD1",)),
        (("batch-sum",), ("LD101",)),
        (("LD1,LD201",), ("LD1", "LD201")),
        (("LD1, batch-mean", "nonfinite"), ("LD1", "LD102", "LD201")),
        (("ALL",), ("LD",)),
        (("LD",), ("LD",)),
    ],
)
def test_codes_and_rule_names_become_prefixes(given, expected):
    assert _codes(None, None, given) == expected  # type: ignore[arg-type]
    assert tuple(config.code_prefix(p) for g in given for p in g.replace(",", " ").split()) == expected


@pytest.mark.parametrize("bad", ["XX9", "LD9", "LD1011", "batch", "E501", ""])
def test_unknown_codes_are_rejected(bad):
    with pytest.raises(ValueError, match="not a rule code"):
        config.code_prefix(bad)
    if bad:
        with pytest.raises(ValueError, match="not a rule code"):
            _codes(None, None, (bad,))  # type: ignore[arg-type]


# --- ruff's layering: the SPEC's examples, in-process ------------------------------------------------

CODES = ("LD001", "LD002", "LD003", "LD004", "LD101", "LD102", "LD103", "LD104", "LD105", "LD201", "LD202")


def test_spec_example_1_cli_ignore_adds_to_the_configured_ignore():
    enabled = enabled_codes(Layer(ignore=("LD102",)), Layer(ignore=("LD105",)), codes=CODES)
    assert "LD102" not in enabled and "LD105" not in enabled
    assert enabled == frozenset(CODES) - {"LD102", "LD105"}


def test_spec_example_2_cli_select_overrides_the_configured_ignore():
    enabled = enabled_codes(Layer(ignore=("LD102",)), Layer(select=("LD102",)), codes=CODES)
    assert enabled == {"LD102"}


def test_spec_example_3_cli_extend_select_adds_to_the_configured_select():
    enabled = enabled_codes(Layer(select=("LD1",)), Layer(extend_select=("LD201",)), codes=CODES)
    assert enabled == {"LD101", "LD102", "LD103", "LD104", "LD105", "LD201"}


@pytest.mark.parametrize(
    "layers, expected",
    [
        ((), set(CODES)),  # nothing configured: every rule
        ((Layer(select=("LD1",), ignore=("LD101",)),), {"LD102", "LD103", "LD104", "LD105"}),  # longer ignore wins
        ((Layer(select=("LD101",), ignore=("LD1",)),), {"LD101"}),  # longer select wins
        ((Layer(select=("LD1",), ignore=("LD1",)),), set()),  # a tie ignores
        ((Layer(select=("LD1",)), Layer(ignore=("LD10",))), set()),  # every LD10x is gone
        ((Layer(select=("LD2",)), Layer(extend_select=("LD101",), ignore=("LD202",))), {"LD101", "LD201"}),
        ((Layer(extend_select=("LD101",)),), set(CODES)),  # extend over everything is everything
        ((Layer(ignore=("LD",)), Layer(extend_select=("LD201",))), {"LD201"}),
        ((Layer(select=("LD201",)), Layer(select=("LD1",), extend_select=("LD202",))),
         {"LD101", "LD102", "LD103", "LD104", "LD105", "LD202"}),  # a later select starts over
    ],
)
def test_layers(layers, expected):
    assert enabled_codes(*layers, codes=CODES) == expected


def test_per_file_ignores_match_globs_names_and_negations(tmp_path):
    table = selection.anchor_per_file_ignores(
        [("legacy/*.py", ("LD105",)), ("test_*.py", ("LD2",)), ("!src/*", ("LD003",))], tmp_path
    )
    assert selection.ignored_in_file(tmp_path / "legacy" / "a.py", table) == ("LD105", "LD003")
    assert selection.ignored_in_file(tmp_path / "src" / "a.py", table) == ()
    assert selection.ignored_in_file(tmp_path / "src" / "test_a.py", table) == ("LD2",)
    assert selection.ignored_in_file(tmp_path / "other" / "legacy" / "a.py", table) == ("LD003",)


def test_excludes_are_restated_for_the_working_directory(tmp_path):
    root, cwd = tmp_path / "repo", tmp_path / "repo" / "src"
    anchored = selection.anchor(["legacy/*", "gen_*.py"], root, cwd)
    assert "gen_*.py" in anchored
    assert (root / "legacy").as_posix() + "/*" in anchored
    assert selection.path_matches((root / "legacy" / "a.py").as_posix(), anchored)
    assert selection.path_matches("pkg/gen_losses.py", anchored)
    assert not selection.path_matches("pkg/losses.py", anchored)
    assert selection.anchor(["legacy/*"], root, root) == ("legacy/*",)


# --- --fail-on on a report (no TensorFlow) ----------------------------------------------------------


def _report(*findings: Finding, errors: tuple[LoadError, ...] = ()) -> Report:
    status = "fail" if any(f.severity == "error" for f in findings) else "warn" if findings else "pass"
    return Report(results=(LossResult("l.py::x", "x", "l.py", 1, status, findings=findings),), errors=errors)


WARNING = Finding("LD102", "warning", "averaged", "l.py", 2)
ERROR = Finding("LD101", "error", "summed", "l.py", 2)


@pytest.mark.parametrize(
    "report, fail_on, expected",
    [
        (_report(), "warning", 0),
        (_report(WARNING), "never", 0),
        (_report(WARNING), "error", 0),
        (_report(WARNING), "warning", 1),
        (_report(WARNING), "never", 0),
        (_report(ERROR), "error", 1),
        (_report(ERROR), "warning", 1),
        (_report(ERROR), "never", 0),
        (_report(Finding("LD101", "error", "summed", "l.py", 2, suppressed=True)), "warning", 0),
        (_report(errors=(LoadError("b.py", "LD001", "SyntaxError"),)), "error", 1),
    ],
)
def test_exit_status(report, fail_on, expected):
    assert _exit_status(report, fail_on) == expected


# --- through the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("selection")
    write(root / "seed.py", SEED_BUG)
    write(root / "mean.py", MEAN_LOSS)
    plan = {
        "select-LD2": ["seed.py", "--select", "LD2", "--format", "json"],
        "ignore-by-name": ["seed.py", "--ignore", "batch-sum", "--format", "json"],
        "mean-fail-on-error": ["mean.py", "--fail-on", "error"],
        "mean-fail-on-warning": ["mean.py", "--fail-on", "warning", "--format", "json"],
        "mean-fail-on-never": ["mean.py", "--fail-on", "never"],
    }
    return dict(zip(plan, run_cli_many([(["check", *args], root) for args in plan.values()])))


@pytest.mark.tf
@pytest.mark.parametrize("run", ["select-LD2", "ignore-by-name"])
def test_deselected_batch_sum_is_not_reported(runs, run):
    rc, out, err = runs[run]
    assert rc == 0, out + err
    report = json.loads(out)
    [loss] = report["results"]
    assert loss["name"] == "loss2"
    assert all(f["code"] != "LD101" for f in loss["findings"])
    assert loss["status"] == "pass"
    assert loss["output_shape"] == []  # still measured: only the finding was deselected


@pytest.mark.tf
def test_warning_only_loss_and_fail_on(runs):
    rc, out, err = runs["mean-fail-on-warning"]
    assert rc == 1, out + err
    [loss] = json.loads(out)["results"]
    assert [(f["code"], f["severity"]) for f in loss["findings"]] == [("LD102", "warning")]
    assert loss["status"] == "warn"
    assert runs["mean-fail-on-error"][0] == 0, runs["mean-fail-on-error"]
    assert "LD102" in runs["mean-fail-on-error"][1]  # reported, just not failing
    assert runs["mean-fail-on-never"][0] == 0, runs["mean-fail-on-never"]


# --- the SPEC's five examples through the command line ------------------------------------------

MIXED = """\
from keras import ops


def batch_sum(yz, yzhat):
    return ops.sum(ops.square(yz[:, 1] - yzhat[:, 1]), axis=-1)


def batch_mean(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))


def coupled(y_true, y_pred):
    se = ops.mean(ops.square(y_true - y_pred), axis=-1)
    return se / (ops.mean(se) + 1.0)


def unclipped(y_true, y_pred):
    return -ops.mean(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred), axis=-1)


def rounded(y_true, y_pred):
    return ops.mean(ops.abs(y_true - ops.round(y_pred)), axis=-1)
"""
ALL_MIXED = {"LD101", "LD102", "LD105", "LD201", "LD202"}


def _project(folder, config: str, files=("mixed.py",)):
    write(folder / "pyproject.toml", "[tool.lossdiag]\n" + config)
    for name in files:
        write(folder / name, MIXED)
    return folder


def _codes_by_file(out: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for result in json.loads(out)["results"]:
        found.setdefault(result["file"], set()).update(f["code"] for f in result["findings"] if not f["suppressed"])
    return found


@pytest.fixture(scope="module")
def spec_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("spec-examples")
    ignoring = _project(root / "ignoring", 'ignore = ["LD102"]\n')
    selecting = _project(root / "selecting", 'select = ["LD1"]\n')
    _project(root / "per-file", 'per-file-ignores = {"legacy/*.py" = ["LD105"]}\n',
             files=("legacy/mixed.py", "src/mixed.py"))
    plan = {
        "unconfigured": (["mixed.py", "--format", "json", "--config", str(root / "none.toml")], ignoring),
        # example 1, run from the parent folder: the config is found from the checked file
        "1": (["ignoring/mixed.py", "--ignore", "LD105", "--format", "json"], root),
        "2": (["mixed.py", "--select", "LD102", "--format", "json"], ignoring),
        "3": (["mixed.py", "--extend-select", "LD201", "--format", "json"], selecting),
        "4": (["legacy", "src", "--format", "json"], root / "per-file"),
        "exit-zero": (["mixed.py", "--exit-zero", "--format", "concise"], ignoring.parent / "selecting"),
    }
    write(root / "none.toml", "[tool.lossdiag]\n")
    return dict(zip(plan, run_cli_many([(["check", *args], cwd) for args, cwd in plan.values()])))


@pytest.mark.tf
def test_the_mixed_module_has_every_code_without_configuration(spec_runs):
    rc, out, err = spec_runs["unconfigured"]
    assert rc == 1, err
    assert _codes_by_file(out) == {"mixed.py": ALL_MIXED}


@pytest.mark.tf
def test_example_1_ignores_add_up_and_the_config_is_found_from_the_file(spec_runs):
    rc, out, err = spec_runs["1"]
    assert rc == 1, err  # LD101 is still there
    assert _codes_by_file(out) == {"ignoring/mixed.py": ALL_MIXED - {"LD102", "LD105"}}


@pytest.mark.tf
def test_example_2_select_brings_back_a_configured_ignore(spec_runs):
    rc, out, err = spec_runs["2"]
    assert rc == 0, err  # LD102 is a warning: it does not fail by default
    assert _codes_by_file(out) == {"mixed.py": {"LD102"}}


@pytest.mark.tf
def test_example_3_extend_select_adds_to_the_configured_select(spec_runs):
    rc, out, err = spec_runs["3"]
    assert _codes_by_file(out) == {"mixed.py": {"LD101", "LD102", "LD105", "LD201"}}


@pytest.mark.tf
def test_example_4_per_file_ignores(spec_runs):
    rc, out, err = spec_runs["4"]
    assert _codes_by_file(out) == {"legacy/mixed.py": ALL_MIXED - {"LD105"}, "src/mixed.py": ALL_MIXED}


@pytest.mark.parametrize("how", ["flag", "config"])
def test_example_5_force_exclude_applies_exclude_to_named_files(tmp_path, how):
    force = "force-exclude = true\n" if how == "config" else ""
    write(tmp_path / "pyproject.toml", f'[tool.lossdiag]\nexclude = ["legacy/*"]\n{force}')
    write(tmp_path / "legacy" / "a.py", SEED_BUG)  # never imported: no TensorFlow in this test
    write(tmp_path / "legacy" / "helpers.py", "def add(a, b):\n    return a + b\n")
    args = ["check", "legacy/a.py", "--format", "json"] + (["--force-exclude"] if how == "flag" else [])
    (rc, out, err), (rc2, out2, err2) = run_cli_many(
        [(args, tmp_path), (["check", "legacy/helpers.py", "--format", "json"], tmp_path)]
    )
    assert rc == 0, out + err
    report = json.loads(out)
    assert report["results"] == [] and report["errors"] == [] and report["summary"]["losses"] == 0
    assert "0 losses in 0 files" in run_cli([*args[:2], "--format", "concise", *args[4:]], tmp_path)[2]
    if how == "flag":  # without force-exclude a named file is checked even where exclude matches (as in ruff)
        assert rc2 == 0 and json.loads(out2)["files_without_losses"] == ["legacy/helpers.py"]


def test_targets_under_two_configurations_are_a_usage_error(tmp_path):
    for name in ("a", "b"):
        write(tmp_path / name / "pyproject.toml", "[tool.lossdiag]\n")
        write(tmp_path / name / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "a/helpers.py", "b/helpers.py"], tmp_path)
    assert rc == 2 and "different configurations" in err and len(err.splitlines()) == 1


@pytest.mark.tf
def test_exit_zero_reports_the_findings_and_exits_0(spec_runs):
    rc, out, err = spec_runs["exit-zero"]
    assert rc == 0, err
    assert "LD101" in out and "LD102" in out
