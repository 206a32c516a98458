"""No probe allocates more than about 100 MB: a pairing of every pixel with every other is abandoned early."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from conftest import cli_env, write

PAIRING = """\
from keras import ops


def mask_contrastive(y_true, y_pred):
    t = ops.reshape(y_true, (-1,))  # every pixel of the batch...
    p = ops.reshape(y_pred, (-1, 1))
    return ops.mean(ops.square(t - p))  # ...against every other: (B*H*W, B*H*W)


def mask_mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=[1, 2, 3])
"""

# Runs lossdiag and prints the peak resident set of its largest process (the worker), in KiB.
PEAK = textwrap.dedent(
    """\
    import json, resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                      "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
    """
)


def _peak(args: list[str], cwd) -> dict:
    import subprocess

    proc = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "lossdiag", *args],
                          cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=600)
    return json.loads(proc.stdout)


@pytest.mark.tf
def test_a_pixel_pairing_on_images_is_abandoned_before_it_allocates(tmp_path):
    write(tmp_path / "losses.py", PAIRING)
    write(tmp_path / "plain.py", "from keras import ops\n\n\ndef mask_mse(y_true, y_pred):\n"
                                 "    return ops.mean(ops.square(y_true - y_pred), axis=[1, 2, 3])\n")
    pinned = "mask_contrastive=y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"
    floor = _peak(["check", "plain.py", "--format", "json"], tmp_path)
    run = _peak(["check", "losses.py", "--format", "json", "--probe", pinned], tmp_path)
    data = json.loads(run["out"])
    result = {r["name"]: r for r in data["results"]}["mask_contrastive"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002" and "MB tensor" in finding["message"], finding
    assert run["peak_kb"] - floor["peak_kb"] < 300 * 1024, (run["peak_kb"], floor["peak_kb"])
    zero_config = json.loads(_peak(["check", "losses.py", "--format", "json"], tmp_path)["out"])
    verdicts = {r["name"]: [f["code"] for f in r["findings"]] for r in zero_config["results"]}
    assert verdicts == {"mask_contrastive": ["LD104"], "mask_mse": []}


RAISES_AFTER = """\
from keras import ops


def pixel_pairs_then_wrong_axes(y_true, y_pred):
    t = ops.reshape(y_true, (-1,))
    p = ops.reshape(y_pred, (-1,))
    diff = ops.expand_dims(t, 0) - ops.expand_dims(p, 1)  # (B*H*W, B*H*W) ...
    return ops.mean(ops.square(diff), axis=[1, 2, 3])  # ... then it raises: a rank-2 tensor has no axis 3
"""


@pytest.mark.tf
def test_a_pairing_built_before_the_loss_raises_is_abandoned_too(tmp_path):
    """The estimate reads the ops the loss built before it failed: a loss that cannot be traced whole
    still never gets to allocate its pairing."""
    write(tmp_path / "losses.py", RAISES_AFTER)
    write(tmp_path / "plain.py", "from keras import ops\n\n\ndef mask_mse(y_true, y_pred):\n"
                                 "    return ops.mean(ops.square(y_true - y_pred), axis=[1, 2, 3])\n")
    pinned = "pixel_pairs_then_wrong_axes=y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"
    floor = _peak(["check", "plain.py", "--format", "json"], tmp_path)
    run = _peak(["check", "losses.py", "--format", "json", "--probe", pinned], tmp_path)
    (result,) = json.loads(run["out"])["results"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002" and "MB tensor" in finding["message"], finding
    assert run["peak_kb"] - floor["peak_kb"] < 300 * 1024, (run["peak_kb"], floor["peak_kb"])
