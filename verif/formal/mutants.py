"""Deliberately broken stream blocks: each proof here must FAIL, with the named property.

They show that the properties of :mod:`verif.formal.rules` can fail: a harness identical to
the ``stream_buffer`` proof is wrapped around a :class:`~hw.stream_buffer.StreamBuffer` with
one fault on its output side. ``python -m verif.formal mutant_valid_drop`` runs one; the
default run leaves them out, and ``verif/test_formal.py`` checks that each is reported FAIL
with the assertion it breaks.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.stream_buffer import StreamBuffer
from verif.formal.proofs import Proof, sink, source, taken
from verif.formal.rules import ItemTracker

__all__ = ["FAULTS", "MUTANTS", "BrokenStreamBuffer"]

#: fault -> the assertion message (prefix) its proof must report.
FAULTS = {
    "valid_drop": "o: valid held until ready",
    "payload_change": "o: payload stable while stalled",
    "drop": "beat: at most 3 items inside",
    "duplicate": "beat: no item leaves before it entered",
}


class BrokenStreamBuffer(wiring.Component):
    """A :class:`~hw.stream_buffer.StreamBuffer` of 8 bits with one fault.

    Parameters
    ----------
    fault : str
        ``valid_drop``: ``o.valid`` falls after one stalled cycle, without ``ready``;
        ``payload_change``: ``o.payload`` flips its low bit while stalled;
        ``drop``: ``i.ready`` is always high, so a beat offered while full is lost;
        ``duplicate``: every other beat taken on ``o`` stays in the buffer and is sent again.
    """

    def __init__(self, fault: str):
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
        self._fault = fault
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        inner = m.submodules.inner = StreamBuffer(8)
        stalled = Signal()
        m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
        again = Signal()
        with m.If(taken(self.o)):
            m.d.sync += again.eq(~again)
        fault = self._fault
        m.d.comb += [
            inner.i.valid.eq(self.i.valid), inner.i.payload.eq(self.i.payload),
            self.i.ready.eq(1 if fault == "drop" else inner.i.ready),
            self.o.valid.eq(inner.o.valid & ~(stalled if fault == "valid_drop" else 0)),
            self.o.payload.eq(inner.o.payload ^ (stalled if fault == "payload_change" else 0)),
            inner.o.ready.eq(self.o.ready & ~(again if fault == "duplicate" else 0)),
            self.busy.eq(inner.busy),
        ]
        return m


def _broken(fault: str):
    def build(m: Module) -> None:
        dut = m.submodules.dut = BrokenStreamBuffer(fault)
        source(m, dut.i, "i")
        sink(m, dut.o, "o")
        items = ItemTracker(m, 8, "beat", capacity=3)
        items.enter([(taken(dut.i), dut.i.payload)])
        items.leave([(taken(dut.o), dut.o.payload)])
    return build


MUTANTS: tuple[Proof, ...] = tuple(
    Proof(f"mutant_{fault}", f"BrokenStreamBuffer({fault!r})", f"must fail: {message}",
          _broken(fault), depth=12)
    for fault, message in FAULTS.items())
