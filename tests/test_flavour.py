"""Keras-2 code is recognised from its source alone, and Keras-3 code is never mistaken for it."""

from __future__ import annotations

import importlib
import textwrap

import pytest

from lossdiag import flavour


def detect(source: str) -> flavour.Keras2Evidence | None:
    return flavour.detect(textwrap.dedent(source))


@pytest.mark.parametrize("source, reason", [
    ("import keras.backend as K\n\ndef dice(y_true, y_pred):\n    return K.sum(y_true * y_pred)\n",
     "`K.sum` at line 4; Keras 3's keras.backend has no `sum`"),
    ("from keras import backend as K\nx = K.flatten\n", "`K.flatten` at line 2; Keras 3's keras.backend has no `flatten`"),
    ("import keras\nv = keras.backend.variable(1.0)\n",
     "`keras.backend.variable` at line 2; Keras 3's keras.backend has no `variable`"),
    ("from tensorflow.keras import backend as B\nB.mean(1)\n", "`B.mean` at line 2; Keras 3's keras.backend has no `mean`"),
    ("import tensorflow as tf\ntf.keras.backend.sum(1)\n",
     "`tf.keras.backend.sum` at line 2; Keras 3's keras.backend has no `sum`"),
    ("from keras.backend import sum, epsilon\n", "`from keras.backend import sum` at line 1; Keras 3's keras.backend has no `sum`"),
    ("from keras.losses import MSE\n", "`from keras.losses import MSE` at line 1; Keras 3's keras.losses has no `MSE`"),
    ("from keras.metrics import kullback_leibler_divergence as kld\n",
     "`from keras.metrics import kullback_leibler_divergence` at line 1; Keras 3's keras.metrics has no "
     "`kullback_leibler_divergence`"),
    ("import keras\nf = keras.losses.logcosh\n", "`keras.losses.logcosh` at line 2; Keras 3's keras.losses has no `logcosh`"),
    ("from keras import losses\n\nclass L(losses.Loss):\n    def __init__(self):\n        super().__init__(reduction='auto')\n",
     '`reduction="auto"` at line 5; Keras 3 has no "auto" reduction'),
    ("import tensorflow as tf\nr = tf.keras.losses.Reduction.AUTO\n",
     "`tf.keras.losses.Reduction.AUTO` at line 2; Keras 3 has no AUTO reduction"),
    ("from tensorflow.python.keras.utils import losses_utils\nr = losses_utils.ReductionV2.NONE\n",
     "`losses_utils.ReductionV2` at line 2; Keras 3 has no losses_utils.ReductionV2"),
    ("from keras.engine.topology import Layer\n", "`from keras.engine.topology import Layer` at line 1; Keras 3 has no module keras.engine"),
    ("from keras.layers.merge import concatenate\n",
     "`from keras.layers.merge import concatenate` at line 1; Keras 3 has no module keras.layers.merge"),
    ("import keras.utils.np_utils\n", "`import keras.utils.np_utils` at line 1; Keras 3 has no module keras.utils.np_utils"),
    ("from keras.utils import generic_utils\n",
     "`from keras.utils import generic_utils` at line 1; Keras 3 has no module keras.utils.generic_utils"),
    ("from keras.wrappers.scikit_learn import KerasClassifier\n",
     "`from keras.wrappers.scikit_learn import KerasClassifier` at line 1; Keras 3 has no module keras.wrappers.scikit_learn"),
    ("from keras.legacy import interfaces\n",
     "`from keras.legacy import interfaces` at line 1; Keras 3 has no module keras.legacy.interfaces"),
    ("import tf_keras as keras\n", "`import tf_keras` at line 1: the module is written for tf_keras (Keras 2)"),
    ("from keras.optimizers import Adam\nopt = Adam(lr=1e-3)\n",
     "`Adam(lr=...)` at line 2; Keras 3's optimizers take learning_rate, not lr"),
    ("def train(model, gen):\n    model.fit_generator(gen)\n", "`.fit_generator(...)` at line 2; Keras 3's Model has no fit_generator"),
])
def test_keras2_signs_are_found_with_their_line(source, reason):
    evidence = detect(source)
    assert evidence is not None
    assert evidence.reason == reason
    assert f"line {evidence.line}" in evidence.reason


@pytest.mark.parametrize("source", [
    "from keras import ops\n\ndef loss(y_true, y_pred):\n    return ops.mean(y_true - y_pred, axis=-1)\n",
    "import keras.backend as K\nK.epsilon(); K.floatx(); K.image_data_format(); K.clear_session()\n",
    "import tensorflow as tf\n\ndef loss(y_true, y_pred):\n    return tf.reduce_mean(y_true - y_pred, axis=-1)\n",
    "import numpy as np\nx = np.sum([1, 2])\n",
    "from keras.losses import MeanSquaredError, mean_squared_error\nloss = MeanSquaredError(reduction='sum')\n",
    "import torch\n",
    "def broken(:\n",  # not Python: no opinion
])
def test_keras3_and_neutral_code_is_not_keras2(source):
    assert detect(source) is None


@pytest.mark.parametrize("keras3_use", [
    "from keras import ops",
    "import keras.ops",
    "import keras\ny = keras.ops.sum",
    "import keras\nkeras.config.set_floatx('float32')",
    "from keras import random",
    "import keras\n@keras.saving.register_keras_serializable()\nclass C: pass",
])
def test_keras3_only_use_wins_over_weak_keras2_signs(keras3_use):
    weak = "import keras.backend as K\nfrom keras.optimizers import Adam\nK.sum(1)\nAdam(lr=1)\n"
    assert detect(weak) is not None
    assert detect(keras3_use + "\n" + weak) is None


def test_a_sign_that_breaks_the_import_under_keras3_wins_over_keras3_use():
    evidence = detect("from keras import ops\nfrom keras.losses import MSE\n")
    assert evidence is not None and evidence.line == 2 and "MSE" in evidence.reason


def test_the_first_sign_is_reported():
    evidence = detect("import keras.backend as K\n\n\nx = K.mean(1)\ny = K.sum(2)\n")
    assert evidence == flavour.Keras2Evidence("`K.mean` at line 4; Keras 3's keras.backend has no `mean`", 4)


def test_names_local_to_the_module_are_not_mistaken_for_the_backend():
    assert detect("class K:\n    @staticmethod\n    def sum(x):\n        return x\n\nK.sum(1)\n") is None


@pytest.mark.tf
def test_the_lists_match_the_installed_keras_and_tf_keras():
    """Every name and module called Keras-2-only is absent from Keras 3 (and the backend list is exact)."""
    from lossdiag import _tf

    _tf.prepare_environment()
    keras = importlib.import_module("keras")
    tf_keras = importlib.import_module("tf_keras")
    public = {n for n in dir(keras.backend) if not n.startswith("_")}
    assert public == set(flavour.KERAS3_BACKEND)
    assert {n for n in dir(tf_keras.backend) if not n.startswith("_")} - public  # Keras 2 has far more
    for module, names in flavour.DROPPED_NAMES.items():
        keras3_module = importlib.import_module(module)
        assert not {n for n in names if hasattr(keras3_module, n)}, module
    for module in flavour.KERAS2_MODULES:
        with pytest.raises(ImportError):
            importlib.import_module(module)
    for name in ("MSE", "mse", "logcosh", "Reduction"):
        assert hasattr(tf_keras.losses, name)
