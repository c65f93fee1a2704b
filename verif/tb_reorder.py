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

from sw.config import AccelConfig
from hw.reorder import OutputReorder
from sw import winograd
from verif.streams import PATTERNS, stream_shape_groups

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


@cocotb.test()
@cocotb.parametrize(gaps=PATTERNS, backpressure=PATTERNS)
async def random_frames(dut, gaps: str, backpressure: str):
    """Random frame groups under one valid-gap and one back-pressure pattern."""
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    groups = int(os.environ.get("WINNOW_SAMPLES") or DEFAULT_GROUPS)
    seed = f"{cocotb.RANDOM_SEED}/{gaps}/{backpressure}"
    rng = random.Random(seed)

    def set_shape(shape):
        dut.out_height.value, dut.out_width.value, dut.channels.value = shape

    def make_group(shape):
        return [make_frame(cfg, rng, shape) for _ in range(rng.randint(1, 3))]

    await stream_shape_groups(
        dut, f"output_reorder m={cfg.tile} gaps={gaps} backpressure={backpressure}",
        OutputReorder.layouts(cfg), gaps, backpressure, rng, seed, shapes(cfg, rng, groups),
        set_shape, make_group, ("value", "values"))
