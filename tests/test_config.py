"""`[tool.lossdiag]` in pyproject.toml: found by walking up, validated, and overridden by the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SEED_BUG, run_cli, run_cli_many, write

from lossdiag import config
from lossdiag.config import ConfigError


def pyproject(folder: Path, body: str) -> Path:
    return write(folder / "pyproject.toml", "[tool.lossdiag]\n" + body)


# --- config.load / config.discover (no TensorFlow) ----------------------------------------------


def test_load_every_key_into_click_parameter_names(tmp_path: Path):
    path = pyproject(
        tmp_path,
        """\
        include = ["src/losses"]
        exclude = ["legacy/*"]
        format = "json"
        output = "report.json"
        batch-size = 16
        seed = 3
        select = ["LD1", "nonfinite"]
        ignore = "LD105, batch-mean"
        fail-on = "error"
        timeout = 5
        legacy-keras = true
        max-memory = 1024

        [tool.lossdiag.probes]
        dice = "y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"
        "losses.py::focal" = "y_pred=B,4;labels=onehot"
        """,
    )
    loaded = config.load(path)
    assert loaded.path == path and loaded.root == tmp_path
    assert loaded.values == {
        "include": ("src/losses",),
        "exclude": ("legacy/*",),
        "output_format": "json",
        "output": "report.json",
        "batch_size": 16,
        "seed": 3,
        "select": ("LD1", "LD201"),
        "ignore": ("LD105", "LD102"),
        "fail_on": "error",
        "timeout": 5.0,
        "legacy_keras": True,
        "max_memory": 1024,
        "probes": {
            "dice": "y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary",
            "losses.py::focal": "y_pred=B,4;labels=onehot",
        },
    }


def test_empty_table_is_no_settings(tmp_path: Path):
    assert config.load(pyproject(tmp_path, "")).values == {}


def test_unknown_key_is_named(tmp_path: Path):
    path = pyproject(tmp_path, 'batch_size = 8\n')
    with pytest.raises(ConfigError, match=r"unknown key 'batch_size'") as info:
        config.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "body, key",
    [
        ('fail-on = "sometimes"', "fail-on"),
        ("fail-on = 1", "fail-on"),
        ('format = "xml"', "format"),
        ('batch-size = "32"', "batch-size"),
        ("batch-size = 0", "batch-size"),
        ("batch-size = 1", "batch-size"),  # the CLI needs at least 2 as well
        ("batch-size = true", "batch-size"),
        ("batch-size = 8.5", "batch-size"),
        ("seed = -1", "seed"),
        ("timeout = 0", "timeout"),
        ('timeout = "10s"', "timeout"),
        ('legacy-keras = "yes"', "legacy-keras"),
        ("legacy-keras = 1", "legacy-keras"),
        ("max-memory = 10", "max-memory"),
        ("select = [1, 2]", "select"),
        ('select = ["XX9"]', "select"),
        ('ignore = ["not-a-rule"]', "ignore"),
        ("include = 3", "include"),
        ('exclude = [["x"]]', "exclude"),
        ('output = ""', "output"),
        ('probes = "dice=y_pred=B,2"', "probes"),
        ("probes = { dice = 3 }", "probes"),
        ('probes = { dice = "y_pred=3,3" }', "probes.dice"),
        ('probes = { dice = "y_pred=B,2;labels=colour" }', "probes.dice"),
        ('probes = { dice = "shape=B,2" }', "probes.dice"),
    ],
)
def test_wrong_types_and_values_are_rejected(tmp_path: Path, body: str, key: str):
    path = pyproject(tmp_path, body + "\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert key in message and str(path) in message and "\n" not in message


def test_tool_lossdiag_must_be_a_table(tmp_path: Path):
    write(tmp_path / "pyproject.toml", "[tool]\nlossdiag = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        config.discover(tmp_path)


def test_unparsable_toml_is_a_config_error(tmp_path: Path):
    write(tmp_path / "pyproject.toml", "[tool.lossdiag\nfail-on = \n")
    with pytest.raises(ConfigError, match="cannot parse"):
        config.discover(tmp_path)


def test_discover_walks_up_to_the_nearest_file_with_the_table(tmp_path: Path):
    top = pyproject(tmp_path, 'fail-on = "never"\n')
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    write(tmp_path / "a" / "pyproject.toml", '[project]\nname = "a"\n')  # no [tool.lossdiag]: skipped
    found = config.discover(deep)
    assert found.path == top and found.values == {"fail_on": "never"}

    nearer = pyproject(tmp_path / "a" / "b", 'fail-on = "error"\n')
    assert config.discover(deep).path == nearer
    assert config.discover(deep).values == {"fail_on": "error"}


def test_discover_without_any_file(tmp_path: Path):
    found = config.discover(tmp_path)
    # nothing here; a pyproject.toml above the temporary folder is not ours to control
    assert found.path is None or tmp_path not in found.path.parents


def test_explicit_config_file(tmp_path: Path):
    pyproject(tmp_path, 'fail-on = "never"\n')
    other = write(tmp_path / "ci" / "lossdiag.toml", '[tool.lossdiag]\nfail-on = "error"\n')
    assert config.discover(tmp_path, other).values == {"fail_on": "error"}
    with pytest.raises(ConfigError, match="no such file"):
        config.discover(tmp_path, tmp_path / "missing.toml")


# --- through the command line, without TensorFlow ---------------------------------------------------


@pytest.mark.parametrize(
    "body, needle",
    [
        ("colour = true", "'colour'"),
        ("fail-on = 3", "fail-on"),
        ('batch-size = "big"', "batch-size"),
        ('select = ["XX9"]', "select"),
        ('probes = { dice = "y_pred=3" }', "probes.dice"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, body: str, needle: str):
    pyproject(tmp_path, body + "\n")
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py"], tmp_path)
    assert rc == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("lossdiag: error: ") and needle in line and "pyproject.toml" in line


def test_bad_config_in_a_parent_folder_is_found_and_reported(tmp_path: Path):
    pyproject(tmp_path, "unknown-option = 1\n")
    sub = tmp_path / "src" / "pkg"
    write(sub / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py"], sub)
    assert rc == 2 and "unknown-option" in err and len(err.splitlines()) == 1


def test_include_that_does_not_exist_exits_2(tmp_path: Path):
    pyproject(tmp_path, 'include = ["src/missing_losses"]\n')
    rc, out, err = run_cli(["check"], tmp_path)
    assert rc == 2 and "missing_losses" in err and len(err.splitlines()) == 1


@pytest.fixture
def excluded_project(tmp_path: Path) -> Path:
    """Every file with a loss is excluded; what is left has none, so no TensorFlow run is needed."""
    pyproject(tmp_path, 'include = ["."]\nexclude = ["legacy/*", "gen_*.py"]\nformat = "json"\n')
    write(tmp_path / "legacy" / "old_losses.py", SEED_BUG)
    write(tmp_path / "src" / "gen_losses.py", SEED_BUG)
    write(tmp_path / "src" / "helpers.py", "def add(a, b):\n    return a + b\n")
    return tmp_path


@pytest.mark.parametrize("cwd", [".", "src"])
def test_exclude_globs_are_relative_to_the_config_file(excluded_project: Path, cwd: str):
    rc, out, err = run_cli(["check"], excluded_project / cwd)
    assert rc == 0, out + err
    report = json.loads(out)  # format = "json" came from the config
    assert report["results"] == [] and report["errors"] == []
    assert report["summary"]["losses"] == 0


# --- through the command line, with TensorFlow: shared runs ---------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("config")
    # a project whose config sits two folders above the working directory
    pyproject(
        root / "walk",
        """\
        fail-on = "never"
        include = ["losses"]

        [tool.lossdiag.probes]
        "losses/seed.py::loss2" = "y_true=B,3;y_pred=B,3;labels=real"  # relative to this file
        """,
    )
    write(root / "walk" / "losses" / "seed.py", SEED_BUG)
    deep = root / "walk" / "scripts" / "nightly"
    deep.mkdir(parents=True)
    # a project that selects and ignores in its config
    pyproject(root / "select", 'select = ["LD1"]\nignore = ["batch-sum"]\n')
    write(root / "select" / "seed.py", SEED_BUG)
    plan = {
        "walk": (["check", "--format", "json"], deep),
        "walk-fail-on-cli": (["check", "-q", "--fail-on", "warning"], deep),
        "select-ignore": (["check", "seed.py", "--format", "json"], root / "select"),
        "select-ignore-cli": (["check", "seed.py", "-q", "--ignore", "LD2"], root / "select"),
    }
    return dict(zip(plan, run_cli_many(plan.values())))


@pytest.mark.tf
def test_config_in_a_parent_folder_is_used(runs):
    rc, out, err = runs["walk"]
    assert rc == 0, out + err  # fail-on = "never", although the seed bug is found
    report = json.loads(out)
    [loss] = report["results"]  # include = ["losses"] named the file, relative to the config
    assert loss["name"] == "loss2" and loss["file"].endswith("losses/seed.py")
    assert [f["code"] for f in loss["findings"]] == ["LD101"]
    # [tool.lossdiag.probes] chose the layout; its FILE::NAME key is relative to the pyproject.toml
    assert loss["probe"] == {"batch_size": 32, "y_true": [32, 3], "y_pred": [32, 3], "labels": "real", "source": "config"}


@pytest.mark.tf
def test_command_line_wins_over_config(runs):
    rc, out, err = runs["walk-fail-on-cli"]
    assert rc == 1, out + err
    assert "LD101" in out


@pytest.mark.tf
def test_select_and_ignore_from_config(runs):
    rc, out, err = runs["select-ignore"]
    assert rc == 0, out + err
    [loss] = json.loads(out)["results"]
    assert loss["findings"] == [] and loss["status"] == "pass"

    # --ignore on the command line adds to the config's ignores (as in ruff): LD101 stays ignored
    rc, out, err = runs["select-ignore-cli"]
    assert rc == 0, out + err
    assert "LD101" not in out


def test_output_in_the_config_is_relative_to_the_config_file(tmp_path: Path):
    pyproject(tmp_path, 'format = "json"\noutput = "reports/lossdiag.json"\n')
    sub = tmp_path / "src"
    write(sub / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py"], sub)
    assert rc == 0 and out == "", err
    assert json.loads((tmp_path / "reports" / "lossdiag.json").read_text(encoding="utf-8"))["summary"]["losses"] == 0
    rc, out, err = run_cli(["check", "helpers.py", "-o", "here.json"], sub)  # the command line's: from the cwd
    assert rc == 0 and (sub / "here.json").is_file()


def test_config_is_found_from_the_checked_files_not_the_working_directory(tmp_path: Path):
    pyproject(tmp_path / "repo", 'format = "json"\n')
    write(tmp_path / "repo" / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "repo/helpers.py"], tmp_path)
    assert rc == 0, err
    assert json.loads(out)["files_without_losses"] == ["repo/helpers.py"]  # format = "json" came from repo/
