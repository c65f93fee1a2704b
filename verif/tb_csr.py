"""cocotb bench for :class:`hw.csr.ControlRegisters` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case; the component is built with the
default 32-bit counters. The AXI4-Lite side is cocotbext-axi's ``AxiLiteMaster`` bound with
``AxiLiteBus.from_prefix(dut, "s_axi")``; its AW, W, B, AR and R channels each get their own
generator of one :mod:`verif.stalls` pattern (valid gaps on AW/W/AR, back-pressure on B/R).
The datapath side (``busy``, ``run_busy``, pulses, counters, ``quant_k``) is driven directly. Every answer
is checked against :class:`verif.register_model.RegisterModel`, plus literal expectations for
the directed cases. Clock, reset and the seed are :class:`verif.streams.StreamBench`'s (a bench
with no streams): stimulus from :func:`verif.stalls.bench_rng` of the test's name, the run's
``SEED`` logged once per test.

``$WINNOW_SAMPLES`` sets the number of random accesses per test (default 250).
"""

from __future__ import annotations

import warnings

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from sw import regmap
from hw.csr import quant_layout
from hw.pe import perf_layout
from verif.register_model import RegisterModel
from verif.stalls import GAP_PATTERNS, pattern
from verif.streams import PayloadCodec, StreamBench, case_config, sample_count

# cocotbext-axi still calls APIs cocotb 2 deprecates; that is its business, not this bench's.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

DEFAULT_SAMPLES = 250
COUNTER_BITS = 32
#: Where register map version 1 had the per-PE counters (PE ``xi``'s five words at
#: ``0x100 + xi * 0x20``); unmapped since the counters are summed (version 2).
OLD_PE_BLOCKS = 0x100
OKAY, SLVERR = regmap.RESP_OKAY, regmap.RESP_SLVERR


