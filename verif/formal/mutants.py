"""Deliberately broken stream blocks: each proof here must FAIL, with the named property.

They show that the properties of :mod:`verif.formal.rules` can fail: a harness identical to
the ``stream_buffer`` proof is wrapped around a :class:`~hw.stream_buffer.StreamBuffer` with
one fault on its output side. Likewise the order proofs of the frame buffers
(``line_buffer_order_stalls``, ``output_reorder_order_stalls``) are run on a
:class:`~hw.linebuf.LineBuffer` or :class:`~hw.reorder.OutputReorder` wrapped with one fault
(two values swapped, a beat dropped, a beat sent twice), and the ``weight_loader_b16`` proof
on the accelerator's :class:`~hw.loader.WeightLoader` (``WEIGHT_BEAT_BYTES`` per beat) with one
fault in its handshake with ``wr``. ``python -m verif.formal
mutant_valid_drop`` runs one; the default run leaves them out, and ``verif/test_formal.py``
checks that each is reported FAIL with the assertion it breaks.
"""

from __future__ import annotations

from functools import partial

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.linebuf import LineBuffer
from hw.loader import WeightLoader
from hw.reorder import OutputReorder
from hw.stream_buffer import StreamBuffer
from sw.formats import WEIGHT_BEAT_BYTES
from verif.formal.proofs import (FRAME_CFG, Proof, _line_buffer_order, _output_reorder_order,
                                 sink, source, taken, weight_loader, wide_source)
from verif.formal.rules import ItemTracker

__all__ = ["FAULTS", "STREAM_FAULTS", "FRAME_FAULTS", "LOADER_FAULTS", "MUTANTS",
           "BrokenStreamBuffer", "BrokenFrameBlock", "TakeIgnoresWr", "ReadyIgnored"]

#: fault -> the assertion message (prefix) its proof must report.
STREAM_FAULTS = {
    "valid_drop": "o: valid held until ready",
    "payload_change": "o: payload stable while stalled",
    "drop": "beat: at most 3 items inside",
    "duplicate": "beat: no item leaves before it entered",
}
#: block_fault -> the assertion messages (prefixes) of which its proof must report one.
FRAME_FAULTS = {
    "output_reorder_swap": ("o: the followed value leaves at its raster position",),
    "output_reorder_drop": ("o: the followed value leaves at its raster position",
                            "o: last exactly on a frame's final beat", "idle only when"),
    "output_reorder_duplicate": ("o: the followed value leaves at its raster position",
                                 "o: last exactly on a frame's final beat", "idle only when"),
    "line_buffer_swap": ("o: patch element (1, 1) over the followed pixel",
                         "o: patch element (1, 2) over the followed pixel",
                         "o: patch element (1, 1) outside the image or past C is zero",
                         "o: patch element (1, 2) outside the image or past C is zero"),
    "line_buffer_drop": ("o: c, n and last are the beat's", "over the followed pixel carries",
                         "idle only when"),
    "line_buffer_duplicate": ("o: c, n and last are the beat's",
                              "over the followed pixel carries", "idle only when"),
}
#: loader fault -> the assertion messages (prefixes) of which its proof must report one.
LOADER_FAULTS = {
    f"weight_loader_b{WEIGHT_BEAT_BYTES}_take_ignores_wr":
        ("wr: a write issued only while wr is empty or taken",),
    f"weight_loader_b{WEIGHT_BEAT_BYTES}_ready_ignored":
        ("wr: valid held until ready", "wr: payload stable while stalled"),
}
FAULTS = {**STREAM_FAULTS, **FRAME_FAULTS, **LOADER_FAULTS}


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
        if fault not in STREAM_FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {', '.join(STREAM_FAULTS)}")
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


