"""``sw/driver.py``: the golden backend over a whole network, host ops, the packed-stream check,
and the device backend's register sequence on a model of the accelerator behind its transport."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sw.config import AccelConfig
from sw import driver, formats, golden, model_import, pack, regmap

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
    # One sample, no batch axis; ONNX semantics (a pool's strides default to 1, not the kernel).
    x = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    pool = model_import.HostLayer("p", "maxpool", ("a",), "b",
                                  {"kernel_shape": [2, 2], "strides": [2, 2]})
    np.testing.assert_array_equal(driver.host_op(pool, x), [[[5, 7], [13, 15]],
                                                             [[21, 23], [29, 31]]])
    avg = model_import.HostLayer("p", "avgpool", ("a",), "b",
                                 {"kernel_shape": [2, 2], "strides": [2, 2]})
    assert driver.host_op(avg, x)[0, 0, 0] == 2.5
    stride1 = model_import.HostLayer("s", "maxpool", ("a",), "b", {"kernel_shape": [2, 2]})
    assert driver.host_op(stride1, x).shape == (2, 3, 3)
    relu = model_import.HostLayer("r", "relu", ("a",), "b")
    assert driver.host_op(relu, x - 10).min() == 0
    flat = model_import.HostLayer("f", "flatten", ("a",), "b", {"axis": 1})
    assert driver.host_op(flat, x).shape == (32,)
    with pytest.raises(ValueError, match=r"layer q: host op 'sigmoid' is not supported"):
        driver.host_op(model_import.HostLayer("q", "sigmoid", ("a",), "b"), x)
    bad = model_import.HostLayer("r", "reshape", ("a",), "b", {}, {"shape": np.array([-1])})
    with pytest.raises(ValueError, match=r"layer r \(reshape\): shape \[-1\] turns the batch"):
        driver.host_op(bad, x)


def test_device_layers_needs_scales_and_a_chain(model):
    bare = dataclasses.replace(model, layers=[dataclasses.replace(layer, in_scale=None)
                                              if layer.kind == "accel" else layer
                                              for layer in model.layers])
    with pytest.raises(driver.DriverError, match=r"^layer conv1: no in_scale: the model carries "
                       r"no calibration"):
        driver.device_layers(bare, CFG)
    fork = dataclasses.replace(model, layers=[
        *model.layers[:-1], dataclasses.replace(model.layers[-1], inputs=("conv2",))])
    with pytest.raises(driver.DriverError, match=r"^layer fc: reads 'conv2', not only the "
                       r"previous layer's output 'flatten' \(a branch"):
        driver.device_layers(fork, CFG)


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


#: wmem_depth 16 splits conv2 (16 → 32) into four passes of eight output channels.
MULTIPASS = AccelConfig(c_max=16, k_max=32, w_max=8, wmem_depth=16)
#: What the model's CYCLES register reads after every run.
RUN_CYCLES = 1234


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >> 31 else value


class ModelTransport:
    """The accelerator behind :class:`sw.driver.Transport`, on the golden model.

    Registers live in a dict; a weight record selects its (layer, pass); a START with AWAIT
    waits for the next record (checked then: one for another shape sets BAD_CONFIG and is
    not taken); a run returns
    :func:`sw.golden.conv_layer` of the input for the shape, padding, ReLU modes and
    quantisation entries the driver wrote, so a missing or wrong write changes the outputs.
    Every counter starts just below ``2**32`` and counts one per run, so the driver's deltas
    wrap. The tests set the faults: ``reject`` (the loader rejects records), ``refuse``
    (offsets whose writes answer SLVERR), ``drop`` (output beats missing from the frame),
    ``keepless`` (every ``tkeep`` bit of the output 0) and ``fail`` (STATUS.ERROR after a run).
    """

    def __init__(self, cfg: AccelConfig, layers: dict[str, driver.DeviceLayer]):
        self.cfg = cfg
        self.by_record = {frames: (dev, p) for dev in layers.values()
                          for p, frames in enumerate(dev.frames)}
        self.regs: dict[int, int] = {}
        self.loaded: tuple[driver.DeviceLayer, int] | None = None
        self.records = 0
        self.counter = (1 << 32) - 2
        self.status = 0
        self.reject, self.refuse, self.drop, self.fail = False, set(), 0, False
        self.keepless = False
        self.clears = 0
        self.running: tuple[driver.DeviceLayer, int] | None = None
        self.overlapped = 0             # records sent while a run was streaming
        self.streaming = False

    async def read(self, offset: int) -> int:
        where = regmap.decode(self.cfg, offset)
        if where.register is regmap.STATUS:
            return self.status
        if where.register is regmap.WGT_RECORDS:
            return self.records
        if where.register in (regmap.WGT_CHANNELS, regmap.WGT_KCOUNT):
            return self.loaded_shape()[where.register is regmap.WGT_KCOUNT]
        if where.register is regmap.CYCLES:
            return RUN_CYCLES
        if where.register is regmap.ARRAY_CYCLES or where.register in \
                regmap.PERF_REGISTERS.values():
            return self.counter
        return self.regs[offset]

    async def write(self, offset: int, value: int) -> None:
        assert 0 <= value < 1 << 32
        if offset in self.refuse:
            self.status |= regmap.STATUS_REFUSED
            raise driver.BusError("write", offset, regmap.RESP_SLVERR)
        if offset == regmap.CTRL.offset and value == regmap.CTRL_CLEAR:
            self.status &= ~regmap.STICKY_FLAGS
            self.clears += 1
        elif offset == regmap.CTRL.offset:
            assert value in (regmap.CTRL_START, regmap.CTRL_START | regmap.CTRL_AWAIT)
            waits = value & regmap.CTRL_AWAIT
            c, k = (self.regs[reg.offset] for reg in (regmap.CHANNELS, regmap.KOUT))
            if not waits and regmap.weights_problem(c, k, *self.loaded_shape()) is not None:
                self.status |= regmap.STATUS_BAD_CONFIG
                raise driver.BusError("write", offset, regmap.RESP_SLVERR)
            self.status = regmap.STATUS_BUSY | (self.status & regmap.STICKY_FLAGS)
            # the run reads the record loaded before START, or with AWAIT the next one
            self.running = None if waits else self.loaded
        else:
            self.regs[offset] = value

    def loaded_shape(self) -> tuple[int, int]:
        """WGT_CHANNELS and WGT_KCOUNT: the loaded record's C and k_count (0, 0: none)."""
        if self.loaded is None:
            return 0, 0
        dev, p = self.loaded
        return dev.qlayer.C, dev.packed.passes[p].k_count

    async def send_weights(self, frames: tuple[bytes, ...]) -> None:
        assert len(frames) == self.cfg.weight_ports
        self.overlapped += self.streaming
        if self.reject:
            self.loaded = None
            self.status |= regmap.STATUS_ERROR
        else:
            self.loaded = self.by_record[frames]
            self.records += 1
            if self.status & regmap.STATUS_BUSY and self.running is None:   # awaited
                c, k = (self.regs[reg.offset] for reg in (regmap.CHANNELS, regmap.KOUT))
                if (c, k) == self.loaded_shape():
                    self.running = self.loaded
                else:
                    self.status |= regmap.STATUS_BAD_CONFIG

    async def stream(self, activations: formats.ActivationFrame) -> formats.ActivationFrame:
        assert self.status & regmap.STATUS_BUSY, "input streamed without START"
        while self.running is None:     # a START with AWAIT: its record is still to come
            await asyncio.sleep(0)
        dev, p = self.running
        k_base = dev.packed.passes[p].k_base
        H, W, C, K, pad, relu = (self.regs[reg.offset] for reg in (
            regmap.HEIGHT, regmap.WIDTH, regmap.CHANNELS, regmap.KOUT, regmap.PAD, regmap.RELU))
        x = formats.unpack_activations(activations, C, self.cfg)
        entries = {field: np.array([_signed32(self.regs[regmap.quant_offset(k, field)])
                                    for k in range(K)]) for field in regmap.QUANT_FIELDS}
        ks = slice(k_base, k_base + K)
        q = dataclasses.replace(dev.qlayer, U=dev.qlayer.U[:, ks], w_scale=dev.qlayer.w_scale[ks],
                                pad=pad, winograd_relu=bool(relu & regmap.RELU_WINOGRAD),
                                spatial_relu=bool(relu & regmap.RELU_SPATIAL), **entries)
        trace = golden.conv_layer_trace(x.reshape(H, W, C).transpose(2, 0, 1), q, self.cfg)
        y = trace.out
        frame = formats.pack_activations(y.transpose(1, 2, 0), self.cfg)
        end = len(frame.data) - self.drop * formats.beat_bytes(self.cfg)
        self.counter = (self.counter + 1) % (1 << 32)
        self.status = (regmap.STATUS_DONE | (self.status & regmap.STICKY_FLAGS)
                       | (regmap.STATUS_ERROR if self.fail else 0)
                       | (regmap.STATUS_OVERFLOW if trace.overflow else 0))
        keep = bytes(end) if self.keepless else frame.keep[:end]
        return formats.ActivationFrame(frame.data[:end], keep)

    async def concurrently(self, *calls) -> list:
        """The calls at once (a stream waits for an awaited record); records sent meanwhile
        count as sent during the run."""
        self.streaming = True
        try:
            return list(await asyncio.gather(*calls))
        finally:
            self.streaming = False


