"""cocotb bench for :class:`hw.reorder.OutputReorder` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test streams groups of frames
through the DUT: a group is one to three frames of one random shape ``(out_h, out_w, K)`` sent
back to back; between groups the bench waits for ``idle`` and changes the shape. The first
groups pin the corners (1×1×1; full width with ``k_max`` channels and partial tiles both ways;
one column; an exact multiple of the tile). Frame values are random ``act_bits`` integers with
the extremes mixed in, or all zero, all minimum, all maximum.

A :class:`~verif.streams.StreamDriver` sends the tiles in the order of the output transform
(``ty``, ``tx``, ``k``) under the valid-gap pattern; a :class:`~verif.streams.StreamMonitor`
takes the raster under the back-pressure pattern and checks the stream rules, and an in-order
:class:`~verif.streams.Scoreboard` compares every value and ``last`` with
:func:`sw.winograd.assemble_tiles` transposed to NHWC. ``idle`` must be high before every
group and right after its last value.

``$WINNOW_SAMPLES`` sets the number of groups per test (default 6).
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from hw.config import AccelConfig
from hw.reorder import OutputReorder
from sw import winograd
from verif.streams import PATTERNS, PayloadCodec, Scoreboard, StreamDriver, StreamMonitor, pattern

DEFAULT_GROUPS = 6
VALUE_KINDS = ("random", "random", "zeros", "min", "max")


def golden_raster(Y: np.ndarray, out_h: int, out_w: int) -> list[int]:
    """NHWC raster of the tiles ``Y[K, tiles_h, tiles_w, m, m]``, edge overhang dropped."""
    grid = winograd.tile_grid(out_h + 2, out_w + 2, Y.shape[-1], pad=0)
    return winograd.assemble_tiles(Y, grid).transpose(1, 2, 0).ravel().tolist()


def make_frame(cfg: AccelConfig, rng: random.Random, shape: tuple[int, int, int]):
    """``(tile beats, expected raster items)`` of one frame of ``shape = (out_h, out_w, K)``."""
    m = cfg.tile
    out_h, out_w, K = shape
    lo, hi = cfg.act_range
    dims = (K, -(-out_h // m), -(-out_w // m), m, m)
    kind = rng.choice(VALUE_KINDS)
    if kind == "random":
        Y = np.array([rng.choice((lo, hi)) if rng.random() < 0.2 else rng.randint(lo, hi)
                      for _ in range(int(np.prod(dims)))], dtype=np.int64).reshape(dims)
    else:
        Y = np.full(dims, {"zeros": 0, "min": lo, "max": hi}[kind], dtype=np.int64)
    beats = [[int(v) for v in Y[k, ty, tx].ravel()]
             for ty in range(dims[1]) for tx in range(dims[2]) for k in range(K)]
    raster = golden_raster(Y, out_h, out_w)
    return beats, [{"data": int(v), "last": int(j == len(raster) - 1)}
                   for j, v in enumerate(raster)]


def shapes(cfg: AccelConfig, rng: random.Random, count: int) -> list[tuple[int, int, int]]:
    m = cfg.tile
    fixed = [(1, 1, 1), (2 * m + 1, cfg.w_max, cfg.k_max), (m + 1, 1, cfg.k_max),
             (2 * m, 2 * m, 1)]
    return (fixed + [(rng.randint(1, 3 * m + 1), rng.randint(1, cfg.w_max),
                      rng.randint(1, cfg.k_max)) for _ in range(count)])[:max(count, 1)]


async def _idle_now(dut) -> bool:
    await ReadOnly()
    return bool(dut.idle.value)


@cocotb.test()
@cocotb.parametrize(gaps=PATTERNS, backpressure=PATTERNS)
async def random_frames(dut, gaps: str, backpressure: str):
    """Random frame groups under one valid-gap and one back-pressure pattern."""
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    groups = int(os.environ.get("WINNOW_SAMPLES") or DEFAULT_GROUPS)
    seed = f"{cocotb.RANDOM_SEED}/{gaps}/{backpressure}"
    rng = random.Random(seed)
    i_layout, o_layout = OutputReorder.layouts(cfg)

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.out_height.value = 1
    dut.out_width.value = 1
    dut.channels.value = 1
    driver = StreamDriver(dut, dut.clk, "i", PayloadCodec(i_layout), pattern(gaps, rng))
    shape_now = [None]

    def describe(index: int) -> str:
        return f" (group shape {shape_now[0]}, value {index} of the test)"

    board = Scoreboard(f"output_reorder m={cfg.tile} gaps={gaps} backpressure={backpressure}",
                       describe=describe)
    monitor = StreamMonitor(dut, dut.clk, "o", PayloadCodec(o_layout),
                            pattern(backpressure, rng), board.receive)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(driver.run())
    cocotb.start_soon(monitor.run())

    frames = values = 0
    for shape in shapes(cfg, rng, groups):
        await FallingEdge(dut.clk)
        assert await _idle_now(dut), f"{board.name}: not idle before shape {shape}"
        await FallingEdge(dut.clk)
        dut.out_height.value, dut.out_width.value, dut.channels.value = shape
        shape_now[0] = shape
        count = rng.randint(1, 3)
        for _ in range(count):
            beats, expected = make_frame(cfg, rng, shape)
            for beat in beats:
                driver.append(beat)
            for item in expected:
                board.expect(item)
            values += len(expected)
        frames += count
        limit = 30 * (len(beats) + len(expected)) * count + 100
        for _ in range(limit):
            await RisingEdge(dut.clk)
            if board.done:
                break
        board.check_complete()
        # The cycle right after the last value is taken the reorder must be idle.
        assert await _idle_now(dut), f"{board.name}: not idle after shape {shape}"
        assert driver.idle

    await ClockCycles(dut.clk, 20)      # a duplicate arriving now fails in receive()
    assert monitor.received == values, f"received {monitor.received}, expected {values}"
    dut._log.info(f"{board.name}: {frames} frames, {values} values bit-exact in order, "
                  f"{monitor.stalled_cycles} stalled cycles; SEED={os.environ.get('SEED')} "
                  f"(test seed {seed})")
