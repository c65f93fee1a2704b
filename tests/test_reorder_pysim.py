# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of :class:`hw.reorder.OutputReorder` against :mod:`sw.winograd`."""

from __future__ import annotations

import numpy as np
import pytest

from sw.config import AccelConfig
from hw.reorder import OutputReorder
from streams import run_frame_groups, run_frames_free
from sw import formats, winograd

#: Small configurations: w_max not a multiple of 4, so tile 4 has a padded band column.
#: Channel counts both multiples of stream_values and not (partial last beats of a pixel):
#: 1 .. 13 in beats of 4 at m = 2, 1 .. 4 in beats of 8 (the default) at m = 4.
CONFIGS = {2: AccelConfig(tile=2, w_max=10, k_max=13, stream_values=4),
           4: AccelConfig(tile=4, w_max=10, k_max=4)}
VALUE_KINDS = ("random", "zeros", "min", "max")


def golden_raster(Y: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """NHWC raster ``[out_h, out_w, K]`` of the tiles ``Y[K, tiles_h, tiles_w, m, m]``, edge
    overhang dropped."""
    grid = winograd.tile_grid(out_h + 2, out_w + 2, Y.shape[-1], pad=0)
    assert (grid.tiles_h, grid.tiles_w) == Y.shape[1:3]
    return winograd.assemble_tiles(Y, grid).transpose(1, 2, 0)


def output_beats(cfg: AccelConfig, raster: np.ndarray) -> list[dict]:
    """The ``o`` beats of an NHWC raster: :func:`formats.activation_lanes` (zeros where
    ``keep`` is 0), ``last`` on the final one."""
    lanes, keep = formats.activation_lanes(raster, cfg)
    masks = (keep << np.arange(cfg.stream_values)).sum(axis=1)
    return [{"data": lane.tolist(), "keep": int(mask), "last": int(j == len(lanes) - 1)}
            for j, (lane, mask) in enumerate(zip(lanes, masks))]


def make_frame(cfg: AccelConfig, rng, out_h: int, out_w: int, K: int, kind: str) -> dict:
    """Tiles of one frame (in the order the output transform sends them) and the raster."""
    m = cfg.tile
    lo, hi = cfg.act_range
    shape = (K, -(-out_h // m), -(-out_w // m), m, m)
    if kind == "zeros":
        Y = np.zeros(shape, np.int64)
    elif kind in ("min", "max"):
        Y = np.full(shape, lo if kind == "min" else hi, np.int64)
    else:
        Y = rng.integers(lo, hi + 1, size=shape)
        edges = rng.random(shape)
        Y[edges < 0.1] = lo
        Y[edges > 0.9] = hi
    # P channels' tiles a beat; those past K in a tile's last beat are junk, to be ignored
    P = cfg.transform_channels
    beats = [[Y[k + j, ty, tx].ravel().tolist() if k + j < K
              else rng.integers(lo, hi + 1, size=m * m).tolist() for j in range(P)]
             for ty in range(shape[1]) for tx in range(shape[2]) for k in range(0, K, P)]
    expected = output_beats(cfg, golden_raster(Y, out_h, out_w))
    return {"shape": (out_h, out_w, K), "beats": beats, "expected": expected}


def random_groups(cfg: AccelConfig, rng, count: int) -> list[list[dict]]:
    """Groups of back-to-back frames sharing one shape; the shape changes between groups.

    The first groups pin the corners: 1×1×1, full width with every channel and partial tiles
    both ways, one column, and an exact multiple of the tile.
    """
    m = cfg.tile
    shapes = [(1, 1, 1), (2 * m + 1, cfg.w_max, cfg.k_max), (m + 1, 1, cfg.k_max),
              (2 * m, 2 * m, 1)]
    shapes += [(int(rng.integers(1, 3 * m + 2)), int(rng.integers(1, cfg.w_max + 1)),
                int(rng.integers(1, cfg.k_max + 1))) for _ in range(count - len(shapes))]
    groups = []
    for shape in shapes:
        frames = int(rng.integers(1, 3))
        groups.append([make_frame(cfg, rng, *shape, str(rng.choice(VALUE_KINDS)))
                       for _ in range(frames)])
    return groups


def set_shape(ctx, dut, shape):
    out_h, out_w, K = shape
    ctx.set(dut.out_height, out_h)
    ctx.set(dut.out_width, out_w)
    ctx.set(dut.channels, K)


def mismatch(frame: dict, j: int, got, want) -> str:
    return f"shape (out_h, out_w, K) {frame['shape']}: beat {j} is {got}, expected {want}"


# Valid gaps stay short ("stall25"): an input pause longer than a band's drain lets ``idle`` rise
# mid-frame (nothing is buffered then), which the per-cycle check of run_frame_groups forbids.
@pytest.mark.parametrize("m", sorted(CONFIGS))
@pytest.mark.parametrize("gaps, backpressure", [("none", "none"), ("stall25", "none"),
                                                 ("none", "stall75"), ("stall25", "bursts")])
def test_random_frames_match_golden(m, gaps, backpressure, rng):
    """Random shapes and values, back-to-back frames, under valid gaps and back-pressure."""
    cfg = CONFIGS[m]
    groups = random_groups(cfg, rng, 7)
    run_frame_groups(OutputReorder(cfg), groups, set_shape, rng, gaps, backpressure, slack=20,
                     mismatch=mismatch)


@pytest.mark.parametrize("cfg", [
    AccelConfig(tile=2, w_max=10, k_max=13, act_width=2, drain_width=2, transform_channels=2),
    AccelConfig(tile=4, w_max=10, k_max=9, act_width=4, drain_width=4, transform_channels=4),
], ids=["m2-p2", "m4-p4"])
def test_transform_channels(cfg, rng):
    """``transform_channels`` tiles a beat (channel counts it does and does not divide: the
    tiles past K in a tile's last beat are junk, never output), under gaps and back-pressure."""
    run_frame_groups(OutputReorder(cfg), random_groups(cfg, rng, 8), set_shape, rng,
                     "stall25", "bursts", slack=20, mismatch=mismatch)


@pytest.mark.parametrize("values", [1, 16])
def test_narrowest_and_widest_beats(values, rng):
    """stream_values 1 (one channel per beat) and 16 (K up to 17: a full and a one-channel
    beat per pixel), under gaps and back-pressure."""
    cfg = AccelConfig(tile=2, w_max=7, k_max=17, stream_values=values)
    run_frame_groups(OutputReorder(cfg), random_groups(cfg, rng, 6), set_shape, rng,
                     "stall25", "bursts", slack=20, mismatch=mismatch)


@pytest.mark.parametrize("m, shape", [(2, (9, 10, 1)), (2, (6, 7, 2)), (2, (3, 1, 1)),
                                      (4, (9, 10, 1)), (4, (4, 2, 4)), (4, (1, 1, 1))])
def test_throughput_drain_bound(m, shape, rng):
    """Few channels: band ty+1 fills while band ty drains, one beat per cycle from the first
    to the last, across bands and frames; the first row of a band leaves as its tile columns
    complete.

    Three back-to-back frames of one shape take exactly ``T + LATENCY - 1 + 3·N`` cycles,
    ``T`` the input beats of the first tile column and ``N = out_h · out_w · ceil(K / V)``
    the output beats of a frame.
    """
    cfg = CONFIGS[m]
    out_h, out_w, K = shape
    frames = [make_frame(cfg, rng, *shape, "random") for _ in range(3)]
    accepted, emitted = run_frames_free(OutputReorder(cfg), frames, set_shape)
    assert [v for _, v in emitted] == [v for f in frames for v in f["expected"]]

    tiles_w = -(-out_w // m)
    band_beats = tiles_w * K
    pixel_beats = formats.pixel_beats(K, cfg)
    beats = out_h * out_w * pixel_beats
    band_out = m * out_w * pixel_beats
    cycles = [c for c, _ in emitted]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles))), "output bubble"
    assert accepted[:band_beats] == list(range(band_beats)), "first band not one per cycle"
    column_beats = -(-K // cfg.transform_channels)
    assert cycles[0] == column_beats - 1 + OutputReorder.LATENCY
    assert cycles[-1] + 1 == column_beats + OutputReorder.LATENCY - 1 + 3 * beats
    # Band 1 is accepted completely before band 0 has finished draining.
    if out_h > m:
        assert accepted[2 * band_beats - 1] < cycles[band_out - 1]


#: The default stream_values = 8 at m = 2: a tile brings 4 values, a beat takes up to 8.
WIDE = AccelConfig(tile=2, w_max=10, k_max=16)


@pytest.mark.parametrize("shape", [(9, 10, 13), (6, 7, 8), (5, 4, 16), (4, 9, 9)])
def test_throughput_fill_bound(shape, rng):
    """Many channels at m = 2, V = 8: the input takes one tile every cycle across bands and
    frames, and what the final tile completes leaves LATENCY cycles after it, one beat per
    cycle: the first row's pixels of the final tile column and the final band's other rows
    (the first row's other pixels left as their tile columns completed).

    Three back-to-back frames take exactly ``T + LATENCY - 1 + L`` cycles, ``T`` their input
    beats and ``L`` those output beats.
    """
    cfg, m = WIDE, WIDE.tile
    out_h, out_w, K = shape
    frames = [make_frame(cfg, rng, *shape, "random") for _ in range(3)]
    accepted, emitted = run_frames_free(OutputReorder(cfg), frames, set_shape)
    assert [v for _, v in emitted] == [v for f in frames for v in f["expected"]]
    tiles = sum(len(f["beats"]) for f in frames)
    assert accepted == list(range(tiles)), "the input was stalled"
    last_rows = out_h - (-(-out_h // m) - 1) * m
    last_column = out_w - (-(-out_w // m) - 1) * m
    pixel_beats = formats.pixel_beats(K, cfg)
    tail = (last_column + (last_rows - 1) * out_w) * pixel_beats
    cycles = [c for c, _ in emitted]
    end = tiles + OutputReorder.LATENCY - 1
    assert cycles[-tail:] == list(range(end, end + tail))
    assert cycles[-tail - 1] < end - 1, "the final band's first row waited for the band"


def test_memory_bits():
    cfg = AccelConfig(tile=4, w_max=10, k_max=4, act_bits=8)
    # two bands × 4 rows × 12 columns (10 rounded up to the tile) × one word of 8 × 8 bits
    assert OutputReorder.memory_bits(cfg) == 2 * 4 * 12 * 1 * 64
    assert OutputReorder.memory_bits(AccelConfig(w_max=64, k_max=256)) == 2 * 2 * 64 * 32 * 64
    assert OutputReorder.memory_bits(AccelConfig(k_max=13, stream_values=4)) == \
        2 * 2 * 32 * 4 * 32


def test_bad_config_is_a_type_error():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        OutputReorder({"tile": 2})
