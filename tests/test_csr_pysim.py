# amaranth: UnusedElaboratable=no
# (the constructor-error cases create components that raise before they can be used)
"""Fast Amaranth-pysim tests of ``hw.csr.ControlRegisters`` and the map of ``sw.regmap``.

A cycle-level AXI4-Lite master offers AW and W in random order (and sometimes together), drives
junk on the address and data lines while a valid is low, and holds ``bready``/``rready`` low
for random stretches. A background monitor checks that B and R are held until taken and that
``start`` is a one-cycle pulse. Directed tests assert literal values; the random test replays
every response and read against :class:`verif.register_model.RegisterModel`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from sw import regmap
from sw.config import AccelConfig
from hw.csr import ControlRegisters, quant_layout
from hw.pe import perf_layout
from streams import payload_value
from verif.register_model import RegisterModel

ROOT = Path(__file__).resolve().parent.parent
OKAY, SLVERR = regmap.RESP_OKAY, regmap.RESP_SLVERR
#: Cycles a handshake may take before the test calls the slave hung.
TIMEOUT = 20

#: Odd sizes and narrow quantisation fields (sign extension, range refusals), 20-bit counters.
SMALL = AccelConfig(tile=2, c_max=6, k_max=5, w_max=9, wmem_depth=16, fifo_depth=4,
                    act_width=2, bias_bits=12, mult_bits=10, shift_bits=4)
#: The default sizes with F(4x4, 3x3): 36 PEs, 32-bit bias and multiplier.
BIG = AccelConfig(tile=4)
CASES = {"small": (SMALL, 20), "big": (BIG, 32)}
#: Where register map version 1 had the per-PE counters (PE ``xi``'s five words at
#: ``0x100 + xi * 0x20``); unmapped since the counters are summed (version 2).
OLD_PE_BLOCKS, OLD_PE_STRIDE = 0x100, 0x20


class AxiLiteMaster:
    """One AXI4-Lite transfer at a time, with random AW/W order and random B/R back-pressure."""

    def __init__(self, ctx, dut, rng: np.random.Generator, max_wait: int = 3):
        self.ctx, self.dut, self.rng, self.max_wait = ctx, dut, rng, max_wait

    def _waits(self, count: int) -> list[int]:
        return [int(x) for x in self.rng.integers(0, self.max_wait + 1, count)]

    def _junk(self, bits: int) -> int:
        return int(self.rng.integers(0, 1 << bits))

    async def write(self, offset: int, value: int, strb: int = 0xF) -> int:
        """Write ``value`` (taken modulo 2**32) and return ``bresp``."""
        ctx, d = self.ctx, self.dut
        aw_wait, w_wait, b_wait = self._waits(3)
        aw_left = w_left = True
        for cycle in range(TIMEOUT):
            if not (aw_left or w_left):
                break
            aw_on, w_on = aw_left and cycle >= aw_wait, w_left and cycle >= w_wait
            ctx.set(d.s_axi_awvalid, aw_on)
            ctx.set(d.s_axi_awaddr, offset if aw_on else self._junk(len(d.s_axi_awaddr)))
            ctx.set(d.s_axi_awprot, self._junk(3))
            ctx.set(d.s_axi_wvalid, w_on)
            ctx.set(d.s_axi_wdata, value & 0xFFFF_FFFF if w_on else self._junk(32))
            ctx.set(d.s_axi_wstrb, strb if w_on else self._junk(4))
            *_, awr, wr, bv = await ctx.tick().sample(d.s_axi_awready, d.s_axi_wready,
                                                      d.s_axi_bvalid)
            assert not bv, f"write {offset:#x}: B valid before both AW and W were taken"
            aw_left &= not (aw_on and awr)
            w_left &= not (w_on and wr)
        else:
            raise AssertionError(f"write {offset:#x}: AW/W not taken in {TIMEOUT} cycles")
        ctx.set(d.s_axi_awvalid, 0)
        ctx.set(d.s_axi_wvalid, 0)
        for _ in range(b_wait):
            await ctx.tick()
        ctx.set(d.s_axi_bready, 1)
        for _ in range(TIMEOUT):
            *_, bv, bresp = await ctx.tick().sample(d.s_axi_bvalid, d.s_axi_bresp)
            if bv:
                break
        else:
            raise AssertionError(f"write {offset:#x}: no B in {TIMEOUT} cycles")
        ctx.set(d.s_axi_bready, 0)
        return bresp

    async def read(self, offset: int) -> tuple[int, int]:
        """``(rresp, rdata)`` of a read of ``offset``."""
        ctx, d = self.ctx, self.dut
        ar_wait, r_wait = self._waits(2)
        for cycle in range(TIMEOUT):
            on = cycle >= ar_wait
            ctx.set(d.s_axi_arvalid, on)
            ctx.set(d.s_axi_araddr, offset if on else self._junk(len(d.s_axi_araddr)))
            ctx.set(d.s_axi_arprot, self._junk(3))
            *_, arr, rv = await ctx.tick().sample(d.s_axi_arready, d.s_axi_rvalid)
            assert not rv, f"read {offset:#x}: R valid before AR was taken"
            if on and arr:
                break
        else:
            raise AssertionError(f"read {offset:#x}: AR not taken in {TIMEOUT} cycles")
        ctx.set(d.s_axi_arvalid, 0)
        for _ in range(r_wait):
            await ctx.tick()
        ctx.set(d.s_axi_rready, 1)
        for _ in range(TIMEOUT):
            *_, rv, rresp, rdata = await ctx.tick().sample(d.s_axi_rvalid, d.s_axi_rresp,
                                                           d.s_axi_rdata)
            if rv:
                break
        else:
            raise AssertionError(f"read {offset:#x}: no R in {TIMEOUT} cycles")
        ctx.set(d.s_axi_rready, 0)
        return rresp, rdata

    async def expect(self, offset: int, data: int, what: str = "") -> None:
        resp, got = await self.read(offset)
        assert (resp, got) == (OKAY, data), (f"read {what or hex(offset)}: got resp {resp} "
                                             f"data {got:#x}, expected OKAY {data:#x}")

    async def pulse(self, signal) -> None:
        self.ctx.set(signal, 1)
        await self.ctx.tick()
        self.ctx.set(signal, 0)


def simulate(cfg: AccelConfig, counter_bits: int, rng, bench) -> list[int]:
    """Run ``bench(axi, dut)`` on a fresh block; returns the cycles on which ``start`` was high.

    A background monitor checks the AXI hold rules (B and R stay valid with stable payload
    until taken) and that ``start`` never lasts more than one cycle.
    """
    dut = ControlRegisters(cfg, counter_bits)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    starts: list[int] = []

    async def monitor(ctx):
        held_b = held_r = None
        cycle = 0
        async for _, _, bv, br, bresp, rv, rr, rresp, rdata, start in ctx.tick().sample(
                dut.s_axi_bvalid, dut.s_axi_bready, dut.s_axi_bresp, dut.s_axi_rvalid,
                dut.s_axi_rready, dut.s_axi_rresp, dut.s_axi_rdata, dut.start):
            if held_b is not None:
                assert bv and bresp == held_b, f"cycle {cycle}: B dropped or changed while held"
            if held_r is not None:
                assert rv and (rresp, rdata) == held_r, \
                    f"cycle {cycle}: R dropped or changed while held"
            held_b = bresp if bv and not br else None
            held_r = (rresp, rdata) if rv and not rr else None
            if start:
                assert not starts or starts[-1] != cycle - 1, \
                    f"cycle {cycle}: start is high for more than one cycle"
                starts.append(cycle)
            cycle += 1

    async def testbench(ctx):
        await bench(AxiLiteMaster(ctx, dut, rng), dut)

    sim.add_testbench(monitor, background=True)
    sim.add_testbench(testbench)
    sim.run()
    return starts


def _all_ones(bits: int) -> int:
    return (1 << bits) - 1


async def _set_shape(axi, h, w, c, k, pad, loaded: bool = True) -> None:
    """Write the shape registers; with ``loaded``, the loader reports a matching record
    (``wgt_channels = c``, ``wgt_k_count = k``, clipped to their ports' width)."""
    for reg, value in ((regmap.HEIGHT, h), (regmap.WIDTH, w), (regmap.CHANNELS, c),
                       (regmap.KOUT, k), (regmap.PAD, pad)):
        assert await axi.write(reg.offset, value) == OKAY, f"{reg.name}={value}"
    if loaded:
        for port, value in ((axi.dut.wgt_channels, c), (axi.dut.wgt_k_count, k)):
            axi.ctx.set(port, min(value, (1 << len(port)) - 1))


# -- register map --------------------------------------------------------------------------

def test_regmap_table_and_helpers():
    """The table is sorted, word-aligned and below the quantisation block; the performance
    counters are five fixed registers after ARRAY_CYCLES."""
    offsets = [reg.offset for reg in regmap.REGISTERS]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < regmap.QUANT_BASE for o in offsets)
    assert regmap.CTRL.offset == 0x008 and regmap.STATUS.offset == 0x00C
    assert regmap.RELU.offset == 0x024 and regmap.ARRAY_CYCLES.offset == 0x044
    assert [regmap.perf_counter_offset(f) for f in regmap.PERF_COUNTERS] == \
        [0x048, 0x04C, 0x050, 0x054, 0x058]
    assert [reg.name for reg in regmap.PERF_REGISTERS.values()] == [
        "PERF_BUSY", "PERF_MACS", "PERF_EMPTY_SLOTS", "PERF_STALLS", "PERF_ZEROS_SKIPPED"]
    assert all(reg.access == regmap.RO and reg in regmap.REGISTERS
               for reg in regmap.PERF_REGISTERS.values())
    assert regmap.quant_offset(7, "shift") == 0x1000 + 7 * 0x10 + 8
    assert regmap.addr_bits(SMALL) == 13 and regmap.addr_bits(BIG) == 13
    assert regmap.addr_bits(AccelConfig(k_max=257)) == 14
    assert regmap.PERF_COUNTERS == tuple(name for name, _ in perf_layout(8))
    assert regmap.QUANT_FIELDS == tuple(name for name, _ in quant_layout(SMALL))
    assert regmap.decode(SMALL, regmap.UNMAPPED_EXAMPLE) is None
    assert regmap.decode(SMALL, 0x053) == regmap.Location("PERF_EMPTY_SLOTS", regmap.RO,
                                                          register=regmap.PERF_EMPTY_SLOTS)
    assert regmap.decode(SMALL, 0x05C) is None                  # after the last counter
    assert regmap.decode(SMALL, regmap.quant_offset(4, "bias")).name == "QUANT4.bias"
    assert regmap.decode(SMALL, regmap.quant_offset(5, "bias")) is None       # k == k_max
    # the per-PE counter blocks of version 1 are unmapped
    assert all(regmap.decode(BIG, OLD_PE_BLOCKS + 4 * w) is None
               for w in range(BIG.coords * OLD_PE_STRIDE // 4))
    with pytest.raises(ValueError, match=r"performance counter field 'cycles' is unknown; "
                                         r"choose one of busy, macs, empty_slots, stalls, "
                                         r"zeros_skipped"):
        regmap.perf_counter_offset("cycles")
    with pytest.raises(ValueError, match=r"quantisation entry 5 is out of range; expected an "
                                         r"integer in \[0, 5\)"):
        regmap.quant_offset(5, "bias", SMALL)


@pytest.mark.parametrize("shape, problem", [
    ((3, 3, 1, 1, 0), None),
    ((1, 1, 6, 5, 1), None),
    ((65535, 9, 1, 1, 0), None),
    ((3, 3, 0, 1, 0), "CHANNELS=0 is out of range; this accelerator takes 1..6"),
    ((3, 3, 7, 1, 0), "CHANNELS=7 is out of range; this accelerator takes 1..6"),
    ((3, 3, 1, 6, 0), "KOUT=6 is out of range; this accelerator takes 1..5"),
    ((3, 10, 1, 1, 0), "WIDTH=10 is out of range; this accelerator takes 1..9"),
    ((0, 3, 1, 1, 1), "HEIGHT=0 is out of range; this accelerator takes 1..65535"),
    ((2, 3, 1, 1, 0), "input 2x3 with pad 0 is smaller than the 3x3 kernel (H + 2*pad and "
                      "W + 2*pad must be at least 3)"),
    ((3, 3, 1, 1, 2), "PAD=2 is not supported (0 or 1)"),
])
def test_shape_problem(shape, problem):
    assert regmap.shape_problem(SMALL, *shape) == problem


def test_c_defines_compile_and_agree(tmp_path):
    """The header lines compile and every macro has the value of the Python map."""
    lines = regmap.c_defines(BIG)
    names = [line.split()[1].split("(")[0] for line in lines if line.startswith("#define")]
    assert len(names) == len(set(names)), "duplicate macro"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    checks = [("WINNOW_REG_" + reg.name, reg.offset) for reg in regmap.REGISTERS]
    checks += [("WINNOW_ID_MAGIC", regmap.ID_MAGIC),
               ("WINNOW_AXI_ADDR_BITS", regmap.addr_bits(BIG)),
               ("WINNOW_STATUS_BAD_CONFIG", regmap.STATUS_BAD_CONFIG),
               ("WINNOW_STICKY_FLAGS", regmap.STICKY_FLAGS),
               ("WINNOW_CTRL_CLEAR", regmap.CTRL_CLEAR),
               ("WINNOW_REG_QUANT(255, WINNOW_QUANT_SHIFT)", regmap.quant_offset(255, "shift"))]
    source = "\n".join(["#include <stdio.h>", *lines, "int main(void) {"]
                       + [f'printf("%lu\\n", (unsigned long)({expr}));' for expr, _ in checks]
                       + ["return 0; }", ""])
    (tmp_path / "t.c").write_text(source)
    subprocess.run([cc, "-Wall", "-Werror", "-o", str(tmp_path / "t"), str(tmp_path / "t.c")],
                   check=True)
    out = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True)
    assert [int(v) for v in out.stdout.split()] == [v for _, v in checks]


def test_registers_doc_matches_table():
    """docs/registers.md lists every fixed register with its offset and access."""
    text = (ROOT / "docs" / "registers.md").read_text()
    rows = re.findall(r"^\| `(0x[0-9A-F]{3,4})` \| (\w+) \| (RO|RW|W) \|", text, re.M)
    assert [(int(o, 16), n, a) for o, n, a in rows] == \
        [(reg.offset, reg.name, reg.access) for reg in regmap.REGISTERS]


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(cfg=SMALL, counter_bits=33), ValueError,
     r"counter_bits must be an integer in \[1, 32\], not 33"),
    (dict(cfg=SMALL, counter_bits=0), ValueError, r"counter_bits must be an integer in"),
    (dict(cfg=AccelConfig(bias_bits=40)), ValueError,
     r"AccelConfig.bias_bits=40 does not fit the 32-bit quantisation registers; use "
     r"bias_bits <= 32"),
    (dict(cfg=AccelConfig(mult_bits=33)), ValueError, r"AccelConfig.mult_bits=33"),
    (dict(cfg="winnow.json"), TypeError, r"cfg must be an AccelConfig, not str"),
])
def test_constructor_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        ControlRegisters(**kwargs)


