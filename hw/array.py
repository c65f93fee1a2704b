"""``SparseArray``: the ``n²`` sparse PEs of one accelerator, one per Winograd coordinate.

The array takes one stream of transformed-activation vectors (what the input transform makes,
one input channel of one tile per beat), fans each beat out to the ``n²`` PEs, whose zero
filters and FIFOs then let every coordinate run at its own pace, and gathers the PEs' outputs
back into one stream of ``M[k]`` vectors for the output transform.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent, port_member
from hw.stream_buffer import StreamBuffer
from sw.config import AccelConfig, require_config, require_count
from sw.formats import port_pes
from hw.pe import (SparsePE, act_layout, check_images, perf_layout, perf_step_layout,
                   wgt_wr_layout)
from hw.pe import out_layout as pe_out_layout
from sw.regmap import PERF_COUNTERS

__all__ = ["SparseArray"]


def _check_images(name: str, images, coords: int) -> list:
    if images is None:
        return [None] * coords
    images = list(images)
    if len(images) != coords:
        raise ValueError(f"{name}: {len(images)} images given, expected one per PE ({coords})")
    return images


def _gathered_layout(cfg: AccelConfig, pes: int) -> data.StructLayout:
    """``{m[D][pes], k, last}``: one drain beat of ``pes`` PEs side by side (``out`` is all
    ``coords`` of them; the gather's first-level joins hold a group)."""
    return data.StructLayout({
        "m": data.ArrayLayout(data.ArrayLayout(signed(cfg.m_bits), pes), cfg.drain_width),
        "k": pe_out_layout(cfg)["k"].shape,
        "last": unsigned(1),
    })


class SparseArray(ConfiguredComponent):
    """``n²`` :class:`hw.pe.SparsePE` s behind one activation stream and one output stream.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator; PE ``xi`` gets ``cfg.lanes_per_coord[xi]`` lanes.
    weights : sequence of (sequence of int), optional
        Per PE, its initial weight words (``PassImage.words`` of :func:`sw.formats.pack_layer`).
    directories : sequence of (sequence of int), optional
        Per PE, its initial directory entries (:func:`sw.formats.directory_words`).
    counter_bits : int
        Width of the performance counters.

    Members
    -------
    act : In(stream.Signature(StructLayout{c, n, v, last}))
        ``n`` input channels ``c .. c + n - 1`` of one tile (``n <= act_width``): ``v[i]``, the
        ``n²`` transformed activations ``V[xi, c + i, t]`` row-major; ``last`` on the tile's
        final beat; :func:`sw.golden.act_beats` makes them from ``V``. A beat is accepted once
        every PE has taken its part; a PE takes it as soon as its activation queue has room,
        so a busy PE holds up the others only when its queue is full.
    wgt_wr : In(stream.Signature(StructLayout{pe, entry, word}))
        A beat of PE ``pe``'s load port (see :class:`hw.pe.SparsePE`): ``entry`` and ``word``
        as in :func:`hw.pe.wgt_wr_layout`, their ``data`` as wide as the widest PE's (the
        high bits beyond a PE's own are ignored); a beat with ``valid`` sets at least one
        ``en``. Always ready. The beat is written :attr:`LOAD_LATENCY` cycles later, through
        a register per :attr:`LOAD_GROUP` PEs; :attr:`loading` is high in between. With
        ``weight_ports`` 2 to 4, port ``wgt_wr{p}`` (``wgt_wr`` for ``p = 0``) takes the writes
        of the PEs :func:`sw.formats.port_pes` gives port ``p``; all may write in the same
        cycle (:meth:`load_ports`).
    out : Out(stream.Signature(StructLayout{m, k, last}))
        Per tile, ``ceil(k_count / D)`` beats (``D = drain_width``) in ``k`` order: beat ``r``
        has ``k = r · D`` and ``m[j]``, the ``n²`` values ``M[xi, k + j, t]`` row-major, for
        ``j < D`` (0 for channels at or past ``k_count``); ``last`` on the tile's final beat.
        :func:`sw.golden.drain_beats` gives the same order from the golden model.
    k_count : In(range(1, k_max + 1))
        Output channels of the current pass.
    bank : In(1)
        The directory bank every PE reads (:class:`hw.weight_ring.WeightRing`).
    perf : Out(ArrayLayout(perf_layout(counter_bits), n²))
        Every PE's counters (see :class:`hw.pe.SparsePE`).
    perf_sum : Out(perf_layout(counter_bits))
        Each counter summed over the PEs (wrapping at ``2**counter_bits``), made from the PEs'
        ``perf_step`` by a registered adder tree: it equals the sum of ``perf`` as that was
        :meth:`perf_lag` cycles earlier. Nothing else reads ``perf`` in the accelerator, so
        synthesis removes the per-PE counters there and only these five remain.
    cycles : Out(counter_bits)
        Cycles during which the array is not :attr:`idle`: the run time the utilisation
        ``nonzero pairs / (multipliers · cycles)`` is measured against.
    idle : Out(1)
        Every PE idle and ``out`` empty.
    loading : Out(1)
        A ``wgt_wr`` beat taken but not yet written: a run must not start before it falls
        (the accelerator counts it as busy).
    overflow : Out(1)
        A one-cycle pulse two cycles after a PE drained a channel whose exact sum lies outside
        ``acc_range`` (the OR of the PEs' ``overflow``, registered).

    Notes
    -----
    Throughput: PE ``xi`` needs about ``max(W_ξ(t), P_ξ(t) / L_ξ)`` cycles for tile ``t``
    (``W`` words walked, ``P`` pairs, see :class:`hw.pe.SparsePE`) and its drain
    ``ceil(K / D)`` cycles, overlapped with the next tiles. Over ``T`` tiles the array takes
    about ``max_ξ Σ_t max(W_ξ(t), P_ξ(t) / L_ξ, ceil(K / D))`` cycles when the FIFOs
    (``fifo_depth``) and the accumulator banks (``tiles_in_flight``) absorb the skew between
    coordinates; the ideal is ``Σ_ξ P_ξ / multipliers``. The gap is coordinate imbalance (the
    slowest PE sets the pace), walker-bound short columns and end-of-tile markers, and tile
    synchronisation (skew larger than the buffering, drain).

    Latency: :attr:`LATENCY` cycles from the final ``act`` beat of a tile to its first ``out``
    beat when every PE is idle and that beat's columns are one word long, two more than the
    PE's (the gather's two levels of joins, :attr:`GATHER_GROUP` PEs each, then the groups).
    """

    #: Cycles from a ``wgt_wr`` beat to its write of the PE's memories (:attr:`LOAD_GROUP`).
    LOAD_LATENCY = 1
    #: PEs behind each register of the load port.
    LOAD_GROUP = 4
    #: Cycles from a tile's final ``act`` beat to its first ``out`` beat (idle array).
    LATENCY = SparsePE.LATENCY + 2
    #: PEs per first-level join of the gather (the second level joins the groups).
    GATHER_GROUP = 4
    #: Inputs of each adder of the ``perf_sum`` tree (one register level per tree level).
    PERF_FAN_IN = 4

    def __init__(self, cfg: AccelConfig, *, weights=None, directories=None,
                 counter_bits: int = SparsePE.COUNTER_BITS):
        require_config(cfg)
        coords = cfg.coords
        self._counter_bits = require_count("counter_bits", counter_bits)
        # validated here, the PEs themselves are built in elaborate()
        self._images = [check_images(cfg, xi, w, d) for xi, (w, d) in enumerate(zip(
            _check_images("weights", weights, coords),
            _check_images("directories", directories, coords)))]
        act, wgt_wr, out = self.layouts(cfg)
        super().__init__(cfg, {
            "act": In(stream.Signature(act)),
            **{port_member("wgt_wr", p): In(stream.Signature(wgt_wr, always_ready=True))
               for p in range(cfg.weight_ports)},
            "out": Out(stream.Signature(out)),
            "k_count": In(range(1, cfg.k_max + 1)),
            "bank": In(1),
            "perf": Out(data.ArrayLayout(perf_layout(counter_bits), coords)),
            "perf_sum": Out(perf_layout(counter_bits)),
            "cycles": Out(counter_bits),
            "idle": Out(1),
            "loading": Out(1),
            "overflow": Out(1),
        })

    def load_ports(self) -> list:
        """Every weight-load port's ``wgt_wr`` member, in port order."""
        return [getattr(self, port_member("wgt_wr", p)) for p in range(self._cfg.weight_ports)]

    @staticmethod
    def layouts(cfg: AccelConfig) -> tuple[data.StructLayout, ...]:
        """Payload layouts of ``act``, ``wgt_wr`` and ``out`` (for benches and drivers)."""
        coords = cfg.coords
        wr_layouts = [wgt_wr_layout(cfg, xi) for xi in range(coords)]
        act = data.StructLayout({
            "c": act_layout(cfg)["c"].shape,
            "n": act_layout(cfg)["n"].shape,
            "v": data.ArrayLayout(data.ArrayLayout(signed(cfg.v_bits), coords), cfg.act_width),
            "last": unsigned(1),
        })
        def widest(half: str) -> data.StructLayout:
            """``half`` of the PEs' layouts, each field as wide as the widest PE's."""
            return data.StructLayout({
                name: unsigned(max(lay[half].shape[name].width for lay in wr_layouts))
                for name, _ in wr_layouts[0][half].shape})

        wgt_wr = data.StructLayout({"pe": range(coords), "entry": widest("entry"),
                                    "word": widest("word")})
        return act, wgt_wr, _gathered_layout(cfg, coords)

    @classmethod
    def perf_lag(cls, cfg: AccelConfig) -> int:
        """Cycles ``perf_sum`` trails the sum of ``perf``: the PEs' ``perf_step`` registers,
        one register per level of the adder tree (``PERF_FAN_IN`` inputs per adder), and the
        counters themselves."""
        levels, width = 0, cfg.coords
        while width > 1:
            width = -(-width // cls.PERF_FAN_IN)
            levels += 1
        return levels + 1


    def _join(self, m: Module, name: str, sources: list) -> StreamBuffer:
        """A :class:`StreamBuffer` taking one beat of every source at once, side by side.

        ``sources`` are ``(stream, count)`` pairs: a PE's output stream (``count`` None, one
        value per ``m[j]``) or a join's (``count`` values per ``m[j]``). The buffer's ``m[j]``
        holds their values in order, its ``k`` and ``last`` are the first source's (every
        source holds the same channel of the same tile).
        """
        width = sum(1 if count is None else count for _, count in sources)
        buf = m.submodules[name] = StreamBuffer(_gathered_layout(self._cfg, width))
        valid = Signal(name=f"{name}_valid")
        m.d.comb += valid.eq(Cat(src.valid for src, _ in sources).all())
        head = sources[0][0].payload
        m.d.comb += [buf.i.valid.eq(valid),
                     buf.i.payload.k.eq(head.k), buf.i.payload.last.eq(head.last)]
        for j in range(self._cfg.drain_width):
            values = [v for src, count in sources
                      for v in ([src.payload.m[j]] if count is None
                                else [src.payload.m[j][i] for i in range(count)])]
            m.d.comb += [buf.i.payload.m[j][i].eq(v) for i, v in enumerate(values)]
        for src, _ in sources:
            m.d.comb += src.ready.eq(valid & buf.i.ready)
        return buf

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        coords = cfg.coords
        pes = [SparsePE(self._cfg, xi, weights=w, directory=d, counter_bits=self._counter_bits)
               for xi, (w, d) in enumerate(self._images)]
        for xi, pe in enumerate(pes):
            m.submodules[f"pe{xi}"] = pe
            m.d.comb += [pe.k_count.eq(self.k_count), pe.bank.eq(self.bank)]
        # One assignment of the whole vector, not one per PE: Verilog then drives `perf` with a
        # single concatenation instead of per-PE part assignments, which Icarus resolves bit by
        # bit for every reader of the vector whenever any counter moves.
        m.d.comb += self.perf.eq(Cat(pe.perf.as_value() for pe in pes))

        # -- fan-out: each PE takes its element once; the beat completes when all have ------
        taken = Signal(coords)
        all_taken = Signal()
        m.d.comb += all_taken.eq(Cat(taken[xi] | pe.act.ready
                                      for xi, pe in enumerate(pes)).all())
        m.d.comb += self.act.ready.eq(all_taken)
        for xi, pe in enumerate(pes):
            m.d.comb += [
                pe.act.valid.eq(self.act.valid & ~taken[xi]),
                pe.act.payload.c.eq(self.act.payload.c),
                pe.act.payload.n.eq(self.act.payload.n),
                pe.act.payload.last.eq(self.act.payload.last),
            ]
            m.d.comb += [pe.act.payload.v[i].eq(self.act.payload.v[i][xi])
                         for i in range(self._cfg.act_width)]
            with m.If(self.act.valid & all_taken):
                m.d.sync += taken[xi].eq(0)
            with m.Elif(pe.act.valid & pe.act.ready):
                m.d.sync += taken[xi].eq(1)

        # -- load port: a register per group of PEs, then route by PE index -----------------
        # One register in front of every LOAD_GROUP neighbouring PEs' memories: a single
        # payload register fanning out to all the PEs' block RAMs across the die was the
        # routed critical path (10389d3, docs/fpga.md).
        # With two weight-load ports each takes its own PEs (sw.formats.port_pes), grouped
        # from the port's first PE.
        groups = [(port, range(g, min(g + self.LOAD_GROUP, share.stop)))
                  for port, share in zip(self.load_ports(),
                                         (port_pes(cfg, p) for p in range(cfg.weight_ports)))
                  for g in range(share.start, share.stop, self.LOAD_GROUP)]
        # Each group's register loads only a beat for its own PEs: loaded every cycle, the
        # groups' registers of one port would be identical, and Yosys merges them into one
        # register driving every PE's block RAMs across the die (the routed critical path of
        # 317ac53 and 9eec1c4 at nextpnr seed 2, and of df6dd58 and 0abfec7 at seed 1).
        for n, (port, members) in enumerate(groups):
            wr = port.payload
            valid = Signal(len(members), name=f"load{n}_valid")
            held = Signal.like(wr, name=f"load{n}", reset_less=True)
            hit = Signal(name=f"load{n}_hit")
            m.d.comb += hit.eq(port.valid & (wr.pe >= members.start) & (wr.pe < members.stop))
            m.d.sync += valid.eq(Cat(port.valid & (wr.pe == xi) for xi in members))
            with m.If(hit):
                m.d.sync += held.eq(wr)
            for j, xi in enumerate(members):
                pe = pes[xi]
                m.d.comb += pe.wgt_wr.valid.eq(valid[j])
                for half in ("entry", "word"):
                    src, dst = held[half], pe.wgt_wr.payload[half]
                    m.d.comb += [dst.en.eq(src.en), dst.addr.eq(src.addr),
                                 dst.data.eq(src.data)]
        # `loading` is the load port's valid a cycle late: the same value as the OR of the
        # groups' valid bits, from one register, since that OR tree on its way into
        # STATUS.BUSY was the routed critical path (41e7727, docs/fpga.md).
        m.d.sync += self.loading.eq(reduce(operator.or_, (port.valid for port in self.load_ports())))

        # -- gather: one M[k] vector once every PE has its M[k] -----------------------------
        # PEs drain the same (tile, k) sequence, so their heads always hold the same (t, k).
        # Two levels of joins, each into a StreamBuffer: GATHER_GROUP neighbouring PEs into a
        # group, then the groups into `out`. A single join of all PEs was a routed critical
        # path (a PE's valid across the die into the AND, and its `ready` back to every PE's
        # output register, docs/fpga.md); each join now spans a group, or the few groups.
        group = self.GATHER_GROUP
        starts = range(0, coords, group)
        joined = [self._join(m, f"gather{g // group}", [(pe.out, None) for pe in pes[g:g + group]])
                  for g in starts]
        top = self._join(m, "gather", [(buf.o, min(group, coords - g))
                                       for buf, g in zip(joined, starts)])
        m.d.comb += [self.out.valid.eq(top.o.valid),
                     self.out.payload.eq(top.o.payload),
                     top.o.ready.eq(self.out.ready)]
        gather_busy = Cat(buf.busy for buf in [*joined, top]).any()

        m.d.sync += self.overflow.eq(Cat(pe.overflow for pe in pes).any())

        # -- summed counters: a registered adder tree over the PEs' per-cycle increments ----
        # The PEs lie across the die, so no level adds more than PERF_FAN_IN values of a few
        # bits before a register; each field's value carries its bound, which sizes it.
        bound = {name: perf_step_layout(self._cfg)[name].shape.stop - 1
                 for name in PERF_COUNTERS}
        level = [[(pe.perf_step[name], bound[name]) for name in PERF_COUNTERS] for pe in pes]
        depth, fan_in = 0, self.PERF_FAN_IN
        while len(level) > 1:
            groups = [level[g:g + fan_in] for g in range(0, len(level), fan_in)]
            level = []
            for g, group in enumerate(groups):
                sums = []
                for f, name in enumerate(PERF_COUNTERS):
                    most = sum(values[f][1] for values in group)
                    total = Signal(range(most + 1), name=f"perf_{name}_l{depth}_{g}")
                    m.d.sync += total.eq(sum(values[f][0] for values in group))
                    sums.append((total, most))
                level.append(sums)
            depth += 1
        for f, name in enumerate(PERF_COUNTERS):
            counter = self.perf_sum[name]
            m.d.sync += counter.eq(counter + level[0][f][0])

        # -- run time -----------------------------------------------------------------------
        m.d.comb += self.idle.eq(Cat(pe.idle for pe in pes).all() & ~gather_busy)
        with m.If(~self.idle):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        return m
