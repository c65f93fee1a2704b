# amaranth: UnusedElaboratable=no
# (the constructor-error cases create components that raise before they can be used)
"""Fast Amaranth-pysim tests of ``hw.array.SparseArray`` against :func:`sw.golden.accumulate`.

Packed images from :func:`sw.formats.pack_layer`, one stream of V vectors with random gaps,
random back-pressure on the M vectors, an in-order scoreboard over (tile, k), and the perf
counters checked against counts made from the packed image and the activations; the summed
counters (``perf_sum``) against the per-PE ones in every cycle.
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.array import SparseArray
from sw.config import AccelConfig
from sparse_bench import (check_outputs, image_writes, out_beats, overflow_beats, random_U,
                          random_V, run_sparse, shuffled_acts)
from streams import payload_value
from sw import formats, golden
from sw.regmap import PERF_COUNTERS


def images(cfg, U):
    im = formats.pack_layer(U, cfg).passes[0]
    return ([list(w) for w in im.words],
            [formats.directory_words(im, cfg, xi) for xi in range(cfg.coords)], im)


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


def check_perf_sum(cfg, run):
    """In every cycle of ``run``, ``perf_sum`` is the sum over the PEs of ``perf`` as it was
    :meth:`SparseArray.perf_lag` cycles before (all 0 before the run); it holds its final
    value from ``perf_lag`` cycles after the cycle the final ``out`` beat was taken (what
    :class:`hw.top.Accelerator` relies on for complete counts at DONE), and that value is the
    sum of the counters read at the end. Returns the final sums."""
    lag = SparseArray.perf_lag(cfg)
    per_pe = [payload_value(v) for v in run.trace["perf"]]
    sums = [payload_value(v) for v in run.trace["perf_sum"]]
    last_out = run.beat_cycles["out"][-1]
    assert len(sums) > last_out + lag
    moved = [c for c in range(last_out + lag, len(sums)) if sums[c] != sums[-1]]
    assert not moved, f"perf_sum still moved in cycle {moved[-1]}, the final out beat was " \
                      f"taken in cycle {last_out}"
    for cycle, got in enumerate(sums):
        want = {f: sum(pe[f] for pe in per_pe[cycle - lag]) if cycle >= lag else 0
                for f in PERF_COUNTERS}
        assert got == want, f"cycle {cycle}: perf_sum {got}, the PEs' sum {lag} cycles " \
                            f"before {want}"
    assert sums[-1] == {f: sum(pe[f] for pe in run.final["perf"]) for f in PERF_COUNTERS}
    return sums[-1]


@pytest.mark.parametrize("overflow,acc_bits,drain_width", [("wrap", 10, 4), ("saturate", 10, 2),
                                                           ("wrap", 24, 1)])
@pytest.mark.parametrize("gaps,backpressure", [("none", "none"), ("stall25", "stall25")])
def test_array_matches_golden(overflow, acc_bits, drain_width, gaps, backpressure, rng):
    cfg = AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8, acc_bits=acc_bits,
                      overflow=overflow, drain_width=drain_width,
                      lanes=tuple(max(x, drain_width) for x in (1, 2, 3, 5) * 4),
                      act_width=drain_width % 3 + 1)
    K, C, T = 6, 8, 5
    U, V = random_U(cfg, rng, K, C, 0.5), random_V(cfg, rng, C, T, 0.5)
    words, dirs, _ = images(cfg, U)
    dut = SparseArray(cfg, weights=words, directories=dirs)
    run = run_sparse(dut, shuffled_acts(V, cfg.act_width, rng), K, out_beats(cfg, K, T),
                     gaps=gaps, backpressure=backpressure, rng=rng,
                     probes={"perf": dut.perf, "perf_sum": dut.perf_sum})
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg), K, T, drain_width)
    check_perf(cfg, U, V, run.final["perf"])
    total = check_perf_sum(cfg, run)
    nz_act = V != 0
    assert total["macs"] == int(np.einsum("xkc,xct->", (U != 0).astype(int),
                                          nz_act.astype(int)))
    assert total["zeros_skipped"] == int((~nz_act).sum())
    # one pulse per PE drain beat with a channel outside acc_range; pulses of different PEs
    # in one cycle merge, so the count lies between the most of one PE and the sum
    per_pe = [overflow_beats(U[xi], V[xi], cfg, K, T) for xi in range(cfg.coords)]
    pulses = sum(run.trace["overflow"])
    assert max(per_pe) <= pulses <= sum(per_pe)
    assert (pulses > 0) == golden.accumulator_overflow(U, V, cfg)


@pytest.mark.parametrize("paired", [False, True])
def test_array_weight_load_port_routes_by_pe(paired, rng):
    """Every PE's image written through ``wgt_wr`` in random order: one entry or word per
    beat, or (``paired``) a PE's entry ``c`` and word ``c`` in the same beat."""
    cfg = AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=4, acc_bits=20,
                      lanes=(1, 2, 3, 2) * 4, act_width=2)     # data widths differ per PE
    K, C, T = 5, 6, 3
    U, V = random_U(cfg, rng, K, C, 0.4), random_V(cfg, rng, C, T, 0.6)
    words, dirs, _ = images(cfg, U)
    writes = [wr for xi in range(cfg.coords)
              for wr in image_writes(dirs[xi], words[xi], xi, paired)]
    assert paired == any(wr["entry"]["en"] and wr["word"]["en"] for wr in writes)
    run = run_sparse(SparseArray(cfg), shuffled_acts(V, cfg.act_width, rng), K,
                     out_beats(cfg, K, T), writes=[writes[j] for j in rng.permutation(len(writes))],
                     gaps="stall25", rng=rng)
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg), K, T, cfg.drain_width)


def test_array_cycles_between_bounds(rng):
    """Run time against bounds made from the packed image and the activations.

    Lower: the busiest PE's lane cycles, and ``T · ceil(K / D)`` drain beats. Upper: tiles
    fully serialised, each taking its slowest PE's time (words walked or lane cycles) plus an
    un-overlapped drain and bank hand-back, plus the latency. With two banks the run must also
    beat the serialised schedule by a margin.
    """
    cfg = AccelConfig(tile=2, k_max=8, c_max=16, wmem_depth=64, fifo_depth=16, acc_bits=24,
                      lanes=2)
    K, C, T = 8, 16, 8
    U, V = random_U(cfg, rng, K, C, 0.5), random_V(cfg, rng, C, T, 0.5)
    words, dirs, im = images(cfg, U)
    dut = SparseArray(cfg, weights=words, directories=dirs)
    rows = -(-K // cfg.drain_width)
    run = run_sparse(dut, shuffled_acts(V, cfg.act_width, rng), K, rows * T,
                     counters=("perf", "cycles"))
    check_outputs(run.received["out"], golden.accumulate(U, V, cfg), K, T, cfg.drain_width)
    cycles, perf = run.final["cycles"], run.final["perf"]
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
    with pytest.raises(ValueError,
                       match="PE 4 weights: word 0 = 0x100000000000 does not fit 44 bits"):
        # 4 slots of 8 + 2 (row of k_max 8 over 2 lanes) + 1 bits
        SparseArray(cfg, weights=[[]] * 4 + [[1 << 44]] + [[]] * 11)
    with pytest.raises(ValueError, match="counter_bits must be an integer >= 1, not 0"):
        SparseArray(cfg, counter_bits=0)