# -- the block ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_reset_values(case, rng):
    """Every mapped register reads its reset value; the datapath outputs are all 0."""
    cfg, bits = CASES[case]
    ks = sorted({0, cfg.k_max - 1, *rng.integers(0, cfg.k_max, 3).tolist()})

    async def bench(axi, dut):
        for name in ("height", "width", "channels", "k_count", "pad", "winograd_relu",
                     "spatial_relu", "start"):
            assert axi.ctx.get(getattr(dut, name)) == 0, name
        await axi.expect(regmap.ID.offset, 0x574E4E57, "ID")
        await axi.expect(regmap.VERSION.offset, 3, "VERSION")
        for reg in regmap.REGISTERS[2:]:            # the performance counters among them
            await axi.expect(reg.offset, 0, reg.name)
        for k in ks:
            for field in regmap.QUANT_FIELDS:
                await axi.expect(regmap.quant_offset(k, field), 0, f"QUANT{k}.{field}")

    assert simulate(cfg, bits, rng, bench) == []


def test_config_readback_truncation_and_strobes(rng):
    """Config writes read back and drive the outputs; too-wide values and strobes."""
    cfg = SMALL
    outputs = {regmap.HEIGHT: ("height",), regmap.WIDTH: ("width",),
               regmap.CHANNELS: ("channels",), regmap.KOUT: ("k_count",),
               regmap.PAD: ("pad",), regmap.RELU: ("winograd_relu", "spatial_relu")}
    widths = {regmap.HEIGHT: 16, regmap.WIDTH: 4, regmap.CHANNELS: 3, regmap.KOUT: 3,
              regmap.PAD: 1, regmap.RELU: 2}
    assert regmap.config_bits(cfg) == widths

    async def bench(axi, dut):
        for reg, bits in widths.items():
            for value in (_all_ones(bits), 0, int(rng.integers(0, 1 << bits)), 1):
                assert await axi.write(reg.offset, value) == OKAY, f"{reg.name}={value}"
                await axi.expect(reg.offset, value, reg.name)
                got = [axi.ctx.get(getattr(dut, n)) for n in outputs[reg]]
                assert sum(v << i for i, v in enumerate(got)) == value, reg.name
            # one bit above the field, and the top bit of the word: refused, nothing changes
            for value in (1 << bits, 0x8000_0000 | 1):
                assert await axi.write(reg.offset, value) == SLVERR, f"{reg.name}={value:#x}"
                await axi.expect(reg.offset, 1, reg.name)
        # byte enables: only the selected bytes change
        assert await axi.write(regmap.HEIGHT.offset, 0x1234) == OKAY
        assert await axi.write(regmap.HEIGHT.offset, 0xABCD, strb=0b0010) == OKAY
        await axi.expect(regmap.HEIGHT.offset, 0xAB34)
        assert await axi.write(regmap.HEIGHT.offset, 0xFFFF_0000, strb=0b1101) == SLVERR
        assert await axi.write(regmap.HEIGHT.offset, 0xFFFF_0056, strb=0b0001) == OKAY
        await axi.expect(regmap.HEIGHT.offset, 0xAB56)
        assert await axi.write(regmap.HEIGHT.offset, 0x5555, strb=0) == OKAY
        await axi.expect(regmap.HEIGHT.offset, 0xAB56)
        # the low two address bits select nothing
        assert await axi.write(regmap.WIDTH.offset + 3, 7) == OKAY
        await axi.expect(regmap.WIDTH.offset + 1, 7)
        assert await axi.write(regmap.CTRL.offset, 1 << regmap.CTRL_BITS) == SLVERR  # reserved

    simulate(cfg, 20, rng, bench)


