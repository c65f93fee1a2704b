"""``LaneQueue``: the queue in front of one multiplier lane, a word's group of slots per cycle.

A weight word holds ``slots_per_lane`` slots for each lane (:mod:`sw.formats`), and the valid
ones of a lane's group are a prefix. Everything but the slot itself (the activation ``v``, the
bank, the end-of-tile flag) is the same for the whole group. So a group enters as one *head*
entry (the group's fields, slot 0 and the group's size) in FIFO 0 and up to
``slots_per_lane - 1`` *tail* entries (slot ``s`` only) in FIFO ``s``, all first-word-fall-
through FIFOs in LUT RAM. The lane reads FIFO 0, then FIFOs ``1 .. size - 1``, and keeps the
group's fields from the head meanwhile. No entry ever moves between FIFOs, so there is no write
multiplexer at all, and the tails store only the slot.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from sw.config import require_count

__all__ = ["LaneQueue"]


class LaneQueue(wiring.Component):
    """Order-keeping queue of one lane: a group of up to ``slots`` entries in per cycle.

    Parameters
    ----------
    group : StructLayout
        The fields shared by a group (for the PE: ``v``, ``bank``, ``mac``, ``end``).
    slot : StructLayout
        The fields of one slot (for the PE: ``w``, ``row``).
    slots : int
        Largest group (``slots_per_lane``, at least 1).
    depth : int
        Groups the queue holds (each FIFO's depth, at least 4).

    Members
    -------
    i_count : In(range(slots + 1))
        Size of the group written this cycle (0: none): slots ``0 .. i_count - 1`` of
        ``i_slot``. Write only when :attr:`room` was high in the previous cycle.
    i_group : In(group)
    i_slot : In(ArrayLayout(slot, slots))
    o : Out(stream.Signature(StructLayout({"group": group, "slot": slot, "last": 1})))
        The oldest entry, with its group's fields; ``last`` on the final entry of a group.
        ``valid`` does not depend on ``ready``.
    room : Out(1)
        A group written in the next cycle fits, whatever is taken meanwhile and whether or
        not a group is written in this cycle. It depends only on the queue's own registers
        (not on ``i_count``), so the writer's issue decision does not wait on the data it
        writes.
    empty : Out(1)
        Nothing queued and no group half read.

    Notes
    -----
    Latency 1: a group written in a cycle is on ``o`` from the next cycle, one entry per cycle.
    """

    def __init__(self, group: data.StructLayout, slot: data.StructLayout, *, slots: int,
                 depth: int):
        self._group, self._slot = group, slot
        self._slots = require_count("slots", slots, 1)
        self._depth = require_count("depth", depth, 4)
        super().__init__({
            "i_count": In(range(slots + 1)),
            "i_group": In(group),
            "i_slot": In(data.ArrayLayout(slot, slots)),
            "o": Out(stream.Signature(data.StructLayout(
                {"group": group, "slot": slot, "last": 1}))),
            "room": Out(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._slots
        head_layout = data.StructLayout({"group": self._group, "slot": self._slot,
                                         "size": range(1, n + 1)})
        fifos = [SyncFIFO(width=(head_layout if s == 0 else self._slot).size,
                          depth=self._depth) for s in range(n)]
        for s, fifo in enumerate(fifos):
            m.submodules[f"fifo{s}"] = fifo
            m.d.comb += fifo.w_en.eq(self.i_count > s)
        head_in = head_layout(fifos[0].w_data)
        m.d.comb += [head_in.group.eq(self.i_group), head_in.slot.eq(self.i_slot[0]),
                     head_in.size.eq(self.i_count)]
        for s in range(1, n):
            m.d.comb += fifos[s].w_data.eq(Value.cast(self.i_slot[s]))

        # -- read side: the head, then the tails of its group ------------------------------
        head = head_layout(fifos[0].r_data)
        pos = Signal(range(n))                       # next entry of the group to read
        kept = Signal(self._group)                   # the group's fields while its tails go
        size = Signal(range(1, n + 1), init=1)
        take = Signal()
        m.d.comb += take.eq(self.o.valid & self.o.ready)
        with m.If(pos == 0):
            m.d.comb += [
                self.o.valid.eq(fifos[0].r_rdy),
                self.o.payload.group.eq(head.group),
                self.o.payload.slot.eq(head.slot),
                self.o.payload.last.eq(head.size == 1),
                fifos[0].r_en.eq(take),
            ]
            with m.If(take & (head.size != 1)):
                m.d.sync += [pos.eq(1), kept.eq(head.group), size.eq(head.size)]
        for s in range(1, n):
            with m.Elif(pos == s):
                m.d.comb += [
                    self.o.valid.eq(fifos[s].r_rdy),
                    self.o.payload.group.eq(kept),
                    Value.cast(self.o.payload.slot).eq(fifos[s].r_data),
                    self.o.payload.last.eq(size == s + 1),
                    fifos[s].r_en.eq(take),
                ]
                with m.If(take):
                    m.d.sync += pos.eq(Mux(size == s + 1, 0, s + 1))

        # FIFO s holds at most one entry more than FIFO 0 (a group half read), so FIFO 0 with
        # room for a group in flight (assumed, whatever i_count is) and the next one leaves room
        # in every FIFO. Leaving i_count out costs one group of depth and takes the weight
        # memory's read data off the walker's issue path (docs/fpga.md).
        m.d.comb += [
            self.room.eq(fifos[0].level <= self._depth - 3),
            self.empty.eq(~fifos[0].r_rdy & (pos == 0)),
        ]
        return m
