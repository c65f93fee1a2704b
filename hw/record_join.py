"""``RecordJoin``: one weight record out of its frames on several weight-load ports.

With ``AccelConfig.weight_ports`` 2 to 4 the host sends each record as that many frames at
once, one per port, each the record header and its port's PEs' blocks (``sw.formats.record_frames``), and
each port has its own loader. This block turns the loaders' outcomes into the record's:

- a port takes one frame per record: once a frame has begun on a port, the port's next frame
  waits (``hold``) until every port's frame of this record has ended;
- when every port's frame has ended, the record is good if every loader accepted its frame
  and their headers agree (``C``, ``k_count``, ``k_base``); it then counts (``records``) and
  its header becomes the status, else the record is rejected and the status reads 0, as a
  single loader's does after a rejected record.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config

__all__ = ["RecordJoin"]


class RecordJoin(ConfiguredComponent):
    """Joins the weight-load ports' frames of each record, and their loaders' outcomes.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``weight_ports`` (the ports joined, at least 2), ``c_max`` and ``k_max``.

    Members
    -------
    port : In(ArrayLayout(port layout, weight_ports))
        Per port ``p``: ``beat`` and ``last``, a beat of the port's frame accepted and its
        ``tlast``; ``good`` and ``bad``, the port's loader accepted or rejected a frame
        (one-cycle strobes: its ``records`` moved, its ``error``); ``channels``, ``k_count``
        and ``k_base``, the loader's status.
    hold : Out(weight_ports)
        Bit ``p``: port ``p`` must not begin a frame (its frame of the current record has
        begun and the record is not yet joined). Registers only.
    committed : Out(1)
        One-cycle strobe: every port's frame ended, all good and agreeing; ``records`` steps
        and the status takes their header in the next cycle.
    rejected : Out(1)
        One-cycle strobe: every port's frame ended, and one was rejected or the headers
        differ; the status reads 0 from the next cycle.
    records : Out(16)
        Good records (wraps).
    channels, k_count, k_base : Out
        The header of the last good record, 0 after reset and after a rejected one.

    Notes
    -----
    Each frame a loader takes ends in exactly one outcome (``good`` or ``bad``), and a port
    begins no frame while ``hold`` is set, so every port has exactly one outcome per record.
    A record whose frames have not all been sent is neither counted nor rejected: its ports
    wait for the missing frames.
    """

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        if cfg.weight_ports < 2:
            raise ValueError("RecordJoin joins two or more weight-load ports")
        port = data.StructLayout({
            "beat": 1, "last": 1, "good": 1, "bad": 1,
            "channels": range(cfg.c_max + 1), "k_count": range(cfg.k_max + 1), "k_base": 16,
        })
        super().__init__(cfg, {
            "port": In(data.ArrayLayout(port, cfg.weight_ports)),
            "hold": Out(cfg.weight_ports),
            "committed": Out(1),
            "rejected": Out(1),
            "records": Out(16),
            "channels": Out(range(cfg.c_max + 1)),
            "k_count": Out(range(cfg.k_max + 1)),
            "k_base": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        ports = range(self._cfg.weight_ports)
        in_frame = Signal(len(ports))   # port p is inside a frame
        begun = Signal(len(ports))      # port p's frame of this record has begun
        ended = Signal(len(ports))      # ... and its loader has given its outcome
        failed = Signal()               # some port's loader rejected its frame
        for p in ports:
            port = self.port[p]
            with m.If(port.beat):
                m.d.sync += in_frame[p].eq(~port.last)
                # Only a frame's first beat: a rejected frame's outcome may come before its
                # last beat, and its record may be joined while the rest of it goes by.
                with m.If(~in_frame[p]):
                    m.d.sync += begun[p].eq(1)
            with m.If(port.good | port.bad):
                m.d.sync += ended[p].eq(1)
            with m.If(port.bad):
                m.d.sync += failed.eq(1)
        m.d.comb += self.hold.eq(begun & ~in_frame)

        first = self.port[0]
        agree = Cat((self.port[p].channels == first.channels)
                    & (self.port[p].k_count == first.k_count)
                    & (self.port[p].k_base == first.k_base) for p in ports[1:]).all()
        joined = ended.all()
        m.d.comb += [self.committed.eq(joined & ~failed & agree),
                     self.rejected.eq(joined & (failed | ~agree))]
        with m.If(joined):
            m.d.sync += [begun.eq(0), ended.eq(0), failed.eq(0)]
        with m.If(self.committed):
            m.d.sync += [self.records.eq(self.records + 1), self.channels.eq(first.channels),
                         self.k_count.eq(first.k_count), self.k_base.eq(first.k_base)]
        with m.If(self.rejected):
            m.d.sync += [self.channels.eq(0), self.k_count.eq(0), self.k_base.eq(0)]
        return m