@pytest.mark.parametrize("case", sorted(CASES))
def test_slverr_unmapped_and_read_only(case, rng):
    """Unmapped offsets answer SLVERR both ways; read-only registers refuse writes."""
    cfg, bits = CASES[case]
    top = 1 << regmap.addr_bits(cfg)
    unmapped = [0x028, 0x02C, 0x03C, 0x05C, 0x0FC, regmap.UNMAPPED_EXAMPLE,
                regmap.QUANT_BASE + 0xC, top - 4]
    # the per-PE counters of version 1: PE 0's, the last PE's, and a word in between
    unmapped += [OLD_PE_BLOCKS, OLD_PE_BLOCKS + 0x8, OLD_PE_BLOCKS + 0x14, OLD_PE_BLOCKS + 0x1C,
                 OLD_PE_BLOCKS + (cfg.coords - 1) * OLD_PE_STRIDE + 0x10]
    if regmap.QUANT_BASE + cfg.k_max * regmap.QUANT_STRIDE < top:
        unmapped.append(regmap.QUANT_BASE + cfg.k_max * regmap.QUANT_STRIDE)
    assert all(regmap.decode(cfg, o) is None for o in unmapped)
    read_only = [regmap.ID, regmap.VERSION, regmap.STATUS, regmap.WGT_RECORDS,
                 regmap.WGT_CHANNELS, regmap.WGT_KCOUNT, regmap.CYCLES, regmap.ARRAY_CYCLES,
                 regmap.PERF_BUSY, regmap.PERF_MACS, regmap.PERF_EMPTY_SLOTS,
                 regmap.PERF_STALLS, regmap.PERF_ZEROS_SKIPPED]
    assert set(read_only) == {r for r in regmap.REGISTERS if r.access == regmap.RO}

    async def bench(axi, dut):
        axi.ctx.set(dut.cycles, 77)
        axi.ctx.set(dut.perf.zeros_skipped, 99)
        for offset in unmapped:
            assert await axi.read(offset) == (SLVERR, 0), f"read {offset:#x}"
            assert await axi.write(offset, 0xFFFF_FFFF) == SLVERR, f"write {offset:#x}"
        for reg in read_only:
            assert await axi.write(reg.offset, 0) == SLVERR, reg.name
        await axi.expect(regmap.ID.offset, regmap.ID_MAGIC)
        await axi.expect(regmap.CYCLES.offset, 77)
        await axi.expect(regmap.STATUS.offset, 0)       # SLVERR alone sets no flag
        zeros = regmap.perf_counter_offset("zeros_skipped")
        assert await axi.write(zeros, 0) == SLVERR
        await axi.expect(zeros, 99)
        await axi.expect(regmap.CTRL.offset, 0)

    simulate(cfg, bits, rng, bench)