class BrokenFrameBlock(wiring.Component):
    """A :class:`~hw.linebuf.LineBuffer` or :class:`~hw.reorder.OutputReorder` with one fault
    at its ports, the block itself unchanged.

    Parameters
    ----------
    block : type
        ``LineBuffer`` or ``OutputReorder``.
    cfg : AccelConfig
    fault : str
        ``swap``: two values trade places (``OutputReorder``: elements ``(0, 0)`` and
        ``(0, 1)`` of every tile on the way in; ``LineBuffer``: elements ``(1, 1)`` and
        ``(1, 2)`` of every patch on the way out); ``drop``: the block's second output beat
        is taken from it but not passed on; ``duplicate``: its first output beat is passed on
        twice.
    """

    def __init__(self, block, cfg, fault: str):
        if fault not in ("swap", "drop", "duplicate"):
            raise ValueError(f"fault {fault!r} is not one of swap, drop, duplicate")
        self._inner, self._fault, self._n = block(cfg), fault, cfg.n
        super().__init__(self._inner.signature)

    def elaborate(self, platform):
        m = Module()
        inner = m.submodules.inner = self._inner
        fault = self._fault
        for name, member in self.signature.members.items():
            if name not in ("i", "o"):
                outer_port, inner_port = getattr(self, name), getattr(inner, name)
                m.d.comb += (inner_port.eq(outer_port) if member.flow == In
                             else outer_port.eq(inner_port))
        inner_taken = Signal(range(3))      # beats taken from the block, up to 2
        outer_taken = Signal()              # a beat has been passed on
        with m.If(taken(inner.o) & (inner_taken != 2)):
            m.d.sync += inner_taken.eq(inner_taken + 1)
        with m.If(taken(self.o)):
            m.d.sync += outer_taken.eq(1)
        drop = (inner_taken == 1) if fault == "drop" else 0
        hold = ~outer_taken if fault == "duplicate" else 0
        m.d.comb += [
            inner.i.valid.eq(self.i.valid), inner.i.payload.eq(self.i.payload),
            self.i.ready.eq(inner.i.ready),
            self.o.valid.eq(inner.o.valid & ~drop), self.o.payload.eq(inner.o.payload),
            inner.o.ready.eq((self.o.ready | drop) & ~hold),
        ]
        if fault == "swap" and isinstance(inner, OutputReorder):
            m.d.comb += [inner.i.payload[0][0].eq(self.i.payload[0][1]),
                         inner.i.payload[0][1].eq(self.i.payload[0][0])]
        elif fault == "swap":
            a, b = self._n + 1, self._n + 2      # elements (1, 1) and (1, 2)
            m.d.comb += [self.o.payload.d[0][a].eq(inner.o.payload.d[0][b]),
                         self.o.payload.d[0][b].eq(inner.o.payload.d[0][a])]
        return m


def _frame_mutant(name: str, block, harness, fault: str) -> Proof:
    return Proof(f"mutant_{name}_{fault}", f"BrokenFrameBlock({block.__name__}, {fault!r})",
                 f"must fail: {FRAME_FAULTS[f'{name}_{fault}'][0]}",
                 partial(harness, stalls=True, block=partial(BrokenFrameBlock, block,
                                                             fault=fault)),
                 depth=12, memory_map=True)


class TakeIgnoresWr(WeightLoader):
    """The accelerator's loader (``WEIGHT_BEAT_BYTES`` per beat, ``FRAME_CFG``) whose parser
    takes a unit from its byte buffer without waiting for ``wr`` to be free: the write a
    body unit makes may land on one still stalled on ``wr``. Its own logic otherwise:
    only the ``wr_free`` it hands its byte buffer is a constant 1."""

    def __init__(self):
        super().__init__(FRAME_CFG, WEIGHT_BEAT_BYTES)

    def _unit_buffer(self, m, unit_bytes, lengths, first_len, next_len, settled, value,
                     commit, writes, wr_free):
        return super()._unit_buffer(m, unit_bytes, lengths, first_len, next_len, settled,
                                    value, commit, writes, Const(1))


class ReadyIgnored(wiring.Component):
    """The accelerator's loader (as :class:`TakeIgnoresWr`, unchanged) that sees ``wr.ready``
    always high: it takes every write as gone the cycle it is offered, also while the sink
    stalls it."""

    def __init__(self):
        self._inner = WeightLoader(FRAME_CFG, WEIGHT_BEAT_BYTES)
        super().__init__(self._inner.signature)

    def elaborate(self, platform):
        m = Module()
        inner = m.submodules.inner = self._inner
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        m.d.comb += [self.wr.valid.eq(inner.wr.valid), self.wr.payload.eq(inner.wr.payload),
                     inner.wr.ready.eq(1)]
        for name in ("channels", "k_count", "k_base", "records", "error", "idle"):
            m.d.comb += getattr(self, name).eq(getattr(inner, name))
        return m


def _ready_ignored(m: Module) -> None:
    dut = m.submodules.dut = ReadyIgnored()
    wide_source(m, dut.i, "i")
    sink(m, dut.wr, "wr")


_LOADER_NAMES = list(LOADER_FAULTS)
LOADER_MUTANTS = (
    Proof(f"mutant_{_LOADER_NAMES[0]}", "TakeIgnoresWr()",
          f"must fail: {LOADER_FAULTS[_LOADER_NAMES[0]][0]}",
          partial(weight_loader, loader=TakeIgnoresWr), depth=24),
    Proof(f"mutant_{_LOADER_NAMES[1]}", "ReadyIgnored()",
          f"must fail: {' or '.join(LOADER_FAULTS[_LOADER_NAMES[1]])}", _ready_ignored,
          depth=24),
)


MUTANTS: tuple[Proof, ...] = tuple(
    Proof(f"mutant_{fault}", f"BrokenStreamBuffer({fault!r})", f"must fail: {message}",
          _broken(fault), depth=12)
    for fault, message in STREAM_FAULTS.items()) + tuple(
    _frame_mutant(name, block, harness, fault)
    for name, block, harness in (("output_reorder", OutputReorder, _output_reorder_order),
                                 ("line_buffer", LineBuffer, _line_buffer_order))
    for fault in ("swap", "drop", "duplicate")) + LOADER_MUTANTS
