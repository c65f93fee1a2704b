"""cocotb system bench: single layers of random shape on the whole :class:`hw.top.Accelerator`.

``$WINNOW_CONFIG`` names the case's ``winnow.json``. Each test draws layers of random shape
(``C``, ``K``, ``H``, ``W``, padding 0 or 1, so partial edge tiles and padding both occur),
random sparse int8 Winograd weights with the extreme values ``-128`` and ``127`` planted, random
requantisation parameters and ReLU modes, packs them with :func:`sw.formats.pack_layer` (a
small ``wmem_depth`` forces several passes), and runs a few images each through
:class:`sw.driver.DeviceBackend` on :class:`verif.axi_transport.AxiTransport` — weights over
``s_axis_wgt``, registers over ``s_axi``, activations over ``s_axis_act``/``m_axis_out`` — with
the ``stall25`` pattern of :mod:`verif.stalls` on all three streams (valid gaps and
back-pressure). Every output value must equal :class:`sw.driver.GoldenBackend`'s.

STATUS.OVERFLOW after every run is the golden model's flag (any exact Winograd-domain sum
outside ``acc_bits``), on the random layers and on a quiet and a loud layer. The summed
performance counters of every run of the random layers, read by the driver once STATUS shows
the run done, are exact: PERF_MACS the pass's non-zero (weight, activation) pairs,
PERF_ZEROS_SKIPPED the zero transformed activations, PERF_BUSY and PERF_EMPTY_SLOTS the lane
cycles of those multiplications (:func:`check_counters`).

At full rate (no stalls), one layer at ``c_max`` and ``k_max`` on a full-width input logs its
run cycles per pass. An input frame whose partial beats carry a wrong ``tkeep`` runs to the end
and sets STATUS.ERROR.

The register-level checks: a configuration write while busy answers SLVERR, sets
STATUS.REFUSED, and the driver's write names the step and STATUS; a START with a bad shape is
refused; an unmapped address answers SLVERR.

``$WINNOW_SAMPLES`` sets the layer count (default 4).
"""

from __future__ import annotations

import dataclasses
import os

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from sw import regmap
from sw.config import AccelConfig
from sw import formats, golden, quant, winograd
from sw.driver import DeviceBackend, DeviceLayer, DriverError, GoldenBackend
from verif.axi_transport import AxiTransport

DEFAULT_LAYERS = 4


async def start(dut) -> AccelConfig:
    """Clock, reset, and the case's configuration."""
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return cfg


def random_layer(cfg: AccelConfig, rng: np.random.Generator, index: int,
                 C: int | None = None, K: int | None = None) -> DeviceLayer:
    """A random sparse layer within ``cfg``'s limits (``C`` and ``K`` random unless given),
    packed for it."""
    C = int(rng.integers(1, cfg.c_max + 1)) if C is None else C
    K = int(rng.integers(1, cfg.k_max + 1)) if K is None else K
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
    U[rng.random(U.shape) >= rng.uniform(0.1, 0.8)] = 0
    U.flat[0], U.flat[-1] = lo, hi
    shift = rng.integers(8, 16, size=K)
    q = quant.QuantLayer(
        name=f"rand{index}", U=U,
        bias=rng.integers(-2000, 2000, size=K),
        multiplier=rng.integers(1, 1 << 12, size=K),
        shift=shift, pad=int(rng.integers(0, 2)),
        winograd_relu=bool(rng.integers(0, 2)), spatial_relu=bool(rng.integers(0, 2)),
        in_scale=1.0, w_scale=np.ones(K), out_scale=1.0)
    return repack(cfg, DeviceLayer(index, q, None, (), ()), U)


def random_input(cfg: AccelConfig, rng: np.random.Generator, C: int, pad: int) -> np.ndarray:
    """``[C, H, W]`` with ``W <= w_max``, big enough for the kernel, edge values planted."""
    low = 3 - 2 * pad
    H = int(rng.integers(low, low + 6))
    W = int(rng.integers(low, cfg.w_max + 1))
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, size=(C, H, W))
    x[rng.random(x.shape) < 0.3] = 0
    x.flat[0], x.flat[-1] = lo, hi
    return x