def test_address_sweep(rng):
    """Every word of the SMALL address space: a read answers OKAY exactly where mapped."""
    cfg = SMALL
    words = 1 << (regmap.addr_bits(cfg) - 2)
    expected = [regmap.decode(cfg, 4 * w) is not None for w in range(words)]
    assert sum(expected) == len(regmap.REGISTERS) + 3 * cfg.k_max

    async def bench(axi, dut):
        axi.max_wait = 0
        for w in range(words):
            resp, _ = await axi.read(4 * w)
            assert resp == (OKAY if expected[w] else SLVERR), f"read {4 * w:#x}"

    simulate(cfg, 20, rng, bench)


def test_refused_while_busy(rng):
    """Configuration, quantisation and START writes are refused while busy; CLEAR is not."""
    cfg = SMALL

    async def bench(axi, dut):
        ctx = axi.ctx
        await _set_shape(axi, 4, 5, 2, 3, 1)
        assert await axi.write(regmap.RELU.offset, 2) == OKAY
        assert await axi.write(regmap.quant_offset(2, "bias"), 100) == OKAY
        ctx.set(dut.busy, 1)
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY)
        before = {reg: v for reg, v in zip(regmap.CONFIG_REGISTERS, (4, 5, 2, 3, 1, 2))}
        for reg in regmap.CONFIG_REGISTERS:
            assert await axi.write(reg.offset, 1) == SLVERR, reg.name
            await axi.expect(reg.offset, before[reg], reg.name)
        assert await axi.write(regmap.quant_offset(2, "bias"), -5) == SLVERR
        await axi.expect(regmap.quant_offset(2, "bias"), 100)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START | regmap.CTRL_CLEAR) \
            == SLVERR
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY | regmap.STATUS_REFUSED)
        assert ctx.get(dut.width) == 5 and ctx.get(dut.pad) == 1
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY)
        ctx.set(dut.busy, 0)
        assert await axi.write(regmap.WIDTH.offset, 6) == OKAY
        await axi.expect(regmap.WIDTH.offset, 6)
        await axi.expect(regmap.STATUS.offset, 0)

    assert simulate(cfg, 20, rng, bench) == []


def test_start_busy_done(rng):
    """START pulses once, clears DONE; BUSY follows busy; a done pulse sets DONE."""
    cfg = SMALL

    async def bench(axi, dut):
        ctx = axi.ctx
        await _set_shape(axi, 3, 9, 6, 5, 0)
        for run in range(3):
            assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == OKAY
            ctx.set(dut.busy, 1)
            await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY, f"run {run} STATUS")
            for _ in range(int(rng.integers(0, 5))):
                await ctx.tick()
            ctx.set(dut.busy, 0)
            await axi.pulse(dut.done)
            await axi.expect(regmap.STATUS.offset, regmap.STATUS_DONE, f"run {run} STATUS")
            # DONE stays until the next START, and CLEAR does not touch it
            assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
            await axi.expect(regmap.STATUS.offset, regmap.STATUS_DONE, f"run {run} STATUS")
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == OKAY
        await axi.expect(regmap.STATUS.offset, 0, "DONE cleared by START")

    starts = simulate(cfg, 20, rng, bench)
    assert len(starts) == 4


