"""``FreeRunning``: a fixed-latency pipeline that never stalls, behind credits and a queue.

A pipeline whose stages move together (``hw.transforms``) has one enable: "the last stage is
empty or the sink takes its beat". It reaches every stage register, hundreds of clock enables,
and it depends on the sink's ``ready``. In the accelerator that net, with the channel buffer's
enables behind it, was the routed critical path (docs/fpga.md). This wrapper keeps the unit's
sink always ready, so the enable is the constant 1 and synthesis removes it: a queue behind the
unit takes every beat the unit makes, and a beat is admitted into the unit only while the queue
has room for it and for every beat already inside (a credit count, the usual answer for a
pipeline that cannot stall, as in network-on-chip links).
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FreeRunning"]


class FreeRunning(wiring.Component):
    """``unit`` with its output always ready, a queue behind it and credits in front.

    Parameters
    ----------
    unit : wiring.Component
        A pipeline with stream ports ``i`` and ``o`` and a ``LATENCY``, which takes a beat on
        ``i`` in every cycle its ``o.ready`` is high, and gives each beat back on ``o`` once,
        in order (both units of :mod:`hw.transforms`).
    depth : int
        Beats the queue holds (LUT RAM); at least ``unit.LATENCY + 2`` for one beat per cycle.

    Members
    -------
    i : In(stream.Signature(unit.i.payload.shape()))
        Beats for the unit. ``ready`` is a register: high while fewer than ``depth`` beats
        are admitted and not yet taken on ``o``.
    o : Out(stream.Signature(unit.o.payload.shape()))
        The unit's beats, in order; ``valid`` comes from the queue's level register,
        ``payload`` from its LUT RAM.
    busy : Out(1)
        A beat is admitted and not yet taken on ``o``.

    Notes
    -----
    Latency ``unit.LATENCY + 1`` (the queue); throughput one beat per cycle while ``o`` takes
    one per cycle. The unit's ``o.ready`` is the constant 1, so its stage enable is too.
    """

    def __init__(self, unit: wiring.Component, depth: int):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < unit.LATENCY + 2:
            raise ValueError(f"depth must be an integer >= unit.LATENCY + 2 "
                             f"({unit.LATENCY + 2}) for one beat per cycle, got {depth!r}")
        self._unit, self._depth = unit, depth
        #: Cycles from a beat accepted on ``i`` to that beat offered on ``o``.
        self.LATENCY = unit.LATENCY + 1
        super().__init__({"i": In(stream.Signature(unit.i.payload.shape())),
                          "o": Out(stream.Signature(unit.o.payload.shape())),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        unit = m.submodules.unit = self._unit
        queue = m.submodules.queue = fifo.SyncFIFO(
            width=Shape.cast(unit.o.payload.shape()).width, depth=self._depth)
        held = Signal(range(self._depth + 1))      # admitted, not yet taken on o
        room = Signal(init=1)
        admit = Signal()
        take = Signal()
        m.d.comb += [
            admit.eq(self.i.valid & room),
            take.eq(self.o.valid & self.o.ready),
            self.i.ready.eq(room),
            unit.i.valid.eq(admit),
            unit.i.payload.eq(self.i.payload),
            unit.o.ready.eq(1),
            # every beat the unit makes was counted in `held`, so the queue has room for it
            queue.w_en.eq(unit.o.valid),
            queue.w_data.eq(unit.o.payload),
            self.o.valid.eq(queue.r_rdy),
            self.o.payload.eq(queue.r_data),
            queue.r_en.eq(self.o.ready),
            self.busy.eq(held != 0),
        ]
        held_next = held + admit - take
        m.d.sync += [held.eq(held_next), room.eq(held_next < self._depth)]
        return m
