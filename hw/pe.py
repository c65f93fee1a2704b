"""``SparsePE``: one Winograd coordinate's sparse multiply-accumulate engine.

For every non-zero transformed activation ``(c, v)`` the PE walks the compressed weight column
``U_ξ[:, c]`` of the packed format (:mod:`sw.formats`), one word per cycle. Output channel ``k``
belongs to lane ``k mod L``: a word holds ``slots_per_lane`` slots for each lane, and each
lane's slots feed that lane's own :class:`hw.lane_queue.LaneQueue`. Lane ``l`` multiplies one
``(weight, v)`` pair per cycle and adds it to its accumulator row ``k // L`` of the tile's bank.
Every accumulator lives in exactly one lane, so lanes never conflict and no lane copies are
summed at the drain; the lane queues let the lanes run apart by their queue depth, and the
``tiles_in_flight`` banks let a lane run into the next tile while the others finish.

Pipeline (one beat per cycle, every stage registered)::

    act -> ZeroFilter -> A: directory read -> B: column walker / weight read
        -> C: word -> L LaneQueues -> X: lane register -> D: multiply, accumulate
        -> bank complete -> drain (drain_width channels per beat) -> output FIFO -> out
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.lane_queue import LaneQueue
from hw.stream_buffer import StreamBuffer
from hw.layouts import directory_entry_layout, word_layout
from hw.zero_filter import ZeroFilter, act_entry_layout, act_layout
from hw.component import ConfiguredComponent
from sw import formats
from sw.config import AccelConfig, require_config, require_count
from sw.regmap import PERF_COUNTERS

__all__ = ["SparsePE", "check_images", "act_layout", "act_entry_layout", "perf_layout",
           "perf_step_layout", "wgt_wr_layout", "lane_group_layout", "lane_slot_layout",
           "out_layout", "load_write", "directory_bank_bit"]


def _bits_for(count: int) -> int:
    """Unsigned width able to index ``count`` items (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def perf_layout(counter_bits: int) -> data.StructLayout:
    """The PE's performance counters, each a free-running ``counter_bits`` unsigned count."""
    return data.StructLayout({name: unsigned(counter_bits) for name in PERF_COUNTERS})


def perf_step_layout(cfg: AccelConfig) -> data.StructLayout:
    """What one cycle adds to the performance counters of a PE of ``cfg`` (any ``xi``).

    ``busy`` and ``stalls`` count a cycle, ``macs`` and ``empty_slots`` up to the lanes of
    the PE with the most, ``zeros_skipped`` up to ``act_width`` activations; the fields in the
    order of :func:`perf_layout`.
    """
    most = {"busy": 1, "macs": max(cfg.lanes_per_coord),
            "empty_slots": max(cfg.lanes_per_coord), "stalls": 1,
            "zeros_skipped": cfg.act_width}
    return data.StructLayout({name: range(most[name] + 1) for name in PERF_COUNTERS})


def directory_bank_bit(cfg: AccelConfig) -> int:
    """The directory address bit that selects its bank: entry ``c`` of bank ``b`` is at
    ``c + b * 2**directory_bank_bit(cfg)`` (two banks, so a pass's record can load into one
    while the PEs read the other; :class:`hw.weight_ring.WeightRing`)."""
    return _bits_for(cfg.c_max)


def wgt_wr_layout(cfg: AccelConfig, xi: int) -> data.StructLayout:
    """One beat of PE ``xi``'s load port: a directory entry write and a weight word write.

    ``entry`` writes the directory (``addr`` carries the bank in bit
    :func:`directory_bank_bit`, ``data`` is a directory entry of :mod:`sw.formats`), ``word``
    the weight memory (``data`` a weight word); each only when its ``en`` is set, both in the
    same cycle when both are. The ``addr`` and ``data`` of a half whose ``en`` is clear are
    ignored.
    """
    return data.StructLayout({
        "entry": data.StructLayout({
            "en": unsigned(1),
            "addr": unsigned(directory_bank_bit(cfg) + 1),
            "data": unsigned(formats.directory_layout(cfg, xi).entry_bits),
        }),
        "word": data.StructLayout({
            "en": unsigned(1),
            "addr": unsigned(_bits_for(cfg.wmem_depth)),
            "data": unsigned(formats.slot_layout(cfg, xi).word_bits),
        }),
    })


def load_write(pe: int | None = None, entry: tuple[int, int] | None = None,
               word: tuple[int, int] | None = None) -> dict:
    """One load-port beat as the plain value test benches and drivers send and expect.

    Parameters
    ----------
    pe : int, optional
        The PE written (the ``pe`` field of :meth:`hw.array.SparseArray.layouts`'s ``wgt_wr``);
        None for a single PE's port (:func:`wgt_wr_layout`), which has no such field.
    entry, word : (int, int), optional
        ``(addr, data)`` of the directory entry and of the weight word written in this beat;
        None for a half that writes nothing (``en``, ``addr`` and ``data`` 0).

    Returns
    -------
    dict
        ``{"pe": pe, "entry": {"en", "addr", "data"}, "word": {"en", "addr", "data"}}``
        (without ``"pe"`` when ``pe`` is None).

    Raises
    ------
    ValueError
        Neither ``entry`` nor ``word`` given: a beat writes at least one of them.
    """
    if entry is None and word is None:
        raise ValueError("a load-port beat writes a directory entry, a weight word or both")

    def half(write):
        if write is None:
            return {"en": 0, "addr": 0, "data": 0}
        addr, value = write
        return {"en": 1, "addr": int(addr), "data": int(value)}

    beat = {"entry": half(entry), "word": half(word)}
    return beat if pe is None else {"pe": int(pe), **beat}


def lane_group_layout(cfg: AccelConfig) -> data.StructLayout:
    """What a lane's group of slots in one word shares: activation, bank, flags.

    ``mac`` is clear for a bare end-of-tile entry (a lane with no pair in its tile's final
    word); ``end`` is set on the lane's group of the tile's final word.
    """
    return data.StructLayout({
        "v": signed(cfg.v_bits),
        "bank": range(cfg.tiles_in_flight),
        "mac": unsigned(1),
        "end": unsigned(1),
    })


def lane_slot_layout(cfg: AccelConfig, xi: int) -> data.StructLayout:
    """One slot of a lane's group: the weight and its accumulator row ``k // L``."""
    return data.StructLayout({
        "w": signed(cfg.wgt_bits),
        "row": unsigned(formats.slot_layout(cfg, xi).k_bits),
    })


def out_layout(cfg: AccelConfig) -> data.StructLayout:
    """One drain beat of a PE: ``drain_width`` accumulators from channel ``k`` up, end flag."""
    return data.StructLayout({
        "m": data.ArrayLayout(signed(cfg.m_bits), cfg.drain_width),
        "k": unsigned(_bits_for(cfg.k_max)),
        "last": unsigned(1),
    })


def check_images(cfg: AccelConfig, xi: int, weights, directory) -> tuple[list, list]:
    """Validated initial images of PE ``xi``: weight words and directory entries as int lists.

    Raises
    ------
    ValueError
        An image longer than its memory, or a word wider than the format allows.
    """
    return (_check_image(f"PE {xi} weights", weights, cfg.wmem_depth,
                         formats.slot_layout(cfg, xi).word_bits),
            _check_image(f"PE {xi} directory", directory, cfg.c_max,
                         formats.directory_layout(cfg, xi).entry_bits))


def _check_image(name: str, image, depth: int, bits: int) -> list[int]:
    """A memory image: at most ``depth`` integers, each in ``[0, 2**bits)``."""
    if image is None:
        return []
    words = [int(w) for w in image]
    if len(words) > depth:
        raise ValueError(f"{name}: {len(words)} words do not fit a memory of depth {depth}")
    for addr, word in enumerate(words):
        if not 0 <= word < (1 << bits):
            raise ValueError(f"{name}: word {addr} = {word:#x} does not fit {bits} bits")
    return words


class SparsePE(ConfiguredComponent):
    """Sparse PE of Winograd coordinate ``xi``: ``M_ξ[k, t] = Σ_c U_ξ[k, c] · V_ξ[c, t]``.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``lanes_per_coord[xi]`` (L), ``slots_per_lane``, ``k_max``, ``c_max``,
        ``v_bits``, ``wgt_bits``, ``acc_bits``/``acc_internal_bits``, ``overflow``,
        ``wmem_depth``, ``fifo_depth`` and ``act_width`` (the zero filter), ``lane_fifo_depth``,
        ``tiles_in_flight`` (accumulator banks) and ``drain_width`` (at most L).
    xi : int
        Winograd coordinate, ``0 <= xi < cfg.coords`` (row-major ``i*n + j``).
    weights : sequence of int, optional
        Initial weight-memory words of one pass (``PassImage.words[xi]`` of
        :func:`sw.formats.pack_layer`), at most ``wmem_depth``; the rest start at zero.
    directory : sequence of int, optional
        Initial directory entries of that pass (:func:`sw.formats.directory_words`), entry
        ``c`` for input channel ``c``, at most ``c_max``: directory bank 0.
    counter_bits : int
        Width of each performance counter (they wrap).

    Members
    -------
    act : In(stream.Signature(act_layout(cfg)))
        Transformed activations of one tile: a beat carries channels ``c .. c + n - 1``
        (``v[i]`` for channel ``c + i``, ``n <= act_width``), beats in any order, ``last`` on
        the tile's final beat. Zero values are dropped (counted in ``zeros_skipped``), see
        :class:`hw.zero_filter.ZeroFilter`.
    wgt_wr : In(stream.Signature(wgt_wr_layout(cfg, xi), always_ready=True))
        Memory writes for the weight loader: per beat a directory entry (``entry``: ``en``,
        ``addr``, ``data``) and a weight word (``word``: the same), each written when its
        ``en`` is set, both in the same cycle when both are; a beat with ``valid`` sets at
        least one ``en`` (:func:`load_write` makes the beats). A directory address carries
        its bank in bit :func:`directory_bank_bit`. While a pass runs, write only the other
        directory bank and weight words the pass does not read
        (:class:`hw.weight_ring.WeightRing` sees to both).
    out : Out(stream.Signature(out_layout(cfg)))
        Per tile, ``ceil(k_count / drain_width)`` beats in order: beat ``r`` has ``k = r · D``
        and ``m[j] = M[k + j]`` for ``j < D`` (``D = drain_width``; channels at or past
        ``k_count`` read 0), ``last`` on the final beat. ``m`` is the ``acc_bits`` result
        after wrap or saturation, on ``m_bits`` wires (``min(acc_bits, exact_sum_bits)``).
    k_count : In(range(1, k_max + 1))
        Output channels of the current pass (``K``, 1..k_max). Hold it stable during a pass.
    bank : In(1)
        The directory bank the pass reads. Hold it stable during a pass.
    perf : Out(perf_layout(counter_bits))
        ``busy``: cycles at least one lane takes a pair; ``macs``: multiplications;
        ``empty_slots``: lanes without a multiplication in busy cycles; ``stalls``: cycles
        the walker holds a column but may not read (its next bank is still draining, or a
        lane queue has no room for a word), or ``out`` holds a beat that is not taken;
        ``zeros_skipped``: zero activations dropped or turned into end-of-tile markers.
    perf_step : Out(perf_step_layout(cfg))
        What the counters of ``perf`` added at the last clock edge (a register loaded with
        the same increments): summed over every cycle since reset it is ``perf`` (modulo
        ``2**counter_bits``). :class:`hw.array.SparseArray` adds these up over its PEs, so
        the accelerator keeps one set of counters rather than one per PE.
    idle : Out(1)
        No activation buffered, no column or pair in flight, every bank drained, ``out`` empty.
    overflow : Out(1)
        High for one cycle, one cycle after a drain beat left the accumulators with a channel
        below ``k_count`` whose exact sum lies outside ``acc_range`` (``wrap`` or ``saturate``
        changed it); :func:`sw.golden.accumulator_overflow` is the same test on a whole run.

    Notes
    -----
    Throughput: the walker reads one word per cycle; a column whose lane ``l`` holds ``n_l``
    weights takes ``max_l ceil(n_l / slots_per_lane)`` words (an all-zero column none, except
    at a tile end, which costs one). Lane ``l`` takes one pair per cycle from its queue, so a
    tile costs lane ``l`` its own pair count; the lanes drift apart by at most their queue
    depth within a tile, and by up to ``tiles_in_flight - 1`` tiles. The drain emits
    ``D`` channels per cycle, ``ceil(K / D)`` cycles per tile, overlapped with the next tiles.

    Latency: with the PE idle, the first beat of a tile is valid :attr:`LATENCY` ``+ w - 1``
    cycles after the tile's final ``act`` beat is accepted, ``w`` being the word count of that
    beat's column (1 for an end marker): zero filter 1, its skid buffer 1, directory 1, the
    column's skid buffer 1, walker 1, word read 1, lane queue 1, lane register 1,
    multiply-accumulate 1, output buffer 1 (the three buffers are
    :class:`hw.stream_buffer.StreamBuffer`: none of their ``ready`` inputs reaches their input
    side in the same cycle, so the drain never waits on ``out.ready`` combinationally, nor
    the lookup on the walker, nor the zero filter on the lookup).

    Accumulators: per lane and bank a memory of ``ceil(k_max / L)`` rows of
    ``acc_internal_bits`` and a *fresh* bit, with an asynchronous read port, so a LUT RAM: the
    accumulate stage reads and writes a row in one cycle, which makes back-to-back updates of
    one row hazard-free. A bank belongs to the drain from the cycle every lane has accumulated
    its tile's final pair until its last beat leaves; the drain reads a row and marks it fresh,
    and a fresh row counts as 0 (one adder per lane for all banks, no clearing write data).
    """

    #: Default width of the perf counters.
    COUNTER_BITS = 32
    #: Cycles from the final ``act`` beat of a tile to its first ``out`` beat, one-word column.
    LATENCY = 10

    def __init__(self, cfg: AccelConfig, xi: int, *, weights=None, directory=None,
                 counter_bits: int = COUNTER_BITS):
        require_config(cfg)
        if isinstance(xi, bool) or not isinstance(xi, int) or not 0 <= xi < cfg.coords:
            raise ValueError(f"xi must be a Winograd coordinate in [0, {cfg.coords}), "
                             f"not {xi!r}")
        self._xi = xi
        self._slots = formats.slot_layout(cfg, xi)
        self._dir = formats.directory_layout(cfg, xi)
        self._counter_bits = require_count("counter_bits", counter_bits, 1)
        self._weights, self._directory = check_images(cfg, xi, weights, directory)
        super().__init__(cfg, {
            "act": In(stream.Signature(act_layout(cfg))),
            "wgt_wr": In(stream.Signature(wgt_wr_layout(cfg, xi), always_ready=True)),
            "out": Out(stream.Signature(out_layout(cfg))),
            "k_count": In(range(1, cfg.k_max + 1)),
            "bank": In(1),
            "perf": Out(perf_layout(self._counter_bits)),
            "perf_step": Out(perf_step_layout(cfg)),
            "idle": Out(1),
            "overflow": Out(1),
        })


    @property
    def xi(self) -> int:
        return self._xi

    @property
    def lanes(self) -> int:
        return self._slots.lanes

    def elaborate(self, platform):
        m = Module()
        cfg, slots, dirl = self._cfg, self._slots, self._dir
        lanes, spl = slots.lanes, cfg.slots_per_lane
        banks, width_d = cfg.tiles_in_flight, cfg.drain_width
        rows = cfg.accumulator_rows(self._xi)

        # -- zero filter ---------------------------------------------------------------------
        zf = m.submodules.zero_filter = ZeroFilter(cfg)
        wiring.connect(m, wiring.flipped(self.act), zf.i)
        # A skid buffer between the zero filter and the directory lookup: its `i.ready` is a
        # register, so the walker's issue decision (stage B) no longer reaches the zero
        # filter's queue pointers and level in the same cycle (the whole design's routed
        # critical path ran from the walker's bank check into them, docs/fpga.md).
        entries = m.submodules.entries = StreamBuffer(act_entry_layout(cfg))
        wiring.connect(m, zf.o, entries.i)
        head = entries.o.payload

        # -- memories and the load port ----------------------------------------------------
        # A word is never read in the cycle it is written (the loader writes only words the
        # running pass does not read, hw.weight_ring, and a word read while the PE is idle is
        # not used), so Yosys may leave the block RAM's read-during-write behaviour undefined
        # instead of emulating read-first with a delayed write and a bypass multiplexer per
        # data bit (no_rw_check). The directory has two banks: the running pass reads one,
        # the next pass's record writes the other.
        m.submodules.wmem = wmem = Memory(shape=unsigned(slots.word_bits),
                                          depth=cfg.wmem_depth, init=self._weights,
                                          attrs={"no_rw_check": 1})
        m.submodules.dmem = dmem = Memory(shape=unsigned(dirl.entry_bits),
                                          depth=2 << directory_bank_bit(cfg),
                                          init=self._directory)
        w_wr, d_wr = wmem.write_port(), dmem.write_port()
        w_rd, d_rd = wmem.read_port(), dmem.read_port()
        wr = self.wgt_wr.payload
        m.d.comb += [
            w_wr.addr.eq(wr.word.addr), w_wr.data.eq(wr.word.data),
            w_wr.en.eq(self.wgt_wr.valid & wr.word.en),
            d_wr.addr.eq(wr.entry.addr), d_wr.data.eq(wr.entry.data),
            d_wr.en.eq(self.wgt_wr.valid & wr.entry.en),
        ]

        # -- stage A: directory lookup of the queue head ----------------------------------
        a_valid = Signal()
        a_v = Signal(signed(cfg.v_bits), reset_less=True)
        a_zero = Signal()           # a_v == 0 (an end marker), registered with it
        a_last = Signal()
        a_take = Signal()
        a_load = Signal()
        entry = directory_entry_layout(cfg, self._xi)(d_rd.data)
        m.d.comb += [
            a_load.eq(entries.o.valid & (~a_valid | a_take)),
            entries.o.ready.eq(a_load),
            d_rd.en.eq(a_load),
            d_rd.addr.eq(head.c | (self.bank << directory_bank_bit(cfg))),
        ]
        with m.If(a_load):
            m.d.sync += [a_v.eq(head.v), a_zero.eq(head.v == 0), a_last.eq(head.last)]
        with m.If(a_load | a_take):
            m.d.sync += a_valid.eq(a_load)

        # A skid buffer between the lookup and the walker: the walker's issue decision then
        # moves only this buffer's output side, not the directory's read enable, the lookup
        # stage and the buffer before it (the sparse array's routed critical path ran from
        # the lane queues' room through the issue into them, docs/fpga.md). The entry goes
        # in as read; whether the column is empty, its word count and whether it is a single
        # word are decoded on the buffer's output side, so the block RAM's unregistered
        # output (5.8 ns clock to out) drives nothing but the buffer's registers (the routed
        # critical path of 9254b97 ran from a PE's directory through `count == 0`).
        columns = m.submodules.columns = StreamBuffer(data.StructLayout({
            "v": signed(cfg.v_bits), "zero": 1, "last": 1,
            "start": unsigned(len(entry.start)), "count": unsigned(len(entry.count))}))
        col = columns.o.payload
        m.d.comb += [
            columns.i.valid.eq(a_valid),
            a_take.eq(a_valid & columns.i.ready),
            columns.i.payload.v.eq(a_v),
            columns.i.payload.zero.eq(a_zero),
            columns.i.payload.last.eq(a_last),
            columns.i.payload.start.eq(entry.start),
            columns.i.payload.count.eq(entry.count),
        ]
        col_null = Signal()         # an end marker, or a column with no word to walk
        col_skip = Signal()         # consumed without a cycle of the walker
        m.d.comb += [col_null.eq(col.zero | (col.count == 0)),
                     col_skip.eq(col_null & ~col.last)]

        # -- stage B: column walker, one weight word per cycle -----------------------------
        b_active = Signal()
        b_addr = Signal(dirl.addr_bits)
        b_left = Signal(dirl.count_bits)
        b_one = Signal()            # b_left == 1, a register: the column's final word
        b_v = Signal(signed(cfg.v_bits), reset_less=True)
        b_last = Signal()
        b_null = Signal()
        wbank = Signal(range(banks))
        sealed = Signal(banks)      # bank b holds a walked tile not yet drained
        issue = Signal()
        bank_ok = Signal(init=1)    # ~sealed[wbank], a register (below)
        q_room = Signal()
        b_free = Signal()
        drained = Signal()          # the last beat of bank r_bank leaves in this cycle
        r_bank = Signal(range(banks))
        m.d.comb += [
            issue.eq(b_active & bank_ok & q_room),
            b_free.eq(~b_active | (issue & b_one)),
            columns.o.ready.eq(col_skip | b_free),
            # The read port stays enabled: the word is used only in the cycle after its issue
            # (stage C never waits), so it needs no hold, and Yosys needs no flip-flop and
            # multiplexer per data bit to emulate a read enable on the block RAM.
            w_rd.addr.eq(b_addr),
        ]
        with m.If(issue):
            # The weight memory is a ring (hw.weight_ring): a column may wrap past its end,
            # for free when wmem_depth is a power of two (the read address drops b_addr's top
            # bit).
            if cfg.wmem_depth & (cfg.wmem_depth - 1):
                b_next = Mux(b_addr == cfg.wmem_depth - 1, 0, b_addr + 1)
            else:
                b_next = b_addr + 1
            m.d.sync += [b_addr.eq(b_next), b_left.eq(b_left - 1), b_one.eq(b_left == 2)]
            with m.If(b_one):
                m.d.sync += b_active.eq(0)
        # An entry with no word to walk and no tile end to carry is consumed without a cycle
        # of the walker (a non-zero activation meeting an all-zero column); a tile end with
        # no word walks one null word.
        with m.If(columns.o.valid & ~col_skip & b_free):
            m.d.sync += [
                b_active.eq(1),
                b_addr.eq(col.start), b_left.eq(Mux(col_null, 1, col.count)),
                b_one.eq(col_null | (col.count == 1)),
                b_v.eq(col.v), b_last.eq(col.last), b_null.eq(col_null),
            ]
        tile_end_issue = issue & b_one & b_last

        # -- stage C: each lane's slots of the word enter its queue -------------------------
        c_valid, c_null, c_end = Signal(), Signal(), Signal()
        c_v = Signal(signed(cfg.v_bits), reset_less=True)
        c_bank = Signal(range(banks))
        m.d.sync += c_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [c_v.eq(b_v), c_null.eq(b_null), c_end.eq(tile_end_issue),
                         c_bank.eq(wbank)]
        word = word_layout(cfg, self._xi)(w_rd.data)
        real = c_valid & ~c_null
        queues = []
        for l in range(lanes):
            q = LaneQueue(lane_group_layout(cfg), lane_slot_layout(cfg, self._xi), slots=spl,
                          depth=cfg.lane_fifo_depth)
            m.submodules[f"lane_queue{l}"] = q
            queues.append(q)
            group = [word[l * spl + s] for s in range(spl)]
            # The valid slots of a lane's group are a prefix (sw.formats).
            n_valid = Signal(range(spl + 1), name=f"c_valid_slots{l}")
            m.d.comb += n_valid.eq(sum(slot.valid for slot in group))
            bare = Signal(name=f"c_bare{l}")        # a tile end with no pair for this lane
            m.d.comb += [
                bare.eq(c_valid & c_end & (~real | (n_valid == 0))),
                q.i_count.eq(Mux(bare, 1, Mux(real, n_valid, 0))),
                q.i_group.v.eq(c_v), q.i_group.bank.eq(c_bank),
                q.i_group.mac.eq(real & (n_valid != 0)), q.i_group.end.eq(c_end),
            ]
            for s, slot in enumerate(group):
                m.d.comb += [q.i_slot[s].w.eq(slot.value), q.i_slot[s].row.eq(slot.k_row)]
        m.d.comb += q_room.eq(Cat(q.room for q in queues).all())

        # -- stage X: one entry per lane; stage D: multiply and accumulate ------------------
        x_valid = [Signal(name=f"x_valid{l}") for l in range(lanes)]
        # Datapath registers without reset (their valid bits have one): fewer loads on the
        # reset net, which reached every register of the design (docs/fpga.md).
        x_entry = [Signal(queues[0].o.payload.shape(), name=f"x_entry{l}", reset_less=True)
                   for l in range(lanes)]
        d_hit = [Signal(name=f"d_hit{l}") for l in range(lanes)]
        d_end = [Signal(name=f"d_end{l}") for l in range(lanes)]
        d_bank = [Signal(range(banks), name=f"d_bank{l}") for l in range(lanes)]
        d_prod = [Signal(signed(cfg.product_bits), name=f"d_prod{l}", reset_less=True)
                  for l in range(lanes)]
        hits = []
        for l, q in enumerate(queues):
            m.d.comb += q.o.ready.eq(1)
            m.d.sync += [x_valid[l].eq(q.o.valid), x_entry[l].eq(q.o.payload)]
            x = x_entry[l]
            hit = x_valid[l] & x.group.mac
            hits.append(hit)
            m.d.sync += [d_hit[l].eq(hit), d_end[l].eq(x_valid[l] & x.group.end & x.last),
                         d_bank[l].eq(x.group.bank),
                         d_prod[l].eq(x.slot.w * x.group.v)]
        x_any = Signal()
        m.d.comb += x_any.eq(Cat(x_valid).any())
        d_any = Signal()
        m.d.comb += d_any.eq(Cat(d_hit + d_end).any())

        # -- bank bookkeeping: a bank is complete once every lane accumulated its end -------
        # `complete` is a register, loaded with the AND of the lanes' next `lane_end` bits: the
        # same value the AND of the registers would give, but it selects every accumulator
        # port's address and write enable without a gate in front (the drain's read path was
        # the array's routed critical path, docs/fpga.md).
        lane_end = [Signal(banks, name=f"lane_end{l}") for l in range(lanes)]
        lane_end_next = [Signal(banks, name=f"lane_end_next{l}") for l in range(lanes)]
        complete = Signal(banks)
        complete_next = Signal(banks)
        # `bank_ok` (the walker's bank is not sealed) is a register too, loaded with the next
        # cycle's `~sealed[wbank]`: a bank is free from the cycle after its last beat left, as
        # before, but the walker's issue no longer waits on the bank select.
        sealed_next = Signal(banks)
        wbank_next = Signal.like(wbank, name="wbank_next")
        m.d.comb += [sealed_next.eq(sealed), wbank_next.eq(wbank)]
        with m.If(tile_end_issue):
            m.d.comb += wbank_next.eq(Mux(wbank == banks - 1, 0, wbank + 1))
        m.d.sync += [sealed.eq(sealed_next), wbank.eq(wbank_next),
                     bank_ok.eq(~sealed_next.bit_select(wbank_next, 1))]
        for b in range(banks):
            with m.If(tile_end_issue & (wbank == b)):
                m.d.comb += sealed_next[b].eq(1)
            with m.Elif(drained & (r_bank == b)):
                m.d.comb += sealed_next[b].eq(0)
            for l in range(lanes):
                m.d.comb += lane_end_next[l][b].eq(lane_end[l][b])
                with m.If(d_end[l] & (d_bank[l] == b)):
                    m.d.comb += lane_end_next[l][b].eq(1)
                with m.Elif(drained & (r_bank == b)):
                    m.d.comb += lane_end_next[l][b].eq(0)
            m.d.comb += complete_next[b].eq(
                Cat([lane_end_next[l][b] for l in range(lanes)]).all())
        m.d.sync += [lane_end[l].eq(lane_end_next[l]) for l in range(lanes)]
        m.d.sync += complete.eq(complete_next)

        # -- drain: beat r reads channels k0 .. k0 + D - 1, channel k from lane k mod L ------
        # k_count arrives from the register file, far away: a local copy, and the k0 of the
        # final beat precomputed from it, keep that wire and an adder off the drain's path.
        # Both load only while this PE is idle: the enable is the PE's own, so Yosys cannot
        # merge the sixteen PEs' copies into one register that drives them all across the
        # die (the routed critical path of 91cb3c7, docs/fpga.md). k_count is written before
        # START, while every PE is idle, so one cycle of delay is never seen.
        k_count = Signal.like(self.k_count, name="k_count_r")
        shift_d = width_d.bit_length() - 1               # drain_width is a power of two
        k_final = Signal(range(cfg.k_max + 1), name="k_final")
        with m.If(self.idle):
            m.d.sync += [k_count.eq(self.k_count),
                         k_final.eq(((self.k_count - 1) >> shift_d) << shift_d)]
        lane0 = Signal(range(lanes))         # lane of channel k0
        row0 = Signal(range(rows + 1))       # its row
        k0 = Signal(range(cfg.k_max + width_d + 1))
        # The drain writes a small buffer whose i.ready is a register: `out.ready`, which
        # comes from across the array, then only moves the buffer's read side and never
        # reaches the drain, the banks or the walker (docs/fpga.md, timing).
        out_buffer = m.submodules.out_buffer = StreamBuffer(out_layout(cfg))
        take = Signal()
        # `k0 >= k_final`, a register loaded with the next k0's compare: the drain's step
        # (the rows the accumulators are addressed with next) then waits on `take` alone.
        # k_final lags k_count by a cycle and `last` by another; k_count is written before
        # START, long before a tile completes.
        last = Signal(init=1)
        k0_next = Signal.like(k0, name="k0_next")
        m.d.comb += [
            take.eq(complete.bit_select(r_bank, 1) & out_buffer.i.ready),
            drained.eq(take & last),
            k0_next.eq(Mux(take, Mux(last, 0, k0 + width_d), k0)),
        ]
        m.d.sync += [k0.eq(k0_next), last.eq(k0_next >= k_final)]
        sel = []                              # lane of channel k0 + j
        for j in range(width_d):
            lane_j = Signal(range(lanes), name=f"drain_lane{j}")
            m.d.comb += lane_j.eq(Mux(lane0 + j >= lanes, lane0 + j - lanes, lane0 + j))
            sel.append(lane_j)

        # Per lane and bank one LUT RAM of acc_internal_bits + 1: the sum and a `fresh` bit.
        # The drain does not write zeros back; it sets `fresh`, and a fresh row reads as 0 on
        # both sides (the accumulate and the drain). So the lane has one adder for all its
        # banks (the bank select and the fresh mask fold into one LUT per bit in front of it)
        # and no clearing multiplexer after it: the write data is the same for every bank.
        acc_layout = data.StructLayout({"sum": signed(cfg.acc_internal_bits), "fresh": 1})
        # The row the drain reads in lane l, row0 + (l < lane0), a register per lane loaded
        # with the next beat's row, so no adder lies in front of the accumulators' address.
        drain_rows = [Signal(range(rows + 1), name=f"drain_row{l}") for l in range(lanes)]
        drain_rows_next = [Signal.like(drain_rows[l], name=f"drain_row_next{l}")
                           for l in range(lanes)]
        m.d.comb += [drain_rows_next[l].eq(drain_rows[l]) for l in range(lanes)]
        m.d.sync += [drain_rows[l].eq(drain_rows_next[l]) for l in range(lanes)]
        lane_read = []
        for l in range(lanes):
            involved = Cat([sel[j] == l for j in range(width_d)]).any()
            rows_read = []
            ports = []
            for b in range(banks):
                acc = Memory(shape=acc_layout, depth=rows, init=[])
                m.submodules[f"acc_l{l}_b{b}"] = acc
                wp = acc.write_port()
                rp = acc.read_port(domain="comb")
                mine = complete[b]
                # The row this bank's port addresses: the drain's while the bank is complete,
                # else the accumulate stage's. A register per bank, loaded with the next
                # cycle's choice, so no multiplexer lies between a flip-flop and the LUT RAMs'
                # address pins (the sparse array's own critical path, docs/fpga.md).
                addr = Signal(range(rows), name=f"acc_addr_l{l}_b{b}", reset_less=True)
                m.d.sync += addr.eq(Mux(complete_next[b], drain_rows_next[l],
                                        x_entry[l].slot.row))
                m.d.comb += [
                    rp.addr.eq(addr),
                    wp.addr.eq(addr),
                    wp.en.eq(Mux(mine, take & (r_bank == b) & involved,
                                 d_hit[l] & (d_bank[l] == b))),
                ]
                ports.append(wp)
                rows_read.append(rp.data)
            # A row as the lane's accumulate stage sees it (bank d_bank), and as the drain
            # does (bank r_bank): 0 when fresh.
            acc_row = acc_layout(Array(rows_read)[d_bank[l]])
            drain_row = acc_layout(Array(rows_read)[r_bank])
            total = Signal(signed(cfg.acc_internal_bits), name=f"acc_total{l}")
            m.d.comb += total.eq(Mux(acc_row.fresh, 0, acc_row.sum) + d_prod[l])
            for b, wp in enumerate(ports):
                m.d.comb += [wp.data.sum.eq(total), wp.data.fresh.eq(complete[b])]
            lane_read.append(Mux(drain_row.fresh, 0, drain_row.sum))

        results, outside = [], []
        lo, hi = cfg.acc_range
        for j in range(width_d):
            exact = Array(lane_read)[sel[j]]
            if cfg.acc_internal_bits <= cfg.acc_bits:
                value = exact               # the sum always fits: sign-extended, both modes
            elif cfg.overflow == "wrap":
                value = exact[:cfg.acc_bits].as_signed()
            else:
                value = Mux(exact < lo, lo, Mux(exact > hi, hi, exact))
            results.append(Mux(k0 + j < k_count, value, 0))
            if cfg.acc_internal_bits > cfg.acc_bits:
                outside.append((k0 + j < k_count) & ((exact < lo) | (exact > hi)))
        # Registered, so the flag adds no logic to the drain's path; constant 0 when the
        # exact sum always fits acc_bits (the default configuration).
        m.d.sync += self.overflow.eq(take & Cat(outside).any())

        beat = out_buffer.i.payload
        m.d.comb += [beat.m[j].eq(results[j]) for j in range(width_d)]
        m.d.comb += [beat.k.eq(k0), beat.last.eq(last),
                     out_buffer.i.valid.eq(complete.bit_select(r_bank, 1))]
        wiring.connect(m, out_buffer.o, wiring.flipped(self.out))
        # The next beat's lane and rows, from the registers alone (not from `take`).
        wrap = lane0 + width_d >= lanes
        lane0_next = Signal.like(lane0, name="lane0_next")
        row0_next = Signal.like(row0, name="row0_next")
        m.d.comb += [
            lane0_next.eq(Mux(wrap, lane0 + width_d - lanes, lane0 + width_d)),
            row0_next.eq(row0 + wrap),
        ]
        with m.If(take):
            with m.If(last):
                m.d.sync += [lane0.eq(0), row0.eq(0),
                             r_bank.eq(Mux(r_bank == banks - 1, 0, r_bank + 1))]
                m.d.comb += [drain_rows_next[l].eq(0) for l in range(lanes)]
            with m.Else():
                m.d.sync += [lane0.eq(lane0_next), row0.eq(row0_next)]
                m.d.comb += [drain_rows_next[l].eq(row0_next + (l < lane0_next))
                             for l in range(lanes)]

        # -- perf counters ------------------------------------------------------------------
        perf = self.perf
        n_hits = sum(hits)
        with m.If(x_any):
            m.d.sync += [
                perf.busy.eq(perf.busy + 1),
                perf.macs.eq(perf.macs + n_hits),
                perf.empty_slots.eq(perf.empty_slots + (lanes - n_hits)),
            ]
        # Counted a cycle late: out.ready is the array's gather of every PE, far away, and
        # must not also reach this counter's 32 enables in the same cycle (docs/fpga.md).
        stalled = Signal()
        m.d.sync += stalled.eq((b_active & ~issue) | (self.out.valid & ~self.out.ready))
        with m.If(stalled):
            m.d.sync += perf.stalls.eq(perf.stalls + 1)
        with m.If(self.act.valid & self.act.ready):
            m.d.sync += perf.zeros_skipped.eq(perf.zeros_skipped + zf.zeros)
        # The same increments, registered for the array's sum: its adder tree then starts
        # from a register in every PE. In the accelerator `perf` drives nothing and is
        # removed; these few bits per PE are what is left of the counters here.
        step = self.perf_step
        m.d.sync += [
            step.busy.eq(x_any),
            step.macs.eq(n_hits),
            step.empty_slots.eq(Mux(x_any, lanes - n_hits, 0)),
            step.stalls.eq(stalled),
            step.zeros_skipped.eq(Mux(self.act.valid & self.act.ready, zf.zeros, 0)),
        ]

        m.d.comb += self.idle.eq((zf.level == 0) & ~entries.busy & ~a_valid & ~columns.busy
                                 & ~b_active & ~c_valid & Cat(q.empty for q in queues).all()
                                 & ~x_any & ~d_any
                                 & (sealed == 0) & ~out_buffer.busy)
        return m