async def _start_then_clear(axi, ok: bool, what: str) -> None:
    """A CTRL write with START: OKAY and STATUS 0 if ``ok``, else SLVERR and exactly
    BAD_CONFIG; then a CLEAR, which must be accepted."""
    resp = await axi.write(regmap.CTRL.offset, regmap.CTRL_START)
    assert resp == (OKAY if ok else SLVERR), f"START {what}"
    await axi.expect(regmap.STATUS.offset, 0 if ok else regmap.STATUS_BAD_CONFIG,
                     f"STATUS after START {what}")
    assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY


def test_start_shape_check_matches_regmap(rng):
    """START is accepted exactly for the shapes :func:`sw.regmap.shape_problem` accepts."""
    cfg = SMALL
    shapes = [(3, 3, 1, 1, 0), (1, 1, 1, 1, 1), (2, 1, 1, 1, 1), (65535, 9, 6, 5, 0),
              (3, 2, 1, 1, 0), (2, 3, 1, 1, 0), (3, 3, 0, 1, 0), (3, 3, 7, 1, 0),
              (3, 3, 1, 0, 0), (3, 3, 1, 6, 0), (3, 0, 1, 1, 1), (3, 10, 1, 1, 0),
              (0, 3, 1, 1, 1), (3, 15, 7, 7, 1)]
    for _ in range(26):
        shapes.append((int(rng.choice([0, 1, 2, 3, 4, 65535])), int(rng.integers(0, 16)),
                       int(rng.integers(0, 8)), int(rng.integers(0, 8)),
                       int(rng.integers(0, 2))))
    accepted = []

    async def bench(axi, dut):
        for shape in shapes:
            await _set_shape(axi, *shape)
            ok = regmap.shape_problem(cfg, *shape) is None
            await _start_then_clear(axi, ok, f"with {shape}")
            accepted.append(ok)

    starts = simulate(cfg, 20, rng, bench)
    assert len(starts) == sum(accepted) and 0 < sum(accepted) < len(shapes)


def test_start_weight_check_matches_regmap(rng):
    """START is refused (BAD_CONFIG) exactly when :func:`sw.regmap.weights_problem` objects:
    no record loaded, or WGT_CHANNELS/WGT_KCOUNT not CHANNELS/KOUT; the shape is valid."""
    cfg = SMALL
    c, k = 4, 3
    cases = [(0, 0), (c, k), (c - 1, k), (c + 1, k), (c, k - 1), (c, k + 1), (cfg.c_max, k),
             (c, cfg.k_max), (c, 0), (0, k)]
    cases += [(int(rng.integers(0, cfg.c_max + 1)), int(rng.integers(0, cfg.k_max + 1)))
              for _ in range(10)]
    accepted = []

    async def bench(axi, dut):
        await _set_shape(axi, 5, 6, c, k, 1, loaded=False)
        for wgt_c, wgt_k in cases:
            axi.ctx.set(dut.wgt_channels, wgt_c)
            axi.ctx.set(dut.wgt_k_count, wgt_k)
            ok = regmap.weights_problem(c, k, wgt_c, wgt_k) is None
            assert ok == ((wgt_c, wgt_k) == (c, k))
            await _start_then_clear(axi, ok, f"with WGT_* = {wgt_c}, {wgt_k}")
            accepted.append(ok)

    starts = simulate(cfg, 20, rng, bench)
    assert len(starts) == sum(accepted) and 0 < sum(accepted) < len(cases)


def test_start_await(rng):
    """START with AWAIT: refused only while a run is on (a weight load alone does not refuse
    it), no weight check at START (the shape still is), ``await_record`` with its ``start``;
    the record is checked on ``awaited`` (a mismatch sets BAD_CONFIG, nothing else)."""
    cfg = SMALL
    c, k = 4, 3
    start_await = regmap.CTRL_START | regmap.CTRL_AWAIT
    pulses = []

    async def bench(axi, dut):
        ctx = axi.ctx
        await _set_shape(axi, 5, 6, c, k, 1, loaded=False)      # no record loaded yet
        # a weight load in progress: plain START refused, START with AWAIT accepted
        ctx.set(dut.busy, 1)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY | regmap.STATUS_REFUSED)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        assert await axi.write(regmap.CTRL.offset, start_await) == OKAY
        pulses.append(ctx.get(dut.await_record))
        ctx.set(dut.run_busy, 1)
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY)
        # a run on: refused, with or without AWAIT; configuration too
        for value in (start_await, regmap.CTRL_START):
            assert await axi.write(regmap.CTRL.offset, value) == SLVERR
        assert await axi.write(regmap.KOUT.offset, 2) == SLVERR
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY | regmap.STATUS_REFUSED)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        # the record arrives and matches: no flag
        ctx.set(dut.wgt_channels, c)
        ctx.set(dut.wgt_k_count, k)
        await axi.pulse(dut.awaited)
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY)
        # another whose channel count differs: BAD_CONFIG, sticky until CLEAR
        ctx.set(dut.wgt_channels, c + 1)
        await axi.pulse(dut.awaited)
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BUSY | regmap.STATUS_BAD_CONFIG)
        ctx.set(dut.run_busy, 0)
        ctx.set(dut.busy, 0)
        await axi.pulse(dut.done)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_DONE)
        # idle: AWAIT still skips the weight check, the shape check stays
        assert await axi.write(regmap.CTRL.offset, start_await) == OKAY
        pulses.append(ctx.get(dut.await_record))
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR   # WGT_* wrong
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BAD_CONFIG)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        assert await axi.write(regmap.WIDTH.offset, 0) == OKAY
        assert await axi.write(regmap.CTRL.offset, start_await) == SLVERR
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_BAD_CONFIG)
        # AWAIT alone is no START
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_AWAIT) == OKAY

    starts = simulate(cfg, 20, rng, bench)
    assert len(starts) == 2