@cocotb.test()
async def test_random_layers_under_backpressure(dut):
    """Random layers, several images each, all streams paused at random: bit-exact."""
    cfg = await start(dut)
    seed = cocotb.RANDOM_SEED
    dut._log.info("seed %d", seed)
    rng = np.random.default_rng(seed)
    rtl = DeviceBackend(AxiTransport(dut, stalls="stall25", seed=seed), cfg)
    gold = GoldenBackend(cfg)
    for index in range(int(os.environ.get("WINNOW_SAMPLES") or DEFAULT_LAYERS)):
        layer = random_layer(cfg, rng, index)
        xs = [random_input(cfg, rng, layer.qlayer.C, layer.qlayer.pad) for _ in range(2)]
        got = await rtl.conv(layer, xs)
        want = await gold.conv(layer, xs)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, f"layer {index} image {i}: shape {g.shape} != {w.shape}"
            bad = np.argwhere(g != w)
            assert bad.size == 0, (f"seed {seed} layer {index} (C={layer.qlayer.C} "
                                   f"K={layer.qlayer.K} x={xs[i].shape} pad={layer.qlayer.pad} "
                                   f"passes={layer.packed.num_passes}) image {i}: "
                                   f"{len(bad)} values differ, first at {tuple(bad[0])}: "
                                   f"RTL {g[tuple(bad[0])]} golden {w[tuple(bad[0])]}")
        check_overflow_flags(cfg, layer, xs, rtl.stats)
        check_counters(cfg, layer, xs, rtl.stats)
        dut._log.info("layer %d C=%d K=%d passes=%d: bit-exact", index, layer.qlayer.C,
                      layer.qlayer.K, layer.packed.num_passes)
    macs = sum(s["macs"] for s in rtl.stats)
    assert macs > 0


def check_overflow_flags(cfg: AccelConfig, layer: DeviceLayer, xs: list[np.ndarray],
                         stats: list[dict]) -> list[bool]:
    """Per image, STATUS.OVERFLOW of any of the layer's passes (the driver clears the flags
    before each START) must be :attr:`sw.golden.LayerTrace.overflow`; returns the flags."""
    flags = []
    for i, x in enumerate(xs):
        want = golden.conv_layer_trace(x, layer.qlayer, cfg).overflow
        runs = [s for s in stats if s["layer"] == layer.qlayer.name and s["image"] == i]
        assert len(runs) == layer.packed.num_passes
        got = any(s["overflow"] for s in runs)
        assert got == want, (f"layer {layer.qlayer.name} image {i}: STATUS.OVERFLOW {got}, "
                             f"golden {want} (acc_bits {cfg.acc_bits}, {cfg.overflow})")
        flags.append(got)
    return flags


def check_counters(cfg: AccelConfig, layer: DeviceLayer, xs: list[np.ndarray],
                   stats: list[dict]) -> None:
    """Per image and pass, the driver's deltas of the summed performance counters: ``macs``
    exactly the pass's pairs of a non-zero weight and a non-zero transformed activation,
    ``zeros_skipped`` exactly the zero transformed activations (every PE sees the whole
    ``V``), and every busy PE cycle accounts for its PE's lanes, ``macs + empty_slots``
    between ``busy`` times the fewest and the most lanes of a PE (equal to ``busy · L`` with
    ``L`` lanes everywhere), with no PE busier than the array."""
    q = layer.qlayer
    fewest, most = min(cfg.lanes_per_coord), max(cfg.lanes_per_coord)
    for i, x in enumerate(xs):
        active = (golden.conv_layer_trace(x, q, cfg).V != 0).astype(np.int64)   # [n², C, T]
        for p, image in enumerate(layer.packed.passes):
            (s,) = [s for s in stats if s["layer"] == q.name and s["image"] == i
                    and s["pass"] == p]
            U = q.U[:, image.k_base:image.k_base + image.k_count]
            pairs = int(np.einsum("xkc,xct->", (U != 0).astype(np.int64), active))
            what = f"layer {q.name} image {i} pass {p}: {s}"
            assert (s["macs"], s["zeros_skipped"]) == (pairs, int((active == 0).sum())), \
                f"{what}; expected {pairs} macs, {int((active == 0).sum())} zeros skipped"
            lane_cycles = s["macs"] + s["empty_slots"]
            assert fewest * s["busy"] <= lane_cycles <= most * s["busy"], what
            assert s["busy"] <= cfg.coords * s["array_cycles"], what


