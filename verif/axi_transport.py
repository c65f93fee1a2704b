"""The cocotb transport of :class:`sw.driver.DeviceBackend`: cocotbext-axi on the accelerator.

:class:`AxiTransport` implements :class:`sw.driver.Transport` on the generated
:class:`hw.top.Accelerator` in a running cocotb simulation: ``AxiLiteMaster`` on ``s_axi``,
``AxiStreamSource`` on ``s_axis_wgt`` and ``s_axis_act``, ``AxiStreamSink`` on ``m_axis_out``.
Each stream can stall with a pattern of :func:`verif.stalls.pattern` (valid gaps on the two
inputs, back-pressure on the output), each with its own generator drawn from the seed.
"""

from __future__ import annotations

import itertools
import random
import warnings

import cocotb
from cocotb.triggers import First
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from hw.top import Accelerator
from sw import regmap
from sw.formats import ActivationFrame
from sw.driver import BusError
from verif.stalls import pattern

__all__ = ["AxiTransport"]

# cocotbext-axi 0.1.28 still calls APIs cocotb 2.x deprecates; only its own warnings go.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")


class AxiTransport:
    """The accelerator's AXI ports in a cocotb simulation, as a :class:`sw.driver.Transport`.

    Parameters
    ----------
    dut : cocotb handle
        The ``accelerator`` top level (``clk``, ``rst``, ``s_axis_act_*``, ``s_axis_wgt_*``
        and, with several weight-load ports, ``s_axis_wgt1_*``, ..., ``m_axis_out_*``, ``s_axi_*``).
    stalls : str
        Stall pattern of every AXI stream, a name of :data:`verif.stalls.PATTERNS`; ``"none"``
        runs at full rate.
    seed : int
        Seed of the stall patterns.

    Attributes
    ----------
    axil : cocotbext.axi.AxiLiteMaster
        The register bus, for benches that check its raw responses.
    act, wgt : cocotbext.axi.AxiStreamSource
        ``s_axis_act`` and ``s_axis_wgt``.
    wgt_ports : list of cocotbext.axi.AxiStreamSource
        Every weight-load port's source, ``wgt`` first (the ports the top level has).
    out : cocotbext.axi.AxiStreamSink
        ``m_axis_out``.

    Raises
    ------
    ValueError
        ``stalls`` is not a known pattern.
    """

    def __init__(self, dut, *, stalls: str = "none", seed: int = 0):
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self.act = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_act"), dut.clk, dut.rst)
        self.wgt_ports = []
        for p in itertools.count():
            prefix = Accelerator.weight_port(p)
            if not hasattr(dut, f"{prefix}_tdata"):
                break
            self.wgt_ports.append(AxiStreamSource(AxiStreamBus.from_prefix(dut, prefix),
                                                  dut.clk, dut.rst))
        self.wgt = self.wgt_ports[0]
        self.out = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_out"), dut.clk, dut.rst)
        # Without stalls no pause generator at all: its per-cycle coroutine costs simulation speed.
        if stalls != "none":
            named = [("act", self.act), ("out", self.out),
                     *(("wgt" if p == 0 else f"wgt{p}", port)
                       for p, port in enumerate(self.wgt_ports))]
            for name, port in named:
                port.set_pause_generator(pattern(stalls, random.Random(f"{seed}/{name}")))

    async def read(self, offset: int) -> int:
        """The register at ``offset``; :class:`sw.driver.BusError` on an error response."""
        resp = await self.axil.read(offset, 4)
        if int(resp.resp) != regmap.RESP_OKAY:
            raise BusError("read", offset, int(resp.resp))
        return int.from_bytes(resp.data, "little")

    async def write(self, offset: int, value: int) -> None:
        """Write the 32-bit ``value``; :class:`sw.driver.BusError` on an error response."""
        resp = await self.axil.write(offset, value.to_bytes(4, "little"))
        if int(resp.resp) != regmap.RESP_OKAY:
            raise BusError("write", offset, int(resp.resp))

    async def send_weights(self, frames: tuple[bytes, ...]) -> None:
        """Send frame ``p`` on weight-load port ``p``, all at once, and wait until every one
        has gone."""
        if len(frames) != len(self.wgt_ports):
            raise ValueError(f"{len(frames)} weight frames for {len(self.wgt_ports)} "
                             "weight-load ports")
        for port, frame in zip(self.wgt_ports, frames):
            await port.send(frame)
        for port in self.wgt_ports:
            await port.wait()

    async def stream(self, activations: ActivationFrame) -> ActivationFrame:
        """Queue ``activations`` on ``s_axis_act`` (``tdata`` and ``tkeep``); the next
        ``m_axis_out`` frame, every byte with its ``tkeep`` bit."""
        await self.act.send(AxiStreamFrame(activations.data, tkeep=list(activations.keep)))
        frame = await self.out.recv(compact=False)
        return ActivationFrame(bytes(frame.tdata), bytes(frame.tkeep))

    async def concurrently(self, *calls) -> list:
        """Run the coroutines ``calls`` as cocotb tasks at once; their results in order. The
        first to raise cancels the others and its exception is raised (a stream waiting on a
        device that will not answer does not hold it up)."""
        tasks = [cocotb.start_soon(call) for call in calls]
        while not all(task.done() for task in tasks):
            await First(*(task.complete for task in tasks if not task.done()))
            failed = next((task for task in tasks
                           if task.done() and not task.cancelled() and task.exception()), None)
            if failed is not None:
                for task in tasks:
                    task.cancel()
                raise failed.exception()
        return [task.result() for task in tasks]