def test_await_record_pulses_with_its_start(rng):
    """``await_record`` is high exactly in the ``start`` cycle of a START with AWAIT."""
    cfg = SMALL
    seen = []

    async def bench(axi, dut):
        ctx = axi.ctx
        await _set_shape(axi, 5, 6, 2, 2, 0)
        for value in (regmap.CTRL_START | regmap.CTRL_AWAIT, regmap.CTRL_START,
                      regmap.CTRL_START | regmap.CTRL_AWAIT | regmap.CTRL_CLEAR):
            await axi.write(regmap.CTRL.offset, value)
            for _ in range(8):
                await ctx.tick()
                seen.append((value, ctx.get(dut.start), ctx.get(dut.await_record)))

    simulate(cfg, 20, rng, bench)
    for value, start, awaits in seen:
        assert awaits == (start and bool(value & regmap.CTRL_AWAIT)), (value, start, awaits)
    assert sum(start for _, start, _ in seen) <= 3


def test_sticky_flags_and_clear(rng):
    """ERROR/OVERFLOW/REFUSED/BAD_CONFIG stay until CLEAR; a pulse during CLEAR wins."""
    cfg = SMALL
    status = regmap.STATUS.offset

    async def bench(axi, dut):
        ctx = axi.ctx
        await axi.pulse(dut.error)
        await axi.expect(status, regmap.STATUS_ERROR)
        await axi.pulse(dut.overflow)
        ctx.set(dut.busy, 1)
        assert await axi.write(regmap.PAD.offset, 1) == SLVERR
        ctx.set(dut.busy, 0)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_START) == SLVERR   # C = 0
        for _ in range(10):
            await ctx.tick()
        await axi.expect(status, regmap.STICKY_FLAGS)
        assert await axi.write(regmap.CTRL.offset, 0) == OKAY      # neither bit: no effect
        await axi.expect(status, regmap.STICKY_FLAGS)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        await axi.expect(status, 0)
        # error held high through a CLEAR: the flag is set again (no event is lost)
        ctx.set(dut.error, 1)
        ctx.set(dut.overflow, 1)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR) == OKAY
        ctx.set(dut.error, 0)
        ctx.set(dut.overflow, 0)
        await axi.expect(status, regmap.STATUS_ERROR | regmap.STATUS_OVERFLOW)
        # CLEAR lives in byte lane 0: without it the write is a no-op
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR, strb=0b1110) == OKAY
        await axi.expect(status, regmap.STATUS_ERROR | regmap.STATUS_OVERFLOW)
        assert await axi.write(regmap.CTRL.offset, regmap.CTRL_CLEAR, strb=0b0001) == OKAY
        await axi.expect(status, 0)

    simulate(cfg, 20, rng, bench)


def test_latency_and_flag_race(rng):
    """The documented timing, cycle by cycle: B and ``start`` four cycles after the AW/W
    handshake, R two cycles after AR, no new AW/W/AR while a response is held, and an
    ``error`` pulse in the very cycle a CLEAR takes effect is not lost."""
    cfg = SMALL

    async def bench(axi, dut):
        ctx = axi.ctx

        async def write_together(offset, value, during_execute=None, read_at_execute=None):
            assert ctx.get(dut.s_axi_awready) and ctx.get(dut.s_axi_wready)
            for name, v in (("awaddr", offset), ("awvalid", 1), ("wdata", value),
                            ("wstrb", 0xF), ("wvalid", 1)):
                ctx.set(getattr(dut, f"s_axi_{name}"), v)
            await ctx.tick()                                   # AW and W handshakes
            ctx.set(dut.s_axi_awvalid, 0)
            ctx.set(dut.s_axi_wvalid, 0)
            assert not ctx.get(dut.s_axi_bvalid) and not ctx.get(dut.start)
            await ctx.tick()                                   # old value read
            assert not ctx.get(dut.s_axi_bvalid) and not ctx.get(dut.start)
            await ctx.tick()                                   # merged and range-checked
            if during_execute is not None:
                ctx.set(during_execute, 1)
            if read_at_execute is not None:
                ctx.set(dut.s_axi_araddr, read_at_execute)
                ctx.set(dut.s_axi_arvalid, 1)
            assert not ctx.get(dut.s_axi_bvalid) and not ctx.get(dut.start)
            await ctx.tick()                                   # the write takes effect
            if during_execute is not None:
                ctx.set(during_execute, 0)
            ctx.set(dut.s_axi_arvalid, 0)
            assert ctx.get(dut.s_axi_bvalid), "B must be valid 4 cycles after AW/W"
            start = ctx.get(dut.start)
            for _ in range(2):                                 # held, nothing else accepted
                assert not ctx.get(dut.s_axi_awready) and not ctx.get(dut.s_axi_wready)
                await ctx.tick()
                assert not ctx.get(dut.start)
            ctx.set(dut.s_axi_bready, 1)
            resp = ctx.get(dut.s_axi_bresp)
            await ctx.tick()
            ctx.set(dut.s_axi_bready, 0)
            assert not ctx.get(dut.s_axi_bvalid)
            return resp, start

        await axi.pulse(dut.error)
        assert await write_together(regmap.CTRL.offset, regmap.CTRL_CLEAR, dut.error) \
            == (OKAY, 0)
        await axi.expect(regmap.STATUS.offset, regmap.STATUS_ERROR, "ERROR set during CLEAR")
        await _set_shape(axi, 3, 3, 1, 1, 0)
        # a STATUS read answered from the cycle of the start pulse already shows BUSY
        assert await write_together(regmap.CTRL.offset, regmap.CTRL_START,
                                    read_at_execute=regmap.STATUS.offset) == (OKAY, 1)
        assert ctx.get(dut.s_axi_rvalid)
        assert ctx.get(dut.s_axi_rdata) == regmap.STATUS_BUSY | regmap.STATUS_ERROR
        ctx.set(dut.s_axi_rready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_rready, 0)

        ctx.set(dut.s_axi_araddr, regmap.ID.offset)
        ctx.set(dut.s_axi_arvalid, 1)
        assert ctx.get(dut.s_axi_arready)
        await ctx.tick()                                       # AR handshake
        ctx.set(dut.s_axi_arvalid, 0)
        assert not ctx.get(dut.s_axi_rvalid)
        await ctx.tick()
        assert ctx.get(dut.s_axi_rvalid) and ctx.get(dut.s_axi_rdata) == regmap.ID_MAGIC
        assert not ctx.get(dut.s_axi_arready)
        ctx.set(dut.s_axi_rready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_rready, 0)
        assert not ctx.get(dut.s_axi_rvalid) and ctx.get(dut.s_axi_arready)

    assert len(simulate(cfg, 20, rng, bench)) == 1


