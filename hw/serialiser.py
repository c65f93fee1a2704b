"""``ChannelSerialiser``: the array's ``drain_width``-channel beats, one channel per beat.

The sparse array drains ``D = cfg.drain_width`` output channels of a tile per cycle, so a tile
with little work is not held to ``K`` cycles by its outputs. The output transform takes one
channel (the ``n²`` values ``M[:, k, t]``) per beat; this block sits between the two.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.array import SparseArray
from hw.config import AccelConfig

__all__ = ["ChannelSerialiser"]


class ChannelSerialiser(wiring.Component):
    """Splits each ``{m[D][n²], k, last}`` beat into its channels ``k .. k + D - 1``.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``drain_width`` (D), ``coords``, ``acc_bits`` and ``k_max``.

    Members
    -------
    i : In(stream.Signature(SparseArray.layouts(cfg)[2]))
        The array's output beats.
    o : Out(stream.Signature(StructLayout{m, k, last}))
        ``m``: the ``n²`` values of channel ``k``; one beat per channel below ``k_count``, in
        order; ``last`` on the tile's final channel. Channels at or past ``k_count`` (the
        zero padding of a tile's final input beat) are dropped.
    k_count : In(range(1, k_max + 1))
        Output channels of the current pass. Hold it stable during a pass.

    Notes
    -----
    Latency 1 (the beat register); throughput one channel per cycle, with no bubble between
    input beats.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {type(cfg).__name__}")
        self._cfg = cfg
        beat = SparseArray.layouts(cfg)[2]
        channel = data.StructLayout({
            "m": beat["m"].shape.elem_shape,
            "k": beat["k"].shape,
            "last": beat["last"].shape,
        })
        super().__init__({
            "i": In(stream.Signature(beat)),
            "o": Out(stream.Signature(channel)),
            "k_count": In(range(1, cfg.k_max + 1)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        width = self._cfg.drain_width
        held = Signal.like(self.i.payload)
        j = Signal(range(width))
        k = Signal(self.o.payload.k.shape())
        final = Signal()
        m.d.comb += [
            k.eq(held.k + j),
            final.eq((j == width - 1) | (k == self.k_count - 1)),
            self.o.payload.m.eq(held.m[j]),
            self.o.payload.k.eq(k),
            self.o.payload.last.eq(held.last & final),
            self.i.ready.eq(~self.o.valid | (self.o.ready & final)),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload), j.eq(0), self.o.valid.eq(1)]
        with m.Elif(self.o.ready & self.o.valid):
            with m.If(final):
                m.d.sync += self.o.valid.eq(0)
            with m.Else():
                m.d.sync += j.eq(j + 1)
        return m
