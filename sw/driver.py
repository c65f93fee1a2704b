"""The host driver: runs a whole network layer by layer, the 3×3 layers on a backend.

A network is a :class:`sw.model_import.Model`: accelerator layers (3×3 stride-1 convolutions)
and host layers (pooling, flatten, fully connected, ...). The driver quantises each accelerator
layer exactly as ``sw/pack.py`` does, packs it with :func:`sw.formats.pack_layer`, and runs the
batch **layer by layer**: every image through layer 1, then every image through layer 2, so each
weight record is loaded once per batch. Host layers run in NumPy on the dequantised outputs.

Two backends share one interface, ``await backend.conv(layer, xs) -> ys``:

- :class:`GoldenBackend`, the bit-exact NumPy model (:func:`sw.golden.conv_layer`);
- :class:`DeviceBackend`, the accelerator itself: the register sequence of a run (write the
  quantisation entries and the shape, START, stream, wait for DONE, read the counters; a
  record not loaded yet loads during its pass's first run, started with CTRL.AWAIT, and the
  next pass's record while the current pass's last image runs),
  written against a :class:`Transport`, five calls that reach the accelerator's AXI4-Lite
  registers and its AXI4-Stream ports and run two of them at once. The cocotb transport on the
  generated Verilog is :class:`verif.axi_transport.AxiTransport`; a board would implement the
  same calls with ``mmap`` on the register window and DMA on the streams.

The interface is ``async`` so a transport can await a simulator or a DMA completion;
:func:`run_sync` runs a network on the golden backend without an event loop.

This module is the bottom layer: it imports neither the hardware generator nor cocotb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from sw import regmap
from sw.config import AccelConfig
from sw import formats, golden, host_ops, model_import, quant, winograd

__all__ = ["DeviceLayer", "device_layers", "host_op", "quantize_input", "run_network",
           "run_sync", "golden_predict", "GoldenBackend", "Transport", "DeviceBackend",
           "DriverError", "BusError", "record_ahead"]

#: Names of the AXI response codes, for messages.
_RESP_NAMES = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}


class DriverError(RuntimeError):
    """The accelerator refused or failed a step; the message names the layer and the step."""


class BusError(DriverError):
    """A register access was answered with an error response (a :class:`Transport` raises it).

    Parameters
    ----------
    access : str
        ``"read"`` or ``"write"``.
    offset : int
        Byte offset of the register.
    resp : int
        The AXI response code (:data:`sw.regmap.RESP_SLVERR` for a refusal or an unmapped
        address).
    """

    def __init__(self, access: str, offset: int, resp: int):
        self.access, self.offset, self.resp = access, offset, resp
        super().__init__(f"register {access} at {offset:#x} answered "
                         f"{_RESP_NAMES.get(resp, resp)}")


@dataclass(frozen=True)
class DeviceLayer:
    """One accelerator layer as the hardware sees it.

    Attributes
    ----------
    index : int
        Position among the model's accelerator layers (the ``layer`` field of its stream
        records).
    qlayer : sw.quant.QuantLayer
        Integer weights, bias, multiplier, shift, padding and ReLU modes.
    packed : sw.formats.PackedLayer
        The on-chip image: one :class:`sw.formats.PassImage` per pass over output channels.
    records : tuple of bytes
        Per pass, its weight-load record (:func:`sw.formats.encode_record`), as the packer's
        stream holds it.
    frames : tuple of tuple of bytes
        Per pass, the record as the host sends it: one frame per weight-load port
        (:func:`sw.formats.record_frames`; with one port, the record itself).
    """

    index: int
    qlayer: quant.QuantLayer
    packed: formats.PackedLayer
    records: tuple[bytes, ...]
    frames: tuple[tuple[bytes, ...], ...]

    @property
    def name(self) -> str:
        return self.qlayer.name

    @classmethod
    def of(cls, index: int, qlayer: quant.QuantLayer, packed: formats.PackedLayer,
           cfg: AccelConfig) -> "DeviceLayer":
        """The layer with its records and frames encoded from ``packed``."""
        return cls(index, qlayer, packed,
                   tuple(formats.encode_record(index, im, cfg) for im in packed.passes),
                   tuple(formats.record_frames(index, im, cfg) for im in packed.passes))


def device_layers(model: model_import.Model, cfg: AccelConfig,
                  stream: bytes | None = None, source: str = "stream") -> dict[str, DeviceLayer]:
    """Quantise and pack every accelerator layer of ``model`` for ``cfg``.

    With ``stream`` (the packer's ``weights.bin``), the records come from it instead, after a
    check that they are byte for byte what this driver would pack, so a run proves the
    packer's output, not a second copy of it.

    Raises
    ------
    DriverError
        The model is not a chain of layers (:func:`sw.host_ops.chain_problem`), an accelerator
        layer has no ``in_scale``/``out_scale``, or ``stream`` does not decode for ``cfg`` or
        disagrees with the model (another model, pruning or configuration).
    """
    problem = host_ops.chain_problem(model)
    if problem:
        raise DriverError(problem)
    layers = {}
    for index, layer in enumerate(model.accel_layers):
        missing = [k for k in ("in_scale", "out_scale") if getattr(layer, k) is None]
        if missing:
            raise DriverError(f"layer {layer.name}: no {' or '.join(missing)}: the model carries "
                              "no calibration (an ONNX or PyTorch import); set the scales "
                              "first, e.g. sw.host_ops.calibrate(model, images)")
        q = quant.quantize_layer(layer.weight, layer.bias, layer.in_scale, layer.out_scale, cfg,
                                 name=layer.name, pad=layer.pad,
                                 winograd_relu=layer.winograd_relu,
                                 spatial_relu=layer.spatial_relu)
        packed = formats.pack_layer(q.U, cfg, name=layer.name)
        layers[layer.name] = DeviceLayer.of(index, q, packed, cfg)
    if stream is not None:
        try:
            given = formats.split_stream(stream, cfg, source)
        except formats.FormatError as err:
            raise DriverError(f"{err} (was it packed for another configuration?)") from None
        expected = [(d.index, p, rec) for d in layers.values() for p, rec in enumerate(d.records)]
        if [(li, p) for li, p, _ in given] != [(li, p) for li, p, _ in expected]:
            raise DriverError(f"{source}: records {[(li, p) for li, p, _ in given]} do not "
                              f"match the model's layers and passes "
                              f"{[(li, p) for li, p, _ in expected]}")
        for (li, p, rec), (_, _, mine) in zip(given, expected):
            if rec != mine:
                name = model.accel_layers[li].name
                raise DriverError(f"{source}: layer {name} pass {p}: the packed weights differ "
                                  "from this model quantised for this configuration")
    return layers


def quantize_input(image: np.ndarray, scale: float, cfg: AccelConfig) -> np.ndarray:
    """Real-valued ``image`` to the integer activation grid of ``scale`` (round, clamp)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) / scale),
                   *cfg.act_range).astype(np.int64)