@cocotb.test()
async def test_overflow_flag_matches_golden(dut):
    """STATUS.OVERFLOW after a quiet layer (weights in -1..1, small inputs) and a loud one
    (extreme weights and inputs) is the golden model's, bit-exact outputs in both; where
    ``acc_bits`` is below the exact-sum width the loud layer must overflow."""
    cfg = await start(dut)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    rtl = DeviceBackend(AxiTransport(dut), cfg)
    lo, hi = cfg.wgt_range
    a_lo, a_hi = cfg.act_range
    quiet = random_layer(cfg, rng, 0, cfg.c_max, cfg.k_max)
    quiet = repack(cfg, quiet, np.clip(quiet.qlayer.U, -1, 1))
    loud = random_layer(cfg, rng, 1, cfg.c_max, cfg.k_max)
    loud = repack(cfg, loud, rng.choice([lo, hi], size=loud.qlayer.U.shape))
    for layer, x_range, expect in ((quiet, (-2, 2), False),
                                   (loud, (a_lo, a_hi), cfg.acc_bits < cfg.exact_sum_bits)):
        q = layer.qlayer
        x = rng.choice(x_range, size=(q.C, 6, cfg.w_max))
        (got,) = await rtl.conv(layer, [x])
        (want,) = await GoldenBackend(cfg).conv(layer, [x])
        np.testing.assert_array_equal(got, want)
        assert check_overflow_flags(cfg, layer, [x], rtl.stats) == [expect]
        dut._log.info("layer %s: STATUS.OVERFLOW %s as golden", q.name, expect)


def repack(cfg: AccelConfig, layer: DeviceLayer, U: np.ndarray) -> DeviceLayer:
    """``layer`` with Winograd weights ``U``, packed again."""
    q = dataclasses.replace(layer.qlayer, U=U)
    packed = formats.pack_layer(U, cfg, name=q.name)
    return DeviceLayer.of(layer.index, q, packed, cfg)


@cocotb.test()
async def test_full_rate_run_cycles(dut):
    """One layer at c_max and k_max on a full-width input, no stalls: bit-exact, and the run
    cycles (START to the last output) of every pass logged, the figure the stream widths move."""
    cfg = await start(dut)
    rng = np.random.default_rng(1)
    layer = random_layer(cfg, rng, 0, cfg.c_max, cfg.k_max)
    q = dataclasses.replace(layer.qlayer, pad=1)
    layer = dataclasses.replace(layer, qlayer=q)
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, size=(q.C, 8, cfg.w_max))
    rtl = DeviceBackend(AxiTransport(dut), cfg)
    (got,) = await rtl.conv(layer, [x])
    (want,) = await GoldenBackend(cfg).conv(layer, [x])
    np.testing.assert_array_equal(got, want)
    for s in rtl.stats:
        dut._log.info("full rate: C=%d K=%d %dx%d pass %d: %d run cycles, %d array cycles",
                      q.C, q.K, 8, cfg.w_max, s["pass"], s["cycles"], s["array_cycles"])


