# amaranth: UnusedElaboratable=no
# (the constructor-error cases create components that raise before they can be used)
"""Fast Amaranth-pysim tests of ``hw.array.SparseArray`` against :func:`sw.golden.accumulate`.

Packed images from :func:`sw.formats.pack_layer`, one stream of V vectors with random gaps,
random back-pressure on the M vectors, an in-order scoreboard over (tile, k), and the perf
counters checked against counts made from the packed image and the activations.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.pe import WMEM, DIRECTORY
from streams import stream_get, stream_put
from sw import formats, golden

SEED = int(os.environ.get("SEED") or 4104)
PERF = ("busy", "macs", "empty_slots", "stalls", "zeros_skipped")


def sparse(rng: np.random.Generator, lo: int, hi: int, shape, density: float) -> np.ndarray:
    x = rng.integers(lo, hi + 1, size=shape)
    x[rng.random(shape) >= density] = 0
    return x


def make_case(cfg, seed, K, C, T, w_density, a_density):
    rng = np.random.default_rng(seed)
    U = sparse(rng, *cfg.wgt_range, (cfg.coords, K, C), w_density)
    V = sparse(rng, *cfg.v_range, (cfg.coords, C, T), a_density)
    U[:, 0, 0], U[:, -1, -1] = cfg.wgt_range
    V[:, :, 0] = cfg.v_range[1]
    return U, V


def images(cfg, U):
    im = formats.pack_layer(U, cfg).passes[0]
    return ([list(w) for w in im.words],
            [formats.directory_words(im, cfg, xi) for xi in range(cfg.coords)], im)


def act_beats(V, prng: random.Random, act_width: int):
    """Per tile, the channel groups of ``V`` in a shuffled order, ``last`` on the final one."""
    return golden.act_beats(V, act_width, order=lambda n: prng.sample(range(n), n))


def run_array(dut, beats, count, K, *, prng=None, idle=0.0, pre=None):
    out, result = [], {}

    async def producer(ctx):
        ctx.set(dut.k_count, K)
        if pre is not None:
            await pre(ctx)
        for beat in beats:
            await stream_put(ctx, dut.act, beat, rng=prng, idle=idle)

    async def consumer(ctx):
        for _ in range(count):
            out.append(await stream_get(ctx, dut.out, rng=prng, idle=idle))
        await ctx.tick().until(dut.idle)
        result["cycles"] = ctx.get(dut.cycles)
        result["perf"] = [{f: ctx.get(getattr(dut.perf[xi], f)) for f in PERF}
                          for xi in range(dut.cfg.coords)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return out, result["cycles"], result["perf"]


def out_beats(cfg, K, T) -> int:
    return -(-K // cfg.drain_width) * T


def check_outputs(out, M, K, T, drain_width):
    expect = golden.drain_beats(M[:, :K, :T], drain_width)
    assert len(out) == len(expect)
    rows = len(expect) // T
    for i, (got, want) in enumerate(zip(out, expect)):
        assert got == want, f"output {i} (tile {i // rows}, k {want['k']})"


def check_perf(cfg, U, V, perf):
    """Per PE: exact multiplications and zero activations from the weights and activations;
    lane cycles that account for every multiplication and at most ``L`` per cycle."""
    for xi in range(cfg.coords):
        nz_act = V[xi] != 0                                                 # [C, T]
        macs = int(((U[xi] != 0).astype(int) @ nz_act.astype(int)).sum())
        got, lanes = perf[xi], cfg.lanes_per_coord[xi]
        assert got["macs"] == macs, f"PE {xi}"
        assert got["zeros_skipped"] == int((~nz_act).sum()), f"PE {xi}"
        assert got["busy"] * lanes == got["macs"] + got["empty_slots"], f"PE {xi}"
        assert got["busy"] >= -(-macs // lanes), f"PE {xi}"


@pytest.mark.parametrize("overflow,acc_bits,drain_width", [("wrap", 10, 4), ("saturate", 10, 2),
                                                           ("wrap", 24, 1)])
@pytest.mark.parametrize("idle", [0.0, 0.3])
def test_array_matches_golden(overflow, acc_bits, drain_width, idle):
    seed = SEED + acc_bits + (overflow == "saturate") + int(idle * 10)
    print(f"seed {seed}")
    cfg = AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8, acc_bits=acc_bits,
                      overflow=overflow, lanes=(1, 2, 3, 2) * 4, drain_width=drain_width,
                      act_width=drain_width % 3 + 1)
    K, C, T = 6, 8, 5
    U, V = make_case(cfg, seed, K, C, T, 0.5, 0.5)
    words, dirs, _ = images(cfg, U)
    dut = SparseArray(cfg, weights=words, directories=dirs)
    prng = random.Random(seed)
    out, _, perf = run_array(dut, act_beats(V, prng, cfg.act_width), out_beats(cfg, K, T), K,
                             prng=prng, idle=idle)
    check_outputs(out, golden.accumulate(U, V, cfg), K, T, drain_width)
    check_perf(cfg, U, V, perf)


def test_array_weight_load_port_routes_by_pe():
    seed = SEED + 99
    cfg = AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=4, acc_bits=20,
                      lanes=2, act_width=2)
    K, C, T = 5, 6, 3
    U, V = make_case(cfg, seed, K, C, T, 0.4, 0.6)
    words, dirs, _ = images(cfg, U)
    dut = SparseArray(cfg)
    prng = random.Random(seed)

    async def load(ctx):
        writes = [{"pe": xi, "mem": WMEM, "addr": a, "data": w}
                  for xi in range(cfg.coords) for a, w in enumerate(words[xi])]
        writes += [{"pe": xi, "mem": DIRECTORY, "addr": c, "data": e}
                   for xi in range(cfg.coords) for c, e in enumerate(dirs[xi])]
        prng.shuffle(writes)
        for wr in writes:
            await stream_put(ctx, dut.wgt_wr, wr, rng=prng, idle=0.2)

    out, _, _ = run_array(dut, act_beats(V, prng, cfg.act_width), out_beats(cfg, K, T), K, pre=load)
    check_outputs(out, golden.accumulate(U, V, cfg), K, T, cfg.drain_width)


def test_array_cycles_between_bounds():
    """Run time against bounds made from the packed image and the activations.

    Lower: the busiest PE's lane cycles, and ``T · ceil(K / D)`` drain beats. Upper: tiles
    fully serialised, each taking its slowest PE's time (words walked or lane cycles) plus an
    un-overlapped drain and bank hand-back, plus the latency. With two banks the run must also
    beat the serialised schedule by a margin.
    """
    seed = SEED + 5
    print(f"seed {seed}")
    cfg = AccelConfig(tile=2, k_max=8, c_max=16, wmem_depth=64, fifo_depth=16, acc_bits=24,
                      lanes=2)
    K, C, T = 8, 16, 8
    U, V = make_case(cfg, seed, K, C, T, 0.5, 0.5)
    words, dirs, im = images(cfg, U)
    dut = SparseArray(cfg, weights=words, directories=dirs)
    rows = -(-K // cfg.drain_width)
    out, cycles, perf = run_array(dut, act_beats(V, random.Random(seed), cfg.act_width), rows * T, K)
    check_outputs(out, golden.accumulate(U, V, cfg), K, T, cfg.drain_width)
    active = (V != 0).astype(int)
    col_words = np.array([[cnt for _, cnt in d] for d in im.directory])      # [coords, C]
    words = np.einsum("xc,xct->xt", col_words, active)                       # [coords, T]
    pairs = np.einsum("xkc,xct->xt", (U != 0).astype(int), active)
    per_tile = np.maximum(words, -(-pairs // 2))
    lower = max(int(-(-pairs.sum(axis=1) // 2).max()), T * rows)
    serial = int((per_tile.max(axis=0) + 2 + rows + 6).sum()) + SparseArray.LATENCY
    ideal = sum(p["macs"] for p in perf) / cfg.multipliers
    print(f"cycles {cycles}, bounds [{lower}, {serial}], ideal {ideal:.1f}, "
          f"utilisation {ideal / cycles:.3f}")
    assert lower <= cycles < serial - T * rows // 2


def test_array_errors():
    cfg = AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, lanes=2)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        SparseArray({})
    with pytest.raises(ValueError, match=r"weights: 3 images given, expected one per PE \(16\)"):
        SparseArray(cfg, weights=[[], [], []])
    with pytest.raises(ValueError, match="PE 4 weights: word 0 = 0x1000000000000 does not fit 48 bits"):
        SparseArray(cfg, weights=[[]] * 4 + [[1 << 48]] + [[]] * 11)
    with pytest.raises(ValueError, match="counter_bits must be an integer >= 1, not 0"):
        SparseArray(cfg, counter_bits=0)
