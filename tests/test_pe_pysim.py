# amaranth: UnusedElaboratable=no
# (the constructor-error cases create components that raise before they can be used)
"""Fast Amaranth-pysim tests of ``hw.pe.SparsePE`` against :func:`sw.golden.accumulate`.

Weights come from :func:`sw.formats.pack_layer`, activations are random and sparse with the
extreme values of the V range mixed in, the producer leaves random gaps and the consumer
applies random back-pressure; the scoreboard checks every ``M[k]`` value, its ``k``, ``last``
and the output count, in order.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from sw.config import AccelConfig
from hw.pe import SparsePE
from sparse_bench import (check_outputs, image_writes, out_beats, overflow_beats, random_U,
                          random_V, run_sparse, shuffled_acts)
from streams import payload_value, stream_get, stream_put
from sw import formats, golden


def small_cfg(**kw) -> AccelConfig:
    base = dict(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=4, lanes=3, act_width=1)
    base.update(kw)
    return AccelConfig(**base)


def image(cfg, U, xi):
    packed = formats.pack_layer(U, cfg)
    assert packed.num_passes == 1
    im = packed.passes[0]
    return list(im.words[xi]), formats.directory_words(im, cfg, xi)


def run_random(cfg, rng, K: int, C: int, T: int, xi: int, densities, **stalls):
    """PE ``xi`` preloaded with random weights, run on random activations (``densities`` of
    both), its outputs checked against :func:`sw.golden.accumulate`; returns U, V and the run."""
    U = random_U(cfg, rng, K, C, densities[0])
    V = random_V(cfg, rng, C, T, densities[1])
    words, directory = image(cfg, U, xi)
    dut = SparsePE(cfg, xi, weights=words, directory=directory)
    run = run_sparse(dut, shuffled_acts(V[xi], cfg.act_width, rng), K, out_beats(cfg, K, T),
                     rng=rng, **stalls)
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg)[xi], K, T, cfg.drain_width)
    assert sum(run.trace["overflow"]) == overflow_beats(U[xi], V[xi], cfg, K, T)
    return U, V, run


@pytest.mark.parametrize("overflow,acc_bits,slots_per_lane,drain_width,act_width", [
    ("wrap", 8, 2, 4, 1), ("saturate", 8, 1, 2, 3), ("wrap", 20, 2, 1, 4),
    ("saturate", 16, 3, 8, 2)])
@pytest.mark.parametrize("gaps,backpressure", [("none", "none"), ("stall25", "bursts")])
def test_pe_matches_golden(overflow, acc_bits, slots_per_lane, drain_width, act_width, gaps,
                           backpressure, rng):
    cfg = small_cfg(overflow=overflow, acc_bits=acc_bits, slots_per_lane=slots_per_lane,
                    drain_width=drain_width, act_width=act_width, fifo_depth=8,
                    lanes=max(3, drain_width))     # a lane drains one channel per cycle
    xi = 5
    U, V, run = run_random(cfg, rng, 7, 8, 6, xi, (0.5, 0.5), gaps=gaps,
                           backpressure=backpressure)
    nz_pairs = int(((U[xi] != 0).astype(int) @ (V[xi] != 0).astype(int)).sum())
    assert run.final["perf"]["macs"] == nz_pairs
    if acc_bits == 8:       # the flag is seen to rise (its count is checked in run_random)
        assert sum(run.trace["overflow"]) > 0
    assert run.final["perf"]["zeros_skipped"] == int((V[xi] == 0).sum())


def test_pe_heavy_back_pressure_fills_every_bank(rng):
    """Short tiles fed without gaps into a slow consumer: the walker runs ahead until every
    bank is sealed, and must wait for exactly the bank it needs, not just any drained one."""
    cfg = small_cfg(lanes=2, acc_bits=20, fifo_depth=16, tiles_in_flight=2)
    _, _, run = run_random(cfg, rng, 6, 4, 12, 1, (0.4, 0.5), backpressure="stall75")
    assert run.final["perf"]["stalls"] > 0


def test_pe_one_lane_full_k(rng):
    """L = 1 and K = k_max: one slot per word, the widest k index, every column full."""
    cfg = small_cfg(lanes=1, overflow="wrap", acc_bits=24, slots_per_lane=1, drain_width=1)
    run_random(cfg, rng, cfg.k_max, cfg.c_max, 3, 0, (0.7, 0.8), gaps="stall25",
               backpressure="stall25")


@pytest.mark.parametrize("paired", [False, True])
def test_pe_loads_weights_through_the_stream_port(paired, rng):
    """An empty PE loaded through ``wgt_wr`` computes what a preloaded one does: one entry
    or word per beat, or (``paired``) entry ``c`` and word ``c`` in the same beat."""
    cfg = small_cfg(lanes=2, acc_bits=20)
    K, C, T, xi = 5, 6, 3, 2
    U = random_U(cfg, rng, K, C, 0.6)
    V = random_V(cfg, rng, C, T, 0.6)
    words, directory = image(cfg, U, xi)
    writes = image_writes(directory, words, paired=paired)
    assert paired == any(wr["entry"]["en"] and wr["word"]["en"] for wr in writes)
    run = run_sparse(SparsePE(cfg, xi), shuffled_acts(V[xi], cfg.act_width, rng), K,
                     out_beats(cfg, K, T), writes=[writes[j] for j in rng.permutation(len(writes))],
                     gaps="bursts", rng=rng)
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg)[xi], K, T, cfg.drain_width)


def handmade():
    """L = 2 and S = 2, K = 4, C = 3: column 0 holds k 0..2 (2 words, 1 padding slot), column 1
    is empty (no word), column 2 holds k 3 (1 word, 1 padding slot); one channel per beat."""
    cfg = small_cfg(lanes=2, acc_bits=16, slots_per_lane=1, drain_width=1)
    U = np.zeros((cfg.coords, 4, 3), np.int64)
    U[0, 0:3, 0] = [1, -128, 127]
    U[0, 3, 2] = -2
    # tile 0: c0 = 5, c1 = 7 (empty column), c2 = 0 (the end marker)
    # tile 1: c0 = 0, c1 = 0, c2 = -3;  tile 2: every activation zero
    V = np.zeros((cfg.coords, 3, 3), np.int64)
    V[0, :, 0] = [5, 7, 0]
    V[0, :, 1] = [0, 0, -3]
    return cfg, U, V


def test_perf_counters_exact_on_a_handmade_case():
    cfg, U, V = handmade()
    words, directory = image(cfg, U, 0)
    assert len(words) == 3 and formats.directory_entries(directory, cfg, 0) == (
        (0, 2), (2, 0), (2, 1))
    dut = SparsePE(cfg, 0, weights=words, directory=directory)
    seen = {"out": [], "stalled": 0}

    async def bench(ctx):
        ctx.set(dut.k_count, 4)
        for t in range(3):
            # one tile at a time, so the walker never waits for a bank
            for c in range(3):
                await stream_put(ctx, dut.act, {"c": c, "n": 1, "v": [int(V[0, c, t])],
                                                "last": int(c == 2)})
            for _ in range(4):
                seen["out"].append(await stream_get(ctx, dut.out))
            await ctx.tick().until(dut.idle)
        assert [ctx.get(getattr(dut.perf, f)) for f in
                ("busy", "macs", "empty_slots", "stalls", "zeros_skipped")] == [5, 4, 6, 0, 6]
        # hold off the consumer for exactly 10 cycles once M[0] is valid: 10 stall cycles
        for c in range(3):
            await stream_put(ctx, dut.act, {"c": c, "n": 1, "v": [1], "last": int(c == 2)})
        await ctx.tick().until(dut.out.valid)
        for _ in range(9):
            await ctx.tick()
        for _ in range(4):
            seen["out"].append(await stream_get(ctx, dut.out))
        await ctx.tick().until(dut.idle)
        assert ctx.get(dut.perf.stalls) == 10
        assert ctx.get(dut.perf.macs) == 8
        assert ctx.get(dut.perf.busy) == 5 + 3     # {k0, k1}, {k2}, {k3 of column 2}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    M = golden.accumulate(U, np.concatenate([V, np.ones((cfg.coords, 3, 1), np.int64)], 2),
                          cfg)[0]
    check_outputs(seen["out"], M, 4, 4, 1)
    assert [o["m"] for o in seen["out"][:4]] == [[5], [-640], [635], [0]]


@pytest.mark.parametrize("per_column,slots_per_lane,busy_per_column,stalls", [
    (4, 1, 2, False), (4, 2, 2, True), (3, 2, 2, True), (2, 1, 1, False)])
def test_back_to_back_tiles_keep_the_lanes_busy(per_column, slots_per_lane, busy_per_column,
                                                 stalls, rng):
    """Columns of ``per_column`` weights (k = 0, 1, ...) on 2 lanes, dense activations,
    always-ready output: lane ``k mod 2`` owns channel ``k``, so a column costs its fuller lane
    ``busy_per_column`` cycles, tile after tile with no bubble. Balanced columns keep both
    lanes full; a column of 3 leaves lane 1 idle one cycle in two. With 2 slots per lane the
    walker outruns the lanes and waits for queue room."""
    cfg = small_cfg(lanes=2, acc_bits=24, fifo_depth=16, k_max=4,
                    slots_per_lane=slots_per_lane, drain_width=1)
    K, C, T = 4, 8, 8
    U = np.zeros((cfg.coords, K, C), np.int64)
    U[:, :per_column, :] = 1
    V = rng.integers(1, 50, size=(cfg.coords, C, T))            # no zero activation
    words, directory = image(cfg, U, 0)
    dut = SparsePE(cfg, 0, weights=words, directory=directory)
    acts = golden.act_beats(V[0], 1)
    run = run_sparse(dut, acts, K, out_beats(cfg, K, T),
                     probes={"perf": dut.perf, "perf_step": dut.perf_step})
    cycles, perf = run.cycles, run.final["perf"]
    # perf_step is what the counters added at the last edge: its running sum is perf
    total = dict.fromkeys(perf, 0)
    for cycle, (now, step) in enumerate(zip(run.trace["perf"], run.trace["perf_step"])):
        for field, value in payload_value(step).items():
            total[field] += value
        assert payload_value(now) == total, f"cycle {cycle}: perf {payload_value(now)}, " \
                                            f"the steps add up to {total}"
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg)[0], K, T, cfg.drain_width)
    pairs = per_column * C * T
    print(f"cycles {cycles}, perf {perf}")
    assert perf["macs"] == pairs
    assert perf["busy"] == busy_per_column * C * T
    assert perf["empty_slots"] == 2 * perf["busy"] - pairs
    assert (perf["stalls"] > 0) == stalls
    assert cycles <= perf["busy"] + 16


def test_latency_of_an_isolated_tile():
    cfg, U, V = handmade()
    words, directory = image(cfg, U, 0)
    dut = SparsePE(cfg, 0, weights=words, directory=directory)
    marks = {}

    async def bench(ctx):
        ctx.set(dut.k_count, 4)
        ctx.set(dut.act.payload, {"c": 2, "n": 1, "v": [1], "last": 1})
        ctx.set(dut.act.valid, 1)
        await ctx.tick()
        ctx.set(dut.act.valid, 0)
        cycles = 0
        while not ctx.get(dut.out.valid):
            await ctx.tick()
            cycles += 1
        marks["latency"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert marks["latency"] == SparsePE.LATENCY


@pytest.mark.parametrize("kwargs,error,text", [
    (dict(cfg="cfg", xi=0), TypeError, "cfg must be an AccelConfig, not str"),
    (dict(xi=16), ValueError, r"xi must be a Winograd coordinate in \[0, 16\), not 16"),
    (dict(xi=0, counter_bits=0), ValueError, "counter_bits must be an integer >= 1, not 0"),
    (dict(xi=0, weights=[0] * 65), ValueError,
     "PE 0 weights: 65 words do not fit a memory of depth 64"),
    (dict(xi=0, directory=[1 << 20]), ValueError, "PE 0 directory: word 0 = 0x100000 does not"),
])
def test_constructor_errors(kwargs, error, text):
    kwargs = {"cfg": small_cfg(), **kwargs}
    with pytest.raises(error, match=text):
        SparsePE(kwargs.pop("cfg"), kwargs.pop("xi"), **kwargs)


def test_pe_preloaded_from_the_packers_hex_files(tmp_path, rng):
    """``python sw/pack.py`` output: PE 5's ``$readmemh`` files preload the PE, and it computes
    ``M`` of the weights the packer quantised (read back from ``weights.bin``) bit for bit."""
    cfg = AccelConfig(lanes=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=4, act_width=2,
                      acc_bits=24)
    (tmp_path / "winnow.json").write_text(cfg.to_json())
    np.savez(tmp_path / "model.npz", **{"conv.weight": rng.normal(size=(cfg.coords, 6, 5)),
                                         "conv.bias": np.zeros(6)})
    out = tmp_path / "packed"
    script = formats.__file__.replace("formats.py", "pack.py")
    res = subprocess.run([sys.executable, script, tmp_path / "model.npz", "-o", out, "--hw",
                          tmp_path / "winnow.json", "--prune", "winograd", "--density", "0.5"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    entry = json.loads((out / "manifest.json").read_text())["layers"][0]
    xi = 5
    words = formats.read_hex(out / entry["files"][f"p0.pe{xi}"],
                             formats.slot_layout(cfg, xi).word_bits)
    directory = formats.read_hex(out / entry["files"][f"p0.pe{xi}.dir"],
                                 formats.directory_layout(cfg, xi).entry_bits)
    record, = formats.decode_stream((out / "weights.bin").read_bytes(), cfg)
    U = formats.unpack_layer(formats.PackedLayer("conv", 6, 5, 6, (record.image,), None), cfg)
    V = random_V(cfg, rng, 5, 4, 0.6)
    dut = SparsePE(cfg, xi, weights=words, directory=directory)
    run = run_sparse(dut, shuffled_acts(V[xi], cfg.act_width, rng), 6, out_beats(cfg, 6, 4),
                     gaps="stall25", backpressure="stall25", rng=rng)
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg)[xi], 6, 4, cfg.drain_width)
    assert np.count_nonzero(U[xi]) > 0
