"""``SparsePE``: one Winograd coordinate's sparse multiply-accumulate engine.

For every non-zero transformed activation ``(c, v)`` the PE walks the compressed weight column
``U_ξ[:, c]`` of the packed format (:mod:`sw.formats`), one word of ``S = slots_per_lane · L``
slots per cycle. The valid slots of each word become ``(weight, v, k)`` pairs in a *pair
compactor*, a small circular queue that hands exactly ``L`` pairs per cycle to the ``L`` lanes
whatever column they came from, so a ragged column end does not leave lanes idle. Lane ``l``
adds ``v · weight`` to its own accumulator ``acc[bank][l][k]``: lanes never share an
accumulator, so any mix of output channels is conflict-free (the "lanes free of bank
constraints" fix of the architecture brief). The lane copies are summed when the tile drains,
``drain_width`` output channels per cycle.

Pipeline (one beat per cycle, every stage registered)::

    act -> zero filter -> FIFO -> A: directory read -> B: column walker / weight read
        -> C: word -> pair compactor -> X: L lanes, multiply -> D: accumulate
        -> bank complete -> drain (drain_width channels per beat) -> out
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.compactor import CompactingQueue
from sw.config import AccelConfig, require_config, require_count
from sw.regmap import PE_COUNTERS
from sw import formats

__all__ = ["SparsePE", "check_images", "act_layout", "act_entry_layout", "perf_layout",
           "wgt_wr_layout", "pair_layout", "out_layout", "WMEM", "DIRECTORY"]

#: ``wgt_wr.payload.mem`` value selecting the weight-word memory.
WMEM = 0
#: ``wgt_wr.payload.mem`` value selecting the column directory.
DIRECTORY = 1

#: The counter fields, in the order of the register map's per-PE block.
_PERF_FIELDS = PE_COUNTERS


def _bits_for(count: int) -> int:
    """Unsigned width able to index ``count`` items (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def act_layout(cfg: AccelConfig) -> data.StructLayout:
    """One activation beat of one coordinate: ``n`` channels from ``c`` up, end-of-tile flag."""
    return data.StructLayout({
        "c": unsigned(_bits_for(cfg.c_max)),
        "n": range(1, cfg.act_width + 1),
        "v": data.ArrayLayout(signed(cfg.v_bits), cfg.act_width),
        "last": unsigned(1),
    })


def act_entry_layout(cfg: AccelConfig) -> data.StructLayout:
    """One queued activation: channel, value, end-of-tile flag (``v == 0``: a bare marker)."""
    return data.StructLayout({
        "c": unsigned(_bits_for(cfg.c_max)),
        "v": signed(cfg.v_bits),
        "last": unsigned(1),
    })


def perf_layout(counter_bits: int) -> data.StructLayout:
    """The PE's performance counters, each a free-running ``counter_bits`` unsigned count."""
    return data.StructLayout({name: unsigned(counter_bits) for name in _PERF_FIELDS})


def wgt_wr_layout(cfg: AccelConfig, xi: int) -> data.StructLayout:
    """One write of PE ``xi``'s load port: target memory, address, data (LSB-aligned).

    ``data`` is as wide as the wider of a weight word and a directory entry of
    :mod:`sw.formats`; the unused high bits are ignored.
    """
    return data.StructLayout({
        "mem": unsigned(1),
        "addr": unsigned(max(_bits_for(cfg.wmem_depth), _bits_for(cfg.c_max))),
        "data": unsigned(max(formats.slot_layout(cfg, xi).word_bits,
                             formats.directory_layout(cfg, xi).entry_bits)),
    })


def pair_layout(cfg: AccelConfig) -> data.StructLayout:
    """One entry of the pair compactor: a weight, its activation, output channel and bank.

    ``mac`` is clear for the bare end-of-tile entry of a tile whose last beat brought no word;
    ``end`` marks the tile's final entry.
    """
    return data.StructLayout({
        "w": signed(cfg.wgt_bits),
        "v": signed(cfg.v_bits),
        "k": unsigned(formats.k_bits(cfg)),
        "bank": range(cfg.tiles_in_flight),
        "mac": unsigned(1),
        "end": unsigned(1),
    })


def out_layout(cfg: AccelConfig) -> data.StructLayout:
    """One drain beat of a PE: ``drain_width`` accumulators from channel ``k`` up, end flag."""
    return data.StructLayout({
        "m": data.ArrayLayout(signed(cfg.acc_bits), cfg.drain_width),
        "k": unsigned(_bits_for(cfg.k_max)),
        "last": unsigned(1),
    })


def _slot_fields(word, lay: formats.SlotLayout, slot: int):
    """``(value, k_local, valid)`` of slot ``slot`` of ``word``, at the offsets of the format."""
    base = lay.slot_lsb(slot)
    value = word[base + lay.value_lsb:base + lay.value_lsb + lay.value_bits].as_signed()
    k_local = word[base + lay.k_lsb:base + lay.k_lsb + lay.k_bits]
    return value, k_local, word[base + lay.valid_lsb]


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


class SparsePE(wiring.Component):
    """Sparse PE of Winograd coordinate ``xi``: ``M_ξ[k, t] = Σ_c U_ξ[k, c] · V_ξ[c, t]``.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``lanes_per_coord[xi]`` (L), ``word_slots(xi)`` (S), ``k_max``, ``c_max``,
        ``v_bits``, ``wgt_bits``, ``acc_bits``/``acc_internal_bits``, ``overflow``,
        ``wmem_depth``, ``fifo_depth`` and ``act_width`` (the activation queue),
        ``tiles_in_flight`` (accumulator banks),
        ``pair_queue_depth(xi)`` and ``drain_width``.
    xi : int
        Winograd coordinate, ``0 <= xi < cfg.coords`` (row-major ``i*n + j``).
    weights : sequence of int, optional
        Initial weight-memory words of one pass (``PassImage.words[xi]`` of
        :func:`sw.formats.pack_layer`), at most ``wmem_depth``; the rest start at zero.
    directory : sequence of int, optional
        Initial directory entries of that pass (:func:`sw.formats.directory_words`), entry
        ``c`` for input channel ``c``, at most ``c_max``.
    counter_bits : int
        Width of each performance counter (they wrap).

    Members
    -------
    act : In(stream.Signature(act_layout(cfg)))
        Transformed activations of one tile: a beat carries channels ``c .. c + n - 1``
        (``v[i]`` for channel ``c + i``, ``n <= act_width``), beats in any order, ``last`` on
        the tile's final beat. Zero values are dropped before the activation queue (counted in
        ``zeros_skipped``); the non-zero ones of a beat enter it in one cycle. A final beat
        with no non-zero value enters as one bare end-of-tile marker, so a tile without
        non-zero activations still produces its outputs (all zero). Ready while the queue has
        room for ``act_width`` entries.
    wgt_wr : In(stream.Signature(wgt_wr_layout(cfg, xi)))
        Memory writes for the weight loader: ``mem`` (:data:`WMEM` or :data:`DIRECTORY`),
        ``addr``, ``data``. Always ready; one write per cycle. Write only while the PE is idle.
    out : Out(stream.Signature(out_layout(cfg)))
        Per tile, ``ceil(k_count / drain_width)`` beats in order: beat ``r`` has ``k = r · D``
        and ``m[j] = M[k + j]`` for ``j < D`` (``D = drain_width``; channels at or past
        ``k_count`` read 0), ``last`` on the final beat. ``m`` is the ``acc_bits`` result
        after wrap or saturation.
    k_count : In(range(1, k_max + 1))
        Output channels of the current pass (``K``, 1..k_max). Hold it stable during a pass.
    perf : Out(perf_layout(counter_bits))
        ``busy``: cycles the lanes take at least one pair; ``macs``: multiplications (valid
        pairs issued); ``empty_slots``: lanes without a multiplication in busy cycles;
        ``stalls``: cycles the walker holds a column but may not read (its next bank is still
        draining, or the compactor has no room for a word), or ``out`` holds a beat that is not
        taken; ``zeros_skipped``: zero activations dropped or turned into end-of-tile markers.
    idle : Out(1)
        No activation buffered, no column or pair in flight, every bank drained, ``out`` empty.

    Notes
    -----
    Throughput: the walker reads one word per cycle, so a non-zero activation whose column has
    ``w`` words costs the walker ``w`` cycles (columns follow each other with no bubble; an
    all-zero column costs none, except at a tile end, which costs one). The lanes take
    ``L`` pairs per cycle from the compactor, which packs pairs across column and tile
    boundaries. So a tile of ``P`` pairs and ``W`` words takes about ``max(W, P / L)`` cycles,
    and with ``S = 2L`` the lanes set the pace whenever columns hold more than a few
    weights. The drain emits ``D`` channels per cycle, ``ceil(K / D)`` cycles per tile,
    overlapped with the next tiles (``tiles_in_flight`` banks).

    Latency: with the PE idle, the first beat of a tile is valid :attr:`LATENCY` ``+ w - 1``
    cycles after the tile's final ``act`` beat is accepted, ``w`` being the word count of that
    beat's column (1 for an end marker): activation queue 1, directory 1, walker 1, word read 1,
    compactor queue 1, lane register and accumulator read 1, drain read 1 (in the same cycle
    as the final accumulate, through the transparent port), output register 1. Later beats
    follow one per cycle, tile after tile, unless ``out`` is back-pressured.

    Accumulators are memories of ``acc_internal_bits``, one per (bank, lane, ``k mod D``), each
    ``ceil(k_max / D)`` deep, so their cost grows as RAM, not as flip-flops and ``k_max``-way
    multiplexers, and the drain reads ``D`` channels of a lane in one cycle. Stage X reads
    ``acc[k]``, stage D writes ``acc[k] + v·w``; the read port is transparent for the write
    port, which makes back-to-back updates of one ``k`` hazard-free without a forwarding path.
    The drain borrows both ports of the banks it empties (reads a row, then writes 0 when the
    beat leaves), which never collides with accumulation: a bank is drained only after its
    tile's final pair has been accumulated, and refilled only after it is drained.
    """

    #: Default width of the perf counters.
    COUNTER_BITS = 32
    #: Cycles from the final ``act`` beat of a tile to its first ``out`` beat, one-word column.
    LATENCY = 8

    def __init__(self, cfg: AccelConfig, xi: int, *, weights=None, directory=None,
                 counter_bits: int = COUNTER_BITS):
        self._cfg = require_config(cfg)
        if isinstance(xi, bool) or not isinstance(xi, int) or not 0 <= xi < cfg.coords:
            raise ValueError(f"xi must be a Winograd coordinate in [0, {cfg.coords}), "
                             f"not {xi!r}")
        self._xi = xi
        self._slots = formats.slot_layout(cfg, xi)
        self._dir = formats.directory_layout(cfg, xi)
        self._counter_bits = require_count("counter_bits", counter_bits, 1)
        self._weights, self._directory = check_images(cfg, xi, weights, directory)
        super().__init__({
            "act": In(stream.Signature(act_layout(cfg))),
            "wgt_wr": In(stream.Signature(wgt_wr_layout(cfg, xi))),
            "out": Out(stream.Signature(out_layout(cfg))),
            "k_count": In(range(1, cfg.k_max + 1)),
            "perf": Out(perf_layout(self._counter_bits)),
            "idle": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def xi(self) -> int:
        return self._xi

    @property
    def lanes(self) -> int:
        return self._slots.lanes

    def elaborate(self, platform):
        m = Module()
        cfg, slots, dirl = self._cfg, self._slots, self._dir
        lanes, width = slots.lanes, slots.slots
        banks = cfg.tiles_in_flight

        # -- zero filter and activation queue --------------------------------------------
        # The non-zero channels of a beat enter the queue in one cycle; a tile's final beat
        # with no non-zero channel enters as one bare end-of-tile marker (v = 0).
        beat, width_a = self.act.payload, cfg.act_width
        entry = act_entry_layout(cfg)
        m.submodules.act_queue = fifo = CompactingQueue(entry, inputs=width_a, outputs=1,
                                                        depth=cfg.fifo_depth)
        real = [Signal(name=f"act_real{i}") for i in range(width_a)]
        m.d.comb += [real[i].eq((i < beat.n) & (beat.v[i] != 0)) for i in range(width_a)]
        none_real = Signal()
        m.d.comb += none_real.eq(sum(real) == 0)
        take = self.act.valid & fifo.room
        m.d.comb += self.act.ready.eq(fifo.room)
        for i in range(width_a):
            later = 0
            for j in range(i + 1, width_a):
                later = later | real[j]
            m.d.comb += [
                fifo.i_valid[i].eq(take & (real[i] | (beat.last & none_real if i == 0 else 0))),
                fifo.i_data[i].c.eq(beat.c + i),
                fifo.i_data[i].v.eq(beat.v[i]),
                fifo.i_data[i].last.eq(beat.last & ~later),
            ]
        zeros_in = Signal(range(width_a + 1))
        m.d.comb += zeros_in.eq(sum((i < beat.n) & (beat.v[i] == 0) for i in range(width_a)))
        head = fifo.o_data[0]

        # -- memories and the load port ----------------------------------------------------
        m.submodules.wmem = wmem = Memory(shape=unsigned(slots.word_bits),
                                          depth=cfg.wmem_depth, init=self._weights)
        m.submodules.dmem = dmem = Memory(shape=unsigned(dirl.entry_bits),
                                          depth=cfg.c_max, init=self._directory)
        w_wr, d_wr = wmem.write_port(), dmem.write_port()
        w_rd, d_rd = wmem.read_port(), dmem.read_port()
        wr = self.wgt_wr.payload
        m.d.comb += [
            self.wgt_wr.ready.eq(1),
            w_wr.addr.eq(wr.addr), w_wr.data.eq(wr.data),
            w_wr.en.eq(self.wgt_wr.valid & (wr.mem == WMEM)),
            d_wr.addr.eq(wr.addr), d_wr.data.eq(wr.data),
            d_wr.en.eq(self.wgt_wr.valid & (wr.mem == DIRECTORY)),
        ]

        # -- stage A: directory lookup of the FIFO head ------------------------------------
        a_valid = Signal()
        a_v = Signal(signed(cfg.v_bits))
        a_last = Signal()
        a_take = Signal()
        a_load = Signal()
        e_start = d_rd.data[dirl.start_lsb:dirl.start_lsb + dirl.addr_bits]
        e_words = d_rd.data[dirl.count_lsb:dirl.count_lsb + dirl.count_bits]
        m.d.comb += [
            a_load.eq((fifo.o_count != 0) & (~a_valid | a_take)),
            fifo.o_take.eq(a_load),
            d_rd.en.eq(a_load),
            d_rd.addr.eq(head.c),
        ]
        with m.If(a_load):
            m.d.sync += [a_v.eq(head.v), a_last.eq(head.last)]
        with m.If(a_load | a_take):
            m.d.sync += a_valid.eq(a_load)

        # An entry with no word to walk and no tile end to carry is consumed without a cycle
        # of the walker: a non-zero activation meeting an all-zero column.
        a_marker = (a_v == 0) | (e_words == 0)
        a_skip = a_marker & ~a_last

        # -- stage B: column walker, one weight word per cycle -----------------------------
        b_active = Signal()
        b_addr = Signal(dirl.addr_bits)
        b_left = Signal(dirl.count_bits)
        b_v = Signal(signed(cfg.v_bits))
        b_last = Signal()
        b_null = Signal()
        wbank = Signal(range(banks))
        sealed = Signal(banks)      # bank b holds a finished tile not yet drained
        complete = Signal(banks)    # that tile's final pair has reached the lanes
        issue = Signal()
        bank_ok = Signal()
        q_room = Signal()
        b_free = Signal()
        drained = Signal()          # the last beat of bank r_bank leaves in this cycle
        r_bank = Signal(range(banks))
        m.d.comb += [
            # a bank whose last beat leaves in this cycle is free already: the walker's first
            # pair reaches the accumulators three cycles after the drain's final clear
            bank_ok.eq(~sealed.bit_select(wbank, 1) | (drained & (r_bank == wbank))),
            issue.eq(b_active & bank_ok & q_room),
            b_free.eq(~b_active | (issue & (b_left == 1))),
            a_take.eq(a_valid & (a_skip | b_free)),
            w_rd.en.eq(issue),
            w_rd.addr.eq(b_addr),
        ]
        with m.If(issue):
            m.d.sync += [b_addr.eq(b_addr + 1), b_left.eq(b_left - 1)]
            with m.If(b_left == 1):
                m.d.sync += b_active.eq(0)
        with m.If(a_valid & ~a_skip & b_free):
            m.d.sync += [
                b_active.eq(1),
                b_addr.eq(e_start),
                b_left.eq(Mux(a_marker, 1, e_words)),
                b_v.eq(a_v), b_last.eq(a_last), b_null.eq(a_marker),
            ]
        tile_end_issue = issue & (b_left == 1) & b_last

        # -- stage C: the word read turns into up to S pairs ---------------------------------
        c_valid, c_null, c_end = Signal(), Signal(), Signal()
        c_v = Signal(signed(cfg.v_bits))
        c_bank = Signal(range(banks))
        m.d.sync += c_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [c_v.eq(b_v), c_null.eq(b_null), c_end.eq(tile_end_issue),
                         c_bank.eq(wbank)]
        pair = pair_layout(cfg)
        fields = [_slot_fields(w_rd.data, slots, q) for q in range(width)]
        # The valid slots of a word are a prefix (sw.formats), so their count says which.
        n_valid = Signal(range(width + 1))
        m.d.comb += n_valid.eq(sum(valid for _, _, valid in fields))
        real = c_valid & ~c_null & (n_valid != 0)
        n_in = Signal(range(width + 1))
        m.d.comb += n_in.eq(Mux(~c_valid, 0, Mux(real, n_valid, c_end)))
        # -- pair compactor: S pairs in, L pairs out per cycle ---------------------------------
        m.submodules.pairs = queue = CompactingQueue(pair, inputs=width, outputs=lanes,
                                                     depth=cfg.pair_queue_depth(self._xi))
        q_count = queue.level
        n_out = queue.o_count
        m.d.comb += [
            queue.o_take.eq(n_out),
            # the word read now enters next cycle, when at least n_out more will have left
            q_room.eq(q_count - n_out + n_in <= cfg.pair_queue_depth(self._xi) - width),
        ]
        for q, (value, k_local, valid) in enumerate(fields):
            m.d.comb += [
                queue.i_valid[q].eq(real & valid | (q == 0) & c_valid & ~real & c_end),
                queue.i_data[q].w.eq(value), queue.i_data[q].v.eq(c_v),
                queue.i_data[q].k.eq(k_local), queue.i_data[q].bank.eq(c_bank),
                queue.i_data[q].mac.eq(real & valid),
                queue.i_data[q].end.eq(c_end & (n_in == q + 1)),
            ]

        # -- stage X: one pair per lane, multiply --------------------------------------------
        x_valid = [Signal(name=f"x_valid{l}") for l in range(lanes)]
        x_pair = [Signal(pair, name=f"x_pair{l}") for l in range(lanes)]
        for l in range(lanes):
            m.d.sync += [x_valid[l].eq(n_out > l),
                         x_pair[l].eq(queue.o_data[l])]
        x_any = Signal()
        m.d.comb += x_any.eq(sum(x_valid) != 0)

        shift = (cfg.drain_width - 1).bit_length()      # k = row · D + sub
        rows = cfg.drain_rows
        d_valid = Signal()
        d_hit = [Signal(name=f"d_hit{l}") for l in range(lanes)]
        d_bank = [Signal(range(banks), name=f"d_bank{l}") for l in range(lanes)]
        d_k = [Signal(formats.k_bits(cfg), name=f"d_k{l}") for l in range(lanes)]
        d_prod = [Signal(signed(cfg.product_bits), name=f"d_prod{l}") for l in range(lanes)]
        hits = []
        for l in range(lanes):
            hit = x_valid[l] & x_pair[l].mac
            hits.append(hit)
            m.d.sync += [d_hit[l].eq(hit), d_bank[l].eq(x_pair[l].bank), d_k[l].eq(x_pair[l].k),
                         d_prod[l].eq(x_pair[l].w * x_pair[l].v)]
        m.d.sync += d_valid.eq(x_any)

        # -- drain control: read one row (D channels) of a completed bank per cycle ---------
        # The read side moves to the next completed bank as soon as it has read the last row,
        # so consecutive tiles drain with no idle cycle between them.
        rbank = Signal(range(banks))         # bank being read
        rd_row = Signal(range(rows))         # next row to read from it
        r_valid = Signal()                   # the read ports hold the lane values of r_row
        r_row = Signal(range(rows))
        out_load, r_advance, rd_issue = Signal(), Signal(), Signal()
        out_valid = self.out.valid
        last_row = (self.k_count - 1) >> shift
        m.d.comb += [
            out_load.eq(~out_valid | self.out.ready),
            r_advance.eq(r_valid & out_load),
            rd_issue.eq(complete.bit_select(rbank, 1) & (~r_valid | r_advance)),
        ]

        # -- accumulators: one memory per (bank, lane, k mod D) -----------------------------
        # Stage X reads acc[k] of its pair, stage D writes acc[k] + v*w. The read port is
        # transparent for the write port, so a read of the k being written in the same cycle
        # sees the new sum: back-to-back updates of one k need no forwarding. The bank being
        # drained is never the bank being accumulated, so the drain borrows both ports.
        lane_data = [[[None] * cfg.drain_width for _ in range(lanes)] for _ in range(banks)]
        for b in range(banks):
            # The drain owns the read port from the moment the bank's final pair enters the
            # lanes (a transparent read still sees its sum), and the write port only while it
            # clears what it has read.
            drain_here = complete[b]
            clear_here = r_valid & (r_bank == b)
            for l in range(lanes):
                for j in range(cfg.drain_width):
                    mem = Memory(shape=signed(cfg.acc_internal_bits), depth=rows, init=[])
                    m.submodules[f"acc_b{b}_l{l}_k{j}"] = mem
                    wp = mem.write_port()
                    rp = mem.read_port(transparent_for=(wp,))
                    mine = d_hit[l] & (d_bank[l] == b)
                    if shift:
                        mine = mine & (d_k[l][:shift] == j)
                    m.d.comb += [
                        rp.addr.eq(Mux(drain_here, rd_row, x_pair[l].k >> shift)),
                        rp.en.eq(Mux(drain_here, rd_issue & (rbank == b), 1)),
                        wp.addr.eq(Mux(clear_here, r_row, d_k[l] >> shift)),
                        wp.data.eq(Mux(clear_here, 0, rp.data + d_prod[l])),
                        wp.en.eq(Mux(clear_here, r_advance, mine)),
                    ]
                    lane_data[b][l][j] = rp.data

        # -- drain: sum the lane copies of each channel, then wrap or saturate --------------
        results = []
        for j in range(cfg.drain_width):
            lane_sum = sum(Array(lane_data[b][l][j] for b in range(banks))[r_bank]
                           for l in range(lanes))
            if cfg.overflow == "wrap":
                results.append(lane_sum[:cfg.acc_bits].as_signed())
            else:
                lo, hi = cfg.acc_range
                results.append(Mux(lane_sum < lo, lo, Mux(lane_sum > hi, hi, lane_sum)))
        r_last = r_row == last_row
        with m.If(rd_issue):
            m.d.sync += [r_row.eq(rd_row), r_bank.eq(rbank), r_valid.eq(1),
                         rd_row.eq(rd_row + 1)]
            with m.If(rd_row == last_row):
                m.d.sync += [rd_row.eq(0), rbank.eq(Mux(rbank == banks - 1, 0, rbank + 1))]
        with m.Elif(r_advance):
            m.d.sync += r_valid.eq(0)
        with m.If(out_load):
            m.d.sync += out_valid.eq(r_valid)
        with m.If(r_advance):
            m.d.sync += [self.out.payload.m[j].eq(results[j]) for j in range(cfg.drain_width)]
            m.d.sync += [
                self.out.payload.k.eq(r_row << shift),
                self.out.payload.last.eq(r_last),
            ]

        # -- bank bookkeeping ------------------------------------------------------------
        m.d.comb += drained.eq(r_advance & r_last)
        for b in range(banks):
            ends_here = 0
            for l in range(lanes):
                ends_here = ends_here | (x_valid[l] & x_pair[l].end & (x_pair[l].bank == b))
            with m.If(tile_end_issue & (wbank == b)):
                m.d.sync += sealed[b].eq(1)
            with m.Elif(drained & (r_bank == b)):
                m.d.sync += sealed[b].eq(0)
            with m.If(ends_here):
                m.d.sync += complete[b].eq(1)
            with m.Elif(drained & (r_bank == b)):
                m.d.sync += complete[b].eq(0)
        with m.If(tile_end_issue):
            m.d.sync += wbank.eq(Mux(wbank == banks - 1, 0, wbank + 1))

        # -- perf counters ------------------------------------------------------------------
        perf = self.perf
        n_hits = sum(hits)
        with m.If(x_any):
            m.d.sync += [
                perf.busy.eq(perf.busy + 1),
                perf.macs.eq(perf.macs + n_hits),
                perf.empty_slots.eq(perf.empty_slots + (lanes - n_hits)),
            ]
        with m.If((b_active & ~issue) | (out_valid & ~self.out.ready)):
            m.d.sync += perf.stalls.eq(perf.stalls + 1)
        with m.If(self.act.valid & self.act.ready):
            m.d.sync += perf.zeros_skipped.eq(perf.zeros_skipped + zeros_in)

        m.d.comb += self.idle.eq((fifo.level == 0) & ~a_valid & ~b_active & ~c_valid
                                 & (q_count == 0) & ~x_any & ~d_valid & (sealed == 0)
                                 & ~out_valid)
        return m