def host_op(layer: model_import.HostLayer, x: np.ndarray) -> np.ndarray:
    """Run one host layer on one real-valued sample (no batch axis).

    The op is :func:`sw.host_ops.evaluate` (ONNX semantics) on a batch of one.

    Raises
    ------
    sw.host_ops.HostOpError
        A ``ValueError`` naming the layer and the op.
    """
    return host_ops.evaluate(layer, [np.asarray(x, dtype=np.float64)[None]])[0]


async def run_network(model: model_import.Model, layers: dict[str, DeviceLayer],
                      images: np.ndarray, backend,
                      progress: Callable[[str, int, int], None] | None = None) -> np.ndarray:
    """Run ``images`` (real-valued, ``[N, C, H, W]``) through ``model``; the final outputs.

    Accelerator layers go to ``backend`` as one batch each; a backend with a ``plan`` method
    (:meth:`DeviceBackend.plan`) is first given their order. An accelerator layer takes the
    integer output of the accelerator layer before it unchanged when its ``in_scale`` is that
    layer's ``out_scale`` (as the hardware chains layers); otherwise the host quantises the
    real-valued tensor to its ``in_scale`` (the first layer, and after host layers).

    ``progress(layer_name, done, total)`` is called after each layer.
    """
    cfg = backend.cfg
    plan = getattr(backend, "plan", None)
    if plan is not None:        # so a layer's first record can load during the one before
        plan([layers[layer.name] for layer in model.layers if layer.kind == "accel"])
    real = [np.asarray(img, dtype=np.float64) for img in images]
    xs, scale = None, None
    for li, layer in enumerate(model.layers):
        if layer.kind == "accel":
            dev = layers[layer.name]
            if xs is None or scale != dev.qlayer.in_scale:
                xs = [quantize_input(r, dev.qlayer.in_scale, cfg) for r in real]
            xs = await backend.conv(dev, xs)
            scale = dev.qlayer.out_scale
            real = [x * scale for x in xs]
        else:
            real = [host_op(layer, r) for r in real]
            xs = None
        if progress is not None:
            progress(layer.name, li + 1, len(model.layers))
    return np.stack(real)