@cocotb.test()
async def test_wrong_tkeep_is_a_framing_error(dut):
    """An input frame whose partial beats say tkeep all ones (C not a multiple of
    stream_values) runs to the end but sets STATUS.ERROR; the right tkeep does not."""
    cfg = await start(dut)
    rng = np.random.default_rng(2)
    C = cfg.c_max if cfg.c_max % cfg.stream_values else cfg.c_max - 1
    layer = random_layer(cfg, rng, 0, C, cfg.k_max)
    x = random_input(cfg, rng, C, layer.qlayer.pad)
    bus = AxiTransport(dut)
    rtl = DeviceBackend(bus, cfg)
    await rtl.conv(layer, [x])
    assert not await bus.read(regmap.STATUS.offset) & regmap.STATUS_ERROR
    await rtl.write(regmap.CTRL.offset, regmap.CTRL_START, "START")
    frame = formats.pack_activations(x.transpose(1, 2, 0), cfg)
    out = await bus.stream(formats.ActivationFrame(frame.data, b"\1" * len(frame.keep)))
    grid = winograd.tile_grid(x.shape[1], x.shape[2], cfg.tile, layer.qlayer.pad)
    k_count = layer.packed.passes[-1].k_count        # the pass conv left loaded
    beats = formats.activation_beats(grid.out_h, grid.out_w, k_count, cfg)
    assert len(out.data) == beats * formats.beat_bytes(cfg)
    status = await bus.read(regmap.STATUS.offset)
    assert status & regmap.STATUS_ERROR and status & regmap.STATUS_DONE, f"STATUS {status:#x}"
    dut._log.info("wrong tkeep: STATUS %#x", status)


@cocotb.test()
async def test_refusals_and_bad_addresses(dut):
    """Busy refusal, bad-shape refusal and SLVERR on unmapped addresses, seen in STATUS."""
    cfg = await start(dut)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    bus = AxiTransport(dut)
    rtl = DeviceBackend(bus, cfg)
    assert await bus.read(regmap.ID.offset) == regmap.ID_MAGIC

    resp = await bus.axil.write(regmap.UNMAPPED_EXAMPLE, b"\0\0\0\0")
    assert int(resp.resp) == 2, "a write to an unmapped address must answer SLVERR"

    # START with an invalid shape (C = 0) is refused and flagged.
    await rtl.write(regmap.CHANNELS.offset, 0, "CHANNELS")
    await bus.axil.write(regmap.CTRL.offset, regmap.CTRL_START.to_bytes(4, "little"))
    status = await bus.read(regmap.STATUS.offset)
    assert status & regmap.STATUS_BAD_CONFIG and not status & regmap.STATUS_BUSY

    # A configuration write while a run is in progress is refused and flagged.
    layer = random_layer(cfg, rng, 0)
    await rtl.load(layer, 0)
    q = layer.qlayer
    x = random_input(cfg, rng, q.C, q.pad)
    for reg, value in ((regmap.HEIGHT, x.shape[1]), (regmap.WIDTH, x.shape[2]),
                       (regmap.CHANNELS, q.C), (regmap.KOUT, layer.packed.passes[0].k_count),
                       (regmap.PAD, q.pad)):
        await rtl.write(reg.offset, value, reg.name)
    await rtl.write(regmap.CTRL.offset, regmap.CTRL_CLEAR, "CLEAR")
    await rtl.write(regmap.CTRL.offset, regmap.CTRL_START, "START")
    assert await bus.read(regmap.STATUS.offset) & regmap.STATUS_BUSY
    resp = await bus.axil.write(regmap.WIDTH.offset, (1).to_bytes(4, "little"))
    assert int(resp.resp) == 2, "a configuration write while busy must answer SLVERR"
    status = await bus.read(regmap.STATUS.offset)
    assert status & regmap.STATUS_REFUSED
    assert await bus.read(regmap.WIDTH.offset) == x.shape[2], "the refused write took effect"
    with pytest.raises(DriverError, match=r"^layer rand0 WIDTH: register write at 0x14 "
                                          r"answered SLVERR \(STATUS 0x1[0-9a-f]\)$"):
        await rtl.write(regmap.WIDTH.offset, 1, "layer rand0 WIDTH")
    dut._log.info("refusals seen in STATUS %#x", status)