class Bench(StreamBench):
    """The DUT with its clock, an AXI4-Lite master, the model and a ``start`` pulse monitor."""

    def __init__(self, dut, name: str, stalls: str):
        super().__init__(dut, f"control_registers {name} stalls={stalls}")
        self.cfg = case_config()
        self.samples = sample_count(DEFAULT_SAMPLES)
        self.model = RegisterModel(self.cfg, COUNTER_BITS)
        self.perf_codec = PayloadCodec(perf_layout(COUNTER_BITS))
        self.quant_codec = PayloadCodec(quant_layout(self.cfg))
        self.starts = 0
        self.stalls = stalls

    async def reset(self) -> None:
        """Zero the datapath inputs, bind the AXI master, reset, read the quantisation memory."""
        dut = self.dut
        for name in ("busy", "run_busy", "awaited", "done", "error", "overflow", "cycles",
                     "array_cycles", "perf", "wgt_records", "wgt_channels", "wgt_k_count",
                     "quant_k"):
            getattr(dut, name).value = 0
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        channels = (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                    self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                    self.axil.read_if.r_channel)
        for channel in channels:
            channel.set_pause_generator(pattern(self.stalls, self.rng))
        await self.start()
        cocotb.start_soon(self._count_starts())
        # rst leaves the quantisation memory alone (an earlier test may have written it)
        for k in range(self.cfg.k_max):
            self.model.quant[k] = await self.quant_entry(k)

    async def quant_entry(self, k: int) -> dict:
        """Entry ``k`` as the asynchronous ``quant_k``/``quant`` port shows it."""
        await FallingEdge(self.dut.clk)
        self.dut.quant_k.value = k
        await Timer(1, unit="ns")
        return self.quant_codec.unpack(int(self.dut.quant.value))

    async def _count_starts(self) -> None:
        previous = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            now = int(self.dut.start.value)
            assert not (now and previous), "start is high for more than one cycle"
            self.starts += now
            previous = now

    # -- AXI, checked against the model ------------------------------------------------------
    async def write(self, offset: int, value: int, strb: int = 0xF) -> int:
        """Write the bytes of ``value`` selected by contiguous ``strb``; returns the response
        after checking it against the model."""
        lanes = [i for i in range(4) if strb >> i & 1]
        assert lanes and lanes == list(range(lanes[0], lanes[-1] + 1)), "contiguous lanes"
        word = value & 0xFFFF_FFFF
        payload = word.to_bytes(4, "little")[lanes[0]:lanes[-1] + 1]
        resp = int((await self.axil.write(offset + lanes[0], payload)).resp)
        expected = self.model.write(offset, word, strb)
        assert resp == expected, (f"write {offset:#x} = {word:#x} strb {strb:#06b}: resp "
                                  f"{resp}, model {expected}")
        return resp

    async def read(self, offset: int) -> tuple[int, int]:
        result = await self.axil.read(offset, 4)
        got = (int(result.resp), int.from_bytes(result.data, "little"))
        expected = self.model.read(offset)
        assert got == expected, (f"read {offset:#x}: resp/data {got[0]}/{got[1]:#x}, model "
                                 f"{expected[0]}/{expected[1]:#x}")
        return got

    # -- the datapath side ----------------------------------------------------------------------
    async def set_busy(self, busy: bool, run: bool = False) -> None:
        """``busy`` (a run or a weight load), with ``run`` a run (``run_busy``, which alone
        refuses a START with AWAIT)."""
        await FallingEdge(self.dut.clk)
        self.dut.busy.value = int(busy)
        self.dut.run_busy.value = int(busy and run)
        self.model.busy, self.model.run_busy = busy, busy and run

    async def awaited(self) -> None:
        """An ``awaited`` pulse: the record of an AWAIT run is in, checked by the block."""
        await FallingEdge(self.dut.clk)
        self.dut.awaited.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.awaited.value = 0
        self.model.awaited()

    async def pulse(self, which: str) -> None:
        await FallingEdge(self.dut.clk)
        getattr(self.dut, which).value = 1
        await FallingEdge(self.dut.clk)
        getattr(self.dut, which).value = 0
        self.model.pulse(which)

    async def set_counters(self) -> None:
        """Random perf and status inputs, extremes included, mirrored into the model."""
        rng, model, top = self.rng, self.model, (1 << COUNTER_BITS) - 1
        for field in model.perf:
            model.perf[field] = rng.choice([0, top, rng.randrange(top + 1)])
        values = {regmap.WGT_RECORDS: ("wgt_records", rng.randrange(1 << 16)),
                  regmap.WGT_CHANNELS: ("wgt_channels", rng.randrange(self.cfg.c_max + 1)),
                  regmap.WGT_KCOUNT: ("wgt_k_count", rng.randrange(self.cfg.k_max + 1)),
                  regmap.CYCLES: ("cycles", top),
                  regmap.ARRAY_CYCLES: ("array_cycles", rng.randrange(top + 1))}
        await FallingEdge(self.dut.clk)
        self.dut.perf.value = self.perf_codec.pack(model.perf)
        for reg, (name, value) in values.items():
            getattr(self.dut, name).value = value
            model.inputs[reg] = value

    async def check_quant_port(self) -> None:
        """Every entry through the asynchronous ``quant_k``/``quant`` port, as the model."""
        for k in range(self.cfg.k_max):
            got = await self.quant_entry(k)
            assert got == self.model.quant[k], f"quant port k={k}: {got}, model " \
                                               f"{self.model.quant[k]}"

    # -- stimulus ------------------------------------------------------------------------------
    def random_value(self) -> int:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice([0, 1, 2, 3, 5, 0x7F, 0x80, 0xFF, 0x7FF, 0x800, 0xFFFF, 0x1_0000,
                               0x7FFF_FFFF, 0x8000_0000, 0xFFFF_F800, 0xFFFF_FFFF])
        return rng.randrange(1 << 32)

    def random_offset(self) -> int:
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        if r < 0.35:
            return rng.choice(regmap.REGISTERS).offset
        if r < 0.45:
            return regmap.perf_counter_offset(rng.choice(regmap.PERF_COUNTERS))
        if r < 0.5:     # a word of the version 1 per-PE counter blocks: unmapped now
            return OLD_PE_BLOCKS + 4 * rng.randrange(cfg.coords * 8)
        if r < 0.8:
            return regmap.quant_offset(rng.randrange(cfg.k_max), rng.choice(regmap.QUANT_FIELDS))
        return rng.randrange(1 << regmap.addr_bits(cfg)) & ~3

    def random_strb(self) -> int:
        if self.rng.random() < 0.7:
            return 0xF
        first = self.rng.randrange(4)
        last = self.rng.randrange(first, 4)
        return sum(1 << i for i in range(first, last + 1))

    async def plausible_shape(self) -> None:
        """A shape in range, valid or (small H or W without padding) not."""
        cfg, rng = self.cfg, self.rng
        shape = (rng.randint(1, 5), rng.randint(1, cfg.w_max), rng.randint(1, cfg.c_max),
                 rng.randint(1, cfg.k_max), rng.randint(0, 1))
        for reg, value in zip(regmap.CONFIG_REGISTERS, shape):
            await self.write(reg.offset, value)
        # the loader's status: usually the matching record, sometimes none or another one
        choice = rng.randrange(5)
        await self.set_loaded(*{0: (0, 0), 1: (shape[2], max(1, shape[3] - 1))}.get(
            choice, shape[2:4]))

    async def set_loaded(self, channels: int, k_count: int) -> None:
        """The loader reports a record of ``channels`` and ``k_count`` (0, 0: none)."""
        await FallingEdge(self.dut.clk)
        for reg, name, value in ((regmap.WGT_CHANNELS, "wgt_channels", channels),
                                 (regmap.WGT_KCOUNT, "wgt_k_count", k_count)):
            getattr(self.dut, name).value = value
            self.model.inputs[reg] = value


