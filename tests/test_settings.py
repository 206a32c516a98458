"""One source of settings: every option's flag, config key, validation and default come from settings.py,
and what the engine receives (`engine.Options`) follows defaults < pyproject.toml < command line."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, run_cli, write

from lossdiag import cli, config, engine, settings
from lossdiag.models import Report

# --- in-process: what reaches engine.check -------------------------------------------------------


@pytest.fixture
def options_for(monkeypatch: pytest.MonkeyPatch):
    """Run `lossdiag check ARGS` in-process with the engine replaced by a spy; return its Options."""

    def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> engine.Options:
        seen: list[engine.Options] = []

        def spy(targets, options, cwd=None, progress=None):
            seen.append(options)
            return Report()

        monkeypatch.setattr(engine, "check", spy)
        monkeypatch.chdir(cwd)
        for key in ("LOSSDIAG_CACHE_DIR",):
            monkeypatch.delenv(key, raising=False)
        result = CliRunner().invoke(cli.cli, ["check", *args], env=env or {}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        [options] = seen
        return options

    return run


def test_defaults(options_for, tmp_path: Path):
    options = options_for(["x.py"], tmp_path)
    assert options.batch_size == 32 and options.seed == 0 and options.timeout == 10.0
    assert options.max_memory_mb == 4096
    assert options.legacy_keras is None  # auto: each module decides
    assert options.full_import is False and options.trace is True and options.force_exclude is False
    assert options.jobs == 1 and options.cache is True
    assert options.cache_dir == str((tmp_path / ".lossdiag_cache").resolve())
    assert set(options.select) == set(engine.rules.RULES) and options.ignore == ()
    assert options.per_file_ignores == () and options.probes == {}


CONFIG = """\
[tool.lossdiag]
batch-size = 16
seed = 3
timeout = 2.5
max-memory = 1024
legacy-keras = true
full-import = true
jobs = "auto"
cache = false
cache-dir = "build/ldcache"
trace = false
force-exclude = true
exclude = ["legacy/*"]
extend-exclude = ["gen_*.py"]
per-file-ignores = {"tests/*.py" = ["LD2"]}

