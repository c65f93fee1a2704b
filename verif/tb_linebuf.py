"""cocotb bench for :class:`hw.linebuf.LineBuffer` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test streams groups of frames
through the DUT: a group is one or two frames of one shape ``(H, W, C, pad)`` sent back to
back; between groups the bench waits for ``idle`` and changes the shape. The first groups pin
the corners (1×1×1 padded; one padded row at full width with ``c_max`` channels; the smallest
unpadded frame; a tall unpadded frame at full width with partial tiles both ways; one padded
column), then random legal shapes follow. Frame values are random ``act_bits`` integers with
the extremes mixed in, or all zero, all minimum, all maximum.

A :class:`~verif.streams.StreamDriver` sends the NHWC raster under the valid-gap pattern; a
:class:`~verif.streams.StreamMonitor` takes the patches under the back-pressure pattern and
checks the stream rules, and an in-order :class:`~verif.streams.Scoreboard` compares every
patch, ``c`` and ``last`` with :func:`sw.winograd.extract_tiles`. ``idle`` must be high before
every group and right after its final patch.

``$WINNOW_SAMPLES`` sets the number of random shapes per test (default 6).
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np

from sw.config import AccelConfig
from hw.linebuf import LineBuffer
from sw import winograd
from verif.streams import PATTERNS, stream_shape_groups

DEFAULT_SHAPES = 6
VALUE_KINDS = ("random", "random", "zeros", "min", "max")


def make_frame(cfg: AccelConfig, rng: random.Random, shape: tuple[int, int, int, int]):
    """``(raster beats, expected patches)`` of one frame of ``shape = (H, W, C, pad)``."""
    H, W, C, pad = shape
    lo, hi = cfg.act_range
    kind = rng.choice(VALUE_KINDS)
    if kind == "random":
        x = np.array([rng.choice((lo, hi)) if rng.random() < 0.2 else rng.randint(lo, hi)
                      for _ in range(C * H * W)], dtype=np.int64).reshape(C, H, W)
    else:
        x = np.full((C, H, W), {"zeros": 0, "min": lo, "max": hi}[kind], dtype=np.int64)
    grid = winograd.tile_grid(H, W, cfg.tile, pad)
    tiles = winograd.extract_tiles(x, grid)
    patches = [{"d": [int(v) for v in tiles[c, ty, tx].ravel()], "c": c,
                "last": int(c == C - 1)}
               for ty in range(grid.tiles_h) for tx in range(grid.tiles_w) for c in range(C)]
    return [int(v) for v in x.transpose(1, 2, 0).ravel()], patches


def shapes(cfg: AccelConfig, rng: random.Random, count: int) -> list[tuple[int, int, int, int]]:
    m = cfg.tile
    fixed = [(1, 1, 1, 1), (1, cfg.w_max, cfg.c_max, 1), (3, 3, 1, 0),
             (3 * m + 3, cfg.w_max, cfg.c_max, 0), (m + 1, 1, cfg.c_max, 1)]
    randoms = []
    for _ in range(count):
        pad = rng.randint(0, 1)
        smallest = 3 - 2 * pad
        randoms.append((rng.randint(smallest, 3 * m + 2), rng.randint(smallest, cfg.w_max),
                        rng.randint(1, cfg.c_max), pad))
    return fixed + randoms


@cocotb.test()
@cocotb.parametrize(gaps=PATTERNS, backpressure=PATTERNS)
async def random_frames(dut, gaps: str, backpressure: str):
    """Corner and random frame groups under one valid-gap and one back-pressure pattern."""
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    count = int(os.environ.get("WINNOW_SAMPLES") or DEFAULT_SHAPES)
    seed = f"{cocotb.RANDOM_SEED}/{gaps}/{backpressure}"
    rng = random.Random(seed)

    def set_shape(shape):
        dut.height.value, dut.width.value, dut.channels.value, dut.pad.value = shape

    def make_group(shape):
        return [make_frame(cfg, rng, shape) for _ in range(rng.randint(1, 2))]

    await stream_shape_groups(
        dut, f"line_buffer m={cfg.tile} gaps={gaps} backpressure={backpressure}",
        LineBuffer.layouts(cfg), gaps, backpressure, rng, seed, shapes(cfg, rng, count),
        set_shape, make_group, ("patch", "patches"), shape_fields="(H, W, C, pad) ")
