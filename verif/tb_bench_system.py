"""cocotb test module of :mod:`verif.bench_system`: every case on the whole accelerator.

``$WINNOW_BENCH_DIR`` holds ``cases.json`` (case names, in run order) and per case
``<name>.npz`` (:func:`verif.bench_system.make_system_case`). Each case is packed with
:func:`sw.formats.pack_layer` and run through :class:`sw.driver.DeviceBackend` on
:class:`verif.axi_transport.AxiTransport` at full rate (no stalls): per pass, the quantisation entries, the shape, START (with CTRL.AWAIT and the
weight record sent after it, for the first pass), the image streamed in and the outputs out
(the next pass's record meanwhile), DONE and the counters. Every output value is compared with :func:`sw.golden.conv_layer`, pass
by pass (:func:`verif.bench_system.golden_conv`).

It writes ``<name>.rtl.json``: per pass the driver's counters (``cycles``: the ``CYCLES``
register, START to the run's end; ``array_cycles``; the summed PE counters) and
``load_cycles`` (the ``s_axis_wgt`` frame's clock cycles, timed by :class:`TimedTransport`)
and ``hidden_load_cycles`` (the part of them during a run: the pass's own, started with
CTRL.AWAIT, or the previous pass's),
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

from sw import formats, regmap
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
    """A :class:`sw.driver.Transport` that passes every call on and times the weight loads
    and the runs.

    Parameters
    ----------
    inner : sw.driver.Transport
        The transport that reaches the accelerator.

    Attributes
    ----------
    loads : list of (int, int)
        Per :meth:`send_weights` call, the clock cycles of the call and of the frame's last
        beat.
    runs : list of (int, int)
        Per run, the clock cycles when its CTRL.START write completed and when its output
        frame's last beat arrived.
    """

    def __init__(self, inner):
        self.inner = inner
        self.loads: list[tuple[int, int]] = []
        self.runs: list[tuple[int, int]] = []

    async def read(self, offset: int) -> int:
        return await self.inner.read(offset)

    async def write(self, offset: int, value: int) -> None:
        await self.inner.write(offset, value)
        if offset == regmap.CTRL.offset and value & regmap.CTRL_START:
            self.runs.append((_now(), None))

    async def send_weights(self, frames: tuple[bytes, ...]) -> None:
        t0 = _now()
        await self.inner.send_weights(frames)
        self.loads.append((t0, _now()))

    async def stream(self, activations: bytes) -> bytes:
        frame = await self.inner.stream(activations)
        self.runs[-1] = (self.runs[-1][0], _now())
        return frame

    async def concurrently(self, *calls) -> list:
        return await self.inner.concurrently(*calls)

    def load_cycles(self) -> list[dict]:
        """Per load, its cycles and the part of them hidden behind a run (the load of pass
        ``p + 1`` overlaps pass ``p``'s run; the first pass's, sent with a START that has
        AWAIT, its own run)."""
        out = []
        for a, b in self.loads:
            hidden = sum(max(0, min(b, e) - max(a, s)) for s, e in self.runs if e is not None)
            out.append({"load_cycles": b - a, "hidden_load_cycles": hidden})
        return out


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
        layer = DeviceLayer.of(0, layer_q, packed, cfg)
        t0, c0 = time.perf_counter(), _now()
        print(f"bench_system: [{i + 1}/{len(names)}] {name}: C={layer_q.C} K={layer_q.K} "
              f"{x.shape[1]}x{x.shape[2]}, {packed.num_passes} passes", flush=True)

        def progress(_name, p, _done, _count):
            print(f"bench_system:     pass {p + 1}/{packed.num_passes} done "
                  f"({_now() - c0} cycles, {time.perf_counter() - t0:.0f} s)", flush=True)

        transport.loads.clear()
        transport.runs.clear()
        rtl = DeviceBackend(transport, cfg, progress=progress)
        (got,) = await rtl.conv(layer, [x])
        want = golden_conv(x, layer_q, packed, cfg)
        bad = np.argwhere(got != want) if got.shape == want.shape else np.zeros((1, 3), int)
        passes = [{**{k: v for k, v in s.items() if k not in ("layer", "image")}, **load}
                  for s, load in zip(rtl.stats, transport.load_cycles())]
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
