"""cocotb bench for :class:`hw.reorder.OutputReorder` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test streams groups of frames
through the DUT (a :class:`~verif.streams.ShapeGroupBench`): a group is one to three frames of
one random shape ``(out_h, out_w, K)`` sent back to back; between groups the bench waits for
``idle`` and changes the shape. The first groups pin the corners (1×1×1; full width with
``k_max`` channels and partial tiles both ways; one column; an exact multiple of the tile).
Frame values are :func:`~verif.streams.frame_values`: random ``act_bits`` integers with the
extremes mixed in, or all zero, all minimum, all maximum.

The tiles go in in the order of the output transform (``ty``, ``tx``, ``k``) under the
valid-gap pattern, the raster comes out as wide beats under the back-pressure pattern with the stream
rules checked, and every beat (values, ``keep``, ``last``) is compared in order with
:func:`sw.formats.activation_lanes` of :func:`sw.winograd.assemble_tiles` of the tiles sent,
transposed to NHWC: ``stream_values`` channels of one pixel per beat, a pixel's last beat
partial (``keep`` marking its channels, the other lanes zero) when ``stream_values`` does not
divide ``K``. ``idle`` must be high
before every group and right after its last value.

``$WINNOW_SAMPLES`` sets the number of groups per test (default 6).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from sw.config import AccelConfig
from hw.reorder import OutputReorder
from sw import formats, winograd
from verif.stalls import PATTERNS
from verif.streams import ShapeGroupBench, frame_values, sample_count

DEFAULT_GROUPS = 6


def _grid(m: int, shape: tuple[int, int, int]) -> winograd.TileGrid:
    """The tiles of an output frame of ``shape = (out_h, out_w, K)``."""
    out_h, out_w, _ = shape
    return winograd.tile_grid(out_h + 2, out_w + 2, m, pad=0)


def raster(cfg: AccelConfig, shape: tuple[int, int, int], beats: list[list[int]]) -> list[dict]:
    """The NHWC raster beats of the tile ``beats`` (``ty``, ``tx``, ``k`` order) of ``shape``,
    edge overhang dropped, ``last`` on the final one."""
    m, K, P = cfg.tile, shape[2], cfg.transform_channels
    grid = _grid(m, shape)
    tiles = [beat[j] for beat, k in zip(beats, _beat_channels(grid, K, P)) for j in range(P)
             if k + j < K]
    Y = np.array(tiles, dtype=np.int64).reshape(grid.tiles_h, grid.tiles_w, K, m, m)
    pixels = winograd.assemble_tiles(Y.transpose(2, 0, 1, 3, 4), grid).transpose(1, 2, 0)
    lanes, keep = formats.activation_lanes(pixels, cfg)
    masks = (keep << np.arange(cfg.stream_values)).sum(axis=1)
    return [{"data": [int(v) for v in lane], "keep": int(mask), "last": int(j == len(lanes) - 1)}
            for j, (lane, mask) in enumerate(zip(lanes, masks))]


def shapes(cfg: AccelConfig, rng: random.Random, count: int) -> list[tuple[int, int, int]]:
    m = cfg.tile
    fixed = [(1, 1, 1), (2 * m + 1, cfg.w_max, cfg.k_max), (m + 1, 1, cfg.k_max),
             (2 * m, 2 * m, 1)]
    return (fixed + [(rng.randint(1, 3 * m + 1), rng.randint(1, cfg.w_max),
                      rng.randint(1, cfg.k_max)) for _ in range(count)])[:max(count, 1)]


def _beat_channels(grid: winograd.TileGrid, K: int, P: int) -> list[int]:
    """The first channel of each input beat of a frame: ``0, P, ..`` below ``K`` per tile."""
    return [k for _ in range(grid.tiles_h * grid.tiles_w) for k in range(0, K, P)]


def frames(cfg: AccelConfig, rng: random.Random, shape: tuple[int, int, int]) -> list[list]:
    """One to three frames of ``shape``, back to back, each a list of beats of
    ``transform_channels`` ``m × m`` tiles (those past ``K`` random: the block ignores them)."""
    m, K, P = cfg.tile, shape[2], cfg.transform_channels
    lo, hi = cfg.act_range
    grid = _grid(m, shape)
    out = []
    for _ in range(rng.randint(1, 3)):
        values = frame_values(rng, grid.tiles_h * grid.tiles_w * K * m * m, cfg.act_range)
        tiles = iter(values[t * m * m:(t + 1) * m * m] for t in range(len(values) // (m * m)))
        out.append([[next(tiles) if k + j < K else [rng.randint(lo, hi) for _ in range(m * m)]
                     for j in range(P)] for k in _beat_channels(grid, K, P)])
    return out


@cocotb.test()
@cocotb.parametrize(gaps=PATTERNS, backpressure=PATTERNS)
async def random_frames(dut, gaps: str, backpressure: str):
    """Corner and random frame groups under one valid-gap and one back-pressure pattern."""
    bench = ShapeGroupBench(dut, "output_reorder", OutputReorder.layouts,
                            ("out_height", "out_width", "channels"), gaps, backpressure, raster)
    await bench.run(shapes(bench.cfg, bench.rng, sample_count(DEFAULT_GROUPS)),
                    lambda shape: frames(bench.cfg, bench.rng, shape))
