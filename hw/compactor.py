"""``CompactingQueue``: a circular queue that takes any subset of ``N`` entries per cycle.

The sparse PE needs this twice: its activation queue takes the non-zero channels of an
``act_width``-channel beat (any of them may be zero), and its pair compactor takes the valid
slots of a weight word and hands ``L`` pairs per cycle to the lanes whatever word they came
from. Both are this block: the entries marked valid in a cycle are written, in input order,
behind the ones already queued; the consumer sees the oldest ``M`` and says how many it takes.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CompactingQueue"]


class CompactingQueue(wiring.Component):
    """Queue of ``depth`` entries of ``shape``: up to ``inputs`` in and ``outputs`` out per cycle.

    Parameters
    ----------
    shape : ShapeLike
        One entry.
    inputs, outputs : int
        Entries offered and entries visible per cycle (both at least 1).
    depth : int
        Capacity, a power of two at least ``inputs + outputs``.

    Members
    -------
    i_valid : In(inputs)
        Which of ``i_data`` to write this cycle; they are written in index order. The caller
        must only write when :attr:`level` leaves room (``level - o_take + popcount(i_valid)
        <= depth``); :attr:`room` says whether ``inputs`` more fit now.
    i_data : In(ArrayLayout(shape, inputs))
    o_data : Out(ArrayLayout(shape, outputs))
        The oldest ``outputs`` entries, oldest first; only the first :attr:`o_count` are queued.
    o_count : Out(range(outputs + 1))
        ``min(level, outputs)``.
    o_take : In(range(outputs + 1))
        Entries the consumer removes this cycle, at most ``o_count``.
    level : Out(range(depth + 1))
        Entries queued.
    room : Out(1)
        ``level <= depth - inputs``: a whole input beat fits, whatever is taken.

    Notes
    -----
    Entries written in a cycle are visible at ``o_data`` from the next cycle (latency 1). Each
    queue register has an ``inputs``-way write multiplexer, each output an ``depth``-way read
    multiplexer; the write position of input ``i`` is the tail plus the number of valid
    inputs below ``i``.
    """

    def __init__(self, shape, *, inputs: int, outputs: int, depth: int):
        for name, value, lo in (("inputs", inputs, 1), ("outputs", outputs, 1),
                                ("depth", depth, inputs + outputs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        if depth & (depth - 1):
            raise ValueError(f"depth must be a power of two, not {depth}")
        self._shape, self._inputs, self._outputs, self._depth = shape, inputs, outputs, depth
        super().__init__({
            "i_valid": In(inputs),
            "i_data": In(data.ArrayLayout(shape, inputs)),
            "o_data": Out(data.ArrayLayout(shape, outputs)),
            "o_count": Out(range(outputs + 1)),
            "o_take": In(range(outputs + 1)),
            "level": Out(range(depth + 1)),
            "room": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth, ptr_bits = self._depth, (self._depth - 1).bit_length()
        queue = Array(Signal(self._shape, name=f"entry{i}") for i in range(depth))
        head, tail = Signal(ptr_bits), Signal(ptr_bits)
        n_in = Signal(range(self._inputs + 1))
        m.d.comb += n_in.eq(sum(self.i_valid[i] for i in range(self._inputs)))
        m.d.comb += [
            self.o_count.eq(Mux(self.level < self._outputs, self.level, self._outputs)),
            self.room.eq(self.level <= depth - self._inputs),
        ]
        m.d.sync += [head.eq(head + self.o_take), tail.eq(tail + n_in),
                     self.level.eq(self.level - self.o_take + n_in)]
        # Input i goes to tail + (valid inputs below i).
        below = 0
        places = []
        for i in range(self._inputs):
            place = Signal(ptr_bits, name=f"place{i}")
            m.d.comb += place.eq(tail + below)
            places.append(place)
            below = below + self.i_valid[i]
        for q in range(depth):
            for i in range(self._inputs):
                with m.If(self.i_valid[i] & (places[i] == q)):
                    m.d.sync += queue[q].eq(self.i_data[i])
        for j in range(self._outputs):
            m.d.comb += self.o_data[j].eq(queue[(head + j)[:ptr_bits]])
        return m
