"""``LaneQueue``: the queue in front of one multiplier lane, a word's group of slots per cycle.

A weight word holds ``slots_per_lane`` slots for each lane (:mod:`sw.formats`), and the valid
ones of a lane's group are a prefix. Everything but the slot itself (the activation ``v``, the
bank, the end-of-tile flag) is the same for the whole group. So a group enters as one entry of
a single first-word-fall-through FIFO in LUT RAM: the group's fields, its size and all
``slots_per_lane`` slots. The lane reads slots ``0 .. size - 1`` of the head entry and pops it
with the last one. There is no write multiplexer, and one FIFO's pointers and level per lane
(an earlier version kept the head and each tail slot in FIFOs of their own, with the same
storage and ``slots_per_lane`` times the pointer logic).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
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
        entry_layout = data.StructLayout({"group": self._group,
                                          "slots": data.ArrayLayout(self._slot, n),
                                          "size": range(1, n + 1)})
        fifo = m.submodules.fifo = SyncFIFO(width=entry_layout.size, depth=self._depth)
        entry_in = entry_layout(fifo.w_data)
        m.d.comb += [
            fifo.w_en.eq(self.i_count != 0),
            entry_in.group.eq(self.i_group),
            entry_in.slots.eq(self.i_slot),
            entry_in.size.eq(self.i_count),
        ]

        # -- read side: slots 0 .. size - 1 of the head entry, popped with the last ----------
        head = entry_layout(fifo.r_data)
        pos = Signal(range(n))                       # next slot of the head entry to read
        take = Signal()
        last = Signal()
        m.d.comb += [
            last.eq(pos == head.size - 1),
            take.eq(self.o.valid & self.o.ready),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.group.eq(head.group),
            self.o.payload.slot.eq(head.slots[pos]),
            self.o.payload.last.eq(last),
            fifo.r_en.eq(take & last),
        ]
        with m.If(take):
            m.d.sync += pos.eq(Mux(last, 0, pos + 1))

        # A group written in the next cycle fits if at most depth - 2 entries are held now
        # (one more may be written in this cycle). The bound below is one entry lower unless
        # the head is half read, which is exactly the room of the earlier head/tail queue, so
        # every PE keeps its cycle counts; leaving i_count out takes the weight memory's read
        # data off the walker's issue path (docs/fpga.md).
        # Both bounds are tables over the level, not a compare: Yosys maps a compare to a
        # carry chain, and this one sat on the PE's issue path (docs/fpga.md).
        def at_most(bound):
            return Array(Const(int(level <= bound)) for level in range(self._depth + 1))[
                fifo.level]
        m.d.comb += [
            self.room.eq(Mux(pos != 0, at_most(self._depth - 2), at_most(self._depth - 3))),
            self.empty.eq(~fifo.r_rdy),
        ]
        return m