@cocotb.test()
@cocotb.parametrize(stalls=GAP_PATTERNS)
async def test_random_accesses(dut, stalls):
    """Random reads and writes (partial ones too), busy phases and flag pulses, every answer
    as :class:`verif.register_model.RegisterModel` says, under per-channel stall patterns."""
    bench = Bench(dut, "random", stalls)
    await bench.reset()
    await bench.set_counters()
    rng = bench.rng
    for _ in range(bench.samples):
        r = rng.random()
        if r < 0.05:
            await bench.set_busy(not bench.model.busy, run=rng.random() < 0.5)
        elif r < 0.06:
            await bench.awaited()
        elif r < 0.08:
            await bench.pulse(rng.choice(["done", "error", "overflow"]))
        elif r < 0.13:
            await bench.plausible_shape()
        elif r < 0.15:
            await bench.write(regmap.CTRL.offset, rng.choice([
                regmap.CTRL_START, regmap.CTRL_CLEAR, regmap.CTRL_START | regmap.CTRL_AWAIT]))
        elif r < 0.6:
            await bench.write(bench.random_offset(), bench.random_value(), bench.random_strb())
        else:
            await bench.read(bench.random_offset())
    for reg in regmap.REGISTERS:
        await bench.read(reg.offset)
    await bench.check_quant_port()
    await ClockCycles(dut.clk, 2)
    assert bench.starts == bench.model.starts, \
        f"{bench.starts} start pulses, the model accepted {bench.model.starts} STARTs"
    dut._log.info("%d accesses, %d STARTs accepted, STATUS %#x", bench.samples,
                  bench.starts, bench.model.status())