def test_device_backend_on_a_model_transport_equals_golden(model, rng):
    images = rng.random((2, 1, 8, 8))
    layers = driver.device_layers(model, MULTIPASS)
    transport = ModelTransport(MULTIPASS, layers)
    seen = []
    backend = driver.DeviceBackend(transport, MULTIPASS,
                                   progress=lambda *args: seen.append(args))
    got = asyncio.run(driver.run_network(model, layers, images, backend))
    np.testing.assert_array_equal(got, driver.golden_predict(model, images, MULTIPASS, layers))
    assert transport.records == 1 + 4
    # every record is sent while a run streams: the network's first during its own run
    # (START with AWAIT), the others during the run before theirs
    assert transport.overlapped == transport.records
    runs = [(name, p, i) for name, dev in layers.items() for p in range(dev.packed.num_passes)
            for i in range(len(images))]
    assert [(s["layer"], s["pass"], s["image"]) for s in backend.stats] == runs
    assert [(name, p, i + 1, len(images)) for name, p, i in runs] == seen
    for s in backend.stats:     # counter deltas across the 32-bit wrap
        assert s["cycles"] == RUN_CYCLES and s["array_cycles"] == 1
        assert all(s[field] == 1 for field in regmap.PERF_COUNTERS)
        assert s["overflow"] is False
    assert transport.clears == len(runs)


