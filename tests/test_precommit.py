"""The pre-commit hooks: the manifest is valid, and the real pre-commit runs the `lossdiag` hook.

No network: only the `language: system` hook (as `repo: local`, through `try-repo` of a local clone
of the manifest, and as the README's `repo: local` recipe behind real `git commit`s) is run; the
`language: python` hook is only validated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_env

MANIFEST = REPO / ".pre-commit-hooks.yaml"
VENV_BIN = Path(sys.executable).parent

BUGGY = """\
from keras import ops


def loss2(yz, yzhat):
    return ops.sum(ops.square(yz[:, 1] - yzhat[:, 1]), axis=-1)
"""
FIXED = BUGGY.replace("yz[:, 1]", "yz[:, 1:]").replace("yzhat[:, 1]", "yzhat[:, 1:]")
TRAIN = """\
def train(model, data):
    model.fit(data)


raise SystemExit("training would start here")
"""


def _hooks() -> dict[str, dict]:
    return {hook["id"]: hook for hook in yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))}


def test_manifest_is_valid_for_pre_commit():
    from pre_commit.clientlib import load_manifest

    hooks = {hook["id"]: hook for hook in load_manifest(str(MANIFEST))}
    assert set(hooks) == {"lossdiag", "lossdiag-isolated"}
    for hook in hooks.values():
        assert hook["entry"] == "lossdiag check --force-exclude"  # pre-commit names files: exclude must hold
        assert hook["types"] == ["python"]
        assert hook["require_serial"] is True
        assert hook["pass_filenames"] is True
        assert hook["description"]
    # pre-commit >= 4.4 reads `system` as `unsupported`; both name the same project-environment hook.
    assert hooks["lossdiag"]["language"] in ("system", "unsupported")
    assert hooks["lossdiag"]["name"] == "lossdiag"
    assert hooks["lossdiag-isolated"]["language"] == "python"
    # the isolated hook is installed with `pip install .` of this repository: lossdiag and its deps
    assert hooks["lossdiag-isolated"]["additional_dependencies"] == []


def test_entry_point_named_by_the_manifest_exists():
    assert shutil.which("lossdiag", path=str(VENV_BIN)), "the `lossdiag` console script is not installed"


def _git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)


def _init_repo(path: Path, env: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _git("init", "-q", cwd=path, env=env)
    _git("config", "user.email", "lossdiag-tests@example.com", cwd=path, env=env)
    _git("config", "user.name", "lossdiag tests", cwd=path, env=env)
    _git("config", "commit.gpgsign", "false", cwd=path, env=env)


def _pre_commit(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Offline and hermetic: our own pre-commit cache, no global git config, the venv's lossdiag on PATH."""
    return cli_env(
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        PIP_NO_INDEX="1",
    )


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A git repository with the seed bug, a training script and a `repo: local` copy of our hook."""
    repo = tmp_path / "project"
    _init_repo(repo, env)
    (repo / "losses.py").write_text(BUGGY, encoding="utf-8")
    (repo / "train.py").write_text(TRAIN, encoding="utf-8")
    hook = {k: v for k, v in _hooks()["lossdiag"].items()}
    config = {"repos": [{"repo": "local", "hooks": [hook]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    _git("add", "-A", cwd=repo, env=env)
    return repo


@pytest.mark.slow
@pytest.mark.tf
def test_local_system_hook_fails_on_the_seed_bug_and_passes_once_fixed(project: Path, env: dict[str, str]):
    failed = _pre_commit(["run", "--all-files"], project, env)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out
    assert "LD101" in out
    assert "losses.py" in out
    assert "training would start here" not in out  # train.py has no loss: never imported

    (project / "losses.py").write_text(FIXED, encoding="utf-8")
    _git("add", "-A", cwd=project, env=env)
    passed = _pre_commit(["run", "--all-files"], project, env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "LD101" not in passed.stdout


@pytest.mark.slow
@pytest.mark.tf
def test_try_repo_runs_the_manifest_hook(tmp_path: Path, project: Path, env: dict[str, str]):
    # try-repo clones a committed repository; commit a copy of the manifest so that the test does
    # not depend on whether this checkout has committed it yet.
    hook_repo = tmp_path / "hook-repo"
    _init_repo(hook_repo, env)
    shutil.copy(MANIFEST, hook_repo / ".pre-commit-hooks.yaml")
    _git("add", "-A", cwd=hook_repo, env=env)
    _git("commit", "-q", "-m", "hooks", cwd=hook_repo, env=env)

    result = _pre_commit(["try-repo", str(hook_repo), "lossdiag", "--files", "losses.py"], project, env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "LD101" in out


# --- the README's `repo: local` recipe, behind real commits ------------------------------------------

WARNING_ONLY = """\
from keras import ops


def batch_mean(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))
"""


def readme_recipe() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- pre-commit-local:start -->\n```yaml\n(.*?)```\n<!-- pre-commit-local:end -->", readme, re.S)
    assert match, "README.md lacks the pre-commit-local block"
    return match.group(1)


def test_the_readme_recipe_is_a_valid_config(tmp_path: Path):
    from pre_commit.clientlib import load_config

    path = tmp_path / ".pre-commit-config.yaml"
    path.write_text(readme_recipe(), encoding="utf-8")
    [repo] = load_config(str(path))["repos"]
    assert repo["repo"] == "local" and repo["hooks"][0]["entry"] == _hooks()["lossdiag"]["entry"]


def _commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    _git("add", "-A", cwd=repo, env=env)
    return subprocess.run(["git", "commit", "-m", message], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.tf
def test_readme_recipe_lets_warnings_through_and_blocks_a_batch_sum(tmp_path: Path, env: dict[str, str]):
    repo = tmp_path / "adopter"
    _init_repo(repo, env)
    (repo / ".pre-commit-config.yaml").write_text(readme_recipe(), encoding="utf-8")
    (repo / "pyproject.toml").write_text('[tool.lossdiag]\nexclude = ["legacy/*"]\n', encoding="utf-8")
    installed = _pre_commit(["install"], repo, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    (repo / "losses.py").write_text(WARNING_ONLY, encoding="utf-8")
    (repo / "legacy").mkdir()
    (repo / "legacy" / "old.py").write_text(BUGGY, encoding="utf-8")  # excluded, though pre-commit names it
    passed = _commit(repo, env, "warnings only")
    out = passed.stdout + passed.stderr
    assert passed.returncode == 0, out
    assert re.search(r"^lossdiag\.+Passed$", out, re.M), out  # it ran (not "Skipped") and passed
    assert "training would start here" not in out

    (repo / "sums.py").write_text(BUGGY, encoding="utf-8")
    blocked = _commit(repo, env, "a batch sum")
    out = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, out
    assert "LD101" in out and "sums.py" in out
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, env=env, capture_output=True, text=True)
    assert log.stdout.split("\n")[0] == "warnings only"  # the second commit was not made
