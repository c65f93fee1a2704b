# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of :class:`hw.linebuf.LineBuffer` against :mod:`sw.winograd`."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from sw.config import AccelConfig
from hw.linebuf import LineBuffer
from streams import payload_value, run_frame_groups, run_frames_free
from sw import formats, winograd

#: Small configurations: neither w_max is a multiple of n, and c_max is not a power of two.
#: Channel counts both multiples of stream_values and not (partial last beats of a pixel):
#: 1 .. 13 in beats of 4 at m = 2, 1 .. 3 in beats of 8 (the default) at m = 4.
CONFIGS = {2: AccelConfig(tile=2, w_max=10, c_max=13, stream_values=4),
           4: AccelConfig(tile=4, w_max=11, c_max=3)}
VALUE_KINDS = ("random", "random", "zeros", "min", "max")


def make_frame(cfg: AccelConfig, rng, H: int, W: int, C: int, pad: int, kind: str) -> dict:
    """Input beats (NHWC raster) and expected patches of one ``C × H × W`` frame."""
    lo, hi = cfg.act_range
    if kind == "random":
        x = rng.integers(lo, hi + 1, size=(C, H, W))
        edges = rng.random(x.shape)
        x[edges < 0.1] = lo
        x[edges > 0.9] = hi
    else:
        x = np.full((C, H, W), {"zeros": 0, "min": lo, "max": hi}[kind], dtype=np.int64)
    grid = winograd.tile_grid(H, W, cfg.tile, pad)
    tiles = winograd.extract_tiles(x, grid)                 # C, tiles_h, tiles_w, n, n
    P = cfg.transform_channels
    zero = [0] * (cfg.n * cfg.n)
    expected = [{"d": [tiles[c + j, ty, tx].ravel().tolist() if c + j < C else zero
                       for j in range(P)],
                 "c": c, "n": min(P, C - c), "last": int(c + P >= C)}
                for ty in range(grid.tiles_h) for tx in range(grid.tiles_w)
                for c in range(0, C, P)]
    return {"shape": (H, W, C, pad), "beats": wide_beats(cfg, rng, x.transpose(1, 2, 0)),
            "expected": expected, "grid": grid}


def wide_beats(cfg: AccelConfig, rng, pixels: np.ndarray) -> list[list[int]]:
    """The input beats of an ``[H, W, C]`` raster: :func:`formats.activation_lanes`
    (channels ``g·V ..`` of one pixel per beat); the lanes past ``C`` (``tkeep`` 0 on the bus)
    hold random values, which the line buffer must ignore."""
    lanes, keep = formats.activation_lanes(pixels, cfg)
    lo, hi = cfg.act_range
    lanes = np.where(keep, lanes, rng.integers(lo, hi + 1, size=lanes.shape))
    return lanes.tolist()


def random_shape(cfg: AccelConfig, rng) -> tuple[int, int, int, int]:
    pad = int(rng.integers(0, 2))
    lo = 3 - 2 * pad                    # the smallest H and W with out_h, out_w >= 1
    return (int(rng.integers(lo, 2 * cfg.tile + 5)), int(rng.integers(lo, cfg.w_max + 1)),
            int(rng.integers(1, cfg.c_max + 1)), pad)


def corner_shapes(cfg: AccelConfig) -> list[tuple[int, int, int, int]]:
    """1×1×1 padded; one row at full width and depth; the smallest unpadded frame; a tall
    frame with partial tiles both ways; exact multiples of the tile; one column."""
    m = cfg.tile
    return [(1, 1, 1, 1), (1, cfg.w_max, cfg.c_max, 1), (3, 3, 1, 0),
            (3 * m + 3, cfg.w_max, cfg.c_max, 0), (2 * m + 2, 2 * m + 2, 2, 0),
            (2 * m, 2 * m, cfg.c_max, 1), (m + 1, 1, cfg.c_max, 1)]


def make_groups(cfg: AccelConfig, rng, shapes, most: int) -> list[list[dict]]:
    """One to ``most`` back-to-back frames per shape, each with its own value kind."""
    return [[make_frame(cfg, rng, *shape, str(rng.choice(VALUE_KINDS)))
             for _ in range(int(rng.integers(1, most + 1)))] for shape in shapes]