def test_overflow_is_reported_per_run_after_a_clear(model, rng):
    """Each run's STATUS.OVERFLOW, read after that run alone (the driver clears the sticky
    flags first), is the golden flag: acc_bits 15 wraps the digits model's largest sums (about
    2**15.5), 18 holds them."""
    images = rng.random((2, 1, 8, 8))
    seen = set()
    for acc_bits in (15, 18):
        cfg = dataclasses.replace(CFG, acc_bits=acc_bits)
        layers = driver.device_layers(model, cfg)
        transport = ModelTransport(cfg, layers)
        transport.status = regmap.STATUS_OVERFLOW | regmap.STATUS_ERROR   # an earlier run's
        backend = driver.DeviceBackend(transport, cfg)
        asyncio.run(driver.run_network(model, layers, images, backend))
        want = []
        for i, image in enumerate(images):
            x = driver.quantize_input(image, layers["conv1"].qlayer.in_scale, cfg)
            for name in ("conv1", "conv2"):
                trace = golden.conv_layer_trace(x, layers[name].qlayer, cfg)
                want.append((name, i, trace.overflow))
                x = trace.out
        assert sorted((s["layer"], s["image"], s["overflow"]) for s in backend.stats) \
            == sorted(want)
        seen |= {flag for _, _, flag in want}
    assert seen == {False, True}


def _conv1_fault(model, **fault):
    layers = driver.device_layers(model, CFG)
    transport = ModelTransport(CFG, layers)
    for name, value in fault.items():
        setattr(transport, name, value)
    backend = driver.DeviceBackend(transport, CFG)
    x = driver.quantize_input(np.ones((1, 8, 8)), layers["conv1"].qlayer.in_scale, CFG)
    asyncio.run(backend.conv(layers["conv1"], [x]))


@pytest.mark.parametrize("fault, message", [
    ({"reject": True},
     r"^layer conv1 pass 0: the weight loader rejected the record \(STATUS 0x5\)$"),
    ({"refuse": {regmap.KOUT.offset}},
     r"^layer conv1 KOUT: register write at 0x1c answered SLVERR \(STATUS 0x10\)$"),
    ({"refuse": {regmap.quant_offset(3, "shift")}},
     r"^layer conv1 quant\[3\]: register write at 0x1038 answered SLVERR \(STATUS 0x10\)$"),
    ({"drop": 1}, r"^layer conv1 pass 0: 127 output beats, expected 128$"),
    ({"keepless": True}, r"^layer conv1 pass 0: activation frame: pixel 0 byte 0 has tkeep 0, "
                         r"expected 1 \(16 channels in beats of 8\)$"),
    ({"fail": True}, r"^layer conv1 pass 0: STATUS\.ERROR after the run \(STATUS 0x6\)$"),
])
def test_device_backend_names_layer_and_step(model, fault, message):
    with pytest.raises(driver.DriverError, match=message):
        _conv1_fault(model, **fault)


