"""cocotb bench for :class:`hw.array.SparseArray` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test:

1. makes random sparse Winograd-domain weights, packs them with :func:`sw.formats.pack_layer`
   and writes the image through the ``wgt_wr`` port (random order, random gaps), each beat
   a PE's directory entry ``j`` and its weight word ``j`` together (one of them once the
   other list has ended);
2. streams ``T`` tiles of random sparse ``V`` vectors, ``act_width`` channels per beat (beats
   shuffled per tile, extreme ``V`` mixed in) through ``act``;
3. checks every output beat (``drain_width`` channels of ``M`` vectors), its ``k`` and
   ``last`` in order against :func:`sw.golden.accumulate` in the order of
   :func:`sw.golden.drain_beats` under the output back-pressure pattern (the harness is a
   :class:`~verif.streams.StreamBench`);
4. reads the ``cycles`` and per-PE perf counters: ``macs`` must equal the non-zero pairs and
   ``zeros_skipped`` the zero activations, exactly; ``busy`` lane cycles must account for
   every multiplication at ``L`` per cycle. ``perf_sum``, :meth:`SparseArray.perf_lag`
   cycles later, must be the sum of the per-PE counters, field by field. With no
   back-pressure the run time is logged against the ideal (``pairs / multipliers``) and
   :func:`sw.perf.model_layer`.

``$WINNOW_SAMPLES`` sets the tile count ``T`` (default 6).
"""

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.triggers import ClockCycles

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.pe import SparsePE, load_write, perf_layout
from sw import formats, golden, perf
from verif.streams import PayloadCodec, StreamBench, case_config, sample_count

DEFAULT_TILES = 6
W_DENSITY = 0.35


def _case(cfg: AccelConfig, rng: np.random.Generator, T: int, a_density: float):
    K, C = cfg.k_max, cfg.c_max
    U = rng.integers(cfg.wgt_range[0], cfg.wgt_range[1] + 1, size=(cfg.coords, K, C))
    U[rng.random(U.shape) >= W_DENSITY] = 0
    U[:, 0, 0], U[:, -1, -1] = cfg.wgt_range
    V = rng.integers(cfg.v_range[0], cfg.v_range[1] + 1, size=(cfg.coords, C, T))
    V[rng.random(V.shape) >= a_density] = 0
    V[:, :, 0] = cfg.v_range[1]
    return U, V


def weight_writes(image: formats.PassImage, cfg: AccelConfig) -> list[dict]:
    """The ``wgt_wr`` beats that load ``image`` (:func:`hw.pe.load_write`): per PE, beat
    ``j`` writes its directory entry ``j`` and its weight word ``j``, either left out once
    its list has ended."""
    beats = []
    for xi in range(cfg.coords):
        entries = list(enumerate(formats.directory_words(image, cfg, xi)))
        words = list(enumerate(image.words[xi]))
        beats += [load_write(xi, entry=entries[j] if j < len(entries) else None,
                             word=words[j] if j < len(words) else None)
                  for j in range(max(len(entries), len(words)))]
    return beats


def perf_counters(dut, cfg: AccelConfig) -> list[dict]:
    """The per-PE counters on the ``perf`` port, unpacked."""
    layout = data.ArrayLayout(perf_layout(SparsePE.COUNTER_BITS), cfg.coords)
    return PayloadCodec(layout).unpack(dut.perf.value.to_unsigned())


def perf_sums(dut) -> dict:
    """The summed counters on the ``perf_sum`` port, unpacked."""
    return PayloadCodec(perf_layout(SparsePE.COUNTER_BITS)).unpack(
        dut.perf_sum.value.to_unsigned())


async def _run(dut, a_density: float, backpressure: str):
    cfg = case_config()
    T = sample_count(DEFAULT_TILES)
    act_layout, wr_layout, out_layout = SparseArray.layouts(cfg)
    bench = StreamBench(dut, f"sparse_array a={a_density} backpressure={backpressure}",
                        inputs={"wgt_wr": wr_layout, "act": act_layout},
                        outputs={"out": out_layout},
                        gaps={"wgt_wr": "stall25",
                              "act": "none" if backpressure == "none" else "stall25"},
                        backpressure=backpressure)
    rng = bench.rng
    U, V = _case(cfg, np.random.default_rng(rng.randrange(1 << 32)), T, a_density)
    packed = formats.pack_layer(U, cfg)
    assert packed.num_passes == 1, "the bench config must hold the layer in one pass"
    image = packed.passes[0]
    K = image.k_count
    dut.k_count.value = K
    dut.bank.value = 0        # the directory bank the PEs read: the writes below fill bank 0
    await bench.start()

    writes = weight_writes(image, cfg)
    rng.shuffle(writes)
    bench.send({"wgt_wr": writes}, {})
    await bench.drain()
    await ClockCycles(dut.clk, 2)

    M = golden.accumulate(U, V, cfg)
    rows = -(-K // cfg.drain_width)
    bench.send({"act": golden.act_beats(V, cfg.act_width,
                                        order=lambda n: rng.sample(range(n), n))},
               {"out": golden.drain_beats(M, cfg.drain_width)},
               context=lambda i: f" (tile {i // rows}, k {i % rows * cfg.drain_width})")
    await bench.drain(20 * T * (cfg.c_max + K) * 4 + 500)
    await bench.finish()
    assert bench.monitors["out"].received == T * rows, \
        f"received {bench.monitors['out'].received}, expected {T * rows}"
    assert int(dut.idle.value) == 1, "the array is not idle after its last output"

    counters = perf_counters(dut, cfg)
    active = V != 0
    for xi, got in enumerate(counters):
        pairs = int(((U[xi] != 0).astype(int) @ active[xi].astype(int)).sum())
        lanes = cfg.lanes_per_coord[xi]
        assert (got["macs"], got["zeros_skipped"]) == (pairs, int((~active[xi]).sum())), \
            f"PE {xi} counters {got}"
        assert got["busy"] * lanes == got["macs"] + got["empty_slots"], f"PE {xi} {got}"
        assert got["busy"] >= -(-pairs // lanes), f"PE {xi} {got}"
    rtl = dut.cycles.value.to_unsigned()
    # (one more: a value read just after a clock edge may be the one from before it)
    await ClockCycles(dut.clk, SparseArray.perf_lag(cfg) + 1)
    want = {f: sum(c[f] for c in counters) for f in counters[0]}
    assert perf_sums(dut) == want, f"perf_sum {perf_sums(dut)}, the PEs' sum {want}"
    macs = sum(c["macs"] for c in counters)
    ideal = macs / cfg.multipliers
    model = perf.model_layer(packed, V, cfg,
                             perf.PerfParams(latency_cycles=SparseArray.LATENCY)).cycles
    dut._log.info(f"{bench.name}: {T * K} M vectors bit-exact in order; rtl_cycles {rtl}, "
                  f"ideal {ideal:.1f} (utilisation {ideal / rtl:.3f}), model {model}, "
                  f"macs {macs}")
    if backpressure == "none":
        assert ideal <= rtl, "fewer cycles than the ideal: the counters are wrong"


@cocotb.test()
@cocotb.parametrize(a_density=(0.3, 0.5, 1.0), backpressure=("none", "stall25", "bursts"))
async def random_sparse_layer(dut, a_density: float, backpressure: str):
    """Packed random weights, random sparse activations, one back-pressure pattern."""
    await _run(dut, a_density, backpressure)