def record_ahead(layer: DeviceLayer, p: int,
                 following: DeviceLayer | None) -> tuple[DeviceLayer, int] | None:
    """The record to send while pass ``p`` of ``layer`` runs its last image, as ``(layer,
    pass)``: the layer's next pass, or after its last pass the first of ``following`` (None:
    none). The accelerator loads it beside the running pass (:class:`hw.weight_ring.WeightRing`)."""
    if p + 1 < layer.packed.num_passes:
        return layer, p + 1
    return None if following is None else (following, 0)


def run_sync(coro):
    """Run a coroutine that never suspends (a network on :class:`GoldenBackend`)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the coroutine suspended; only the golden backend runs without a "
                       "simulator")


class GoldenBackend:
    """The bit-exact NumPy model of the accelerator.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator being modelled.
    """

    name = "golden"

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg

    async def conv(self, layer: DeviceLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
        """``[C, H, W]`` integer inputs → ``[K, out_h, out_w]`` integer outputs."""
        return [golden.conv_layer(x, layer.qlayer, self.cfg) for x in xs]


class Transport(Protocol):
    """How :class:`DeviceBackend` reaches the accelerator: five awaitable calls.

    Registers are the 32-bit words of :mod:`sw.regmap` on ``s_axi``, at byte offsets; a register
    access the accelerator answers with an error response raises :class:`BusError`. Weight
    records go to ``s_axis_wgt``, activations to ``s_axis_act``, outputs come from
    ``m_axis_out``; a frame is one AXI4-Stream packet (``tlast`` on its final beat). A weight
    record is given as its frames' ``tdata`` bytes, one frame per weight-load port
    (:func:`sw.formats.record_frames`: ``s_axis_wgt``, then ``s_axis_wgt1``, ...); an activation frame as a
    :class:`sw.formats.ActivationFrame`, every beat's ``tdata`` bytes with one ``tkeep`` bit per
    byte (the beat format of :func:`sw.formats.pack_activations`: ``stream_values`` channels of
    one pixel per beat, a pixel's last beat partial).
    """

    async def read(self, offset: int) -> int:
        """The register at ``offset``."""

    async def write(self, offset: int, value: int) -> None:
        """Write ``value`` (``0 <= value < 2**32``) to the register at ``offset``."""

    async def send_weights(self, frames: tuple[bytes, ...]) -> None:
        """Send one weight record, frame ``p`` on weight-load port ``p``, all ports at once;
        return when every frame has gone."""

    async def stream(self, activations: formats.ActivationFrame) -> formats.ActivationFrame:
        """Send ``activations`` as one ``s_axis_act`` frame (``tdata`` and ``tkeep`` of every
        beat) and return the next ``m_axis_out`` frame, the run's outputs, the same way (no
        byte dropped, ``tkeep`` as the accelerator drove it).

        The outputs start before the input has all gone (the accelerator emits a row of tiles
        as soon as its line buffer holds the rows it needs), so the two transfers run at once.
        """

    async def concurrently(self, *calls) -> list:
        """Await the coroutines ``calls`` at once (a run's stream and the next pass's weight
        load) and return their results in order; the first exception raised is raised."""


class DeviceBackend:
    """The accelerator behind a :class:`Transport`: the register sequence of every run.

    Per pass over output channels: write the pass's quantisation entries. Per image: write
    HEIGHT, WIDTH, CHANNELS, KOUT, PAD and RELU, then CTRL.START; stream the input in raster
    order (``y``, ``x``, ``c``) and take the outputs; wait for STATUS.DONE; read the counters.
    A pass's weight record not yet loaded (the network's first, or any with no :meth:`plan`)
    is sent during its first image's run, started with CTRL.AWAIT: the input fills the line
    buffer while the record loads, and the array starts once WGT_RECORDS counts it. The next
    pass's record (or, after a layer's last pass, the first record of the next layer of the
    :meth:`plan`) is sent while the pass's last image runs (:meth:`Transport.concurrently`):
    the accelerator loads it beside the running pass (:class:`hw.weight_ring.WeightRing`), so
    its load is hidden when the two passes' weight words fit the memory together, and
    otherwise ends after the run. Every refusal and error raises :class:`DriverError` naming
    the layer and the step. The sticky flags are cleared (CTRL.CLEAR) before each START.

    Parameters
    ----------
    transport : Transport
        The way to the accelerator (a cocotb simulation, a board).
    cfg : AccelConfig
        The configuration the accelerator was generated from.
    progress : callable, optional
        ``progress(layer_name, pass_index, image_index, images)`` after each image of a pass.

    Attributes
    ----------
    stats : list of dict
        One record per (layer, pass, image): ``layer``, ``pass``, ``image``, ``cycles`` (run
        cycles from START to the final output), ``array_cycles``, and the performance
        counters, each summed over the PEs (the PERF_* registers): ``macs``, ``busy``,
        ``empty_slots``, ``stalls``, ``zeros_skipped`` (deltas over the run),
        and ``overflow``: STATUS.OVERFLOW after the run (some accumulator sum of the pass lay
        outside ``acc_bits``; :func:`sw.golden.accumulator_overflow`).
    """

    name = "device"

    def __init__(self, transport: Transport, cfg: AccelConfig, *,
                 progress: Callable[[str, int, int, int], None] | None = None):
        self.transport, self.cfg, self.progress = transport, cfg, progress
        self.stats: list[dict] = []
        self._order: list[DeviceLayer] = []
        self._preloaded: DeviceLayer | None = None  # its first record went during the last run

    def plan(self, order: list[DeviceLayer]) -> None:
        """The accelerator layers in the order :meth:`conv` will run them (:func:`run_network`
        gives it): each layer's first record is then sent during the last run of the layer
        before it."""
        self._order = list(order)

    def _after(self, layer: DeviceLayer) -> DeviceLayer | None:
        """The layer the plan runs after ``layer`` (None: none, or ``layer`` is not in it)."""
        for i, planned in enumerate(self._order[:-1]):
            if planned is layer:
                return self._order[i + 1]
        return None

    # -- registers ------------------------------------------------------------------------------
    async def write(self, offset: int, value: int, what: str) -> None:
        """Write ``value`` (two's complement when negative) to ``offset``; ``what`` names the
        step in the :class:`DriverError` of a refused write, with STATUS."""
        try:
            await self.transport.write(offset, value & 0xFFFF_FFFF)
        except BusError as err:
            status = await self.transport.read(regmap.STATUS.offset)
            raise DriverError(f"{what}: {err} (STATUS {status:#x})") from None

    async def _counters(self) -> dict[str, int]:
        read = self.transport.read
        values = {"cycles": await read(regmap.CYCLES.offset),
                  "array_cycles": await read(regmap.ARRAY_CYCLES.offset)}
        for field, reg in regmap.PERF_REGISTERS.items():
            values[field] = await read(reg.offset)
        return values

    # -- one layer ---------------------------------------------------------------------------------
    async def load(self, layer: DeviceLayer, p: int, awaited: bool = False) -> None:
        """Send pass ``p``'s weight record and check that the loader took it (and with
        ``awaited``, for the run started with AWAIT just before, that the run took it: no
        BAD_CONFIG, the flags having been cleared before that START)."""
        read = self.transport.read
        before = await read(regmap.WGT_RECORDS.offset)
        await self.transport.send_weights(layer.frames[p])
        while await read(regmap.WGT_RECORDS.offset) == before:
            status = await read(regmap.STATUS.offset)
            if status & regmap.STATUS_ERROR:
                raise DriverError(f"layer {layer.name} pass {p}: the weight loader rejected "
                                  f"the record (STATUS {status:#x})")
        status = 0
        for _ in range(2 if awaited else 0):     # the check follows the count by a few cycles
            status |= await read(regmap.STATUS.offset)
        if status & regmap.STATUS_BAD_CONFIG:
            raise DriverError(f"layer {layer.name} pass {p}: the awaited weight record is not "
                              f"for CHANNELS and KOUT (STATUS {status:#x})")

    async def conv(self, layer: DeviceLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
        """``[C, H, W]`` integer inputs → ``[K, out_h, out_w]`` integer outputs, on the device."""
        q, cfg = layer.qlayer, self.cfg
        outs = [None] * len(xs)
        following = self._after(layer)
        for p, image in enumerate(layer.packed.passes):
            # The pass's record was loaded during the previous run, or it is sent during this
            # pass's first run, whose START has AWAIT: the input streams while it loads.
            awaited = p == 0 and self._preloaded is not layer
            self._preloaded = None
            if awaited:
                loaded = (len(image.directory[0]), image.k_count)   # the record's header
            else:
                loaded = (await self.transport.read(regmap.WGT_CHANNELS.offset),
                          await self.transport.read(regmap.WGT_KCOUNT.offset))
            ks = range(image.k_base, image.k_base + image.k_count)
            for k_local, k in enumerate(ks):
                for field, values in (("bias", q.bias), ("multiplier", q.multiplier),
                                      ("shift", q.shift)):
                    await self.write(regmap.quant_offset(k_local, field), int(values[k]),
                                     f"layer {layer.name} quant[{k}]")
            for idx, x in enumerate(xs):
                C, H, W = x.shape
                problem = (regmap.shape_problem(cfg, H, W, C, image.k_count, q.pad)
                           or regmap.weights_problem(C, image.k_count, *loaded))
                if problem:
                    raise DriverError(f"layer {layer.name}: {problem}")
                for reg, value in ((regmap.HEIGHT, H), (regmap.WIDTH, W), (regmap.CHANNELS, C),
                                   (regmap.KOUT, image.k_count), (regmap.PAD, q.pad),
                                   (regmap.RELU, int(q.winograd_relu)
                                    | int(q.spatial_relu) << 1)):
                    await self.write(reg.offset, value, f"layer {layer.name} {reg.name}")
                preload = record_ahead(layer, p, following) if idx == len(xs) - 1 else None
                y = await self._run(layer, p, idx, x, image.k_count, preload,
                                    awaited=awaited and idx == 0)
                if preload is not None and preload[1] == 0:
                    self._preloaded = following
                if outs[idx] is None:
                    outs[idx] = np.zeros((q.K, *y.shape[1:]), dtype=np.int64)
                outs[idx][image.k_base:image.k_base + image.k_count] = y
                if self.progress is not None:
                    self.progress(layer.name, p, idx + 1, len(xs))
        return outs

    async def _run(self, layer: DeviceLayer, p: int, idx: int, x: np.ndarray,
                   k_count: int, preload: tuple[DeviceLayer, int] | None = None,
                   awaited: bool = False) -> np.ndarray:
        """One image of pass ``p``; with ``awaited``, START has AWAIT and pass ``p``'s own
        record is sent while the run streams; with ``preload = (layer, pass)``, that record is
        sent (after the awaited one) while this run streams. Each is checked accepted."""
        C, H, W = x.shape
        grid = winograd.tile_grid(H, W, self.cfg.tile, layer.qlayer.pad)
        before = await self._counters()
        # the sticky flags then speak of this run alone
        await self.write(regmap.CTRL.offset, regmap.CTRL_CLEAR, f"layer {layer.name} CLEAR")
        await self.write(regmap.CTRL.offset,
                         regmap.CTRL_START | (regmap.CTRL_AWAIT if awaited else 0),
                         f"layer {layer.name} START")
        streamed = self.transport.stream(formats.pack_activations(x.transpose(1, 2, 0),
                                                                  self.cfg))
        loads = ([(layer, p, True)] if awaited else []) + (
            [(*preload, False)] if preload is not None else [])

        async def send_records():
            for record in loads:       # one after the other: each waits for its own count
                await self.load(*record)

        if loads:
            frame, _ = await self.transport.concurrently(streamed, send_records())
        else:
            frame = await streamed
        beat = formats.beat_bytes(self.cfg)
        expected = formats.activation_beats(grid.out_h, grid.out_w, k_count, self.cfg)
        if len(frame.data) != expected * beat:
            raise DriverError(f"layer {layer.name} pass {p}: {len(frame.data) / beat:g} output "
                              f"beats, expected {expected}")
        try:
            values = formats.unpack_activations(frame, k_count, self.cfg)
        except formats.FormatError as err:
            raise DriverError(f"layer {layer.name} pass {p}: {err}") from None
        while True:
            status = await self.transport.read(regmap.STATUS.offset)
            if status & regmap.STATUS_DONE and not status & regmap.STATUS_BUSY:
                break
        if status & regmap.STATUS_ERROR:
            raise DriverError(f"layer {layer.name} pass {p}: STATUS.ERROR after the run "
                              f"(STATUS {status:#x})")
        after = await self._counters()
        record = {"layer": layer.name, "pass": p, "image": idx,
                  "overflow": bool(status & regmap.STATUS_OVERFLOW)}
        for key, value in after.items():
            record[key] = (value - before[key]) % (1 << 32) if key != "cycles" else value
        self.stats.append(record)
        return values.reshape(grid.out_h, grid.out_w, k_count).transpose(2, 0, 1)


def golden_predict(model: model_import.Model, images: np.ndarray, cfg: AccelConfig,
                   layers: dict[str, DeviceLayer] | None = None) -> np.ndarray:
    """Final outputs of ``images`` on the golden backend (synchronous)."""
    layers = layers or device_layers(model, cfg)
    return run_sync(run_network(model, layers, images, GoldenBackend(cfg)))
