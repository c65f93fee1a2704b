"""cocotb bench for :class:`hw.array.SparseArray` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test:

1. makes random sparse Winograd-domain weights, packs them with :func:`sw.formats.pack_layer`
   and writes the image through the ``wgt_wr`` port (random order, random gaps);
2. streams ``T`` tiles of random sparse ``V`` vectors, ``act_width`` channels per beat (beats
   shuffled per tile, extreme ``V`` mixed in) through a :class:`~verif.streams.StreamDriver`;
3. checks every output beat (``drain_width`` channels of ``M`` vectors), its ``k`` and
   ``last`` in order against :func:`sw.golden.accumulate` in the order of
   :func:`sw.golden.drain_beats`, with an in-order :class:`~verif.streams.Scoreboard`, under
   the output back-pressure pattern;
4. reads the ``cycles`` and per-PE perf counters: ``macs`` must equal the non-zero pairs and
   ``zeros_skipped`` the zero activations, exactly; ``busy`` lane cycles must account for
   every multiplication at ``L`` per cycle. With no back-pressure the run time is logged
   against the ideal (``pairs / multipliers``) and :func:`sw.perf.model_layer`.

``$WINNOW_SAMPLES`` sets the tile count ``T`` (default 6).
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.pe import DIRECTORY, WMEM, SparsePE, perf_layout
from sw import formats, golden, perf
from verif.streams import PayloadCodec, Scoreboard, StreamDriver, StreamMonitor, pattern

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


async def _run(dut, a_density: float, backpressure: str):
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    T = int(os.environ.get("WINNOW_SAMPLES") or DEFAULT_TILES)
    seed = f"{cocotb.RANDOM_SEED}/{a_density}/{backpressure}"
    rng = random.Random(seed)
    U, V = _case(cfg, np.random.default_rng(rng.randrange(1 << 32)), T, a_density)
    packed = formats.pack_layer(U, cfg)
    assert packed.num_passes == 1, "the bench config must hold the layer in one pass"
    image = packed.passes[0]
    K = image.k_count
    act_layout, wr_layout, out_layout = SparseArray.layouts(cfg)

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.k_count.value = K
    loader = StreamDriver(dut, dut.clk, "wgt_wr", PayloadCodec(wr_layout),
                          pattern("stall25", rng))
    feeder = StreamDriver(dut, dut.clk, "act", PayloadCodec(act_layout),
                          pattern("none" if backpressure == "none" else "stall25", rng))
    rows = -(-K // cfg.drain_width)
    board = Scoreboard(f"sparse_array a={a_density} backpressure={backpressure}",
                       describe=lambda i: f" (tile {i // rows}, k {i % rows * cfg.drain_width})")
    monitor = StreamMonitor(dut, dut.clk, "out", PayloadCodec(out_layout),
                            pattern(backpressure, rng), board.receive)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    writes = [{"pe": xi, "mem": WMEM, "addr": a, "data": w}
              for xi in range(cfg.coords) for a, w in enumerate(image.words[xi])]
    writes += [{"pe": xi, "mem": DIRECTORY, "addr": c, "data": e}
               for xi in range(cfg.coords)
               for c, e in enumerate(formats.directory_words(image, cfg, xi))]
    rng.shuffle(writes)
    for wr in writes:
        loader.append(wr)
    cocotb.start_soon(loader.run())
    while not loader.idle:
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 2)

    M = golden.accumulate(U, V, cfg)
    for beat in golden.act_beats(V, cfg.act_width, order=lambda n: rng.sample(range(n), n)):
        feeder.append(beat)
    for beat in golden.drain_beats(M, cfg.drain_width):
        board.expect(beat)
    cocotb.start_soon(feeder.run())
    cocotb.start_soon(monitor.run())

    limit = 20 * T * (cfg.c_max + K) * 4 + 500
    cycles = 0
    while not board.done and cycles < limit:
        await RisingEdge(dut.clk)
        cycles += 1
    board.check_complete()
    await ClockCycles(dut.clk, 30)   # a duplicate arriving now fails in receive()
    assert monitor.received == T * rows, f"received {monitor.received}, expected {T * rows}"
    assert int(dut.idle.value) == 1, "the array is not idle after its last output"

    counters = PayloadCodec(_perf_array(cfg)).unpack(dut.perf.value.to_unsigned())
    active = V != 0
    for xi, got in enumerate(counters):
        pairs = int(((U[xi] != 0).astype(int) @ active[xi].astype(int)).sum())
        lanes = cfg.lanes_per_coord[xi]
        assert (got["macs"], got["zeros_skipped"]) == (pairs, int((~active[xi]).sum())), \
            f"PE {xi} counters {got}"
        assert got["busy"] * lanes == got["macs"] + got["empty_slots"], f"PE {xi} {got}"
        assert got["busy"] >= -(-pairs // lanes), f"PE {xi} {got}"
    rtl = dut.cycles.value.to_unsigned()
    macs = sum(c["macs"] for c in counters)
    ideal = macs / cfg.multipliers
    model = perf.model_layer(packed, V, cfg,
                             perf.PerfParams(latency_cycles=SparseArray.LATENCY)).cycles
    dut._log.info(f"{board.name}: {T * K} M vectors bit-exact in order; rtl_cycles {rtl}, "
                  f"ideal {ideal:.1f} (utilisation {ideal / rtl:.3f}), model {model}, "
                  f"macs {macs}, output stalls {monitor.stalled_cycles}, "
                  f"SEED={os.environ.get('SEED')} ({seed})")
    if backpressure == "none":
        assert ideal <= rtl, "fewer cycles than the ideal: the counters are wrong"


def _perf_array(cfg: AccelConfig) -> data.ArrayLayout:
    return data.ArrayLayout(perf_layout(SparsePE.COUNTER_BITS), cfg.coords)


@cocotb.test()
@cocotb.parametrize(a_density=(0.3, 0.5, 1.0), backpressure=("none", "stall25", "bursts"))
async def random_sparse_layer(dut, a_density: float, backpressure: str):
    """Packed random weights, random sparse activations, one back-pressure pattern."""
    await _run(dut, a_density, backpressure)
