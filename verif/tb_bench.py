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
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.pe import SparsePE
from sw import formats, golden
from verif.streams import StreamBench, case_config
from verif.tb_array import perf_counters, weight_writes


def _counters(dut, cfg: AccelConfig) -> tuple[int, int]:
    """The ``cycles`` counter and the sum of the PEs' ``macs``."""
    return (dut.cycles.value.to_unsigned(),
            sum(p["macs"] for p in perf_counters(dut, cfg)))


@cocotb.test()
async def bench_cases(dut):
    """Every case of ``$WINNOW_BENCH_DIR``, bit-exact M, RTL cycle counts written out."""
    cfg = case_config()
    bench_dir = Path(os.environ["WINNOW_BENCH_DIR"])
    names = json.loads((bench_dir / "cases.json").read_text())
    act_layout, wr_layout, out_layout = SparseArray.layouts(cfg)
    bench = StreamBench(dut, "bench_cases", inputs={"wgt_wr": wr_layout, "act": act_layout},
                        outputs={"out": out_layout})
    dut.k_count.value = 1
    dut.bank.value = 0        # the directory bank the PEs read: the writes below fill bank 0
    await bench.start()

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
            bench.send({"wgt_wr": weight_writes(image, cfg)}, {})
            await bench.drain()
            await ClockCycles(dut.clk, 2)
            dut.k_count.value = K
            await RisingEdge(dut.clk)
            cyc0, macs0 = _counters(dut, cfg)
            rows = -(-K // cfg.drain_width)
            bench.send({"act": golden.act_beats(V, cfg.act_width)},
                       {"out": golden.drain_beats(M[:, k0:k0 + K, :], cfg.drain_width)},
                       context=lambda i: f" (case {name} pass {p}, tile {i // rows}, "
                                         f"k {k0 + i % rows * cfg.drain_width})")
            await bench.drain(4 * T * (V.shape[1] + 1) * (K + 1) + 1000, idle=True)
            cyc1, macs1 = _counters(dut, cfg)
            rtl_cycles += (cyc1 - cyc0) & mask
            rtl_macs += (macs1 - macs0) & mask
        (bench_dir / f"{name}.rtl.json").write_text(json.dumps(
            {"rtl_cycles": rtl_cycles, "rtl_macs": rtl_macs, "passes": packed.num_passes}))
        dut._log.info(f"bench {name}: {T * U.shape[1]} M vectors bit-exact; "
                      f"rtl_cycles {rtl_cycles}, macs {rtl_macs}")
    await bench.finish()
