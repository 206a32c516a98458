"""Keras-2 code (`import keras.backend as K`) is diagnosed on tf_keras exactly like its Keras-3 twin."""

from __future__ import annotations

import os

import pytest
from test_fixtures import ROOT, markers, run_json

pytestmark = pytest.mark.tf


def _codes(report: dict) -> dict[str, set[str]]:
    return {r["name"]: {f["code"] for f in r["findings"]} or {"pass"} for r in report["results"]}


def test_keras2_module_needs_no_flag_and_matches_its_keras3_twin():
    """Issue 9: the module is judged Keras 2 from its source and run on tf_keras."""
    auto = run_json("fixtures/keras2_losses.py")
    twin = run_json("fixtures/keras3_twins.py")
    assert _codes(auto) == _codes(twin) == markers(ROOT / "fixtures" / "keras3_twins.py")
    assert _codes(auto) == markers(ROOT / "fixtures" / "keras2_losses.py")
    assert {r["keras"] for r in auto["results"]} == {"tf_keras 2.21.0"}
    assert {r["keras"] for r in twin["results"]} == {"3.15.1"}
    seed = {r["name"]: r for r in auto["results"]}["seed_loss2"]
    assert seed["ratio"] == pytest.approx(32, rel=0.05)


def test_a_mixed_run_gives_each_module_what_it_gets_with_the_right_setting():
    mixed = run_json("fixtures/keras2_losses.py", "fixtures/keras3_twins.py", "fixtures/seed_losses_k2.py")
    forced = run_json("fixtures/keras2_losses.py", "fixtures/seed_losses_k2.py", "--legacy-keras")
    plain = run_json("fixtures/keras3_twins.py", "--no-legacy-keras")

    def by_id(data: dict) -> dict[str, tuple]:
        return {r["id"]: (r["status"], sorted(f["code"] for f in r["findings"]), r["ratio"]) for r in data["results"]}

    assert by_id(mixed) == {**by_id(forced), **by_id(plain)}


def test_keras2_module_forced_onto_keras3_names_the_flag():
    report = run_json("fixtures/keras2_losses.py::seed_loss1", "--no-legacy-keras")
    (result,) = report["results"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002"
    assert "K.sum" in finding["message"] and "Keras 3" in finding["message"]
    assert "--legacy-keras" in finding["hint"]


def test_without_tf_keras_a_keras2_module_is_ld001_naming_the_install_and_others_are_checked(tmp_path):
    """Issue 9: where tf_keras cannot be imported, the Keras-2 module says how to get it; a Keras-3
    module in the same run is checked as usual."""
    import json

    from conftest import cli_env, run_cli

    shadow = tmp_path / "shadow" / "tf_keras"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('tf_keras is not installed here')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shadow"), env["PYTHONPATH"]])
    code, out, err = run_cli(
        ["check", "fixtures/keras2_losses.py", "fixtures/keras3_twins.py", "--format", "json"], cwd=ROOT, env=env
    )
    data = json.loads(out)
    assert code == 1, err  # LD001 is a finding of severity error, not a crash
    [load] = [e for e in data["errors"] if e["file"] == "fixtures/keras2_losses.py"]
    assert load["code"] == "LD001" and "pip install tf_keras" in load["message"]
    assert _codes(data) == markers(ROOT / "fixtures" / "keras3_twins.py")
