"""The AXI4-Lite slave rules as stream rules on its five channels, and response accounting.

An AXI4-Lite port is five streams with flat, Vivado-named signals: AW, W and AR from the host,
B and R back to it. :class:`Channel` groups one channel's ``valid``, ``ready`` and payload so
the stream rules of :mod:`verif.formal.rules` apply unchanged: :func:`axi_lite_slave`
constrains the host's channels to them (an assumption) and proves them on B and R, then
counts responses with one :class:`~verif.formal.rules.ItemTracker` per direction: a write
enters when both its AW and its W have been accepted and leaves with its B handshake, a read
enters with its AR handshake and leaves with its R handshake. So no response comes without a
request (the tracker's "no item leaves before it entered"), none is missing (all leave within
the slave's latency of quiet cycles with the host ready), and none comes twice.

The slave may hold one write and one read outstanding (:class:`hw.csr.ControlRegisters`'s
Notes); it is asserted to accept a new address or data word exactly when none of that kind is
outstanding, and to show B or R valid only for an outstanding request.

The accounting is a bounded check: k-induction does not close on it, because the slave's
state behind a held B or R (an address already taken for the next write) is not visible at
its ports, and a host may hold B or R stalled for any number of cycles. The stream rules on B
and R alone do close by k-induction.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cat, Const, Cover, Module, Signal, Value

from verif.formal.rules import ItemTracker, assert_stream, assume_stream

__all__ = ["Channel", "channel", "AxiLite", "axi_lite_slave", "axi_lite_responses"]


@dataclass(frozen=True)
class Channel:
    """One AXI channel as a stream: ``valid``, ``ready`` and the payload (its other signals)."""

    valid: Value
    ready: Value
    payload: Value


def channel(port, prefix: str, *fields: str) -> Channel:
    """The channel ``<prefix>valid``/``ready`` of ``port`` with payload ``<prefix><field>...``."""
    return Channel(getattr(port, f"{prefix}valid"), getattr(port, f"{prefix}ready"),
                   Cat(*(getattr(port, f"{prefix}{name}") for name in fields)))


def _host(m: Module, ch: Channel, name: str) -> None:
    """The host drives ``ch`` with any beats that keep the stream rules."""
    m.d.comb += [ch.valid.eq(AnySeq(1)), ch.payload.eq(AnySeq(len(ch.payload)))]
    assume_stream(m, ch, name)


def _taken(ch: Channel):
    return ch.valid & ch.ready


@dataclass(frozen=True)
class AxiLite:
    """The five channels of one AXI4-Lite slave port."""

    aw: Channel
    w: Channel
    ar: Channel
    b: Channel
    r: Channel


def axi_lite_slave(m: Module, port, prefix: str) -> AxiLite:
    """Drive the AXI4-Lite slave ``port`` (signals ``<prefix>aw...``); prove B and R's rules.

    The host keeps the stream rules on AW, W and AR (an assumption) and takes B and R at
    will; B (``bresp``) and R (``rdata``, ``rresp``) must keep them: valid held until ready,
    payload stable while stalled. A ``Cover`` of each response keeps a proof from passing on
    an environment that never completes one.
    """
    def named(*parts):
        return channel(port, prefix + parts[0], *parts[1:])

    bus = AxiLite(aw=named("aw", "addr", "prot"), w=named("w", "data", "strb"),
                  ar=named("ar", "addr", "prot"), b=named("b", "resp"),
                  r=named("r", "data", "resp"))
    for name in ("aw", "w", "ar"):
        _host(m, getattr(bus, name), name)
    for name in ("b", "r"):
        ch = getattr(bus, name)
        m.d.comb += ch.ready.eq(AnySeq(1))
        assert_stream(m, ch, name)
        m.d.comb += Cover(_taken(ch))
    return bus


def axi_lite_responses(m: Module, bus: AxiLite, *, write_latency: int,
                       read_latency: int) -> None:
    """Prove that ``bus`` answers every request once, and only requests.

    Every accepted write (AW and W) gets one B, every accepted AR one R, none extra, each
    within ``write_latency`` or ``read_latency`` cycles of a ready host after the request is
    complete; AWREADY, WREADY, ARREADY are high exactly when no request of their kind is
    outstanding; B and R are valid only for an outstanding request.
    """
    aw, w, ar, b, r = bus.aw, bus.w, bus.ar, bus.b, bus.r
    # A write is complete once both halves are in: aw_alone / w_alone is an accepted half
    # still waiting for the other one.
    aw_alone, w_alone = Signal(name="aw_alone"), Signal(name="w_alone")
    has_aw, has_w = aw_alone | _taken(aw), w_alone | _taken(w)
    complete = has_aw & has_w
    m.d.sync += [aw_alone.eq(has_aw & ~complete), w_alone.eq(has_w & ~complete)]
    writes = ItemTracker(m, 0, "write", capacity=1)
    writes.enter([(complete, Const(0, 0))])
    writes.leave([(_taken(b), Const(0, 0))])
    writes.assert_drains(~complete & b.ready, write_latency)
    reads = ItemTracker(m, 0, "read", capacity=1)
    reads.enter([(_taken(ar), Const(0, 0))])
    reads.leave([(_taken(r), Const(0, 0))])
    reads.assert_drains(~_taken(ar) & r.ready, read_latency)

    m.d.comb += [
        Assert(aw.ready == (~aw_alone & (writes.inside == 0)),
               "aw: ready exactly when no write address is outstanding"),
        Assert(w.ready == (~w_alone & (writes.inside == 0)),
               "w: ready exactly when no write data is outstanding"),
        Assert(ar.ready == (reads.inside == 0), "ar: ready exactly when no read is outstanding"),
        Assert(~b.valid | (writes.inside == 1), "b: valid only for an accepted write"),
        Assert(~r.valid | (reads.inside == 1), "r: valid only for an accepted read"),
    ]
