"""``sw/driver.py``: the golden backend over a whole network, host ops, and the packed-stream check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sw.config import AccelConfig
from sw import driver, golden, model_import, pack

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits" / "digits.npz"
CFG = AccelConfig(c_max=16, k_max=32, w_max=8, wmem_depth=128)


@pytest.fixture(scope="module")
def model():
    return model_import.load_npz(EXAMPLE)


def test_network_equals_layer_by_layer_golden(model, rng):
    images = rng.random((3, 1, 8, 8))
    layers = driver.device_layers(model, CFG)
    got = driver.golden_predict(model, images, CFG, layers)
    assert got.shape == (3, 10)
    for img, out in zip(images, got):
        x = driver.quantize_input(img, layers["conv1"].qlayer.in_scale, CFG)
        x = golden.conv_layer(x, layers["conv1"].qlayer, CFG)
        x = golden.conv_layer(x, layers["conv2"].qlayer, CFG)      # same scale: integers chain
        real = x * layers["conv2"].qlayer.out_scale
        C, H, W = real.shape
        pooled = real.reshape(C, H // 2, 2, W // 2, 2).max(axis=(2, 4)).reshape(-1)
        fc = model.layers[-1].arrays
        np.testing.assert_array_equal(out, fc["weight"] @ pooled + fc["bias"])


def test_records_are_the_packers(model, tmp_path):
    pack.pack_model(EXAMPLE, tmp_path / "p", CFG)
    stream = (tmp_path / "p" / pack.BIN_NAME).read_bytes()
    layers = driver.device_layers(model, CFG, stream, source="weights.bin")
    joined = b"".join(rec for d in layers.values() for rec in d.records)
    assert stream.endswith(joined)
    assert [d.index for d in layers.values()] == [0, 1]


def test_stream_of_another_config_is_refused(model, tmp_path):
    other = AccelConfig(c_max=16, k_max=32, w_max=8, wmem_depth=128, lanes=2)
    pack.pack_model(EXAMPLE, tmp_path / "p", other)
    stream = (tmp_path / "p" / pack.BIN_NAME).read_bytes()
    with pytest.raises(driver.DriverError,
                       match=r"^weights\.bin: .*was it packed for another configuration\?"):
        driver.device_layers(model, CFG, stream, source="weights.bin")


def test_stream_of_other_weights_is_refused(model, tmp_path):
    pack.pack_model(EXAMPLE, tmp_path / "p", CFG, prune="winograd", density=0.1)
    stream = (tmp_path / "p" / pack.BIN_NAME).read_bytes()
    with pytest.raises(driver.DriverError,
                       match=r"^weights\.bin: layer conv1 pass 0: the packed weights differ"):
        driver.device_layers(model, CFG, stream, source="weights.bin")


def test_truncated_stream_names_the_source(model, tmp_path):
    pack.pack_model(EXAMPLE, tmp_path / "p", CFG)
    stream = (tmp_path / "p" / pack.BIN_NAME).read_bytes()
    with pytest.raises(driver.DriverError, match=r"^w\.bin: truncated"):
        driver.device_layers(model, CFG, stream[:-3], source="w.bin")


def test_host_ops():
    x = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    pool = model_import.HostLayer("p", "maxpool", ("a",), "b", {"kernel_shape": [2, 2]})
    np.testing.assert_array_equal(driver.host_op(pool, x), [[[5, 7], [13, 15]],
                                                             [[21, 23], [29, 31]]])
    avg = model_import.HostLayer("p", "avgpool", ("a",), "b", {"kernel_shape": [2, 2]})
    assert driver.host_op(avg, x)[0, 0, 0] == 2.5
    relu = model_import.HostLayer("r", "relu", ("a",), "b")
    assert driver.host_op(relu, x - 10).min() == 0
    bad = model_import.HostLayer("s", "maxpool", ("a",), "b",
                                 {"kernel_shape": [2, 2], "strides": [1, 1]})
    with pytest.raises(ValueError, match="layer s: maxpool with stride 1 != kernel 2"):
        driver.host_op(bad, x)
    with pytest.raises(ValueError, match="layer q: host op 'softmax' is not supported"):
        driver.host_op(model_import.HostLayer("q", "softmax", ("a",), "b"), x)


def test_quantize_input_rounds_and_clamps():
    got = driver.quantize_input(np.array([-3.0, -0.26, 0.25, 0.5, 9.0]), 0.5, CFG)
    np.testing.assert_array_equal(got, [-6, -1, 0, 1, 18])
    assert driver.quantize_input(np.array([1e6, -1e6]), 1.0, CFG).tolist() == [127, -128]


def test_run_sync_refuses_a_suspending_coroutine():
    class Suspends:
        def __await__(self):
            yield

    async def coro():
        await Suspends()

    with pytest.raises(RuntimeError, match="only the golden backend runs without a simulator"):
        driver.run_sync(coro())