def test_quant_read_and_merging_write_share_the_host_port(rng):
    """A quantisation read accepted in the cycle of a byte-strobe write's AW/W handshake: the
    read answers with its own entry, the write merges into its own entry's old value (the two
    share one read port of the memory), and B comes one cycle later than alone (5 cycles)."""
    cfg = SMALL

    async def bench(axi, dut):
        ctx = axi.ctx
        read_at, write_at = regmap.quant_offset(1, "bias"), regmap.quant_offset(3, "bias")
        assert await axi.write(read_at, -77) == OKAY
        assert await axi.write(write_at, -2048) == OKAY               # 0xFFFF_F800 (12 bits)
        for name, v in (("awaddr", write_at), ("awvalid", 1), ("wdata", 0x0000_0005),
                        ("wstrb", 0b0001), ("wvalid", 1), ("araddr", read_at), ("arvalid", 1)):
            ctx.set(getattr(dut, f"s_axi_{name}"), v)
        await ctx.tick()                                  # AW, W and AR handshakes together
        for name in ("awvalid", "wvalid", "arvalid"):
            ctx.set(getattr(dut, f"s_axi_{name}"), 0)
        ctx.set(dut.s_axi_rready, 1)
        for cycle in (1, 2, 3, 4):
            assert not ctx.get(dut.s_axi_bvalid), f"B after {cycle} cycles, expected 5"
            if cycle == 2:
                assert ctx.get(dut.s_axi_rvalid), "R must be valid 2 cycles after AR"
                assert ctx.get(dut.s_axi_rdata) == -77 & 0xFFFF_FFFF, "the read's own entry"
            await ctx.tick()
        ctx.set(dut.s_axi_rready, 0)
        assert ctx.get(dut.s_axi_bvalid) and ctx.get(dut.s_axi_bresp) == OKAY
        ctx.set(dut.s_axi_bready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_bready, 0)
        await axi.expect(write_at, 0xFFFF_F805, "merged into QUANT3.bias, not QUANT1.bias")
        await axi.expect(read_at, -77 & 0xFFFF_FFFF, "QUANT1.bias unchanged")

    simulate(cfg, 20, rng, bench)


def test_counter_read_is_sampled_the_cycle_after_the_handshake(rng):
    """A performance counter, like every fixed register, is read as it is in the cycle after
    the AR handshake (the registered select picks it there) and held with R: a change in the
    handshake's cycle is seen, one while R waits for ``rready`` is not."""
    cfg = SMALL

    async def bench(axi, dut):
        ctx = axi.ctx
        stalls = regmap.perf_counter_offset("stalls")
        ctx.set(dut.perf.stalls, 1234)
        ctx.set(dut.s_axi_araddr, stalls)
        ctx.set(dut.s_axi_arvalid, 1)
        await ctx.tick()                                   # AR handshake
        ctx.set(dut.s_axi_arvalid, 0)
        ctx.set(dut.perf.stalls, 99)
        assert not ctx.get(dut.s_axi_rvalid)
        await ctx.tick()                                   # 99 sampled
        ctx.set(dut.perf.stalls, 5)
        for _ in range(3):                                 # held until taken
            assert ctx.get(dut.s_axi_rvalid) and ctx.get(dut.s_axi_rdata) == 99
            await ctx.tick()
        ctx.set(dut.s_axi_rready, 1)
        await ctx.tick()
        ctx.set(dut.s_axi_rready, 0)
        assert not ctx.get(dut.s_axi_rvalid)
        await axi.expect(stalls, 5, "the next read")

    simulate(cfg, 20, rng, bench)


def _quant_values(cfg, rng, k_count: int) -> list[dict]:
    """Per entry: edge values first (most negative, most positive, max shift), then random."""
    lo_b, hi_b = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
    lo_m, hi_m = -(1 << (cfg.mult_bits - 1)), (1 << (cfg.mult_bits - 1)) - 1
    max_s = _all_ones(cfg.shift_bits)
    edges = [dict(bias=lo_b, multiplier=lo_m, shift=max_s),
             dict(bias=hi_b, multiplier=hi_m, shift=0),
             dict(bias=-1, multiplier=-1, shift=1)]
    values = edges[:k_count]
    while len(values) < k_count:
        values.append(dict(bias=int(rng.integers(lo_b, hi_b + 1)),
                           multiplier=int(rng.integers(lo_m, hi_m + 1)),
                           shift=int(rng.integers(0, max_s + 1))))
    return values


@pytest.mark.parametrize("case", sorted(CASES))
def test_quant_memory(case, rng):
    """Quantisation entries via AXI: written, read back sign-extended, seen on the quant_k
    port; values outside a field are refused."""
    cfg, bits = CASES[case]
    ks = list(range(cfg.k_max)) if cfg.k_max <= 8 else \
        sorted({0, 1, 2, cfg.k_max - 1, *rng.integers(3, cfg.k_max - 1, 4).tolist()})
    values = dict(zip(ks, _quant_values(cfg, rng, len(ks))))
    fields = regmap.quant_bits(cfg)

    async def bench(axi, dut):
        ctx = axi.ctx
        for k, entry in values.items():
            for field, value in entry.items():
                assert await axi.write(regmap.quant_offset(k, field), value) == OKAY, \
                    f"QUANT{k}.{field}={value}"
        for k, entry in values.items():
            for field, value in entry.items():
                await axi.expect(regmap.quant_offset(k, field), value & 0xFFFF_FFFF,
                                 f"QUANT{k}.{field}")
            ctx.set(dut.quant_k[0], k)
            assert payload_value(ctx.get(dut.quant[0])) == entry, f"quant port, k={k}"
        # a byte lane merges into the stored value: the most negative bias, low byte 0x05
        k = ks[0]
        bias = regmap.quant_offset(k, "bias")
        assert await axi.write(bias, 0x3C3C_3C05, strb=0b0001) == OKAY
        await axi.expect(bias, (values[k]["bias"] + 5) & 0xFFFF_FFFF, f"QUANT{k}.bias")
        ctx.set(dut.quant_k[0], k)
        assert payload_value(ctx.get(dut.quant[0]))["bias"] == values[k]["bias"] + 5
        assert await axi.write(bias, values[k]["bias"]) == OKAY
        # out of range: one past each end of a field (when the field is narrower than 32 bits)
        k = ks[-1]
        for field, (width, is_signed) in fields.items():
            offset = regmap.quant_offset(k, field)
            bad = [1 << (width - 1), -(1 << (width - 1)) - 1] if is_signed else [1 << width,
                                                                                  -1]
            for value in bad if width < 32 else []:
                assert await axi.write(offset, value) == SLVERR, f"QUANT{k}.{field}={value}"
            await axi.expect(offset, values[k][field] & 0xFFFF_FFFF, f"QUANT{k}.{field}")

    simulate(cfg, bits, rng, bench)


