"""Keras-2 code (`import keras.backend as K`) is diagnosed on tf_keras exactly like its Keras-3 twin."""

from __future__ import annotations

import pytest

from test_fixtures import markers, run_json, ROOT

pytestmark = pytest.mark.tf


def _codes(report: dict) -> dict[str, set[str]]:
    return {r["name"]: {f["code"] for f in r["findings"]} or {"pass"} for r in report["results"]}


def test_keras2_module_with_legacy_flag_matches_its_keras3_twin():
    legacy = run_json("fixtures/keras2_losses.py", "--legacy-keras")
    twin = run_json("fixtures/keras3_twins.py")
    assert _codes(legacy) == _codes(twin)
    assert _codes(legacy) == markers(ROOT / "fixtures" / "keras3_twins.py")
    # without the flag every loss is LD002 (the markers of the Keras-2 file say so)
    assert set(markers(ROOT / "fixtures" / "keras2_losses.py")) == set(_codes(legacy))
    seed = {r["name"]: r for r in legacy["results"]}["seed_loss2"]
    assert seed["ratio"] == pytest.approx(32, rel=0.05)


def test_keras2_module_without_the_flag_names_the_flag():
    report = run_json("fixtures/keras2_losses.py::seed_loss1")
    (result,) = report["results"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002"
    assert "K.sum" in finding["message"] and "Keras 3" in finding["message"]
    assert "--legacy-keras" in finding["hint"]
