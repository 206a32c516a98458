"""Same input and --seed give byte-identical JSON: run to run, in any file order, from any directory.

Paths in the report are POSIX and relative to the working directory when the file is under it
(absolute otherwise), so a run from another directory differs only by that prefix.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_cli_many

pytestmark = pytest.mark.tf

# The seed bug, twenty varied losses, and losses that draw from np.random (seeded per loss).
FILES = ["fixtures/seed_losses.py", "fixtures/many_losses.py", "fixtures/robustness/global_state_victim.py"]
OPTS = ["--format", "json", "--seed", "3"]


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("elsewhere"))


@pytest.fixture(scope="module")
def runs(outside) -> dict[str, tuple[int, str, str]]:
    plan = {
        "first": (["check", *FILES, *OPTS], REPO),
        "again": (["check", *FILES, *OPTS], REPO),
        "reversed": (["check", *reversed(FILES), *OPTS], REPO),
        "absolute_args": (["check", *(str(REPO / f) for f in FILES), *OPTS], REPO),
        "from_fixtures": (["check", *(f.removeprefix("fixtures/") for f in FILES), *OPTS], REPO / "fixtures"),
        "from_outside": (["check", *(str(REPO / f) for f in FILES), *OPTS], outside),
        "other_seed": (["check", *FILES, "--format", "json", "--seed", "4"], REPO),
    }
    outcomes = run_cli_many(plan.values())
    for name, (code, out, err) in zip(plan, outcomes):
        assert code == 1, (name, err)  # the fixtures hold bugs on purpose
        json.loads(out)
    return {name: outcome for name, outcome in zip(plan, outcomes)}


def stdout(runs, name: str) -> str:
    return runs[name][1]


def test_two_runs_are_byte_identical(runs):
    assert stdout(runs, "first") == stdout(runs, "again")


def test_file_order_on_the_command_line_does_not_matter(runs):
    assert stdout(runs, "first") == stdout(runs, "reversed")


def test_absolute_arguments_under_the_cwd_report_relative_paths(runs):
    assert stdout(runs, "first") == stdout(runs, "absolute_args")


def test_paths_are_posix_and_relative_to_the_cwd(runs):
    data = json.loads(stdout(runs, "first"))
    files = {r["file"] for r in data["results"]}
    assert files == set(FILES)
    for result in data["results"]:
        assert result["id"] == f"{result['file']}::{result['name']}"
        for finding in result["findings"]:
            assert not finding["file"].startswith("/") and "\\" not in finding["file"], finding
            for related in finding["related"]:
                assert not related["file"].startswith("/") and "\\" not in related["file"], related


def test_a_run_from_another_directory_differs_only_by_the_path_prefix(runs):
    here = stdout(runs, "first")
    from_fixtures = stdout(runs, "from_fixtures")
    assert json.loads(from_fixtures)["results"][0]["file"] in {f.removeprefix("fixtures/") for f in FILES}
    assert from_fixtures == here.replace("fixtures/", "")


def test_files_outside_the_cwd_are_reported_by_absolute_posix_path(runs):
    outside = stdout(runs, "from_outside")
    files = {r["file"] for r in json.loads(outside)["results"]}
    assert files == {(REPO / f).as_posix() for f in FILES}
    assert outside == stdout(runs, "first").replace('"fixtures/', f'"{REPO.as_posix()}/fixtures/')


def test_the_seed_is_what_changes_the_numbers(runs):
    three = json.loads(stdout(runs, "first"))["results"]
    four = json.loads(stdout(runs, "other_seed"))["results"]
    assert [r["id"] for r in three] == [r["id"] for r in four]
    assert [r["status"] for r in three] == [r["status"] for r in four]
    assert [r["expected"] for r in three] != [r["expected"] for r in four]
