"""cocotb bench: the accelerator used wrongly, each misuse answered exactly as docs/registers.md
("Misuse") specifies.

``$WINNOW_CONFIG`` names the case's ``winnow.json``. Runs go through
:class:`sw.driver.DeviceBackend` on :class:`verif.axi_transport.AxiTransport`; where a test
must stop half way, it drives the same register sequence itself and holds a cocotbext-axi
stream with ``pause``. A :class:`verif.tb_soak.WireMonitor` counts the handshakes of the three
streams, so each test can show that it really interrupted what it meant to. Every "afterwards,
a normal layer" is a random layer through the driver, compared value by value with
:func:`sw.golden.conv_layer`.

- ``test_start_without_weights``: START before any weight record, and START with a KOUT the
  loaded record does not hold, answer SLVERR and set exactly BAD_CONFIG; no run starts and no
  stream moves. With the record loaded the same START runs bit-exact.
- ``test_reset_mid_layer`` (during a weight record, while the input streams, while the outputs
  drain): afterwards every register, flag and counter reads its reset value, no stream offers
  a beat, and a new layer runs bit-exact.
- ``test_reset_forgets_weights_keeps_quant``: WGT_* read 0 after ``rst`` and a START is
  refused with BAD_CONFIG; with only the weight record reloaded (no quantisation writes) the
  pass runs bit-exact, so the quantisation memory survived the reset.
- ``test_config_write_while_busy`` (a run, and a weight record being parsed): every
  configuration write and START answers SLVERR and sets REFUSED, the registers keep their
  values, CLEAR is accepted, and the run (or the record) completes bit-exact.
- ``test_weight_records_during_a_run``: a record sent while a run is held half way loads
  beside it (WGT_RECORDS counts it during the run); a second record in the same run waits
  (its directory bank is the running pass's) until the run ends; the run is bit-exact, and so
  is the second record's pass run afterwards.
- ``test_start_await``: a START with AWAIT (another layer's record already loaded) takes the
  input but keeps the array waiting (no output for a thousand cycles, BUSY); a second START
  with AWAIT is refused (REFUSED); a record rejected meanwhile sets ERROR and one for
  another shape BAD_CONFIG, and the run waits on; the pass's record then completes the run
  bit-exact, and the next layer runs bit-exact.
- ``test_bad_addresses``: every unmapped word of the address space answers SLVERR to a read
  (data 0) and a write, every read-only register to a write; no register and no flag changes.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiStreamFrame

from sw import formats, golden, quant, regmap, winograd
from sw.config import AccelConfig
from sw.driver import DeviceBackend, DeviceLayer
from verif.axi_transport import AxiTransport
from verif.soak import STREAM_PORTS, FrameScoreboard
from verif.stalls import bench_rng
from verif.tb_soak import WireMonitor
from verif.tb_system import random_input, random_layer, start

SHAPE_REGISTERS = (regmap.HEIGHT, regmap.WIDTH, regmap.CHANNELS, regmap.KOUT, regmap.PAD,
                   regmap.RELU)


class Misuse:
    """The accelerator behind a driver, with a handshake count on each stream.

    Attributes
    ----------
    rng : numpy.random.Generator
        The test's stimulus, from :func:`verif.stalls.bench_rng` of its name (the run's
        ``SEED`` and the name; logged).
    bus : AxiTransport
    rtl : DeviceBackend
    beats : dict of str to int
        Handshakes so far on ``s_axis_wgt``, ``s_axis_act`` and ``m_axis_out``.
    """

    def __init__(self, dut, cfg: AccelConfig, name: str):
        self.dut, self.cfg = dut, cfg
        seed = bench_rng(name).randrange(1 << 31)
        dut._log.info("%s: SEED %s, stimulus seed %d", name, os.environ.get("SEED"), seed)
        self.rng = np.random.default_rng(seed)
        self.bus = AxiTransport(dut)
        self.rtl = DeviceBackend(self.bus, cfg)
        self._monitor = WireMonitor(dut, {port: FrameScoreboard(port) for port in STREAM_PORTS})
        cocotb.start_soon(self._monitor.run())

    @property
    def beats(self) -> dict[str, int]:
        return dict(self._monitor.counts)

    def layer(self, index: int, passes: int | None = None) -> DeviceLayer:
        """A random layer of :func:`verif.tb_system.random_layer` (with ``passes`` passes)."""
        while True:
            layer = random_layer(self.cfg, self.rng, index)
            if passes is None or layer.packed.num_passes == passes:
                return layer

    async def status(self) -> int:
        return await self.bus.read(regmap.STATUS.offset)

    async def begin(self, layer: DeviceLayer, x: np.ndarray, *, load: bool = True) -> int:
        """The driver's sequence for pass 0 of ``layer`` on ``x`` up to an accepted START
        (loading the record unless ``load`` is false); its ``k_count``."""
        image = layer.packed.passes[0]
        q = layer.qlayer
        if load:
            await self.rtl.load(layer, 0)
        await self.write_quant(layer)
        await self.write_shape(x.shape, image.k_count, q)
        await self.rtl.write(regmap.CTRL.offset, regmap.CTRL_START, "START")
        return image.k_count

    async def write_quant(self, layer: DeviceLayer) -> None:
        """The quantisation entries of pass 0 of ``layer``, as the driver writes them."""
        image, q = layer.packed.passes[0], layer.qlayer
        for k_local in range(image.k_count):
            for field, values in (("bias", q.bias), ("multiplier", q.multiplier),
                                  ("shift", q.shift)):
                await self.rtl.write(regmap.quant_offset(k_local, field),
                                     int(values[image.k_base + k_local]), "quant")

    async def write_shape(self, shape: tuple[int, int, int], k_count: int,
                          q: quant.QuantLayer) -> None:
        C, H, W = shape
        relu = int(q.winograd_relu) | int(q.spatial_relu) << 1
        for reg, value in zip(SHAPE_REGISTERS, (H, W, C, k_count, q.pad, relu)):
            await self.rtl.write(reg.offset, value, reg.name)

    async def refused_start(self, what: str) -> None:
        """A START that must be refused: SLVERR, STATUS exactly BAD_CONFIG (then cleared), no
        run (not BUSY, no stream moves for 50 cycles)."""
        beats = self.beats
        resp = await self.bus.axil.write(regmap.CTRL.offset,
                                         regmap.CTRL_START.to_bytes(4, "little"))
        assert int(resp.resp) == regmap.RESP_SLVERR, f"START {what}: not refused"
        assert await self.status() == regmap.STATUS_BAD_CONFIG, f"START {what}: STATUS"
        await ClockCycles(self.dut.clk, 50)
        assert await self.status() == regmap.STATUS_BAD_CONFIG, f"START {what}: a run began"
        assert self.beats == beats, f"START {what}: a stream moved"
        await self.rtl.write(regmap.CTRL.offset, regmap.CTRL_CLEAR, "CLEAR")
        assert await self.status() == 0

    def queue_input(self, x: np.ndarray) -> int:
        """Queue ``x`` on ``s_axis_act`` (held by ``pause`` until released); its beat count."""
        frame = formats.pack_activations(x.transpose(1, 2, 0), self.cfg)
        self.bus.act.send_nowait(AxiStreamFrame(frame.data, tkeep=list(frame.keep)))
        return len(frame.data) // formats.beat_bytes(self.cfg)

    async def outputs(self, k_count: int, shape: tuple[int, int, int], pad: int) -> np.ndarray:
        """The next ``m_axis_out`` frame, the output of an input of ``shape`` ``[C, H, W]``
        with padding ``pad``, as ``[k_count, out_h, out_w]``."""
        frame = await self.bus.out.recv(compact=False)
        values = formats.unpack_activations(
            formats.ActivationFrame(bytes(frame.tdata), bytes(frame.tkeep)), k_count, self.cfg)
        grid = winograd.tile_grid(shape[1], shape[2], self.cfg.tile, pad)
        return values.reshape(grid.out_h, grid.out_w, k_count).transpose(2, 0, 1)

    async def release_for(self, stream, cycles: int) -> None:
        """Let a paused source (or sink) move for ``cycles`` cycles, then pause it again."""
        stream.pause = False
        await ClockCycles(self.dut.clk, cycles)
        stream.pause = True

    async def reset(self) -> None:
        """``rst`` for 4 cycles; the cocotbext-axi queues emptied, nothing paused."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        for stream in (self.bus.act, self.bus.wgt, self.bus.out):
            stream.clear()
            stream.pause = False
        await ClockCycles(self.dut.clk, 2)

    async def snapshot(self) -> dict[int, int]:
        """Every readable register word: the fixed registers (the performance counters among
        them) and the quantisation entries."""
        offsets = [reg.offset for reg in regmap.REGISTERS]
        offsets += [regmap.quant_offset(k, name) for k in range(self.cfg.k_max)
                    for name in regmap.QUANT_FIELDS]
        return {offset: await self.bus.read(offset) for offset in offsets}

    async def check_layer(self, index: int) -> None:
        """A random layer (every pass, two images) through the driver: bit-exact, STATUS
        exactly DONE afterwards."""
        layer = self.layer(index)
        q = layer.qlayer
        xs = [random_input(self.cfg, self.rng, q.C, q.pad) for _ in range(2)]
        got = await self.rtl.conv(layer, xs)
        for i, (g, x) in enumerate(zip(got, xs)):
            want = golden.conv_layer(x, q, self.cfg)
            assert np.array_equal(g, want), (
                f"layer {layer.name} (C={q.C} K={q.K} x={x.shape} pad={q.pad}) image {i}: "
                f"{int((g != want).sum())} values differ from golden")
        assert await self.status() == regmap.STATUS_DONE