@pytest.mark.parametrize("case", sorted(CASES))
def test_datapath_inputs_visible(case, rng):
    """Perf counters, CYCLES, ARRAY_CYCLES and the loader status read at their addresses."""
    cfg, bits = CASES[case]
    perf = {f: int(rng.integers(0, 1 << bits)) for f in regmap.PERF_COUNTERS}
    perf["macs"] = _all_ones(bits)
    inputs = {regmap.CYCLES: ("cycles", _all_ones(bits)),
              regmap.ARRAY_CYCLES: ("array_cycles", int(rng.integers(0, 1 << bits))),
              regmap.WGT_RECORDS: ("wgt_records", 0xFFFF),
              regmap.WGT_CHANNELS: ("wgt_channels", cfg.c_max),
              regmap.WGT_KCOUNT: ("wgt_k_count", cfg.k_max)}

    async def bench(axi, dut):
        ctx = axi.ctx
        for field, value in perf.items():
            ctx.set(dut.perf[field], value)
        for name, value in inputs.values():
            ctx.set(getattr(dut, name), value)
        for field, value in perf.items():
            await axi.expect(regmap.perf_counter_offset(field), value, field)
        for reg, (_, value) in inputs.items():
            await axi.expect(reg.offset, value, reg.name)

    simulate(cfg, bits, rng, bench)


def _random_access(cfg, rng) -> tuple:
    """A random read or write, mostly at mapped offsets, with edge values and strobes."""
    r = rng.random()
    if r < 0.30:
        offset = int(rng.choice([reg.offset for reg in regmap.REGISTERS]))
    elif r < 0.40:
        offset = regmap.perf_counter_offset(str(rng.choice(regmap.PERF_COUNTERS)))
    elif r < 0.45:      # a word of the version 1 per-PE counter blocks: unmapped
        offset = OLD_PE_BLOCKS + 4 * int(rng.integers(cfg.coords * OLD_PE_STRIDE // 4))
    elif r < 0.75:
        offset = regmap.quant_offset(int(rng.integers(cfg.k_max)),
                                     str(rng.choice(regmap.QUANT_FIELDS)))
    else:
        offset = int(rng.integers(0, 1 << regmap.addr_bits(cfg))) & ~3
    if offset == regmap.CTRL.offset or rng.random() < 0.5:
        value = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x7FF, 0x800, 0xFFFF, 0x1_0000,
                                0x7FFF_FFFF, 0x8000_0000, 0xFFFF_F800, 0xFFFF_FFFF]))
    else:
        value = int(rng.integers(0, 1 << 32))
    strb = 0xF if rng.random() < 0.7 else int(rng.integers(0, 16))
    return ("write" if rng.random() < 0.6 else "read"), offset, value, strb


@pytest.mark.parametrize("case", sorted(CASES))
def test_random_against_model(case, rng):
    """A random mix of accesses, busy phases and flag pulses, every answer as the model's."""
    cfg, bits = CASES[case]
    model = RegisterModel(cfg, bits)
    ops = 400

    async def bench(axi, dut):
        ctx = axi.ctx
        for field in regmap.PERF_COUNTERS:
            value = int(rng.integers(0, 1 << bits))
            ctx.set(dut.perf[field], value)
            model.perf[field] = value
        for step in range(ops):
            if rng.random() < 0.05:     # idle, a weight load alone, or a run
                model.busy, model.run_busy = [(False, False), (True, False),
                                              (True, True)][int(rng.integers(0, 3))]
                ctx.set(dut.busy, model.busy)
                ctx.set(dut.run_busy, model.run_busy)
            if rng.random() < 0.03:
                await axi.pulse(dut.awaited)
                model.awaited()
            if rng.random() < 0.05:
                which = str(rng.choice(["done", "error", "overflow"]))
                await axi.pulse(getattr(dut, which))
                model.pulse(which)
            if rng.random() < 0.1:      # a plausible shape, so some STARTs are accepted
                shape = (3 + int(rng.integers(0, 3)), 1 + int(rng.integers(0, cfg.w_max)),
                         1 + int(rng.integers(0, cfg.c_max)), 1 + int(rng.integers(0, cfg.k_max)),
                         int(rng.integers(0, 2)))
                for reg, value in zip(regmap.CONFIG_REGISTERS, shape):
                    assert await axi.write(reg.offset, value) == model.write(reg.offset, value)
                # the loader's status: usually the matching record, sometimes none or another
                wgt = {0: (0, 0), 1: (shape[2], max(1, shape[3] - 1))}.get(
                    int(rng.integers(0, 5)), shape[2:4])
                for reg, name, value in ((regmap.WGT_CHANNELS, "wgt_channels", wgt[0]),
                                         (regmap.WGT_KCOUNT, "wgt_k_count", wgt[1])):
                    ctx.set(getattr(dut, name), value)
                    model.inputs[reg] = value
            kind, offset, value, strb = _random_access(cfg, rng)
            what = f"step {step}: {kind} {offset:#x} value {value:#x} strb {strb:#x}"
            if kind == "write":
                assert await axi.write(offset, value, strb) == model.write(offset, value, strb), \
                    what
            else:
                assert await axi.read(offset) == model.read(offset), what
        await axi.expect(regmap.STATUS.offset, model.status(), "final STATUS")
        for k in range(cfg.k_max):
            ctx.set(dut.quant_k[0], k)
            assert payload_value(ctx.get(dut.quant[0])) == model.quant[k], f"quant port, k={k}"
        for reg, value in model.config.items():
            await axi.expect(reg.offset, value, reg.name)

    starts = simulate(cfg, bits, rng, bench)
    assert len(starts) == model.starts
