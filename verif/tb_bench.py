"""cocotb test module of ``make bench``: runs every stimulus case of one build of SparseArray.

``$WINNOW_BENCH_DIR`` holds ``cases.json`` (a list of case names) and per case ``<name>.npz``
with ``U`` [n*n, K, C] (quantised, pruned Winograd-domain weights) and ``V`` [n*n, C, T]
(transformed activations). For every case and every pass of :func:`sw.formats.pack_layer`, the
test loads the pass image through ``wgt_wr``, streams all ``T`` tiles through ``act`` with no
gaps and no output back-pressure, checks every ``M`` vector in order against
:func:`sw.golden.accumulate` (bit-exact, or the test fails naming case, tile and ``k``), and
reads the RTL ``cycles`` counter and the per-PE ``macs`` counters before and after the pass.
It writes ``<name>.rtl.json`` with ``rtl_cycles`` (summed over passes) and ``rtl_macs``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.pe import DIRECTORY, WMEM, SparsePE, perf_layout
from sw import formats, golden
from verif.streams import PayloadCodec, Scoreboard, StreamDriver, StreamMonitor, pattern


class _Boards:
    """Routes the one output monitor to the current case's scoreboard."""

    def __init__(self):
        self.board = None

    def receive(self, item) -> None:
        self.board.receive(item)


def _counters(dut, cfg: AccelConfig) -> tuple[int, int]:
    layout = data.ArrayLayout(perf_layout(SparsePE.COUNTER_BITS), cfg.coords)
    perf = PayloadCodec(layout).unpack(dut.perf.value.to_unsigned())
    return dut.cycles.value.to_unsigned(), sum(p["macs"] for p in perf)


@cocotb.test()
async def bench_cases(dut):
    """Every case of ``$WINNOW_BENCH_DIR``, bit-exact M, RTL cycle counts written out."""
    cfg = AccelConfig.load(os.environ["WINNOW_CONFIG"])
    bench_dir = Path(os.environ["WINNOW_BENCH_DIR"])
    names = json.loads((bench_dir / "cases.json").read_text())
    act_layout, wr_layout, out_layout = SparseArray.layouts(cfg)
    rng = random.Random(0)   # the no-gap/no-stall patterns draw nothing from it

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.k_count.value = 1
    loader = StreamDriver(dut, dut.clk, "wgt_wr", PayloadCodec(wr_layout), pattern("none", rng))
    feeder = StreamDriver(dut, dut.clk, "act", PayloadCodec(act_layout), pattern("none", rng))
    boards = _Boards()
    monitor = StreamMonitor(dut, dut.clk, "out", PayloadCodec(out_layout), pattern("none", rng),
                            boards.receive)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(loader.run())
    cocotb.start_soon(feeder.run())
    cocotb.start_soon(monitor.run())

    mask = (1 << SparsePE.COUNTER_BITS) - 1
    for name in names:
        case = np.load(bench_dir / f"{name}.npz")
        U, V = case["U"], case["V"]
        T = V.shape[2]
        packed = formats.pack_layer(U, cfg, name=name)
        M = golden.accumulate(U, V, cfg)
        rtl_cycles = rtl_macs = 0
        for p, image in enumerate(packed.passes):
            K, k0 = image.k_count, image.k_base
            for xi in range(cfg.coords):
                for a, w in enumerate(image.words[xi]):
                    loader.append({"pe": xi, "mem": WMEM, "addr": a, "data": w})
                for c, e in enumerate(formats.directory_words(image, cfg, xi)):
                    loader.append({"pe": xi, "mem": DIRECTORY, "addr": c, "data": e})
            while not loader.idle:
                await RisingEdge(dut.clk)
            await ClockCycles(dut.clk, 2)
            dut.k_count.value = K
            await RisingEdge(dut.clk)
            cyc0, macs0 = _counters(dut, cfg)
            rows = -(-K // cfg.drain_width)
            boards.board = Scoreboard(
                f"bench {name} pass {p}",
                describe=lambda i, rows=rows, k0=k0: f" (tile {i // rows}, "
                                                     f"k {k0 + i % rows * cfg.drain_width})")
            for beat in golden.act_beats(V, cfg.act_width):
                feeder.append(beat)
            for beat in golden.drain_beats(M[:, k0:k0 + K, :], cfg.drain_width):
                boards.board.expect(beat)
            limit = 4 * T * (V.shape[1] + 1) * (K + 1) + 1000
            waited = 0
            while not (boards.board.done and int(dut.idle.value)) and waited < limit:
                await RisingEdge(dut.clk)
                waited += 1
            boards.board.check_complete()
            assert int(dut.idle.value) == 1, f"{name} pass {p}: the array is not idle"
            cyc1, macs1 = _counters(dut, cfg)
            rtl_cycles += (cyc1 - cyc0) & mask
            rtl_macs += (macs1 - macs0) & mask
        (bench_dir / f"{name}.rtl.json").write_text(json.dumps(
            {"rtl_cycles": rtl_cycles, "rtl_macs": rtl_macs, "passes": packed.num_passes}))
        dut._log.info(f"bench {name}: {T * U.shape[1]} M vectors bit-exact; "
                      f"rtl_cycles {rtl_cycles}, macs {rtl_macs}")
