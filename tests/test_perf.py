"""The cycle model against a cycle-by-cycle brute-force simulation and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from sw.config import AccelConfig
from sw import formats, golden, perf

SEED = 777


def brute_force_pass(cost: np.ndarray, active: np.ndarray, banks: int | None, drain: int,
                     transform: int, fifo: int = 0, marker=None) -> int:
    """Step one cycle at a time; the transform and every PE greedily do what the rules allow."""
    coords, C, T = active.shape
    queues = [[] for _ in range(coords)]  # FIFO contents: (tile, channel)
    issued, last_issue = 0, 0             # beats the transform has delivered, and when
    tile = [0] * coords                   # tile each PE works on
    busy_until = [0] * coords
    closed = [[None] * T for _ in range(coords)]
    drained = [None] * T                  # cycle at which each tile's drain ends
    now = 0
    while drained[-1] is None:
        changed = True
        while changed:                    # zero-cost steps and same-cycle hand-offs settle
            changed = False
            if issued < T * C and now >= last_issue + transform:
                t, c = divmod(issued, C)
                takers = [xi for xi in range(coords) if active[xi, c, t]]
                if not fifo or all(len(queues[xi]) < fifo for xi in takers):
                    for xi in takers:
                        queues[xi].append((t, c))
                    issued, last_issue, changed = issued + 1, now, True
            for xi in range(coords):
                t = tile[xi]
                if t >= T or busy_until[xi] > now:
                    continue
                if banks is not None and t >= banks:
                    if drained[t - banks] is None or drained[t - banks] > now:
                        continue
                if queues[xi] and queues[xi][0][0] == t:
                    _, c = queues[xi].pop(0)
                    busy_until[xi] = now + int(cost[xi, c])
                    changed = True
                elif issued >= (t + 1) * C:
                    # The bare end-of-tile marker (if any) keeps the PE busy before it closes.
                    end = now + (0 if marker is None else int(marker[xi, t]))
                    closed[xi][t] = busy_until[xi] = end
                    tile[xi] = t + 1
                    changed = True
                    if all(closed[x][t] is not None for x in range(coords)):
                        last = max(closed[x][t] for x in range(coords))
                        if banks is None:
                            drained[t] = last
                        else:
                            drained[t] = max(last, drained[t - 1] if t else 0) + drain
        now += 1
    return drained[-1]


def sparse(shape, density, rng, lo=-100, hi=100):
    x = rng.integers(lo, hi, size=shape)
    x[x == 0] = 1
    x[rng.random(shape) >= density] = 0
    return x


PARAMS = [
    perf.PerfParams(),
    perf.PerfParams(transform_cycles_per_beat=0, fifo_depth=0),
    perf.PerfParams(fifo_depth=2, drain_cycles=1, marker_cycles=3),
    perf.PerfParams(tiles_in_flight=1, drain_cycles=3),
    perf.PerfParams(tiles_in_flight=3, drain_cycles=5, activation_overhead=1),
    perf.PerfParams(min_activation_cycles=1, transform_cycles_per_beat=2),
    perf.PerfParams(min_activation_cycles=2, transform_cycles_per_beat=0, drain_cycles=0,
                    fifo_depth=3),
    perf.PerfParams(fifo_depth=0, latency_cycles=8),
]


@pytest.mark.parametrize("case", range(16))
def test_walker_schedule_matches_brute_force(case):
    """The walker recurrence (no lane model) against the cycle-by-cycle brute force, on the
    costs and markers of real packed images."""
    rng = np.random.default_rng(SEED + case)
    tile = 2 if case % 3 else 4
    lanes = int(rng.integers(1, 4)) if case % 2 else tuple(
        int(x) for x in rng.integers(1, 4, (tile + 2) ** 2))
    cfg = AccelConfig(tile=tile, lanes=lanes, k_max=8, wmem_depth=64, fifo_depth=2,
                      slots_per_lane=1 + case % 3, act_width=1)
    K, C, T = int(rng.integers(1, 12)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
    U = sparse((cfg.coords, K, C), float(rng.uniform(0.05, 0.9)), rng)
    V = sparse((cfg.coords, C, T), float(rng.uniform(0.1, 1.0)), rng)
    params = PARAMS[case % len(PARAMS)]
    print(f"seed {SEED + case}: tile {tile} lanes {lanes} K {K} C {C} T {T} {params}")
    packed = formats.pack_layer(U, cfg)
    S = np.array([cfg.word_slots(xi) for xi in range(cfg.coords)])
    banks = params.tiles_in_flight or cfg.tiles_in_flight
    for im in packed.passes:
        sched = dict(drain=im.k_count if params.drain_cycles is None else params.drain_cycles,
                     transform=params.transform_cycles_per_beat,
                     fifo=cfg.fifo_depth if params.fifo_depth is None else params.fifo_depth)
        block = U[:, im.k_base:im.k_base + im.k_count, :] != 0
        words = -(-block.sum(axis=1) // S[:, None])                       # [coords, C]
        cost = np.maximum(words, params.min_activation_cycles) + params.activation_overhead
        # Bare end-of-tile marker when the last channel brings no word.
        sched["marker"] = np.array([[0 if V[xi, C - 1, t] and words[xi, C - 1] else
                                     params.marker_cycles for t in range(T)]
                                    for xi in range(cfg.coords)])
        for b in (banks, 1, None):
            assert perf.schedule_cycles(cost, V != 0, b, **sched) == \
                brute_force_pass(cost, V != 0, b, **sched), f"pass {im.index}, banks {b}"
    rep = perf.model_layer(packed, V, cfg, params)
    pairs = int(((U != 0).sum(axis=1)[:, :, None] * (V != 0)).sum())
    assert rep.macs == pairs
    assert rep.ideal_cycles == pairs / cfg.multipliers
    assert sum(rep.losses.values()) == pytest.approx(rep.cycles - rep.ideal_cycles)
    assert all(v >= -1e-9 for v in rep.losses.values()), rep.losses


def test_lanes_set_the_pace_when_columns_are_long():
    """One PE, one tile, columns of 6 pairs in one 8-slot word on 2 lanes (3 each): the
    walker reads a column per cycle, each lane takes 3 cycles per column, and the lane queues
    let the walker run ahead by their slack only. 4 columns -> 12 lane cycles."""
    active = np.ones((1, 4, 1), dtype=bool)
    cost = np.ones((1, 4), dtype=np.int64)
    lanes = perf.LaneModel(pairs=np.full((1, 2, 4), 3), slack=np.array([4.0]))
    # beats arrive at 1..4; lanes busy from 1 for 12 cycles -> 13; drain 0
    assert perf.schedule_cycles(cost, active, None, 0, 1, lanes=lanes) == 13
    assert perf.schedule_cycles(cost, active, None, 0, 1) == 5
    # with no slack the walker waits for the lanes before each column: the same 13 cycles
    tight = perf.LaneModel(pairs=lanes.pairs, slack=np.array([0.0]))
    assert perf.schedule_cycles(cost, active, None, 0, 1, lanes=tight) == 13
    # a bare end marker costs one walker cycle after the last beat, and a slot of each lane
    marker = np.array([[1]])
    assert perf.schedule_cycles(cost, active, None, 0, 1, marker=marker, lanes=lanes) == 14


def test_hand_computed_schedule():
    """Two PEs, C=2, T=2, every activation non-zero, one channel per cycle from the transform.

    PE0 costs (3, 1), PE1 (1, 1). Tile 0: activations arrive at 1 and 2. PE0 runs c0 in
    [1, 4), c1 in [4, 5) -> 5; PE1 -> 3. Tile 1 arrives at 3 and 4 (end marker at 4).
    Two banks, no drain: PE0 runs [5, 8), [8, 9) -> 9. One bank, drain 2: tile 1 may start at
    5 + 2 = 7, so PE0 ends at 7 + 4 = 11, plus the final drain -> 13. Two banks, drain 6: tile 0
    drains [5, 11); tile 1 closes at 9 but its drain waits for the port: [11, 17) -> 17.
    """
    cost = np.array([[3, 1], [1, 1]])
    active = np.ones((2, 2, 2), dtype=bool)
    assert perf.schedule_cycles(cost, active, 2, 0, 1) == 9
    assert perf.schedule_cycles(cost, active, 1, 2, 1) == 13
    assert perf.schedule_cycles(cost, active, 2, 6, 1) == 17
    assert perf.schedule_cycles(cost, active, None, 0, 0) == 8
    # A PE with no activation still waits for the end-of-tile marker.
    assert perf.schedule_cycles(cost, np.zeros((2, 2, 2), dtype=bool), 2, 0, 1) == 4


def test_full_fifo_holds_back_the_other_pe():
    """C=3, T=2, free-running banks. Tile 0 feeds only PE0, tile 1 only PE1, 5 cycles each.

    Unlimited FIFOs: beats at 1..6; PE1 runs tile 1 from 4: 4, 9, 14 -> 19. FIFO depth 1: beat 2
    waits until PE0 pops beat 1 at 6, so PE1's beats arrive at 7, 8 and 12 (each waits for the
    previous pop): 7, 12, 17 -> 22.
    """
    cost = np.full((2, 3), 5)
    active = np.zeros((2, 3, 2), dtype=bool)
    active[0, :, 0] = active[1, :, 1] = True
    assert perf.schedule_cycles(cost, active, None, 0, 1) == 19
    assert perf.schedule_cycles(cost, active, None, 0, 1, fifo=1) == 22
    assert brute_force_pass(cost, active, None, 0, 1, fifo=1) == 22
    assert perf.schedule_cycles(cost, active, None, 0, 1, fifo=3) == 19


def test_report_fields_and_loss_breakdown():
    cfg = AccelConfig(lanes=2, slots_per_lane=1)
    U = np.zeros((16, 4, 2), dtype=np.int64)
    U[0, :3, 0] = 5                  # PE0: 3 non-zeros in column 0 -> 2 words, 1 padding slot
    U[1, 0, 1] = 1                   # PE1: 1 non-zero in column 1 -> 1 word
    V = np.ones((16, 2, 1), dtype=np.int64)
    rep = perf.model_layer(formats.pack_layer(U, cfg), V, cfg,
                           perf.PerfParams(transform_cycles_per_beat=0, drain_cycles=0,
                                           min_activation_cycles=1, marker_cycles=0))
    assert rep.macs == 4
    assert rep.ideal_cycles == 4 / 32
    # PE0: column 0 two words, column 1 empty (1 cycle); PE1: 1 + 1; others 1 + 1.
    assert rep.busy_cycles == (3,) + (2,) * 15
    assert rep.cycles == 3 and rep.cycles_one_tile == 3
    assert rep.dense_cycles == 4     # 2 columns x 4 pairs on 2 lanes (2 words of 2 slots)
    assert rep.empty_slots == (3 + 2 * 15) * 2 - 4
    assert rep.losses["imbalance"] == pytest.approx(3 / 2 - 4 / 32)
    assert rep.losses["lane_padding"] == pytest.approx(3 - 3 / 2)
    assert rep.losses["transform"] == 0 and rep.losses["tile_sync"] == 0
    assert rep.utilisation == pytest.approx((4 / 32) / 3)
    assert sum(rep.loss_fractions().values()) == pytest.approx(1 - rep.utilisation)


def test_more_tiles_in_flight_never_slower():
    rng = np.random.default_rng(SEED)
    cfg = AccelConfig(lanes=4)
    U = sparse((16, 32, 16), 0.2, rng)
    V = sparse((16, 16, 30), 0.5, rng)
    packed = formats.pack_layer(U, cfg)
    runs = [perf.model_layer(packed, V, cfg, perf.PerfParams(tiles_in_flight=b)).cycles
            for b in (1, 2, 4, 8)]
    assert runs == sorted(runs, reverse=True)
    assert runs[0] > runs[-1]


def test_rejects_bad_shapes_and_params():
    cfg = AccelConfig()
    packed = formats.pack_layer(np.ones((16, 2, 3), dtype=np.int64), cfg, name="l")
    with pytest.raises(ValueError,
                       match=r"layer l: V has shape \(16, 2, 4\); expected \[16, 3, T\]"):
        perf.model_layer(packed, np.ones((16, 2, 4)), cfg)
    with pytest.raises(ValueError, match="PerfParams.drain_cycles = -1"):
        perf.PerfParams(drain_cycles=-1)
    with pytest.raises(ValueError, match="PerfParams.tiles_in_flight = 0"):
        perf.PerfParams(tiles_in_flight=0)


RTL_CASES = [
    (dict(lanes=2, act_width=1), 8, 12, 0.35, 0.5),
    (dict(lanes=4), 16, 16, 0.35, 1.0),
    (dict(lanes=4, slots_per_lane=1, act_width=2), 16, 16, 0.35, 1.0),
    (dict(lanes=4, drain_width=1), 16, 16, 0.2, 0.3),
    (dict(lanes=(2, 2, 3, 4) * 4, tiles_in_flight=3, drain_width=2, act_width=3), 12, 16, 0.2,
     0.5),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(RTL_CASES)))
def test_model_tracks_the_rtl_array(case):
    """The model against ``hw.array.SparseArray`` in Amaranth's simulator, on small layers:
    a V beat offered every cycle, the output always taken, channels in ascending order."""
    from amaranth.sim import Simulator
    from streams import stream_get, stream_put

    from hw.array import SparseArray

    kw, K, C, w_density, a_density = RTL_CASES[case]
    cfg = AccelConfig(k_max=16, c_max=16, wmem_depth=64, fifo_depth=8, acc_bits=24, **kw)
    rng = np.random.default_rng(SEED + case)
    T = 6
    U = sparse((cfg.coords, K, C), w_density, rng)
    V = sparse((cfg.coords, C, T), a_density, rng)
    packed = formats.pack_layer(U, cfg)
    im = packed.passes[0]
    dut = SparseArray(cfg, weights=[list(w) for w in im.words],
                      directories=[formats.directory_words(im, cfg, xi)
                                   for xi in range(cfg.coords)])
    result = {}

    async def producer(ctx):
        ctx.set(dut.k_count, K)
        for beat in golden.act_beats(V, cfg.act_width):
            await stream_put(ctx, dut.act, beat)

    async def consumer(ctx):
        for _ in range(-(-K // cfg.drain_width) * T):
            await stream_get(ctx, dut.out)
        await ctx.tick().until(dut.idle)
        result["cycles"] = ctx.get(dut.cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    rep = perf.model_layer(packed, V, cfg, perf.PerfParams(latency_cycles=SparseArray.LATENCY))
    print(f"seed {SEED + case}: RTL {result['cycles']} cycles, model {rep.cycles}")
    assert abs(rep.cycles - result["cycles"]) <= 0.03 * result["cycles"] + 2


def test_allocate_lanes():
    # the slowest PE's work per lane: 2/3 here, where (4, 2, 1, 1) would leave 1/1
    assert perf.allocate_lanes([2, 1, 1, 0], 8) == (3, 2, 2, 1)
    assert perf.allocate_lanes(np.ones((2, 2)), 6) == (2, 2, 1, 1)
    assert sum(perf.allocate_lanes(np.arange(1, 17), 64)) == 64
    with pytest.raises(ValueError, match="3 multipliers cannot give each of 4 coordinates"):
        perf.allocate_lanes([1, 1, 1, 1], 3)
    with pytest.raises(ValueError, match="not all zero"):
        perf.allocate_lanes([0, 0], 4)
