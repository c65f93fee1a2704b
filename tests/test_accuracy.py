"""F(4,3) against onnxruntime on a real trained CNN (tests/data/mnist_cnn.onnx, docs/golden.md).

The fixture is a spatially trained 3-conv MNIST network with BatchNorm folded at import. With
8-bit Winograd-domain weights F(4,3) loses it; with :data:`sw.quant.RECOMMENDED_WGT_BITS` every
accelerator layer must stay as close to onnxruntime as F(2,3) does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from sw import accuracy, model_import, quant
from sw.config import AccelConfig

DATA = Path(__file__).resolve().parent / "data"
MODEL = DATA / accuracy.FIXTURE_MODEL
IMAGES = 40


@pytest.fixture(scope="module")
def images():
    data = accuracy.load_images(DATA / accuracy.FIXTURE_IMAGES)
    test = data["test"][:IMAGES]
    return data["calibration"], test, data["test_labels"][:IMAGES], \
        accuracy.reference_tensors(MODEL, test)


def run(images, **cfg) -> accuracy.Measurement:
    calibration, test, labels, reference = images
    return accuracy.measure(MODEL, calibration, test, AccelConfig(**cfg), labels, reference)


@pytest.mark.parametrize("tile", sorted(quant.RECOMMENDED_WGT_BITS))
def test_recommended_width_keeps_every_layer_close_to_onnxruntime(images, tile):
    result = run(images, tile=tile, wgt_bits=quant.RECOMMENDED_WGT_BITS[tile])
    assert len(result.chained) == 3
    for err in result.chained + result.isolated:
        assert err.correlation >= 0.99, err
        assert err.mean_steps <= 1.0, err
    assert result.golden_accuracy >= result.onnxruntime_accuracy - 0.05
    assert result.problems == ()


def test_tile4_with_int8_weights_loses_the_network(images):
    """What the recommended width fixes: the fixture does exercise the F(4,3) loss."""
    result = run(images, tile=4, wgt_bits=8)
    assert result.chained[-1].correlation < 0.8
    assert result.golden_accuracy < result.onnxruntime_accuracy - 0.2
    assert len(result.problems) == 3
    assert all("--wgt-bits 12" in p for p in result.problems)


def test_accelerator_outputs_map_to_the_folded_relu():
    """Each conv's output is compared with onnxruntime's tensor after its BatchNorm and ReLU."""
    graph = onnx.load(str(MODEL)).graph
    model = model_import.load_onnx(MODEL)
    names = accuracy.onnx_tensor_names(graph, model)
    producer = {node.output[0]: node.op_type for node in graph.node}
    assert [producer[names[layer.output]] for layer in model.accel_layers] == ["Relu"] * 3


def test_layer_error_in_output_steps():
    got = np.array([[0, 2, 4, -3]])
    reference = np.array([[0.0, 1.0, 2.5, -1.5]])               # out_scale 0.5: 0, 2, 5, -3
    err = accuracy.layer_error("c", got, reference, 0.5)
    assert err.max_steps == 1.0 and err.mean_steps == 0.25
    assert 0.95 < err.correlation < 1.0
    assert accuracy.layer_error("c", np.zeros((1, 3)), np.zeros((1, 3)), 1.0).correlation == 1.0
    with pytest.raises(ValueError, match="layer c: golden output"):
        accuracy.layer_error("c", np.zeros((2, 3)), np.zeros((3, 2)), 1.0)


def test_precision_problem_judges_spatial_weights_only():
    spatial = np.ones((2, 3, 3, 3))
    assert quant.precision_problem(spatial, AccelConfig(tile=2)) is None
    assert quant.precision_problem(spatial, AccelConfig(tile=4, wgt_bits=12)) is None
    message = quant.precision_problem(spatial, AccelConfig(tile=4), "conv3")
    assert message.startswith("layer conv3: spatial weights at F(4,3) with 8-bit")
    assert quant.precision_problem(np.ones((36, 2, 3)), AccelConfig(tile=4)) is None


def test_cli_writes_the_table_and_json(tmp_path, capsys):
    out = tmp_path / "acc.json"
    assert accuracy.main(["measure", str(MODEL), "--images", str(DATA / accuracy.FIXTURE_IMAGES),
                          "--count", "4", "--tile", "4", "--wgt-bits", "8", "12",
                          "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| F(4,3) | 12 |" in captured.out and "| F(4,3) | 8 |" in captured.out
    assert captured.err.count("note: layer") == 3                 # the 8-bit run's three layers
    figures = json.loads(out.read_text())
    assert [(f["tile"], f["wgt_bits"]) for f in figures] == [(4, 8), (4, 12)]
    assert len(figures[1]["chained"]) == 3


def test_cli_refuses_an_impossible_width(capsys):
    assert accuracy.main(["measure", str(MODEL), "--images", str(DATA / accuracy.FIXTURE_IMAGES),
                          "--count", "1", "--tile", "4", "--wgt-bits", "20"]) == 2
    assert "AccelConfig.wgt_bits: 20 is not allowed" in capsys.readouterr().err


@pytest.mark.slow
def test_make_fixture_writes_an_importable_model(tmp_path):
    pytest.importorskip("torch")
    model_file, images_file = accuracy.make_fixture(tmp_path, epochs=1, images=8)
    model = model_import.load_onnx(model_file)
    assert [layer.pad for layer in model.accel_layers] == [0, 1, 0]
    assert all(layer.spatial_relu for layer in model.accel_layers)
    data = accuracy.load_images(images_file)
    assert data["test"].shape == (8, 1, 28, 28) and data["test_labels"].shape == (8,)
    assert 0.0 <= data["test"].min() and data["test"].max() <= 1.0
    # Training flushes subnormals to zero process-wide; the tests after this one need them.
    assert np.finfo(np.float64).smallest_subnormal * np.float64(1.0) > 0
