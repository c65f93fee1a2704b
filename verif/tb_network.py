"""cocotb bench: a whole network on the RTL, layer by layer, checked against the golden model.

The job comes from ``$WINNOW_JOB``, a JSON file written by :func:`verif.network.run_network_job`:

``model``
    the model (``winnow-model/1`` npz, :func:`sw.model_import.load_npz`);
``stream``
    the packer's ``weights.bin`` (its records must be what the driver would pack);
``images``
    an npz with ``images`` ``[N, C, H, W]`` (real-valued) and ``labels`` ``[N]``;
``results``
    where to write the results JSON;
``stalls``, ``seed``
    the stall pattern of every AXI stream (a name of :data:`verif.stalls.PATTERNS`), and its
    seed.

The accelerator layers run on :class:`sw.driver.DeviceBackend` through
:class:`verif.axi_transport.AxiTransport`. Every accelerator layer's integer output must equal
:class:`sw.driver.GoldenBackend`'s for every image (the bench fails on the first difference,
naming layer, image and position). The results hold the final outputs, the RTL counters of
every (layer, pass, image), the simulated cycles and the wall time (simulation speed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time

from sw import driver, model_import
from verif.axi_transport import AxiTransport
from verif.tb_system import start

CLOCK_NS = 10


class CheckedBackend:
    """Runs each layer on the RTL and on the golden model, and insists they agree."""

    def __init__(self, rtl: driver.DeviceBackend, gold: driver.GoldenBackend):
        self.rtl, self.gold, self.cfg = rtl, gold, rtl.cfg

    def plan(self, order):
        """The layer order, for the RTL backend's loads during the previous layer's run."""
        self.rtl.plan(order)

    async def conv(self, layer: driver.DeviceLayer, xs):
        got = await self.rtl.conv(layer, xs)
        want = await self.gold.conv(layer, xs)
        for i, (g, w) in enumerate(zip(got, want)):
            bad = np.argwhere(g != w)
            assert bad.size == 0, (f"layer {layer.name} image {i}: {len(bad)} values differ "
                                   f"from golden, first at {tuple(bad[0])}: "
                                   f"RTL {g[tuple(bad[0])]} golden {w[tuple(bad[0])]}")
        return got


@cocotb.test()
async def test_network(dut):
    """The job's images through the whole network; RTL identical to golden layer by layer."""
    job = json.loads(Path(os.environ["WINNOW_JOB"]).read_text())
    cfg = await start(dut)
    model = model_import.load_npz(job["model"])
    stream = Path(job["stream"]).read_bytes()
    layers = driver.device_layers(model, cfg, stream, source=job["stream"])
    data = np.load(job["images"])
    images = data["images"]
    total = len(images)
    t0, c0 = time.perf_counter(), get_sim_time("ns")

    def progress(name, p, done, count):
        if done == count or done % max(1, count // 10) == 0:
            elapsed = time.perf_counter() - t0
            print(f"  rtl  {name} pass {p}: image {done}/{count}  ({elapsed:.0f} s)",
                  flush=True)
            sys.stdout.flush()

    transport = AxiTransport(dut, stalls=job["stalls"], seed=int(job["seed"]))
    rtl = driver.DeviceBackend(transport, cfg, progress=progress)
    outputs = await driver.run_network(model, layers, images,
                                       CheckedBackend(rtl, driver.GoldenBackend(cfg)))
    await ClockCycles(dut.clk, 2)
    wall = time.perf_counter() - t0
    cycles = (get_sim_time("ns") - c0) / CLOCK_NS
    Path(job["results"]).write_text(json.dumps({
        "images": total,
        "outputs": outputs.tolist(),
        "stats": rtl.stats,
        "sim_cycles": cycles,
        "wall_seconds": wall,
        "cycles_per_second": cycles / wall if wall else None,
        "simulator": os.environ.get("WINNOW_SIM", ""),
    }) + "\n")
