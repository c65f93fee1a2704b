"""``StreamBuffer``: a small stream buffer that cuts the combinational ``ready`` path.

A pipeline whose stages stall together (``ready`` computed from the next stage's ``ready``)
has one combinational path from its last consumer to its first producer. Between blocks that
sit far apart on the FPGA that path is mostly routing, and it set the accelerator's Fmax
(docs/fpga.md). This buffer ends it: its ``i.ready`` and ``o.valid`` are registers, so nothing
on its output side reaches its input side in the same cycle, and it still moves one beat per
cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamBuffer"]


class StreamBuffer(wiring.Component):
    """Two beats of storage between two streams of the same payload (a skid buffer).

    Parameters
    ----------
    layout : ShapeLike
        Payload shape of both streams (a ``lib.data`` layout or a plain shape).

    Members
    -------
    i : In(stream.Signature(layout))
        Beats in. ``ready`` is a register: it is low only while two beats are held.
    o : Out(stream.Signature(layout))
        The same beats, in order. ``valid`` and ``payload`` are registers.
    busy : Out(1)
        A beat is held.

    Notes
    -----
    Latency 1 (a beat accepted in cycle ``t`` is offered from cycle ``t + 1``); throughput one
    beat per cycle while ``o`` takes one per cycle. Two registers and no memory: the output
    register, and a skid register that catches the beat accepted in the cycle ``o`` stalls
    (``i.ready`` was computed the cycle before, so it cannot have seen that stall). Flip-flops
    only, so a wide payload costs no LUT RAM and no LUTs for memory write data.
    """

    #: Cycles from a beat accepted on ``i`` to that beat offered on ``o``, when ``o`` is empty.
    LATENCY = 1

    def __init__(self, layout):
        self._layout = layout
        super().__init__({"i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # Payload registers without reset (only the valid bits have one): a reset reaching
        # every payload bit of the design was a 14,000-load net (docs/fpga.md).
        skid = Signal.like(self.i.payload, reset_less=True)
        out = Signal.like(self.i.payload, reset_less=True)
        skid_valid = Signal()
        m.d.comb += [self.i.ready.eq(~skid_valid),
                     self.busy.eq(self.o.valid | skid_valid),
                     self.o.payload.eq(out)]
        # The skid register takes the input's payload in every cycle it is empty: it is read
        # only once `skid_valid` is set, so its 100-odd enables are one register, not the
        # output side's `ready` (the routed critical path of docs/fpga.md at 60e2755).
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        with m.If(~self.o.valid | self.o.ready):
            # the output register is free this cycle: refill it, oldest beat first
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += skid_valid.eq(1)
        return m
