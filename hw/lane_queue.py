"""``LaneQueue``: the queue in front of one multiplier lane, a prefix of up to ``N`` per cycle in.

A weight word holds ``slots_per_lane`` slots for each lane (:mod:`sw.formats`), and the valid
ones of a lane's group are a prefix. The lane takes one entry per cycle, so its queue takes a
prefix of up to ``N`` entries per cycle and gives one. It is ``N`` first-word-fall-through FIFOs
in LUT RAM, written round robin: entry ``s`` of a cycle goes to FIFO ``(tail + s) mod N`` and
the reader visits the FIFOs in the same order, so the queue keeps the order of its input with
no crossbar, only an ``N``-way multiplexer on each side.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from sw.config import require_count

__all__ = ["LaneQueue"]


class LaneQueue(wiring.Component):
    """Order-keeping queue: a prefix of up to ``inputs`` entries in, one entry out per cycle.

    Parameters
    ----------
    shape : ShapeLike
        One entry.
    inputs : int
        Entries offered per cycle (``N``, at least 1).
    depth : int
        Entries of each of the ``N`` FIFOs (at least 2); the queue holds ``N · depth``.

    Members
    -------
    i_count : In(range(inputs + 1))
        How many of ``i_data`` to write this cycle: entries ``0 .. i_count - 1``. The caller
        writes only when :attr:`level` leaves room (``level - taken + i_count <= N · depth``).
    i_data : In(ArrayLayout(shape, inputs))
    o : Out(stream.Signature(shape))
        The oldest entry. ``valid`` does not depend on ``ready``.
    level : Out(range(N · depth + 1))
        Entries queued.

    Notes
    -----
    Latency 1: an entry written in a cycle is on ``o`` from the next cycle.
    """

    def __init__(self, shape, *, inputs: int, depth: int):
        self._shape = shape
        self._inputs = require_count("inputs", inputs, 1)
        self._depth = require_count("depth", depth, 2)
        super().__init__({
            "i_count": In(range(inputs + 1)),
            "i_data": In(data.ArrayLayout(shape, inputs)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(inputs * depth + 1)),
        })

    @property
    def capacity(self) -> int:
        """Entries the queue holds, ``inputs · depth``."""
        return self._inputs * self._depth

    def elaborate(self, platform):
        m = Module()
        n = self._inputs
        width = Shape.cast(self._shape).width
        fifos = [SyncFIFO(width=width, depth=self._depth) for _ in range(n)]
        for f, fifo in enumerate(fifos):
            m.submodules[f"fifo{f}"] = fifo
        tail = Signal(range(n))
        head = Signal(range(n))
        take = Signal()
        m.d.comb += take.eq(self.o.valid & self.o.ready)

        for f, fifo in enumerate(fifos):
            # FIFO f takes entry (f - tail) mod n of this cycle, if that entry is written.
            for t in range(n):
                s = (f - t) % n
                with m.If(tail == t):
                    m.d.comb += [fifo.w_data.eq(Value.cast(self.i_data[s])),
                                 fifo.w_en.eq(self.i_count > s)]
            m.d.comb += fifo.r_en.eq(take & (head == f))
            with m.If(head == f):
                m.d.comb += [self.o.valid.eq(fifo.r_rdy),
                             Value.cast(self.o.payload).eq(fifo.r_data)]

        if n > 1:
            nxt = tail + self.i_count
            m.d.sync += tail.eq(Mux(nxt >= n, nxt - n, nxt))
            with m.If(take):
                m.d.sync += head.eq(Mux(head == n - 1, 0, head + 1))
        m.d.sync += self.level.eq(self.level + self.i_count - take)
        return m
