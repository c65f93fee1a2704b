"""``StreamBuffer``: a small stream buffer that cuts the combinational ``ready`` path.

A pipeline whose stages stall together (``ready`` computed from the next stage's ``ready``)
has one combinational path from its last consumer to its first producer. Between blocks that
sit far apart on the FPGA that path is mostly routing, and it set the accelerator's Fmax
(docs/fpga.md). This buffer ends it: its ``i.ready`` and ``o.valid`` are registers, so nothing
on its output side reaches its input side in the same cycle, and it still moves one beat per
cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["StreamBuffer"]


class StreamBuffer(wiring.Component):
    """Two beats of storage between two streams of the same payload.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape of both streams (a ``lib.data`` layout or a plain shape).

    Members
    -------
    i : In(stream.Signature(layout))
        Beats in. ``ready`` is a register: it is low only while three beats are held.
    o : Out(stream.Signature(layout))
        The same beats, in order. ``valid`` and ``payload`` are registers.
    busy : Out(1)
        A beat is held.

    Notes
    -----
    Latency 2 (a beat accepted in cycle ``t`` is offered from cycle ``t + 2``); throughput one
    beat per cycle while ``o`` takes one per cycle. It is an Amaranth
    :class:`~amaranth.lib.fifo.SyncFIFOBuffered` of depth 3: a two-entry queue (its read is
    registered, so it maps to LUT RAM or flip-flops) and the output register. Two entries are
    the fewest that keep one beat per cycle, because the queue's ``w_rdy`` does not count a
    read in the same cycle.
    """

    #: Cycles from a beat accepted on ``i`` to that beat offered on ``o``, when ``o`` is empty.
    LATENCY = 2

    def __init__(self, layout):
        self._layout = layout
        super().__init__({"i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        fifo = SyncFIFOBuffered(width=Shape.cast(self._layout).width, depth=3)
        m.submodules.fifo = fifo
        m.d.comb += [
            fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
            self.busy.eq(fifo.level != 0),
        ]
        return m
