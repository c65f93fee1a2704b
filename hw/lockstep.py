"""``Lockstep``: copies of one fixed-latency pipeline moving together, one beat of several.

The accelerator moves ``transform_channels`` channels per cycle through the input and the output
transform. Each channel needs its own datapath, but one handshake serves them all: the copies
are given the same ``valid`` and ``ready`` in every cycle, so their stage controls, which depend
on nothing else, hold the same state (synthesis merges them), and the first copy's ``i.ready``
and ``o.valid`` speak for every one.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Lockstep"]


class Lockstep(wiring.Component):
    """``len(units)`` copies of a pipeline unit on one handshake.

    Parameters
    ----------
    units : list of wiring.Component
        Copies of one unit (the same class and configuration) with stream ports ``i`` and
        ``o`` and a ``LATENCY``, whose ``i.ready`` and ``o.valid`` depend on their ``valid``
        and ``ready`` inputs only, never on a payload (the units of :mod:`hw.transforms`).

    Members
    -------
    i : In(stream.Signature(ArrayLayout(unit.i.payload.shape(), len(units))))
        One beat for every copy: element ``j`` goes to copy ``j``.
    o : Out(stream.Signature(ArrayLayout(unit.o.payload.shape(), len(units))))
        Element ``j`` is copy ``j``'s beat; the copies' beats always leave together.

    Notes
    -----
    Latency and throughput are the unit's (``LATENCY`` is copied).
    """

    def __init__(self, units: list):
        units = list(units)
        if not units or len({type(unit) for unit in units}) != 1:
            raise ValueError("units must be one or more copies of one unit class")
        first = units[0]
        if any(unit.signature != first.signature for unit in units):
            raise ValueError("units must have one signature (copies of one configuration)")
        self._units = units
        #: Cycles from a beat accepted on ``i`` to it being valid on ``o`` (the unit's).
        self.LATENCY = first.LATENCY
        count = len(units)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(first.i.payload.shape(), count))),
            "o": Out(stream.Signature(data.ArrayLayout(first.o.payload.shape(), count))),
        })

    def elaborate(self, platform):
        m = Module()
        for j, unit in enumerate(self._units):
            m.submodules[f"unit{j}"] = unit
            m.d.comb += [
                unit.i.payload.eq(self.i.payload[j]),
                unit.i.valid.eq(self.i.valid),
                unit.o.ready.eq(self.o.ready),
                self.o.payload[j].eq(unit.o.payload),
            ]
        first = self._units[0]
        m.d.comb += [self.i.ready.eq(first.i.ready), self.o.valid.eq(first.o.valid)]
        return m
