"""The rule catalogue: every code with its name, severity and ruff-style documentation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str
    what: str
    why: str
    example: str
    use_instead: str


_CATALOGUE = (
    Rule(
        code="LD001",
        name="load-error",
        severity="error",
        summary="the module could not be imported",
        what="Reports a module that lossdiag could not import: a syntax error, a missing package, "
        "an exception or `sys.exit()` at import time, or an import that never finished. lossdiag "
        "imports a module's definitions only (training scripts are not run), so a failing import or "
        "statement that no loss needs is a note under `-v`, not this error.",
        why="Nothing in a module that cannot be imported can be checked, and the same error will "
        "stop training. The other modules are still checked.",
        example="import tensorflow as tf\nfrom class_tables import class_weights  # ModuleNotFoundError\n\n"
        "def weighted_mse(y_true, y_pred):\n"
        "    return tf.reduce_mean(class_weights * tf.square(y_true - y_pred), axis=-1)\n",
        use_instead="import numpy as np\nimport tensorflow as tf\n\nclass_weights = np.array([1.0, 2.0, 5.0], dtype=\"float32\")\n\n"
        "def weighted_mse(y_true, y_pred):\n"
        "    return tf.reduce_mean(class_weights * tf.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD002",
        name="not-probed",
        severity="warning",
        summary="every probe shape raised, so the loss was not checked",
        what="Reports a loss that raised (or returned something that is not a tensor, or timed "
        "out) for every synthetic batch lossdiag tried. The message carries the last exception "
        "and the shapes that were tried.",
        why="A loss that was never measured may still hold any of the other mistakes. Usually the "
        "loss needs a particular input shape: give it with `--probe NAME=SPEC` or in "
        "`[tool.lossdiag.probes]`.",
        example="import json\n\nimport tensorflow as tf\n\n"
        "CONFIG = json.loads('{\"keypoints\": 68}')  # read from a file in a real repo\n\n"
        "def landmark_loss(y_true, y_pred):\n"
        "    points = tf.reshape(y_pred, (-1, CONFIG[\"keypoints\"], 2))  # needs 136 columns\n"
        "    target = tf.reshape(y_true, (-1, CONFIG[\"keypoints\"], 2))\n"
        "    return tf.reduce_mean(tf.norm(points - target, axis=-1), axis=-1)\n",
        use_instead="# pyproject.toml\n[tool.lossdiag.probes]\n"
        'landmark_loss = "y_true=B,136;y_pred=B,136;labels=real"\n',
    ),
    Rule(
        code="LD003",
        name="unused-suppression",
        severity="warning",
        summary="a `# lossdiag: ignore[...]` comment suppressed nothing in this run",
        what="Reports an inline suppression comment on a loss's `def`/`class` line, or on a line a "
        "finding points at, that did not suppress any finding in this run. Only rules that were "
        "selected, on losses that were checked, count: a comment for a rule you did not run is "
        "left alone. Only a comment naming LD003 silences it: a bare `# lossdiag: ignore` that "
        "suppressed nothing is reported as well.",
        why="A suppression that no longer matches a finding hides nothing today but will hide the "
        "next real bug on that loss. Remove it once the loss is fixed, as ruff's RUF100 asks for "
        "unused `# noqa`.",
        example="from keras import ops\n\n"
        "def per_sample_mse(y_true, y_pred):  # lossdiag: ignore[LD101]\n"
        "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n",
        use_instead="from keras import ops\n\n"
        "def per_sample_mse(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD004",
        name="internal-error",
        severity="error",
        summary="lossdiag itself failed while checking this loss or module",
        what="Reports a failure inside lossdiag's own code while it measured a loss or a module: a "
        "bug in lossdiag, never blamed on the user's code. `-v` shows the traceback. The rest of "
        "the report is intact.",
        why="The loss was not checked, so it may still hold any mistake. Please report it with the "
        "loss that triggers it; meanwhile `--probe` with another layout, or `# lossdiag: ignore[LD004]`, "
        "lets the gate run.",
        example="# any loss on which lossdiag's own probing code raised\n",
        use_instead="# report the traceback from `lossdiag check FILE -v`\n",
    ),
    Rule(
        code="LD101",
        name="batch-sum",
        severity="error",
        summary="the batch axis is summed away: Keras reports about B times the per-sample loss",
        what="Reports a loss whose output has no batch axis and whose value grows with the batch "
        "size: it summed over the samples. The classic cause is an integer slice such as "
        "`yz[:, 1]` that drops the feature axis, so a later `sum(axis=-1)` runs over the batch. Metrics "
        "too: a function in `metrics=[...]` that sums over the batch, or a `keras.metrics.Metric` that adds "
        "each batch's total but counts batches, not samples.",
        why="Keras divides a per-sample loss by the batch size, but passes a scalar through "
        "unchanged. The loss shown in `model.fit` is then batch-size times too large, its "
        "gradient too, and it changes when the batch size does. Nothing raises.",
        example="from keras import ops\n\ndef per_sample_se(z, zhat):\n"
        "    return ops.sum(ops.square(z - zhat), axis=-1)\n\n"
        "def sums_over_batch_after_slice(yz, yzhat):\n"
        "    return per_sample_se(yz[:, 1], yzhat[:, 1])  # (B,) -> sum over the batch\n",
        use_instead="from keras import ops\n\ndef per_sample_se(z, zhat):\n"
        "    return ops.sum(ops.square(z - zhat), axis=-1)\n\n"
        "def keeps_feature_axis(yz, yzhat):\n"
        "    return per_sample_se(yz[:, 1:], yzhat[:, 1:])  # (B, 1) -> (B,)\n",
    ),
    Rule(
        code="LD102",
        name="batch-mean",
        severity="warning",
        summary="the batch axis is averaged away: the value is right but there is no per-sample loss",
        what="Reports a loss that returns a scalar which does not grow with the batch size: it "
        "averaged over the samples itself, e.g. `ops.mean(...)` with no axis.",
        why="The reported magnitude is right, but Keras gets a single number, so `sample_weight`, "
        "`class_weight` and masks cannot weigh the samples: they scale the whole batch instead.",
        example="from keras import ops\n\ndef mean_over_everything(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred))\n",
        use_instead="from keras import ops\n\ndef per_sample_mse(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD103",
        name="wrong-axis",
        severity="error",
        summary="the output lost the batch axis but kept another one",
        what="Reports a loss whose output no longer has the batch axis but still has another "
        "one: a reduction over `axis=0` gives shape `(d,)` instead of `(B,)`, or the batch was "
        "flattened together with the features.",
        why="Keras averages whatever it gets, so the value looks plausible, but it reduced over "
        "the samples (often summing them) and kept the features: per-sample weights cannot "
        "apply and a sum over axis 0 grows with the batch size.",
        example="from keras import ops\n\ndef reduces_axis_zero(y_true, y_pred):\n"
        "    return ops.sum(ops.square(y_true - y_pred), axis=0)\n",
        use_instead="from keras import ops\n\ndef per_sample_sse(y_true, y_pred):\n"
        "    return ops.sum(ops.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD104",
        name="cross-broadcast",
        severity="error",
        summary="broadcasting paired every sample with every other one: a (B, B) tensor",
        what="Reports a loss in which a `(B,)` tensor met a `(B, 1)` tensor, so broadcasting "
        "built a `(B, B)` intermediate or output that pairs every sample with every other; and a loss "
        "that pools such pairs of predictions straight into one value (a pairwise ranking hinge or AUC "
        "surrogate over the whole batch), so no sample has a value of its own. A pairing reduced row by "
        "row first (batch-hard mining, an InfoNCE row per anchor) is judged by what it returns instead.",
        why="Each sample's loss becomes an average over all the batch's targets: the value is "
        "wrong, depends on the batch composition, and costs B times the memory. Nothing raises.",
        example="from keras import ops\n\ndef broadcasts_b_against_b1(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred[:, 0]), axis=-1)  # (B,1) - (B,)\n",
        use_instead="from keras import ops\n\ndef per_sample_mse(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD105",
        name="coupled",
        severity="warning",
        summary="one sample's loss changes when another sample changes",
        what="Reports a loss whose output keeps one value per sample, but where changing one "
        "sample moves the values of the others: a batch statistic (mean, max, normalisation) "
        "was mixed into the per-sample values. Also a loss whose per-sample values depend on the "
        "batch size, such as a division by the batch size, which Keras then repeats.",
        why="The loss of a sample then depends on which samples share its batch, so results "
        "change with the batch size and shuffling. Some losses do this on purpose (triplet or "
        "contrastive losses): suppress it there with `# lossdiag: ignore[LD105]`.",
        example="from keras import ops\n\ndef normalised_by_batch(y_true, y_pred):\n"
        "    se = ops.mean(ops.square(y_true - y_pred), axis=-1)\n"
        "    return se / ops.mean(se)\n",
        use_instead="from keras import ops\n\ndef per_sample_mse(y_true, y_pred):\n"
        "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD201",
        name="nonfinite",
        severity="warning",
        summary="NaN or inf when a prediction is exactly 0 or 1",
        what="Reports a loss that returns NaN or inf for predictions exactly at the boundary of "
        "the probability range, e.g. `log(y_pred)` without clipping.",
        why="Sigmoid and softmax outputs saturate to exactly 0 or 1 in float32. One such "
        "prediction makes the loss NaN and training diverges, often hours in.",
        example="from keras import ops\n\ndef unclipped_log(y_true, y_pred):\n"
        "    return -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred), axis=-1)\n",
        use_instead="from keras import ops\n\ndef clipped_log(y_true, y_pred):\n"
        "    y_pred = ops.clip(y_pred, 1e-7, 1 - 1e-7)\n"
        "    return -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred), axis=-1)\n",
    ),
    Rule(
        code="LD202",
        name="no-gradient",
        severity="warning",
        summary="the gradient with respect to y_pred is None or zero everywhere",
        what="Reports a loss through which no gradient flows back to the predictions: an "
        "operation such as `round`, `argmax`, `cast` to an integer, or `stop_gradient` cut it.",
        why="The optimiser gets no signal from this loss: the model does not learn from it, or "
        "Keras raises 'No gradients provided for any variable' late in a run. Metrics are never "
        "differentiated, so this rule never applies to one.",
        example="from keras import ops\n\ndef rounded_prediction(y_true, y_pred):\n"
        "    return ops.mean(ops.abs(y_true - ops.round(y_pred)), axis=-1)\n",
        use_instead="from keras import ops\n\ndef absolute_error(y_true, y_pred):\n"
        "    return ops.mean(ops.abs(y_true - y_pred), axis=-1)\n",
    ),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _CATALOGUE}
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in _CATALOGUE}


def lookup(code_or_name: str) -> Rule | None:
    """A rule by its code (`LD101`, any case) or its name (`batch-sum`)."""
    return RULES.get(code_or_name.upper()) or RULES_BY_NAME.get(code_or_name.lower())


def rule_doc_markdown(rule: Rule) -> str:
    """The rule's documentation in ruff's shape, as Markdown (for `lossdiag rule`, SARIF help)."""
    return (
        f"# {rule.code} {rule.name} ({rule.severity})\n\n"
        f"{rule.summary[0].upper() + rule.summary[1:]}.\n\n"
        f"## What it does\n\n{rule.what}\n\n"
        f"## Why is this bad?\n\n{rule.why}\n\n"
        f"## Example\n\n```python\n{rule.example}```\n\n"
        f"Use instead:\n\n```{'toml' if rule.use_instead.startswith('# pyproject.toml') else 'python'}\n"
        f"{rule.use_instead}```\n"
    )
