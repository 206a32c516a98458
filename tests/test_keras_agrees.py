"""A real `model.fit` reports the same ratio lossdiag measures: the "actual" column is what users see."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, validate_report

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.tf


def _seed_module():
    spec = importlib.util.spec_from_file_location("seed_losses_for_fit", ROOT / "fixtures" / "seed_losses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fit_two_outputs(batch_size: int, samples: int) -> dict[str, float]:
    """One epoch of a model with outputs Z (B, 1) and YZ = [Y, Z] (B, 2): Z gets `loss1`, YZ `loss2`."""
    from lossdiag import _tf

    tf, keras = _tf.load()
    import numpy as np

    losses = _seed_module()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    z = (x[:, 1:2] > 0).astype("float32")
    inputs = keras.Input(shape=(4,))
    z_out = keras.layers.Dense(1, activation="sigmoid", name="z_head")(inputs)
    y_out = keras.layers.Dense(1, activation="sigmoid", name="y_head")(inputs)
    z_named = keras.layers.Identity(name="Z")(z_out)
    yz = keras.layers.Concatenate(name="YZ")([y_out, z_out])
    model = keras.Model(inputs, {"Z": z_named, "YZ": yz})
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss={"Z": losses.loss1, "YZ": losses.loss2})
    history = model.fit(
        x, {"Z": z, "YZ": np.concatenate([y, z], axis=1)}, batch_size=batch_size, epochs=1, verbose=0, shuffle=False
    )
    return {k: float(v[-1]) for k, v in history.history.items()}


def _lossdiag_ratio(batch_size: int) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", "check", "fixtures/seed_losses.py::loss2", "--format", "json",
         "--batch-size", str(batch_size)],
        cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    validate_report(json.loads(proc.stdout))
    (result,) = json.loads(proc.stdout)["results"]
    assert [f["code"] for f in result["findings"]] == ["LD101"]
    return result["ratio"]


@pytest.mark.parametrize("batch_size", [32, 8])
def test_model_fit_shows_the_ratio_lossdiag_predicts(batch_size):
    history = _fit_two_outputs(batch_size, samples=batch_size * 20)
    fit_ratio = history["YZ_loss"] / history["Z_loss"]
    predicted = _lossdiag_ratio(batch_size)
    assert fit_ratio == pytest.approx(predicted, rel=0.10), (history, predicted)
    assert fit_ratio == pytest.approx(batch_size, rel=0.10)


def test_the_story_numbers_last_partial_batch():
    """1000 samples at batch 32: the last batch holds 8, so model.fit shows about 31.2, not 32."""
    history = _fit_two_outputs(32, samples=1000)
    assert history["YZ_loss"] / history["Z_loss"] == pytest.approx(31.2, rel=0.03)
