"""cocotb bench for :class:`hw.linebuf.LineBuffer` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test streams groups of frames
through the DUT (a :class:`~verif.streams.ShapeGroupBench`): a group is one or two frames of one
shape ``(H, W, C, pad)`` sent back to back; between groups the bench waits for ``idle`` and
changes the shape. The first groups pin the corners (1×1×1 padded; one padded row at full width
with ``c_max`` channels; the smallest unpadded frame; a tall unpadded frame at full width with
partial tiles both ways; one padded column), then random legal shapes follow. Frame values are
:func:`~verif.streams.frame_values`: random ``act_bits`` integers with the extremes mixed in, or
all zero, all minimum, all maximum.

The NHWC raster goes in as wide beats (:func:`sw.formats.activation_lanes`: ``stream_values``
channels of one pixel per beat, a pixel's last beat partial when ``stream_values`` does not
divide ``C``, its lanes past ``C`` filled with random values the block must ignore) under the
valid-gap pattern, the patches come out (``transform_channels`` channels a beat) under the
back-pressure pattern with the stream rules checked, and every patch, ``c``, ``n`` and
``last`` is compared in order with :func:`sw.winograd.extract_tiles` of the raster sent.
``idle`` must be high before every group and right after its final patch.

``$WINNOW_SAMPLES`` sets the number of random shapes per test (default 6).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from sw.config import AccelConfig
from hw.linebuf import LineBuffer
from sw import formats, winograd
from verif.stalls import PATTERNS
from verif.streams import ShapeGroupBench, frame_values, sample_count

DEFAULT_SHAPES = 6


def patches(cfg: AccelConfig, shape: tuple[int, int, int, int], beats: list[list[int]]) \
        -> list[dict]:
    """The patches of one frame of wide ``beats`` of ``shape = (H, W, C, pad)``, in stream
    order."""
    H, W, C, pad = shape
    lanes = np.array(beats, dtype=np.int64).reshape(H * W, -1)[:, :C]
    x = lanes.reshape(H, W, C).transpose(2, 0, 1)
    grid = winograd.tile_grid(H, W, cfg.tile, pad)
    tiles = winograd.extract_tiles(x, grid)
    P = cfg.transform_channels
    zero = [0] * (cfg.n * cfg.n)
    return [{"d": [[int(v) for v in tiles[c + j, ty, tx].ravel()] if c + j < C else zero
                   for j in range(P)],
             "c": c, "n": min(P, C - c), "last": int(c + P >= C)}
            for ty in range(grid.tiles_h) for tx in range(grid.tiles_w) for c in range(0, C, P)]


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


def frames(cfg: AccelConfig, rng: random.Random, shape: tuple[int, int, int, int]) -> list[list]:
    """One or two frames of ``shape``, back to back, each a list of wide beats."""
    H, W, C, _ = shape
    lo, hi = cfg.act_range
    out = []
    for _ in range(rng.randint(1, 2)):
        raster = np.array(frame_values(rng, H * W * C, cfg.act_range)).reshape(H, W, C)
        lanes, keep = formats.activation_lanes(raster, cfg)
        junk = [[rng.randint(lo, hi) for _ in row] for row in lanes]
        out.append(np.where(keep, lanes, junk).tolist())
    return out


@cocotb.test()
@cocotb.parametrize(gaps=PATTERNS, backpressure=PATTERNS)
async def random_frames(dut, gaps: str, backpressure: str):
    """Corner and random frame groups under one valid-gap and one back-pressure pattern."""
    bench = ShapeGroupBench(dut, "line_buffer", LineBuffer.layouts,
                            ("height", "width", "channels", "pad"), gaps, backpressure, patches)
    await bench.run(shapes(bench.cfg, bench.rng, sample_count(DEFAULT_SHAPES)),
                    lambda shape: frames(bench.cfg, bench.rng, shape))
