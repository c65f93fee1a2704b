"""``ZeroFilter``: drops zero activations and queues the rest, one PE's input stage.

An activation beat carries up to ``act_width`` channels of one Winograd coordinate. Only the
non-zero ones have work, so only they are queued, in channel order. A tile's final beat with no
non-zero channel becomes one bare end-of-tile marker (``v = 0``), so a tile without work still
closes. With ``act_width = 1`` the queue is a first-word-fall-through FIFO in LUT RAM; wider
beats need a :class:`hw.compactor.CompactingQueue`, which takes any subset of a beat per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value, signed
from amaranth.lib import data, stream
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hw.compactor import CompactingQueue
from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config

__all__ = ["ZeroFilter", "act_layout", "act_entry_layout"]


def _bits_for(count: int) -> int:
    """Unsigned width able to index ``count`` items (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def act_layout(cfg: AccelConfig) -> data.StructLayout:
    """One activation beat of one coordinate: ``n`` channels from ``c`` up, end-of-tile flag."""
    return data.StructLayout({
        "c": _bits_for(cfg.c_max),
        "n": range(1, cfg.act_width + 1),
        "v": data.ArrayLayout(signed(cfg.v_bits), cfg.act_width),
        "last": 1,
    })


def act_entry_layout(cfg: AccelConfig) -> data.StructLayout:
    """One queued activation: channel, value, end-of-tile flag (``v == 0``: a bare marker)."""
    return data.StructLayout({"c": _bits_for(cfg.c_max), "v": signed(cfg.v_bits), "last": 1})


class ZeroFilter(ConfiguredComponent):
    """Zero filter and activation queue of one sparse PE.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``act_width`` (channels per beat), ``fifo_depth`` (queue entries), ``c_max``
        and ``v_bits``.

    Members
    -------
    i : In(stream.Signature(act_layout(cfg)))
        Activation beats: channels ``c .. c + n - 1``, ``last`` on a tile's final beat. Ready
        while the queue has room for a whole beat.
    o : Out(stream.Signature(act_entry_layout(cfg)))
        The non-zero activations in input order, and bare end-of-tile markers (``v = 0``,
        ``last = 1``); ``last`` is set on the final entry of a tile.
    zeros : Out(range(act_width + 1))
        Zero channels of the beat on ``i`` (counted when it is taken).
    level : Out(range(fifo_depth + 1))
        Entries queued.

    Notes
    -----
    Latency 1: an entry is on ``o`` the cycle after its beat is taken.
    """

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        super().__init__(cfg, {
            "i": In(stream.Signature(act_layout(cfg))),
            "o": Out(stream.Signature(act_entry_layout(cfg))),
            "zeros": Out(range(cfg.act_width + 1)),
            "level": Out(range(cfg.fifo_depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        beat, width = self.i.payload, cfg.act_width
        entry = act_entry_layout(cfg)
        real = [Signal(name=f"real{i}") for i in range(width)]
        m.d.comb += [real[i].eq((i < beat.n) & (beat.v[i] != 0)) for i in range(width)]
        m.d.comb += self.zeros.eq(sum((i < beat.n) & (beat.v[i] == 0) for i in range(width)))
        none_real = Signal()
        m.d.comb += none_real.eq(sum(real) == 0)

        if width == 1:
            fifo = m.submodules.queue = SyncFIFO(width=entry.size, depth=cfg.fifo_depth)
            head = entry(fifo.w_data)
            m.d.comb += [
                self.i.ready.eq(fifo.w_rdy),
                fifo.w_en.eq(self.i.valid & (real[0] | beat.last)),
                head.c.eq(beat.c), head.v.eq(beat.v[0]), head.last.eq(beat.last),
                self.o.valid.eq(fifo.r_rdy),
                Value.cast(self.o.payload).eq(fifo.r_data),
                fifo.r_en.eq(self.o.ready),
                self.level.eq(fifo.level),
            ]
            return m

        queue = m.submodules.queue = CompactingQueue(entry, inputs=width, outputs=1,
                                                     depth=cfg.fifo_depth)
        take = self.i.valid & queue.room
        m.d.comb += self.i.ready.eq(queue.room)
        for i in range(width):
            later = 0
            for j in range(i + 1, width):
                later = later | real[j]
            m.d.comb += [
                queue.i_valid[i].eq(take & (real[i] | (beat.last & none_real if i == 0 else 0))),
                queue.i_data[i].c.eq(beat.c + i),
                queue.i_data[i].v.eq(beat.v[i]),
                queue.i_data[i].last.eq(beat.last & ~later),
            ]
        m.d.comb += [
            self.o.valid.eq(queue.o_count != 0),
            self.o.payload.eq(queue.o_data[0]),
            queue.o_take.eq(self.o.valid & self.o.ready),
            self.level.eq(queue.level),
        ]
        return m