def set_shape(ctx, dut, shape):
    H, W, C, pad = shape
    ctx.set(dut.height, H)
    ctx.set(dut.width, W)
    ctx.set(dut.channels, C)
    ctx.set(dut.pad, pad)


def mismatch(frame: dict, j: int, got, want) -> str:
    grid, want_c = frame["grid"], want["c"]
    beats = len(frame["expected"]) // (grid.tiles_h * grid.tiles_w)      # beats of a tile
    return (f"shape (H, W, C, pad) {frame['shape']}: beat {j} (ty {j // (grid.tiles_w * beats)}, "
            f"tx {j // beats % grid.tiles_w}, c {want_c}):\n  got      {got}\n"
            f"  expected {want}")


@pytest.mark.parametrize("m", sorted(CONFIGS))
def test_corner_shapes(m, rng):
    """Every corner shape, back-to-back frames, light gaps and back-pressure."""
    cfg = CONFIGS[m]
    groups = make_groups(cfg, rng, corner_shapes(cfg), 2)
    run_frame_groups(LineBuffer(cfg), groups, set_shape, rng, "stall25", "stall25", slack=30,
                     mismatch=mismatch)


@pytest.mark.parametrize("m", sorted(CONFIGS))
@pytest.mark.parametrize("gaps, backpressure", [("none", "none"), ("bursts", "none"),
                                                 ("none", "stall75"), ("stall25", "bursts")])
def test_random_frames_match_golden(m, gaps, backpressure, rng):
    """Random shapes and values, back-to-back frames, under valid gaps and back-pressure."""
    cfg = CONFIGS[m]
    shapes = [random_shape(cfg, rng) for _ in range(5)]
    groups = make_groups(cfg, rng, shapes, 2)
    run_frame_groups(LineBuffer(cfg), groups, set_shape, rng, gaps, backpressure, slack=30,
                     mismatch=mismatch)


@pytest.mark.parametrize("values", [1, 8, 16])
def test_narrowest_and_widest_beats(values, rng):
    """stream_values 1 (one channel per beat, a memory per bank), 8 (the default: the spread
    row memory, two elements a memory) and 16 (17 channels: a full and a one-channel beat per
    pixel), random and corner shapes, under gaps and back-pressure."""
    cfg = AccelConfig(tile=2, w_max=7, c_max=17, stream_values=values)
    shapes = [random_shape(cfg, rng) for _ in range(3)] + [(3, 7, 17, 1), (4, 4, 16, 0)]
    run_frame_groups(LineBuffer(cfg), make_groups(cfg, rng, shapes, 2), set_shape, rng,
                     "stall25", "stall25", slack=30, mismatch=mismatch)


@pytest.mark.parametrize("cfg", [
    # the spread layout at the default V = 8, F(2,3): a memory word holds 2 channels
    AccelConfig(tile=2, w_max=10, c_max=13, act_width=2, drain_width=2,
                transform_channels=2),
    # one memory per bank (n = 6 does not divide V = 8): 4 of a word's 8 channels per beat
    AccelConfig(tile=4, w_max=11, c_max=11, act_width=4, drain_width=4,
                transform_channels=4),
], ids=["m2-p2-spread", "m4-p4-banks"])
def test_transform_channels(cfg, rng):
    """``transform_channels`` channels per beat: random and corner shapes (channel counts that
    ``P`` does and does not divide: a tile's last beat holds fewer, its other patches zero),
    back-to-back frames, under gaps and back-pressure."""
    shapes = [random_shape(cfg, rng) for _ in range(4)] + corner_shapes(cfg) + \
        [(5, 6, cfg.transform_channels + 1, 1), (4, 5, 2 * cfg.transform_channels, 0)]
    run_frame_groups(LineBuffer(cfg), make_groups(cfg, rng, shapes, 2), set_shape, rng,
                     "stall25", "stall25", slack=30, mismatch=mismatch)


