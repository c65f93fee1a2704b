"""Width converters between one-channel streams and the sparse array's multi-channel beats.

The sparse array takes ``A = cfg.act_width`` input channels of a tile per beat and drains
``D = cfg.drain_width`` output channels per beat, so a layer whose columns hold little work is
held neither to one input channel nor to one output channel per cycle. The input and output
transforms work on ``P = cfg.transform_channels`` channels per beat:

* ``ChannelGather`` packs consecutive channels of the input transform into the array's beats;
* ``ChannelSerialiser`` splits the array's output beats back into channels.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.array import SparseArray
from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config

__all__ = ["ChannelGather", "ChannelSerialiser"]


class ChannelGather(ConfiguredComponent):
    """Packs ``{v[P][n²], c, n, last}`` beats into the array's ``act_width``-channel beats.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``act_width`` (A), ``transform_channels`` (P, which divides A), ``coords``,
        ``v_bits`` and ``c_max``.

    Members
    -------
    i : In(stream.Signature(StructLayout{v, c, n, last}))
        ``n`` (``1 .. P``) input channels ``c .. c + n - 1`` of one tile per beat: ``v[j]``,
        channel ``c + j``'s ``n²`` transformed activations, zero for ``j >= n``. A tile's
        beats must arrive in ascending, consecutive order, ``n = P`` but in the final one,
        ``last`` on the final one (the order of :class:`hw.linebuf.LineBuffer`).
    o : Out(stream.Signature(SparseArray.layouts(cfg)[0]))
        ``n = A`` consecutive channels from ``c`` up per beat, or fewer in a tile's final beat
        (``v[i]`` is 0 for ``i >= n``); ``last`` on the tile's final beat.

    Notes
    -----
    A beat leaves one cycle after its final channel arrives; throughput one input beat (``P``
    channels) per cycle, with no bubble between output beats.
    """

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        beat = SparseArray.layouts(cfg)[0]
        P = cfg.transform_channels
        channels = data.StructLayout({
            "v": data.ArrayLayout(beat["v"].shape.elem_shape, P),
            "c": beat["c"].shape,
            "n": range(1, P + 1),
            "last": beat["last"].shape,
        })
        super().__init__(cfg, {
            "i": In(stream.Signature(channels)),
            "o": Out(stream.Signature(beat)),
        })


    def elaborate(self, platform):
        m = Module()
        width = self._cfg.act_width
        P = self._cfg.transform_channels
        filled = Signal(range(width))         # channels in the beat being built (a multiple of P)
        beat = Signal.like(self.o.payload, reset_less=True)     # no reset on the payload
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(beat)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            start = filled == 0
            slot = filled
            m.d.sync += [beat.v[slot | j].eq(self.i.payload.v[j]) for j in range(P)]
            with m.If(start):
                m.d.sync += beat.c.eq(self.i.payload.c)
                m.d.sync += [beat.v[i].eq(0) for i in range(P, width)]
            m.d.sync += [beat.last.eq(self.i.payload.last),
                         beat.n.eq(slot + self.i.payload.n), filled.eq(slot + P)]
            with m.If(self.i.payload.last | (slot == width - P)):
                m.d.sync += [self.o.valid.eq(1), filled.eq(0)]
        return m


class ChannelSerialiser(ConfiguredComponent):
    """Splits each ``{m[D][n²], k, last}`` beat into beats of ``P`` channels.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``drain_width`` (D), ``transform_channels`` (P, which divides D), ``coords``,
        ``m_bits`` and ``k_max``.

    Members
    -------
    i : In(stream.Signature(SparseArray.layouts(cfg)[2]))
        The array's output beats.
    o : Out(stream.Signature(StructLayout{m, k, last}))
        ``m[j]``: the ``n²`` values of channel ``k + j``, ``j < P``; ``k`` runs ``0, P, 2P ..``
        below ``k_count``, one beat each, in order; ``last`` on the tile's final beat.
        ``m[j]`` of a channel ``k + j >= k_count`` (the final beat's, when ``P`` does not
        divide ``k_count``) is whatever the array drained there. Beats wholly at or past
        ``k_count`` (the zero padding of a tile's final drain beat) are dropped.
    k_count : In(range(1, k_max + 1))
        Output channels of the current pass. Hold it stable during a pass.

    Notes
    -----
    Latency 1 (the beat register); throughput one output beat (``P`` channels) per cycle,
    with no bubble between input beats.
    """

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        beat = SparseArray.layouts(cfg)[2]
        channel = data.StructLayout({
            "m": data.ArrayLayout(beat["m"].shape.elem_shape, cfg.transform_channels),
            "k": beat["k"].shape,
            "last": beat["last"].shape,
        })
        super().__init__(cfg, {
            "i": In(stream.Signature(beat)),
            "o": Out(stream.Signature(channel)),
            "k_count": In(range(1, cfg.k_max + 1)),
        })


    def elaborate(self, platform):
        m = Module()
        width = self._cfg.drain_width
        P = self._cfg.transform_channels
        held = Signal.like(self.i.payload, reset_less=True)
        j = Signal(range(width))                # a multiple of P: | is +
        k = Signal(self.o.payload.k.shape())
        final = Signal()
        m.d.comb += [
            k.eq(held.k + j),
            final.eq((j == width - P) | (k == self.k_count - 1 if P == 1
                                         else k + P >= self.k_count)),
            *[self.o.payload.m[p].eq(held.m[j | p]) for p in range(P)],
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
                m.d.sync += j.eq(j + P)
        return m