[tool.lossdiag.probes]
dice = "y_true=B,4;y_pred=B,4;labels=binary"
"""


def test_every_config_key_reaches_the_options(options_for, tmp_path: Path):
    write(tmp_path / "pyproject.toml", CONFIG)
    options = options_for(["x.py"], tmp_path)
    assert (options.batch_size, options.seed, options.timeout, options.max_memory_mb) == (16, 3, 2.5, 1024)
    assert options.legacy_keras is True and options.full_import is True
    assert options.jobs == 0  # auto, resolved by the engine
    assert options.cache is False and options.cache_dir == str((tmp_path / "build" / "ldcache").resolve())
    assert options.trace is False and options.force_exclude is True
    assert options.exclude == ("legacy/*", "gen_*.py")
    assert options.per_file_ignores == ((str(tmp_path.resolve() / "tests") + "/*.py", ("LD2",)),)
    assert options.probes == {"dice": "y_true=B,4;y_pred=B,4;labels=binary"}
    assert options.probe_sources == {"dice": "config"}


def test_the_command_line_wins(options_for, tmp_path: Path):
    write(tmp_path / "pyproject.toml", CONFIG)
    options = options_for(
        ["x.py", "--batch-size", "8", "--no-legacy-keras", "--jobs", "3", "--cache-dir", "here",
         "--probe", "dice=y_pred=B,2", "--probe", "focal=y_pred=B,3;labels=onehot"],
        tmp_path,
    )
    assert options.batch_size == 8 and options.legacy_keras is False and options.jobs == 3
    assert options.cache_dir == str((tmp_path / "here").resolve())
    assert options.probes == {"dice": "y_pred=B,2", "focal": "y_pred=B,3;labels=onehot"}
    assert options.probe_sources == {"dice": "given", "focal": "given"}


@pytest.mark.parametrize(
    "args, field, value",
    [
        (["--legacy-keras"], "legacy_keras", True),
        (["--full-import"], "full_import", True),
        (["--jobs", "auto"], "jobs", 0),
        (["-j", "2"], "jobs", 2),
        (["--no-cache"], "cache", False),
        (["--no-trace"], "trace", False),
        (["--force-exclude"], "force_exclude", True),
        (["--timeout", "0.5"], "timeout", 0.5),
    ],
)
def test_each_flag_sets_its_field(options_for, tmp_path: Path, args, field, value):
    assert getattr(options_for(["x.py", *args], tmp_path), field) == value


def test_cache_dir_from_the_environment(options_for, tmp_path: Path):
    options = options_for(["x.py"], tmp_path, env={"LOSSDIAG_CACHE_DIR": str(tmp_path / "envcache")})
    assert options.cache_dir == str((tmp_path / "envcache").resolve())


@pytest.mark.parametrize("value, expected", [('"auto"', None), ("true", True), ("false", False)])
def test_legacy_keras_in_the_config(tmp_path: Path, value, expected):
    write(tmp_path / "pyproject.toml", f"[tool.lossdiag]\nlegacy-keras = {value}\n")
    assert config.load(tmp_path / "pyproject.toml").values == {"legacy_keras": expected}


def test_jobs_auto_is_one_per_core_and_at_most_one_per_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 4)
    assert engine.resolve_jobs(0, 2) == 2 and engine.resolve_jobs(0, 9) == 4 and engine.resolve_jobs(0, 0) == 1
    assert engine.resolve_jobs(3, 1) == 3


# --- numbers are validated the same way on the command line and in the config ---------------------


BAD_NUMBERS = [
    ("timeout", "nan"), ("timeout", "inf"), ("timeout", "-inf"), ("timeout", "-1"), ("timeout", "0"),
    ("timeout", "1e9"), ("timeout", "ten"),
    ("batch-size", "1"), ("batch-size", "100000"), ("batch-size", "2.5"),
    ("max-memory", "10"), ("max-memory", "99999999999"),
    ("seed", "-1"), ("seed", str(2**40)),
    ("jobs", "0"), ("jobs", "-2"), ("jobs", "100000"), ("jobs", "many"),
]


@pytest.mark.parametrize("key, text", BAD_NUMBERS, ids=lambda v: str(v))
def test_bad_numbers_are_rejected_by_the_shared_validation(key: str, text: str):
    setting = settings.BY_KEY[key]
    with pytest.raises(ValueError):
        setting.kind.from_text(text)
    try:
        toml_value = float(text) if key == "timeout" else int(text)
    except ValueError:
        toml_value = text
    with pytest.raises(ValueError):
        setting.kind.from_toml(toml_value)


@pytest.mark.parametrize("key, value", [("timeout", True), ("batch-size", True), ("batch-size", 8.0)])
def test_booleans_and_floats_are_not_integers_in_the_config(key, value):
    with pytest.raises(ValueError):
        settings.from_toml(key, value)


def test_good_numbers_pass(tmp_path: Path):
    assert settings.BY_KEY["timeout"].kind.from_text("0.25") == 0.25
    assert settings.BY_KEY["timeout"].kind.from_toml(3600) == 3600.0
    assert settings.BY_KEY["batch-size"].kind.from_text(" 1024 ") == 1024
    assert settings.BY_KEY["jobs"].kind.from_toml("auto") == 0


@pytest.mark.parametrize(
    "args",
    [["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "-3"], ["--batch-size", "5000000"],
     ["--max-memory", "999999999999"], ["--jobs", "0"], ["--seed", "-1"]],
    ids=" ".join,
)
def test_bad_numbers_on_the_command_line_exit_2_before_any_work(tmp_path: Path, args):
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py", *args], tmp_path)
    assert rc == 2 and out == ""
    assert args[0] in err


@pytest.mark.parametrize(
    "body", ["timeout = nan", "timeout = inf", "timeout = -1.0", "batch-size = 100000", "max-memory = 1",
             'jobs = "lots"', 'legacy-keras = "yes"', "cache = 1", 'per-file-ignores = {"a/*" = ["XX1"]}'],
)
def test_bad_numbers_and_values_in_the_config_exit_2(tmp_path: Path, body: str):
    write(tmp_path / "pyproject.toml", f"[tool.lossdiag]\n{body}\n")
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py"], tmp_path)
    assert rc == 2 and out == ""
    [line] = err.splitlines()
    key = body.split(" =")[0]
    assert line.startswith("lossdiag: error: ") and key in line and "pyproject.toml" in line


def test_nan_is_really_a_toml_float():
    assert math.isnan(config.tomllib.loads("x = nan")["x"])  # so the config check above tests nan itself


# --- the one definition drives --help, the config keys and the README -----------------------------


def test_every_flag_is_in_help_and_every_key_is_accepted(tmp_path: Path):
    rc, out, err = run_cli(["check", "--help"])
    assert rc == 0, err
    for setting in settings.SETTINGS:
        for flag in setting.flags:
            assert re.search(rf"(^|[\s,/]){re.escape(flag)}\b", out), flag
    assert set(settings.BY_KEY) == set(config.settings.BY_KEY)
    assert "[default: error]" in out  # fail-on


def test_readme_options_table_is_generated_from_the_settings():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- options:start -->\n(.*?)<!-- options:end -->", readme, re.S)
    assert match, "README.md lacks the <!-- options:start --> ... <!-- options:end --> block"
    assert match.group(1) == settings.markdown_table(), "regenerate it: python -c 'from lossdiag.settings import markdown_table; print(markdown_table())'"


def test_help_examples_are_never_split_inside_a_token():
    for columns in ("80", "60"):
        rc, out, err = run_cli(["check", "--help"], env={**__import__("conftest").cli_env(), "COLUMNS": columns})
        assert rc == 0, err
        assert f"--probe {settings.PROBE_EXAMPLE}" in out
        assert "lossdiag check src/ --add-ignore" in out