def expected_cycles(cfg: AccelConfig, frames: list[dict], accepted: list[int]) -> list[int]:
    """The cycle in which each output beat of back-to-back ``frames`` leaves with ``o`` always
    ready, from the cycles their input beats were taken (``accepted``, in order).

    The rules of :class:`~hw.linebuf.LineBuffer` (Notes, Latency): a beat is issued at most
    one a cycle, in order, and leaves ``LATENCY - 1`` cycles after its issue. A patch may be
    issued in the cycle after its band's last row is complete, or, when its last column comes
    before the row's last one, two cycles after that column's last beat: except in the cycle
    after the band before ended, when only a complete band is read.
    """
    m, n, P = cfg.tile, cfg.n, cfg.transform_channels
    leaves, prev, prev_band_end, base = [], None, False, 0
    for frame in frames:
        H, W, C, pad = frame["shape"]
        grid, beats = frame["grid"], formats.pixel_beats(C, cfg)

        def taken(y, x):
            """Cycle of pixel (y, x)'s last beat."""
            return accepted[base + (y * W + x) * beats + beats - 1]

        for ty in range(grid.tiles_h):
            last_row = min(ty * m - pad + n - 1, H - 1)
            complete = taken(last_row, W - 1) + 1
            for tx in range(grid.tiles_w):
                last_col = tx * m - pad + n - 1
                for c in range(0, C, P):
                    cycle = complete
                    if last_col <= W - 2:
                        early = taken(last_row, last_col) + 2
                        if c == 0 and tx == 0 and prev_band_end:
                            early = max(early, prev + 2)
                        cycle = min(cycle, early)
                    if prev is not None:
                        cycle = max(cycle, prev + 1)
                    leaves.append(cycle + LineBuffer.LATENCY - 1)
                    prev = cycle
                    prev_band_end = c + P >= C and tx == grid.tiles_w - 1
        base += len(frame["beats"])
    return leaves


@pytest.mark.parametrize("m, shape", [
    (2, (9, 10, 3, 1)), (2, (7, 3, 1, 0)), (2, (1, 1, 1, 1)), (2, (5, 1, 1, 1)),
    (4, (9, 11, 3, 1)), (4, (10, 5, 2, 0)), (4, (5, 4, 1, 1)), (4, (3, 3, 3, 0)),
])
def test_throughput_input_bound(m, shape, rng):
    """With o always ready and few channels, the input is taken every cycle, across frames,
    and every beat leaves in the cycle :func:`expected_cycles` gives.

    A band's ``tiles_w · C`` patches take fewer cycles than the ``m · W · ceil(C/V)`` beats of
    the next band, so the input sets the pace: a patch leaves as soon as the pixels it covers
    are in (``LATENCY + 1`` cycles after the last of them while its band's last row arrives,
    ``LATENCY`` after the row's end otherwise). That holds for one frame and for three
    back-to-back frames of one shape, whose rows stream in while the last bands of the frame
    before are read.
    """
    cfg = CONFIGS[m]
    for count in (1, 3):
        frames = [make_frame(cfg, rng, *shape, "random") for _ in range(count)]
        accepted, emitted = run_frames_free(LineBuffer(cfg), frames, set_shape)
        assert [p for _, p in emitted] == [p for f in frames for p in f["expected"]]
        beats = sum(len(f["beats"]) for f in frames)
        assert accepted == list(range(beats)), "the input was stalled"
        assert [c for c, _ in emitted] == expected_cycles(cfg, frames, accepted)


#: The default stream_values = 8 at m = 2: a beat brings 8 values, a patch takes 4 new ones.
WIDE = AccelConfig(tile=2, w_max=10, c_max=16)


@pytest.mark.parametrize("shape", [(9, 10, 8, 1), (7, 10, 13, 0), (6, 9, 16, 1), (5, 4, 9, 0)])
def test_throughput_patch_bound(shape, rng):
    """With o always ready and many channels, one patch leaves every cycle, no bubble.

    A band's ``tiles_w · C`` patches take more cycles than the ``m · W · ceil(C/V)`` beats of
    the next band, so the reader sets the pace: the first patch leaves ``LATENCY + 1`` cycles
    after the last beat of the pixels it covers while band 0's last row is still arriving
    (``LATENCY`` after the row's end when the patch reaches its last column), and every other
    patch in the cycle after the one before, ``R = tiles_h · tiles_w · C``
    patches in ``first + R`` cycles.
    """
    H, W, C, pad = shape
    frame = make_frame(WIDE, rng, *shape, "random")
    accepted, emitted = run_frames_free(LineBuffer(WIDE), [frame], set_shape)
    assert [p for _, p in emitted] == frame["expected"]
    beats = formats.pixel_beats(C, WIDE)
    # band 0's rows but the last, and the first patch's columns of the last; or the whole
    # last row when the patch reaches its last column
    rows, cols = min(H, WIDE.n - pad) - 1, WIDE.n - pad
    early = cols < W
    needed = (rows * W + (cols if early else W)) * beats
    assert accepted[:needed] == list(range(needed))
    first = needed - 1 + LineBuffer.LATENCY + early
    cycles = [c for c, _ in emitted]
    assert cycles == list(range(first, first + len(frame["expected"])))
    assert cycles == expected_cycles(WIDE, [frame], accepted)


