"""cocotb test module of :mod:`verif.bench_system`: every case on the whole accelerator.

``$WINNOW_BENCH_DIR`` holds ``cases.json`` (case names, in run order) and per case
``<name>.npz`` (:func:`verif.bench_system.make_system_case`). Each case is packed with
:func:`sw.formats.pack_layer` and run through :class:`sw.driver.DeviceBackend` on
:class:`verif.axi_transport.AxiTransport` at full rate (no stalls): per pass, the weight
record, the quantisation entries, the shape, START, the image streamed in and the outputs out,
DONE and the counters. Every output value is compared with :func:`sw.golden.conv_layer`, pass
by pass (:func:`verif.bench_system.golden_conv`).

It writes ``<name>.rtl.json``: per pass the driver's counters (``cycles``: the ``CYCLES``
register, START to the run's end; ``array_cycles``; the summed PE counters) and
``load_cycles`` (the ``s_axis_wgt`` frame's clock cycles, timed by :class:`TimedTransport`),
``bit_exact`` and the mismatches, ``host_cycles`` (the case's whole simulated time) and the
wall time. A case that is not bit-exact fails the test after its file is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.utils import get_sim_time

from sw import formats
from sw.driver import DeviceBackend, DeviceLayer
from verif.axi_transport import AxiTransport
from verif.bench_system import case_layer, golden_conv
from verif.tb_system import start

#: Clock period of :func:`verif.tb_system.start`, ns.
CLOCK_NS = 10


def _now() -> int:
    """The simulated time in clock cycles."""
    return round(get_sim_time("ns") / CLOCK_NS)


class TimedTransport:
    """A :class:`sw.driver.Transport` that passes every call on and times the weight loads.

    Parameters
    ----------
    inner : sw.driver.Transport
        The transport that reaches the accelerator.

    Attributes
    ----------
    loads : list of int
        Clock cycles of each :meth:`send_weights` call, from the call to the frame's last beat.
    """

    def __init__(self, inner):
        self.inner = inner
        self.loads: list[int] = []

    async def read(self, offset: int) -> int:
        return await self.inner.read(offset)

    async def write(self, offset: int, value: int) -> None:
        await self.inner.write(offset, value)

    async def send_weights(self, record: bytes) -> None:
        t0 = _now()
        await self.inner.send_weights(record)
        self.loads.append(_now() - t0)

    async def stream(self, activations: bytes) -> bytes:
        return await self.inner.stream(activations)


@cocotb.test()
async def system_cases(dut):
    """Every case of ``$WINNOW_BENCH_DIR`` on the RTL, bit-exact, cycles written out."""
    cfg = await start(dut)
    work = Path(os.environ["WINNOW_BENCH_DIR"])
    names = json.loads((work / "cases.json").read_text())
    transport = TimedTransport(AxiTransport(dut))
    sim = os.environ.get("WINNOW_SIM", "")
    for i, name in enumerate(names):
        case = np.load(work / f"{name}.npz")
        layer_q = case_layer(case, name)
        x = np.asarray(case["x"], dtype=np.int64)
        packed = formats.pack_layer(layer_q.U, cfg, name=name)
        layer = DeviceLayer(0, layer_q, packed,
                            tuple(formats.encode_record(0, im, cfg) for im in packed.passes))
        t0, c0 = time.perf_counter(), _now()
        print(f"bench_system: [{i + 1}/{len(names)}] {name}: C={layer_q.C} K={layer_q.K} "
              f"{x.shape[1]}x{x.shape[2]}, {packed.num_passes} passes", flush=True)

        def progress(_name, p, _done, _count):
            print(f"bench_system:     pass {p + 1}/{packed.num_passes} done "
                  f"({_now() - c0} cycles, {time.perf_counter() - t0:.0f} s)", flush=True)

        transport.loads.clear()
        rtl = DeviceBackend(transport, cfg, progress=progress)
        (got,) = await rtl.conv(layer, [x])
        want = golden_conv(x, layer_q, packed, cfg)
        bad = np.argwhere(got != want) if got.shape == want.shape else np.zeros((1, 3), int)
        passes = [{**{k: v for k, v in s.items() if k not in ("layer", "image")},
                   "load_cycles": load} for s, load in zip(rtl.stats, transport.loads)]
        wall = time.perf_counter() - t0
        result = {"passes": passes, "bit_exact": bool(bad.size == 0),
                  "mismatches": int(len(bad)), "host_cycles": _now() - c0,
                  "wall_seconds": wall, "simulator": sim}
        if bad.size:
            first = tuple(int(v) for v in bad[0])
            result["first_mismatch"] = {
                "index": first, "rtl": int(got[first]) if got.shape == want.shape else None,
                "golden": int(want[first])}
        (work / f"{name}.rtl.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"bench_system:     {name}: {result['host_cycles']} cycles in {wall:.0f} s "
              f"({result['host_cycles'] / wall:.0f} cycles/s), "
              f"{'bit-exact' if not bad.size else f'{len(bad)} values DIFFER'}", flush=True)
        assert got.shape == want.shape, f"{name}: RTL output {got.shape}, golden {want.shape}"
        assert bad.size == 0, (f"{name}: {len(bad)} output values differ from golden, first at "
                               f"{tuple(bad[0])}: RTL {got[tuple(bad[0])]} golden "
                               f"{want[tuple(bad[0])]}")
