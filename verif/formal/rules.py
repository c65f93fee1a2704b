"""The properties every formal harness states: stream rules, and one followed item.

A harness drives the block's inputs from free variables (``AnySeq``) constrained by the stream
rules (:func:`assume_stream`), lets the sink stall at will, and asserts the same rules on every
output stream (:func:`assert_stream`). An :class:`ItemTracker` then follows one arbitrarily
chosen item (the solver picks its index and its value) through an order-keeping block, so a
dropped, duplicated, reordered or corrupted item fails the proof for some choice.

Amaranth 0.5 has no ``Past``: :func:`past` registers the previous value itself.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Signal, Value
from amaranth.asserts import AnySeq

__all__ = ["past", "assume_stream", "assert_stream", "ItemTracker"]


def past(m: Module, value, name: str) -> Signal:
    """A register holding ``value`` as it was in the previous cycle (its init, 0, at first)."""
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name)
    m.d.sync += reg.eq(value)
    return reg


def _stream_rules(m: Module, port, name: str, check) -> None:
    """``check`` (``Assert`` or ``Assume``) the transfer rules on one stream ``port``.

    Once ``valid`` is high and ``ready`` low, ``valid`` stays high and ``payload`` keeps its
    value in the next cycle.
    """
    stalled = past(m, port.valid & ~port.ready, f"{name}_stalled")
    held = past(m, port.payload, f"{name}_held")
    m.d.comb += [
        check(~stalled | port.valid, f"{name}: valid held until ready"),
        check(~stalled | (Value.cast(port.payload) == held),
              f"{name}: payload stable while stalled"),
    ]


def assume_stream(m: Module, port, name: str) -> None:
    """Constrain an input stream to the transfer rules (the environment keeps them)."""
    _stream_rules(m, port, name, Assume)


def assert_stream(m: Module, port, name: str) -> None:
    """Prove that an output stream keeps the transfer rules."""
    _stream_rules(m, port, name, Assert)


class ItemTracker:
    """Follows one item, chosen by the solver as it enters, through an order-keeping block.

    The harness reports, each cycle, the items that enter the block (:meth:`enter`) and the
    ones that leave it (:meth:`leave`), oldest first, each with its value as the block's
    specification says it must come out. The solver may pick any entering item as the
    followed one (once per trace); the tracker counts the items still ahead of it, and when
    that count reaches zero the next item to leave must carry the followed item's value. So a
    dropped item (the one behind it leaves in its place), a duplicated, reordered or
    corrupted one fails for some choice. Also no item leaves an empty block, and the block
    never holds more than ``capacity`` items. Each leaving position is a ``Cover``, so a
    proof whose environment can never move an item through is reported, not passed.

    Following one item rather than numbering all of them keeps the solver's state small: the
    count of items ahead is bounded by ``capacity``, which is what lets the proofs reach their
    depth in seconds.

    Parameters
    ----------
    m : Module
    shape : ShapeLike
        The value compared for each item.
    name : str
        Prefix of the tracker's signals and assertion messages.
    capacity : int
        Most items the block may hold at once.
    """

    def __init__(self, m: Module, shape, name: str, capacity: int):
        self._m, self._name, self._capacity = m, name, capacity
        self.inside = Signal(range(capacity + 1), name=f"{name}_inside")
        self.expected = Signal(shape, name=f"{name}_expected")
        self.followed = Signal(name=f"{name}_followed")   # the followed item is inside
        self.chosen = Signal(name=f"{name}_chosen")       # an item has been picked
        self.ahead = Signal(range(capacity + 1), name=f"{name}_ahead")
        self._entering = Signal(range(2 * capacity + 2), name=f"{name}_entering")
        self._leaving = Signal(range(2 * capacity + 2), name=f"{name}_leaving")
        m.d.comb += [
            Assert(self._leaving <= self.inside, f"{name}: no item leaves before it entered"),
            Assert(self.inside + self._entering - self._leaving <= capacity,
                   f"{name}: at most {capacity} items inside"),
        ]
        m.d.sync += self.inside.eq(self.inside + self._entering - self._leaving)

    @staticmethod
    def _count(items):
        total = 0
        for present, _ in items:
            total = total + present
        return total

    def enter(self, items) -> None:
        """Items entering this cycle, oldest first: a list of ``(present, value)``."""
        m, name = self._m, self._name
        m.d.comb += self._entering.eq(self._count(items))
        pick = Signal(range(len(items)), name=f"{name}_pick")
        m.d.comb += pick.eq(AnySeq(pick.shape()))
        take = AnySeq(1)
        below = 0
        for position, (present, value) in enumerate(items):
            with m.If(take & ~self.chosen & present & (pick == position)):
                m.d.sync += [self.expected.eq(value), self.followed.eq(1), self.chosen.eq(1),
                             self.ahead.eq(self.inside - self._leaving + below)]
            below = below + present

    def leave(self, items) -> None:
        """Items leaving this cycle, oldest first: a list of ``(present, value)``."""
        m, name = self._m, self._name
        m.d.comb += self._leaving.eq(self._count(items))
        below = 0
        for present, value in items:
            hit = self.followed & present & (self.ahead == below)
            below = below + present
            m.d.comb += [
                Assert(~hit | (Value.cast(value) == Value.cast(self.expected)),
                       f"{name}: item left with the value it entered with"),
                Cover(hit),
            ]
            with m.If(hit):
                m.d.sync += self.followed.eq(0)
        with m.If(self.followed & (self.ahead >= self._leaving)):
            m.d.sync += self.ahead.eq(self.ahead - self._leaving)

    def assert_empty_when(self, empty, what: str) -> None:
        """``empty`` (the block's own idle or level report) implies every item has left."""
        self._m.d.comb += Assert(~empty | (self.inside == 0),
                                 f"{self._name}: {what} only when every item has left")

    def assert_drains(self, quiet, cycles: int) -> None:
        """After ``cycles`` consecutive ``quiet`` cycles (no input, sink ready), all have left.

        This is the bounded form of "nothing is swallowed": an item the block loses without a
        later one to take its place would otherwise go unnoticed.
        """
        run = Signal(range(cycles + 1), name=f"{self._name}_quiet_run")
        with self._m.If(~quiet):
            self._m.d.sync += run.eq(0)
        with self._m.Elif(run != cycles):
            self._m.d.sync += run.eq(run + 1)
        self._m.d.comb += Assert((run != cycles) | (self.inside == 0),
                                 f"{self._name}: every item leaves within {cycles} quiet cycles")