def test_first_patch_latency(rng):
    """The first patch leaves LATENCY + 1 cycles after the last beat of the pixels it covers,
    while the rest of band 0's last row is still arriving."""
    cfg = CONFIGS[2]
    frame = make_frame(cfg, rng, 8, 6, 2, 0, "random")
    accepted, emitted = run_frames_free(LineBuffer(cfg), [frame], set_shape)
    # band 0 of an unpadded frame needs rows 0 .. n-1, patch 0 columns 0 .. n-1 (C <= V)
    needed = (cfg.n - 1) * 6 + cfg.n
    assert emitted[0][0] == accepted[needed - 1] + LineBuffer.LATENCY + 1


def test_input_stalls_only_when_full(rng):
    """With o never ready, exactly the n + m row slots fill, then the input stalls.

    Band 0 has more patches than the two the pipeline holds, so it is never released.
    """
    cfg = CONFIGS[4]
    H, W, C = 12, 11, 3
    frame = make_frame(cfg, rng, H, W, C, 0, "random")
    beats = formats.pixel_beats(C, cfg)
    dut = LineBuffer(cfg)

    async def bench(ctx):
        set_shape(ctx, dut, frame["shape"])
        ctx.set(dut.i.valid, 1)
        taken = 0
        for _ in range(3 * H * W * beats):
            ctx.set(dut.i.payload, frame["beats"][taken])
            taken += ctx.get(dut.i.ready)
            await ctx.tick()
        assert taken == LineBuffer.slots(cfg) * W * beats
        assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.idle) == 0
        assert payload_value(ctx.get(dut.o.payload)) == frame["expected"][0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_memory_bits():
    cfg = AccelConfig(tile=4, w_max=11, c_max=3, act_bits=8)
    # (6 + 4) slots × 6 banks × 2 column groups (columns 0 .. 11) × one word of 8 × 8 bits
    assert LineBuffer.memory_bits(cfg) == 10 * 6 * 2 * 1 * 64
    assert LineBuffer.memory_bits(AccelConfig(w_max=64, c_max=256)) == 6 * 4 * 17 * 32 * 64
    assert LineBuffer.memory_bits(AccelConfig(c_max=13, stream_values=4)) == \
        6 * 4 * (32 // 4 + 1) * 4 * 32


@pytest.mark.parametrize("cfg, spread, count, width, depth", [
    # default: 6 slots × 4 memories of 2 elements, 4 banks × 9 groups × 8 words deep
    (AccelConfig(), True, 6 * 4, 2 * 8, 4 * 9 * 8),
    (AccelConfig(tile=2, w_max=7, c_max=17, stream_values=16), True, 6 * 4, 4 * 8, 4 * 2 * 2),
    # one memory per bank: n does not divide V (F(4,3): n = 6), or V = 1
    (AccelConfig(tile=4, w_max=11, c_max=3), False, 10 * 6, 8 * 8, 2 * 1),
    (AccelConfig(tile=2, w_max=7, c_max=17, stream_values=1), False, 6 * 4, 8, 2 * 17),
])
def test_row_memories(cfg, spread, count, width, depth):
    """The row memories built (read from the RTLIL, one ``memory`` line each): how many, how
    wide and deep, that their bits are memory_bits, and that every one is marked
    ``no_rw_check``."""
    assert LineBuffer.spread_columns(cfg) == spread
    text = rtlil.convert(LineBuffer(cfg))
    memories = re.findall(r"attribute \\no_rw_check 1\n\s*memory width (\d+) size (\d+) "
                          r"\\(slot\d+_(?:mem|col)\d+)", text)
    assert len(memories) == count == text.count("\n  memory ")
    assert {(int(w), int(d)) for w, d, _ in memories} == {(width, depth)}
    assert all(("_mem" in name) == spread for _, _, name in memories)
    assert count * width * depth == LineBuffer.memory_bits(cfg)


def test_bad_config_is_a_type_error():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        LineBuffer({"tile": 2})