def test_device_backend_refuses_a_shape_before_start(model):
    layers = driver.device_layers(model, CFG)
    transport = ModelTransport(CFG, layers)
    backend = driver.DeviceBackend(transport, CFG)
    with pytest.raises(driver.DriverError, match=r"^layer conv1: WIDTH=9 is out of range; "
                                                 r"this accelerator takes 1\.\.8$"):
        asyncio.run(backend.conv(layers["conv1"], [np.zeros((1, 8, 9), dtype=np.int64)]))
    assert not transport.status & regmap.STATUS_BUSY, "START was written"


def test_device_backend_refuses_weights_of_another_shape(model):
    """The loader reports a preloaded record that is not the pass's (here: another
    input-channel count): a DriverError naming the layer and the WGT_* problem, and no START
    written for that layer."""
    layers = driver.device_layers(model, CFG)
    transport = ModelTransport(CFG, layers)
    conv1, conv2 = layers["conv1"], layers["conv2"]
    honest = transport.loaded_shape

    def lying():        # conv2's record (loaded during conv1's run) reads as another C
        c, k = honest()
        return (c + 1, k) if transport.loaded and transport.loaded[0] is conv2 else (c, k)

    transport.loaded_shape = lying
    backend = driver.DeviceBackend(transport, CFG)
    backend.plan([conv1, conv2])
    x1 = np.zeros((conv1.qlayer.C, 8, 8), dtype=np.int64)
    (y1,) = asyncio.run(backend.conv(conv1, [x1]))
    c = conv2.qlayer.C
    with pytest.raises(driver.DriverError, match=(
            rf"^layer conv2: CHANNELS={c} but the loaded weight record is for {c + 1} input "
            r"channels \(WGT_CHANNELS\)$")):
        asyncio.run(backend.conv(conv2, [y1]))
    assert not transport.status & regmap.STATUS_BUSY, "START was written"


def test_device_backend_reports_an_awaited_record_of_another_shape(model):
    """The record sent with a START that has AWAIT is checked when it is in: one for another
    input-channel count sets BAD_CONFIG (the run waits on), and the driver names the layer and
    pass."""
    layers = driver.device_layers(model, CFG)
    transport = ModelTransport(CFG, layers)
    layer = layers["conv1"]
    c = layer.qlayer.C
    transport.loaded_shape = lambda: (c + 1, layer.packed.passes[0].k_count)
    backend = driver.DeviceBackend(transport, CFG)
    with pytest.raises(driver.DriverError, match=(
            r"^layer conv1 pass 0: the awaited weight record is not for CHANNELS and KOUT "
            r"\(STATUS 0x21\)$")):
        asyncio.run(backend.conv(layer, [np.zeros((c, 6, 6), dtype=np.int64)]))


def test_bus_error_is_a_driver_error():
    err = driver.BusError("read", regmap.UNMAPPED_EXAMPLE, regmap.RESP_SLVERR)
    assert isinstance(err, driver.DriverError)
    assert (err.access, err.offset, err.resp) == ("read", 0xFFC, 2)
    assert str(err) == "register read at 0xffc answered SLVERR"


def test_onnx_import_runs_after_calibration(tmp_path):
    """An ONNX chain with host convolutions, pooling and a classifier: refused without scales,
    then, calibrated, the golden int8 run tracks the float run of the same model."""
    rng = np.random.default_rng(2024)
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from sw import host_ops

    def init(name, shape, scale=1.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3]),
             helper.make_node("LeakyRelu", ["c2"], ["a2"], name="leaky", alpha=0.1),
             helper.make_node("Conv", ["a2", "w3"], ["c3"], name="down", kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c3"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2], ceil_mode=1),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", alpha=0.5)]
    inits = [init("w1", (8, 1, 3, 3), 0.5), init("b1", (8,), 0.1), init("w2", (8, 8, 3, 3), 0.2),
             init("w3", (4, 8, 3, 3), 0.2), init("fw", (16, 10)), init("fb", (10,))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = model_import.load_model(path)
    with pytest.raises(driver.DriverError, match=r"^layer conv1: no in_scale or out_scale: "):
        driver.device_layers(model, CFG)
    images = rng.random((6, 1, 8, 8))
    host_ops.calibrate(model, images)
    want = host_ops.run_float(model, images)
    got = driver.golden_predict(model, images, CFG)
    assert got.shape == want.shape == (6, 10)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_record_ahead_is_the_next_pass_then_the_next_layer(model):
    layers = list(driver.device_layers(model, MULTIPASS).values())
    first, second = layers
    last = second.packed.num_passes - 1
    assert last > 0
    assert driver.record_ahead(second, 0, None) == (second, 1)
    assert driver.record_ahead(second, last, None) is None
    assert driver.record_ahead(first, first.packed.num_passes - 1, second) == (second, 0)