@cocotb.test()
async def test_readback_refusal_and_slverr(dut):
    """Directed: read-back with edge values, SLVERR cases, refusal while busy, START/DONE."""
    bench = Bench(dut, "directed", "stall25")
    await bench.reset()
    cfg = bench.cfg
    assert await bench.read(regmap.ID.offset) == (OKAY, 0x574E4E57)
    assert await bench.read(regmap.VERSION.offset) == (OKAY, regmap.VERSION_VALUE)
    # configuration: all-ones of each field, read back
    for reg, bits in regmap.config_bits(cfg).items():
        assert await bench.write(reg.offset, (1 << bits) - 1) == OKAY, reg.name
        assert await bench.read(reg.offset) == (OKAY, (1 << bits) - 1), reg.name
        assert await bench.write(reg.offset, 1 << bits) == SLVERR, reg.name
    assert int(dut.height.value) == 0xFFFF and int(dut.pad.value) == 1
    assert int(dut.winograd_relu.value) == 1 and int(dut.spatial_relu.value) == 1
    # quantisation: the most negative bias and multiplier, the largest shift, at both ends
    lo_b, lo_m = -(1 << (cfg.bias_bits - 1)), -(1 << (cfg.mult_bits - 1))
    max_s = (1 << cfg.shift_bits) - 1
    for k in (0, cfg.k_max - 1):
        for field, value in (("bias", lo_b), ("multiplier", lo_m), ("shift", max_s)):
            assert await bench.write(regmap.quant_offset(k, field), value) == OKAY
            assert await bench.read(regmap.quant_offset(k, field)) == (OKAY,
                                                                     value & 0xFFFF_FFFF)
    await bench.check_quant_port()
    # SLVERR: unmapped both ways, read-only registers
    assert await bench.write(regmap.UNMAPPED_EXAMPLE, 0) == SLVERR
    assert await bench.read(regmap.UNMAPPED_EXAMPLE) == (SLVERR, 0)
    for reg in (regmap.ID, regmap.STATUS, regmap.CYCLES):
        assert await bench.write(reg.offset, 0) == SLVERR, reg.name
    for reg in regmap.PERF_REGISTERS.values():
        assert await bench.write(reg.offset, 0) == SLVERR, reg.name
    # the per-PE counter blocks of register map version 1 are gone
    for offset in (OLD_PE_BLOCKS, OLD_PE_BLOCKS + 4 * 4, OLD_PE_BLOCKS + 0x20 * cfg.coords - 4):
        assert await bench.read(offset) == (SLVERR, 0), f"{offset:#x}"
    # START with a valid shape (the largest), then a busy phase
    for reg, value in zip(regmap.CONFIG_REGISTERS, (3, cfg.w_max, cfg.c_max, cfg.k_max, 0)):
        assert await bench.write(reg.offset, value) == OKAY, reg.name
    await bench.set_loaded(cfg.c_max, cfg.k_max - 1)          # another pass's record
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR
    assert (await bench.read(regmap.STATUS.offset))[1] == regmap.STATUS_BAD_CONFIG
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
    await bench.set_loaded(cfg.c_max, cfg.k_max)
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_START) == OKAY
    await bench.set_busy(True)
    assert (await bench.read(regmap.STATUS.offset))[1] == regmap.STATUS_BUSY
    for reg in regmap.CONFIG_REGISTERS:
        assert await bench.write(reg.offset, 1) == SLVERR, f"{reg.name} while busy"
    assert await bench.write(regmap.quant_offset(0, "shift"), 1) == SLVERR
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR
    assert (await bench.read(regmap.STATUS.offset))[1] == \
        regmap.STATUS_BUSY | regmap.STATUS_REFUSED
    await bench.set_busy(False)
    await bench.pulse("done")
    assert (await bench.read(regmap.STATUS.offset))[1] == \
        regmap.STATUS_DONE | regmap.STATUS_REFUSED
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
    assert (await bench.read(regmap.STATUS.offset))[1] == regmap.STATUS_DONE
    await bench.write(regmap.CHANNELS.offset, 0)
    assert await bench.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR
    assert (await bench.read(regmap.STATUS.offset))[1] == \
        regmap.STATUS_DONE | regmap.STATUS_BAD_CONFIG
    await ClockCycles(dut.clk, 2)
    assert bench.starts == 1


@cocotb.test()
async def test_concurrent_reads_and_writes(dut):
    """A writer and a reader at once: the read channel answers while writes are in flight."""
    bench = Bench(dut, "concurrent", "stall25")
    await bench.reset()
    await bench.set_counters()
    rng, cfg = bench.rng, bench.cfg
    fixed = [regmap.ID, regmap.VERSION, regmap.CYCLES, regmap.WGT_RECORDS]

    async def writer():
        for _ in range(bench.samples // 2):
            k, field = rng.randrange(cfg.k_max), rng.choice(regmap.QUANT_FIELDS)
            await bench.write(regmap.quant_offset(k, field), bench.random_value())

    async def reader():
        for _ in range(bench.samples // 2):
            if rng.random() < 0.5:
                await bench.read(rng.choice(fixed).offset)
            else:
                await bench.read(regmap.perf_counter_offset(rng.choice(regmap.PERF_COUNTERS)))

    tasks = [cocotb.start_soon(writer()), cocotb.start_soon(reader())]
    for task in tasks:
        await task
    await bench.check_quant_port()