def _golden_pass(layer: DeviceLayer, x: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    image = layer.packed.passes[0]
    return golden.conv_layer(x, layer.qlayer, cfg)[image.k_base:image.k_base + image.k_count]


@cocotb.test()
async def test_start_without_weights(dut):
    """START with no weight record loaded, or with a KOUT the record does not hold: SLVERR,
    exactly BAD_CONFIG, no run, no stream moves; with the record loaded it runs bit-exact."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, "start_without_weights")
    for reg in (regmap.WGT_RECORDS, regmap.WGT_CHANNELS, regmap.WGT_KCOUNT):
        assert await t.bus.read(reg.offset) == 0, reg.name
    layer = t.layer(0, passes=1)
    while layer.packed.passes[0].k_count < 2:       # so a smaller KOUT is still a valid shape
        layer = t.layer(0, passes=1)
    q, image = layer.qlayer, layer.packed.passes[0]
    x = random_input(cfg, t.rng, q.C, q.pad)
    await t.write_shape(x.shape, image.k_count, q)
    assert regmap.weights_problem(q.C, image.k_count, 0, 0).startswith("no weight record")
    await t.refused_start("no record loaded")

    await t.rtl.load(layer, 0)
    assert await t.bus.read(regmap.WGT_CHANNELS.offset) == q.C
    assert await t.bus.read(regmap.WGT_KCOUNT.offset) == image.k_count
    await t.write_shape(x.shape, image.k_count - 1, q)
    assert regmap.weights_problem(q.C, image.k_count - 1, q.C, image.k_count) is not None
    await t.refused_start("KOUT one less than the record's")

    k_count = await t.begin(layer, x, load=False)
    t.queue_input(x)
    np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad),
                                  _golden_pass(layer, x, cfg))
    assert await t.status() == regmap.STATUS_DONE
    dut._log.info("START without weights and with the wrong KOUT: BAD_CONFIG, no run; then "
                  "bit-exact")


@cocotb.test()
@cocotb.parametrize(phase=["weight_record", "input", "output"])
async def test_reset_mid_layer(dut, phase):
    """``rst`` in the middle of a layer: everything back to its reset value, then a new layer
    runs bit-exact."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, f"reset_mid_layer {phase}")
    layer = t.layer(0, passes=1)
    q = layer.qlayer
    x = random_input(cfg, t.rng, q.C, q.pad)
    while _golden_pass(layer, x, cfg)[0].size < 8:     # enough outputs to stop half way
        x = random_input(cfg, t.rng, q.C, q.pad)
    if phase == "weight_record":
        record = layer.records[0]
        t.bus.wgt.pause = True
        t.bus.wgt.send_nowait(record)
        await t.release_for(t.bus.wgt, 3)
        total = -(-len(record) // len(dut.s_axis_wgt_tkeep))
        taken = t.beats["s_axis_wgt"]
        assert 0 < taken < total, f"{taken} of {total} record beats taken"
        assert await t.status() == regmap.STATUS_BUSY
    else:
        k_count = await t.begin(layer, x)
        t.bus.act.pause = True
        total = t.queue_input(x)
        if phase == "input":
            await t.release_for(t.bus.act, total // 2)
            taken = t.beats["s_axis_act"]
            assert 0 < taken < total, f"{taken} of {total} input beats taken"
        else:
            # Outputs held back while the whole input is offered, then a few let through.
            t.bus.out.pause = True
            t.bus.act.pause = False
            await ClockCycles(dut.clk, 4 * total + 200)
            await t.release_for(t.bus.out, 3)
            out_total = formats.activation_beats(*_golden_pass(layer, x, cfg).shape[1:],
                                                 k_count, cfg)
            taken = t.beats["m_axis_out"]
            assert 0 < taken < out_total, f"{taken} of {out_total} output beats taken"
        assert await t.status() & regmap.STATUS_BUSY
    await t.reset()

    beats = t.beats
    for port, value, want in (("s_axis_act_tready", dut.s_axis_act_tready.value, 0),
                              ("m_axis_out_tvalid", dut.m_axis_out_tvalid.value, 0),
                              ("s_axis_wgt_tready", dut.s_axis_wgt_tready.value, 1)):
        assert int(value) == want, f"after rst {port} is {value}, expected {want}"
    after = await t.snapshot()
    for offset, value in after.items():
        loc = regmap.decode(cfg, offset)
        if loc.register is None and loc.access == regmap.RW:
            continue                      # the quantisation memory keeps its entries
        want = {regmap.ID.offset: regmap.ID_MAGIC,
                regmap.VERSION.offset: regmap.VERSION_VALUE}.get(offset, 0)
        assert value == want, f"after rst the word at {offset:#x} reads {value:#x}, not {want:#x}"
    await ClockCycles(dut.clk, 100)
    assert t.beats == beats, f"streams moved with no run after rst: {beats} -> {t.beats}"
    await t.check_layer(1)
    dut._log.info("rst during the %s: registers, flags and counters at reset values, the next "
                  "layer bit-exact", phase)


@cocotb.test()
async def test_reset_forgets_weights_keeps_quant(dut):
    """After ``rst`` WGT_* read 0 and START is refused (the memories may hold a part of an
    interrupted record); reloading the weight record alone, with no quantisation writes,
    reproduces the pass bit-exact: the quantisation memory survived the reset."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, "reset_forgets_weights")
    layer = t.layer(0, passes=1)
    q = layer.qlayer
    x = random_input(cfg, t.rng, q.C, q.pad)
    want = _golden_pass(layer, x, cfg)
    k_count = await t.begin(layer, x)
    t.queue_input(x)
    np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad), want)
    await t.reset()
    for reg in (regmap.WGT_RECORDS, regmap.WGT_CHANNELS, regmap.WGT_KCOUNT):
        assert await t.bus.read(reg.offset) == 0, reg.name
    await t.write_shape(x.shape, k_count, q)
    await t.refused_start("after rst")
    await t.rtl.load(layer, 0)
    await t.rtl.write(regmap.CTRL.offset, regmap.CTRL_START, "START")
    t.queue_input(x)
    np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad), want)
    assert await t.status() == regmap.STATUS_DONE


@cocotb.test()
@cocotb.parametrize(busy_with=["run", "weight_record"])
async def test_config_write_while_busy(dut, busy_with):
    """While busy every configuration write and START is refused (SLVERR, REFUSED, nothing
    changes), CLEAR is accepted, and the run or record completes bit-exact."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, f"config_write_while_busy {busy_with}")
    layer = t.layer(0, passes=1)
    q = layer.qlayer
    x = random_input(cfg, t.rng, q.C, q.pad)
    if busy_with == "run":
        k_count = await t.begin(layer, x)
        t.bus.act.pause = True
        total = t.queue_input(x)
        await t.release_for(t.bus.act, total // 2)
    else:
        await t.write_shape(x.shape, layer.packed.passes[0].k_count, q)
        before_records = await t.bus.read(regmap.WGT_RECORDS.offset)
        t.bus.wgt.pause = True
        t.bus.wgt.send_nowait(layer.records[0])
        await t.release_for(t.bus.wgt, 3)
        assert t.beats["s_axis_wgt"] > 0 and not t.bus.wgt.idle()
    assert await t.status() == regmap.STATUS_BUSY
    before = await t.snapshot()

    writes = [(reg.offset, reg.name) for reg in SHAPE_REGISTERS]
    writes += [(regmap.quant_offset(k, name), f"quant[{k}].{name}")
               for k in (0, cfg.k_max - 1) for name in regmap.QUANT_FIELDS]
    writes.append((regmap.CTRL.offset, "CTRL.START"))
    for offset, name in writes:
        value = regmap.CTRL_START if name == "CTRL.START" else 1 + (before[offset] == 1)
        resp = await t.bus.axil.write(offset, value.to_bytes(4, "little"))
        assert int(resp.resp) == regmap.RESP_SLVERR, f"{name} written while busy: OKAY"
        status = await t.status()
        assert status == regmap.STATUS_BUSY | regmap.STATUS_REFUSED, (
            f"after {name} while busy STATUS {status:#x}")
        resp = await t.bus.axil.write(regmap.CTRL.offset, regmap.CTRL_CLEAR.to_bytes(4, "little"))
        assert int(resp.resp) == regmap.RESP_OKAY, "CLEAR while busy refused"
        assert await t.status() == regmap.STATUS_BUSY, "CLEAR while busy left a flag"
    after = await t.snapshot()
    changed = {f"{o:#x}": (before[o], after[o]) for o in before
               if before[o] != after[o] and regmap.decode(cfg, o).access == regmap.RW}
    assert not changed, f"refused writes changed registers: {changed}"

    if busy_with == "run":
        t.bus.act.pause = False
        np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad),
                                      _golden_pass(layer, x, cfg))
        assert await t.status() == regmap.STATUS_DONE
    else:
        t.bus.wgt.pause = False
        await t.bus.wgt.wait()
        while await t.status() & regmap.STATUS_BUSY:
            pass
        assert await t.bus.read(regmap.WGT_RECORDS.offset) == before_records + 1
        assert await t.bus.read(regmap.WGT_CHANNELS.offset) == q.C
        assert await t.status() == 0
    await t.check_layer(1)
    dut._log.info("%d refused writes while busy with a %s; it completed bit-exact",
                  len(writes), busy_with)


def _span(layer: DeviceLayer) -> int:
    """The weight words pass 0 of ``layer`` takes in the ring: its most over the PEs."""
    return max(len(words) for words in layer.packed.passes[0].words)


@cocotb.test()
async def test_weight_records_during_a_run(dut):
    """Records sent during a run (hw.weight_ring): the first loads beside the running pass,
    the second waits for the run's end; every output bit-exact."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, "weight_records_during_a_run")
    running = t.layer(0, passes=1)
    beside = t.layer(1, passes=1)
    while _span(running) + _span(beside) > cfg.wmem_depth:
        beside = t.layer(1, passes=1)
    after = t.layer(2, passes=1)
    q = running.qlayer
    x = random_input(cfg, t.rng, q.C, q.pad)
    k_count = await t.begin(running, x)
    records = await t.bus.read(regmap.WGT_RECORDS.offset)
    t.bus.act.pause = True
    total = t.queue_input(x)
    await t.release_for(t.bus.act, total // 2)
    assert 0 < t.beats["s_axis_act"] < total

    await t.bus.send_weights(beside.frames[0])
    for _ in range(100):
        if await t.bus.read(regmap.WGT_RECORDS.offset) == records + 1:
            break
    assert await t.bus.read(regmap.WGT_RECORDS.offset) == records + 1, (
        "a record that fits beside the running pass was not loaded during the run")
    t.bus.wgt.send_nowait(after.records[0])
    await ClockCycles(dut.clk, 300)
    assert await t.bus.read(regmap.WGT_RECORDS.offset) == records + 1, (
        "a second record loaded during one run: it would overwrite the running directory")
    assert await t.status() == regmap.STATUS_BUSY
    assert t.beats["s_axis_act"] < total, "the run went on while paused"

    t.bus.act.pause = False
    np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad),
                                  _golden_pass(running, x, cfg))
    await t.bus.wgt.wait()
    while await t.status() & regmap.STATUS_BUSY:
        pass
    assert await t.bus.read(regmap.WGT_RECORDS.offset) == records + 2
    assert await t.status() == regmap.STATUS_DONE
    q2 = after.qlayer
    x2 = random_input(cfg, t.rng, q2.C, q2.pad)
    k2 = await t.begin(after, x2, load=False)
    t.queue_input(x2)
    np.testing.assert_array_equal(await t.outputs(k2, x2.shape, q2.pad),
                                  _golden_pass(after, x2, cfg))
    dut._log.info("a record loaded beside a run (spans %d + %d of %d), a second one held to "
                  "the run's end; both passes bit-exact", _span(running), _span(beside),
                  cfg.wmem_depth)


async def _ctrl(t: Misuse, value: int) -> int:
    """A CTRL write of ``value``; its AXI response."""
    resp = await t.bus.axil.write(regmap.CTRL.offset, value.to_bytes(4, "little"))
    return int(resp.resp)


@cocotb.test()
async def test_start_await(dut):
    """CTRL.AWAIT: the run takes the input and waits for the next record; neither a rejected
    record nor one for another shape (BAD_CONFIG) ends the wait; the pass's record does, and
    the run is bit-exact. A START with AWAIT is refused during a run."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, "start_await")
    start_await = regmap.CTRL_START | regmap.CTRL_AWAIT
    layer = t.layer(0, passes=1)
    q, image = layer.qlayer, layer.packed.passes[0]
    other = t.layer(1, passes=1)
    while (other.qlayer.C, other.packed.passes[0].k_count) == (q.C, image.k_count):
        other = t.layer(1, passes=1)
    x = random_input(cfg, t.rng, q.C, q.pad)
    await t.rtl.load(other, 0)          # a record in already: AWAIT must not take it

    await t.write_quant(layer)
    await t.write_shape(x.shape, image.k_count, q)
    assert await _ctrl(t, start_await) == regmap.RESP_OKAY, "START with AWAIT refused"
    total = t.queue_input(x)
    await ClockCycles(dut.clk, 1000)
    assert t.beats["s_axis_act"] > 0, "the input was not taken while the record was awaited"
    assert t.beats["m_axis_out"] == 0, "outputs before the awaited record"
    assert await t.status() == regmap.STATUS_BUSY
    assert await _ctrl(t, start_await) == regmap.RESP_SLVERR, "START with AWAIT during a run"
    assert await t.status() == regmap.STATUS_BUSY | regmap.STATUS_REFUSED
    assert await _ctrl(t, regmap.CTRL_CLEAR) == regmap.RESP_OKAY

    records = await t.bus.read(regmap.WGT_RECORDS.offset)
    record = layer.records[0]
    await t.bus.wgt.send(record[:len(record) // 2])                 # rejected: truncated
    await t.bus.wgt.wait()
    await ClockCycles(dut.clk, 200)
    assert await t.status() == regmap.STATUS_BUSY | regmap.STATUS_ERROR, "after a rejection"
    assert await _ctrl(t, regmap.CTRL_CLEAR) == regmap.RESP_OKAY
    await t.bus.send_weights(other.frames[0])                       # another shape's record
    while await t.bus.read(regmap.WGT_RECORDS.offset) == records:
        pass
    await ClockCycles(dut.clk, 200)
    assert await t.status() == regmap.STATUS_BUSY | regmap.STATUS_BAD_CONFIG, \
        "after a record for another shape"
    assert t.beats["m_axis_out"] == 0, "outputs after a record not the pass's"
    assert await _ctrl(t, regmap.CTRL_CLEAR) == regmap.RESP_OKAY

    await t.bus.send_weights(layer.frames[0])                       # the pass's record
    np.testing.assert_array_equal(await t.outputs(image.k_count, x.shape, q.pad),
                                  _golden_pass(layer, x, cfg))
    assert t.beats["s_axis_act"] == total
    assert await t.bus.read(regmap.WGT_RECORDS.offset) == records + 2
    while await t.status() & regmap.STATUS_BUSY:
        pass
    assert await t.status() == regmap.STATUS_DONE
    await t.check_layer(2)
    dut._log.info("START with AWAIT: took the input, waited past a rejected record and one "
                  "for another shape, then bit-exact; refused during a run")


@cocotb.test()
async def test_bad_addresses(dut):
    """Every unmapped word: read SLVERR with data 0, write SLVERR; every read-only register:
    write SLVERR. No register, memory entry or flag changes."""
    cfg = await start(dut)
    t = Misuse(dut, cfg, "bad_addresses")
    layer = t.layer(0, passes=1)
    q = layer.qlayer
    x = random_input(cfg, t.rng, q.C, q.pad)
    k_count = await t.begin(layer, x)   # registers, entries and counters all away from 0
    t.queue_input(x)
    np.testing.assert_array_equal(await t.outputs(k_count, x.shape, q.pad),
                                  _golden_pass(layer, x, cfg))
    for k in range(k_count, cfg.k_max):
        await t.rtl.write(regmap.quant_offset(k, "bias"), -1 - k, "quant")
    before = await t.snapshot()
    assert before[regmap.STATUS.offset] == regmap.STATUS_DONE

    words = 1 << (regmap.addr_bits(cfg) - 2)
    unmapped = read_only = 0
    for word in range(words):
        offset = 4 * word
        loc = regmap.decode(cfg, offset)
        if loc is not None and loc.access != regmap.RO:
            continue
        value = int(t.rng.integers(0, 1 << 32))
        resp = await t.bus.axil.write(offset, value.to_bytes(4, "little"))
        assert int(resp.resp) == regmap.RESP_SLVERR, f"write {value:#x} to {offset:#x}: OKAY"
        if loc is None:
            unmapped += 1
            resp = await t.bus.axil.read(offset, 4)
            assert (int(resp.resp), bytes(resp.data)) == (regmap.RESP_SLVERR, bytes(4)), (
                f"read of unmapped {offset:#x}: resp {int(resp.resp)} data {bytes(resp.data)}")
        else:
            read_only += 1
    after = await t.snapshot()
    changed = {f"{o:#x}": (before[o], after[o]) for o in before if before[o] != after[o]}
    assert not changed, f"bad accesses changed registers: {changed}"
    await t.check_layer(1)
    dut._log.info("%d unmapped words (read and write) and %d read-only words (write): SLVERR, "
                  "nothing changed", unmapped, read_only)
