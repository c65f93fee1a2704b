"""``LineBuffer``: an NHWC activation raster cut into overlapping ``n×n`` Winograd patches.

F(m×m, 3×3) reads input patches of ``n = m + 2`` rows and columns at a stride of ``m``, so
consecutive tile rows (*bands*) share two input rows. The buffer keeps a ring of ``n + m`` row
slots: the ``n`` rows of the band being read, and ``m`` more into which the rows of the next
band stream at the same time. Each slot is ``n`` memory banks wide (column ``q`` in bank
``q mod n``), so the ``n×n`` patch of one channel is read in one cycle from ``n·n`` different
banks.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config

__all__ = ["LineBuffer"]


class LineBuffer(ConfiguredComponent):
    """Streaming Winograd input tiler: ``n×n`` patches of stride ``m`` with zero padding.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies the tile size ``m`` (``tile``, so ``n = m + 2``), ``act_bits``, ``w_max``,
        ``c_max`` and ``stream_values``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(act_bits), V)))
        ``V = stream_values`` activations of one pixel per beat, a frame in NHWC raster order
        cut as :func:`sw.formats.pack_activations` does: for ``y`` in ``0 .. H-1``, for ``x`` in
        ``0 .. W-1``, ``ceil(C / V)`` beats, beat ``g`` holding channels ``g·V .. g·V + V - 1``
        in its elements ``0 .. V-1``; the elements past ``C`` of a pixel's last beat are
        ignored. Frames follow each other back to back (the beat after a frame's last one
        starts the next frame); the first rows of the next frame may stream in while the last
        bands of the previous one are still being read.
    o : Out(stream.Signature(StructLayout({"d": ArrayLayout(ArrayLayout(signed(act_bits), n*n),
                                                          P), "c": ..., "n": ...,
                                          "last": unsigned(1)})))
        ``P = transform_channels`` patches of consecutive channels per beat, in order: for ``ty``
        in ``0 .. tiles_h-1``, for ``tx`` in ``0 .. tiles_w-1``, for ``c`` in ``0, P, 2P ..``
        below ``C``: ``d[j]`` is channel ``c + j``'s patch, ``n`` the beat's channels (``P``,
        or ``C mod P`` in a tile's final beat when ``P`` does not divide ``C``; ``d[j]`` is
        zero for ``j >= n``), ``last`` on the tile's final beat. A patch is row-major: element
        ``(r, s)`` at ``r*n + s`` is ``x[c, ty*m - pad + r, tx*m - pad + s]``, zero outside
        the image (padding, and the overhang of partial edge tiles): exactly
        :func:`sw.winograd.extract_tiles` over :func:`sw.winograd.tile_grid`. ``c`` is
        ``max(1, (c_max-1).bit_length())`` bits. The payload is a register.
    height : In(16)
        ``H >= 1``, input rows of the frame. While ``H`` is 0 no patch is issued.
    width : In(range(w_max + 1))
        ``W <= w_max``, input columns of the frame.
    channels : In(range(c_max + 1))
        ``1 <= C <= c_max``, input channels of the frame.
    pad : In(1)
        Zero padding on every side, 0 or 1. The caller guarantees ``out_h = H + 2·pad - 2``
        and ``out_w = W + 2·pad - 2`` are at least 1; ``tiles_h = ceil(out_h / m)``,
        ``tiles_w = ceil(out_w / m)``.
    idle : Out(1)
        No frame in progress: no row buffered or being written, no patch pending. ``height``,
        ``width``, ``channels`` and ``pad`` must hold still while it is low.

    Notes
    -----
    Row slots: a ring of :meth:`slots` ``= n + m`` rows. Rows are written in arrival order into
    consecutive slots and released in the same order, so the ring is a FIFO of rows. Band
    ``ty`` needs image rows ``ty·m - pad .. ty·m - pad + n - 1`` (clipped to the image); its
    patches are read once the last of those rows is complete, or, while that row is still
    arriving, each patch once the row's pixels up to its last column are in (a patch that
    reaches the row's last column waits for the row's end). When its final patch has
    been read, the rows that no later band of the frame needs (``m``, ``m - pad`` for the first
    band, every remaining row for the last) are released. A band occupies at most ``n`` slots,
    so the other ``m`` take the next band's rows while it is read: the input is stalled only
    when all ``n + m`` slots are full because ``o`` holds the reader back.

    Memory: :meth:`memory_bits` ``= (n + m) · n · G · Cw · V · act_bits``, ``G = w_max // n + 1``
    column groups, ``Cw = ceil(c_max / V)`` words per pixel. A word holds the ``V`` channels
    of one input beat. Padded column ``q = x + pad`` (``0 .. w_max``) of slot ``k`` lives in
    bank ``(k, q mod n)``, channel ``c`` in element ``c mod V`` of the word at address
    ``(q div n) · Cw + c div V``; the ``(n + m) · n`` banks are ``G · Cw`` words of
    ``V · act_bits`` bits, each with one write and one read port. A beat is one write; the
    ``n`` columns of a patch fall in ``n`` different banks and its ``n`` rows in ``n`` different
    slots, so a whole patch is one read per bank and a selection of element ``c mod V``. Zero
    padding is never stored: padding rows and columns, and rows and columns beyond the image,
    are masked to zero on the way out. When ``n`` divides ``V`` (:meth:`spread_columns`, the
    default F(2,3) with ``V = 8``) a slot's ``n`` banks are *spread* over ``n`` memories of
    ``V / n`` elements and ``n · G · Cw`` words: element group ``g`` of bank ``j``'s word at
    address ``a`` lives in memory ``(g + j) mod n`` at address ``a · n + j``, so a beat is one
    write to each of the slot's memories and a patch still one read from each (bank ``j``'s
    group of channel ``c`` from memory ``((c mod V) div (V / n) + j) mod n``); the memories are
    then ``V / n`` elements wide, which a block RAM port holds, where a whole word needed two or
    more block RAMs of mostly unused depth. The bits are the same. The configuration m 2,
    w_max 64, c_max 256, 8 bits, ``V = 8`` needs 6 · 4 · 17 · 32 · 64 = 835,584 bits (102 KiB).

    Latency: the first patch of a band is valid on ``o`` :attr:`LATENCY` cycles after the cycle
    in which the band's last needed input beat is transferred (row count, memory read, the
    selected elements' register, output register); a patch read from a row still arriving
    leaves ``LATENCY + 1`` cycles after the last beat of its last column (the column test is
    a register). In the cycle after a band's end only a complete band is read.

    Throughput: one input beat (``V`` channels) per cycle and one output beat (``P``
    channels' patches, all from the same memory words: ``P`` divides the channels of a word)
    per cycle. A band's ``tiles_w · ceil(C / P)`` beats are read while the
    ``m · W · ceil(C / V)`` beats of the next band arrive. With ``o`` always ready and no
    input gaps, the slower side sets the pace: when the reading is the faster (``C`` small
    against ``V``), the input is never stalled and the final bands of a frame leave
    ``LATENCY`` cycles after its last input beat, one beat per cycle; when the writing is the
    faster, the beats leave one per cycle without a bubble from the frame's first to its
    last, and the input waits for row slots.
    """

    #: Cycles from a band's last needed input beat to its first patch on ``o``.
    LATENCY = 4

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        i_shape, o_layout = self.layouts(cfg)
        super().__init__(cfg, {
            "i": In(stream.Signature(i_shape)),
            "o": Out(stream.Signature(o_layout)),
            "height": In(16),
            "width": In(range(cfg.w_max + 1)),
            "channels": In(range(cfg.c_max + 1)),
            "pad": In(1),
            "idle": Out(1),
        })

    @staticmethod
    def layouts(cfg: AccelConfig) -> tuple:
        """Payload shapes of ``i`` and ``o``, without building the component (for benches)."""
        patch = data.ArrayLayout(signed(cfg.act_bits), cfg.n * cfg.n)
        o_layout = data.StructLayout({
            "d": data.ArrayLayout(patch, cfg.transform_channels),
            "c": unsigned(max(1, (cfg.c_max - 1).bit_length())),
            "n": range(1, cfg.transform_channels + 1),
            "last": unsigned(1),
        })
        return data.ArrayLayout(signed(cfg.act_bits), cfg.stream_values), o_layout

    @staticmethod
    def slots(cfg: AccelConfig) -> int:
        """Row slots of the ring: ``n + m`` (one band read while the next one fills)."""
        return cfg.n + cfg.tile

    @staticmethod
    def column_groups(cfg: AccelConfig) -> int:
        """Groups of ``n`` padded columns that hold columns ``0 .. w_max``: ``w_max // n + 1``."""
        return cfg.w_max // cfg.n + 1

    @staticmethod
    def pixel_words(cfg: AccelConfig) -> int:
        """Memory words of one pixel: ``ceil(c_max / stream_values)``."""
        return -(-cfg.c_max // cfg.stream_values)

    @staticmethod
    def spread_columns(cfg: AccelConfig) -> bool:
        """Whether a slot's ``n`` column banks are spread over ``n`` memories of ``V / n``
        elements (when ``n`` divides ``V``), rather than one memory of ``V`` per bank: when a
        row-memory word (:attr:`sw.config.AccelConfig.row_word_channels`) is narrower than a
        beat."""
        return cfg.row_word_channels < cfg.stream_values

    @classmethod
    def memory_bits(cls, cfg: AccelConfig) -> int:
        """Bits of row memory: ``(n + m) · n · column_groups · pixel_words · V · act_bits``."""
        return (cls.slots(cfg) * cfg.n * cls.column_groups(cfg) * cls.pixel_words(cfg)
                * cfg.stream_values * cfg.act_bits)


    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        mm, n = cfg.tile, cfg.n
        log_m = mm.bit_length() - 1
        S = self.slots(cfg)
        V = cfg.stream_values
        log_v = V.bit_length() - 1
        c_max = cfg.c_max
        P = cfg.transform_channels
        log_p = P.bit_length() - 1
        words = self.pixel_words(cfg)       # memory words (input beats) of one pixel
        groups = self.column_groups(cfg)
        depth = groups * words
        H, W, C, pad = self.height, self.width, self.channels, self.pad

        # The frame's last band, last patch column and last channel, as registers one cycle
        # behind the shape inputs (which hold still while a frame is in progress), so that no
        # arithmetic on them lies on the reader's issue path.
        out_h = Signal(17)
        out_w = Signal(range(cfg.w_max + 3))
        m.d.comb += [
            out_h.eq(H + 2 * pad - 2),
            out_w.eq(W + 2 * pad - 2),
        ]
        last_ty_index = Signal(16)                      # tiles_h - 1
        last_tx_index = Signal(range(cfg.w_max + 1))    # tiles_w - 1
        last_c_index = Signal(range(c_max + 1))         # first channel of a tile's last beat
        last_n = Signal(range(1, P + 1))                # channels of a tile's last beat
        m.d.sync += [
            last_ty_index.eq(((out_h + (mm - 1)) >> log_m) - 1),
            last_tx_index.eq(((out_w + (mm - 1)) >> log_m) - 1),
            last_c_index.eq(((C - 1) >> log_p) << log_p),
            last_n.eq(((C - 1) & (P - 1)) + 1),
        ]

        # Row FIFO bookkeeping shared by both sides. A slot is used from the first beat of its
        # row until the reader releases the row; a row is done once its last beat is written.
        used = Signal(range(S + 1))
        done_rows = Signal(range(S + 1))

        # -- write side: one beat (V channels of a pixel) per cycle into the current row's slot -
        # The write address and the column's bank are registers holding the current beat's,
        # advanced on each accepted beat, so the block RAMs' address bus comes straight from a
        # register (the routed critical path of the block alone ran through `cur_base + wc`).
        wx = Signal(range(cfg.w_max))
        wc = Signal(range(words))           # beat of the pixel: channels wc·V .. wc·V + V-1
        wslot = Signal(range(S))
        w_col0 = Signal(init=1)             # wx == 0: column q = pad, group 0
        w_mod = Signal(range(n))            # bank of column x = wx, for wx > 0
        w_base = Signal(range(depth + 1))   # group base of column x = wx, for wx > 0
        w_addr = Signal(range(depth + 1))   # address of the current beat: base + wc
        # Whether the beat ends its pixel, and the pixel its row. A pixel's first beat (and a
        # row's first pixel) compares the shape inputs with constants; a later one reads a flag
        # set on the beat (pixel) before, so no carry chain on the shape inputs lies in front
        # of the write side's state (the routed critical path of 4de5744 ran from the width
        # register through `W - 1` into `wslot` and `done_rows`).
        beat_last = Signal()                # for wc >= 1: this beat is the pixel's last
        col_last = Signal()                 # for wx >= 1: this column is the row's last
        single_beat = ((C >> log_v) == 0) | (C == V)        # C <= V: a pixel in one beat
        pixel_end = Mux(wc == 0, single_beat, beat_last)
        row_start = w_col0 & (wc == 0)
        row_end = Mux(w_col0, W == 1, col_last) & pixel_end
        cur_mod = Signal(range(n))
        cur_base = Signal(range(depth + 1))
        accept = Signal()
        m.d.comb += [
            cur_mod.eq(Mux(w_col0, pad, w_mod)),
            cur_base.eq(Mux(w_col0, 0, w_base)),
            self.i.ready.eq(~row_start | (used < S)),
            accept.eq(self.i.valid & self.i.ready),
        ]
        with m.If(accept):
            m.d.sync += [wc.eq(wc + 1), w_addr.eq(w_addr + 1),
                         beat_last.eq(wc + 1 == (C - 1) >> log_v)]
            with m.If(pixel_end):
                m.d.sync += [wc.eq(0), wx.eq(wx + 1), w_col0.eq(0), col_last.eq(wx + 2 == W)]
                with m.If(cur_mod == n - 1):
                    m.d.sync += [w_mod.eq(0), w_base.eq(cur_base + words),
                                 w_addr.eq(cur_base + words)]
                with m.Else():
                    m.d.sync += [w_mod.eq(cur_mod + 1), w_base.eq(cur_base),
                                 w_addr.eq(cur_base)]
                with m.If(row_end):
                    m.d.sync += [wx.eq(0), w_col0.eq(1), w_addr.eq(0),
                                 wslot.eq(Mux(wslot == S - 1, 0, wslot + 1))]

        # -- read side: walk the bands of the reader's frame -------------------------------
        ty = Signal(16)
        tx = Signal(range(cfg.w_max))
        rc = Signal(range(c_max))
        head = Signal(range(S))         # slot of the oldest row not yet released
        freed = Signal(16)              # rows of the reader's frame released so far
        q0 = Signal(range(cfg.w_max + mm + 1))      # tx * m, first padded column of the patch
        col_mod = Signal(range(n))                  # q0 mod n
        col_base = Signal(range(depth + 1))         # (q0 div n) * words

        first = ty == 0
        pf = Signal()                   # band 0 of a padded frame starts one row above the image
        m.d.comb += pf.eq(pad & first)
        last_c = rc == last_c_index
        last_tx = tx == last_tx_index
        last_ty = ty == last_ty_index
        # `rows_left` (rows of the frame from `head` on, H - freed) and `band_rows` (rows the
        # current band needs, min(rows_left, n - pf)) are registers, loaded every cycle with
        # their value for the next cycle: after a band's end they are computed from the next
        # band's `freed` and `pf`, otherwise from the current ones (which follow H while no
        # frame is in progress). Their carry chains then lie between registers, not on `issue`.
        rows_left = Signal(16)
        band_rows = Signal(range(n + 1))
        free = Signal(range(n + 1))
        m.d.comb += free.eq(Mux(last_ty, rows_left, mm - pf))
        rows_stay = Signal(16)
        rows_next = Signal(16)
        pf_next = Signal()
        m.d.comb += [
            rows_stay.eq(H - freed),
            # after a band that is not the last, freed grows by m - pf; rows_left (a register)
            # holds H - freed already, so only the small constant is subtracted
            rows_next.eq(Mux(last_ty, H, rows_left - (mm - pf))),
            pf_next.eq(pad & last_ty),
        ]

        def band_rows_of(rows, pf):
            return Mux(rows < n - pf, rows, n - pf)

        # Pipeline: issue (addresses) -> read ports -> stage 2 -> output register. Every stage moves
        # together when the output register can take a patch; while it cannot, the read ports
        # (enable low) and the registers hold, so nothing needs a skid buffer.
        advance = Signal()
        issue = Signal()
        band_end = Signal()
        # The band's last row may still be arriving: a patch whose columns are all in (its last
        # padded column q0 + n - 1 before the one being written, wx + pad) is read from it
        # already. The tests are registers of the cycle before, so no carry chain lies on
        # `issue`: one for the patch column being read, one for the next (when the read moved
        # on to it), none in the cycle after a band's end. A test made in the cycle before
        # stays true: wx only grows in a row, and when the row ends the band is complete.
        rows_ok = done_rows + 1 == band_rows            # the band's last row is being written
        early = Signal()
        early_next = Signal()
        moved = Signal()
        new_band = Signal()
        m.d.sync += [
            early.eq(rows_ok & (wx + pad >= q0 + n)),
            early_next.eq(rows_ok & (wx + pad >= q0 + (mm + n))),
            moved.eq(issue & last_c),
            new_band.eq(band_end),
        ]
        early_ok = Mux(moved, early_next & ~new_band, early)
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            # band_rows is 0 only while H is 0 (no frame configured): issue nothing then,
            # rather than an endless run of empty patches that moves the read position.
            issue.eq(advance & (band_rows != 0)
                     & ((done_rows >= band_rows) | early_ok)),
            band_end.eq(issue & last_c & last_tx),
        ]
        with m.If(issue):
            m.d.sync += rc.eq(rc + P)
            with m.If(last_c):
                m.d.sync += [rc.eq(0), tx.eq(tx + 1), q0.eq(q0 + mm)]
                with m.If(col_mod >= n - mm):
                    m.d.sync += [col_mod.eq(col_mod - (n - mm)), col_base.eq(col_base + words)]
                with m.Else():
                    m.d.sync += col_mod.eq(col_mod + mm)
                with m.If(last_tx):
                    next_head = head + free
                    m.d.sync += [
                        tx.eq(0), q0.eq(0), col_mod.eq(0), col_base.eq(0),
                        head.eq(Mux(next_head >= S, next_head - S, next_head)),
                    ]
                    with m.If(last_ty):
                        m.d.sync += [ty.eq(0), freed.eq(0)]
                    with m.Else():
                        m.d.sync += [ty.eq(ty + 1), freed.eq(freed + free)]

        with m.If(band_end):
            m.d.sync += [rows_left.eq(rows_next), band_rows.eq(band_rows_of(rows_next, pf_next))]
        with m.Else():
            m.d.sync += [rows_left.eq(rows_stay), band_rows.eq(band_rows_of(rows_stay, pf))]

        # Both outcomes computed from registers, `band_end` (late: it comes from `issue`)
        # only picks one.
        used_in = used + (accept & row_start)
        done_in = done_rows + (accept & row_end)
        with m.If(band_end):
            m.d.sync += [used.eq(used_in - free), done_rows.eq(done_in - free)]
        with m.Else():
            m.d.sync += [used.eq(used_in), done_rows.eq(done_in)]

        # Bank b holds the patch column q0 + ((b - col_mod) mod n); for b < col_mod that is in
        # the next column group. Past the last group the column is beyond w_max, so masked:
        # read group q0 div n instead to keep the address inside the memory.
        at_end = col_base == (groups - 1) * words

        def rd_word(bank):
            """Read address of column bank ``bank`` (a constant or a signal)."""
            return col_base + Mux((bank < col_mod) & ~at_end, words, 0) + (rc >> log_v)

        s1_valid = Signal()
        s1_c = Signal.like(self.o.payload.c)
        s1_last = Signal()
        s1_n = Signal.like(self.o.payload.n)
        s1_rows = Signal(n)             # patch row r lies inside the image
        s1_cols = Signal(n)             # patch column s lies inside the image
        s1_base = Signal(range(S))      # slot of patch row 0
        s1_mod = Signal(range(n))       # bank of patch column 0
        s1_lane = Signal(range(V))      # element c mod V of the words read (a multiple of P)
        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(issue),
                s1_c.eq(rc),
                s1_last.eq(last_c),
                s1_n.eq(Mux(last_c, last_n, P)),
                s1_base.eq(Mux(pf & (head == 0), S - 1, head - pf)),
                s1_mod.eq(col_mod),
                s1_lane.eq(rc & (V - 1)),
            ]
            for r in range(n):
                m.d.sync += s1_rows[r].eq((r >= pf) & (r < rows_left + pf))
            for s in range(n):
                m.d.sync += s1_cols[s].eq((q0 + s >= pad) & (q0 + s < W + pad))

        # -- row memory: bank (k, b) holds padded columns q ≡ b (mod n) of slot k -------------
        # Every bank is read at each issue, but a bank written in that cycle belongs to a slot
        # none of whose rows the patch uses (the ring above), so its read word, which may
        # collide with the write, is dropped: the block RAM's read-during-write behaviour need
        # not be emulated (no_rw_check). The line_buffer proof (verif/formal/proofs.py) checks
        # exactly that, for either layout (it is a property of the slots).
        if self.spread_columns(cfg):
            # Spread layout (n divides V): slot k is n memories of E = V / n elements a word
            # and n · depth words. Element group g (elements g·E .. g·E + E-1) of column bank
            # j's word at address a lives in memory (g + j) mod n at address a · n + j. A beat
            # (one bank j) is one write to each of the slot's n memories; a patch reads element
            # group p = (c mod V) div E of all n banks, from n different memories (bank j from
            # memory (p + j) mod n). Each memory is then E · act_bits wide instead of V ·
            # act_bits, so it fits one block RAM port (36 bits at most on ECP5) where the
            # whole word needed two or more.
            # n divides a power of two, so it is one too: a · n + j is Cat(j, a).
            assert n & (n - 1) == 0
            E = V // n
            log_e = E.bit_length() - 1
            group_bits = E * cfg.act_bits
            beat = self.i.payload.as_value()
            groups_of_beat = Array(beat.word_select(g, group_bits) for g in range(n))
            group_rd = Signal(range(n))         # p: the element group the patch reads
            m.d.comb += group_rd.eq((rc >> log_e) & (n - 1))
            s1_group = Signal(range(n))
            s1_elem = Signal(range(E))
            m.d.comb += [s1_group.eq((s1_lane >> log_e) & (n - 1)), s1_elem.eq(s1_lane & (E - 1))]
            wr_data, rd_addr_of = [], []
            for i in range(n):
                g = Signal(range(n), name=f"mem{i}_wr_group")      # (i - j) mod n
                m.d.comb += g.eq((i - cur_mod) & (n - 1))
                wr_data.append(groups_of_beat[g])
                j = Signal(range(n), name=f"mem{i}_rd_bank")       # (i - p) mod n
                m.d.comb += j.eq((i - group_rd) & (n - 1))
                addr = Signal(range(depth), name=f"mem{i}_rd_word")
                m.d.comb += addr.eq(rd_word(j))
                rd_addr_of.append(Cat(j, addr))
            bank_data = []
            for k in range(S):
                mem_data = []
                for i in range(n):
                    mem = Memory(shape=data.ArrayLayout(signed(cfg.act_bits), E),
                                 depth=n * depth, init=[], attrs={"no_rw_check": 1})
                    m.submodules[f"slot{k}_mem{i}"] = mem
                    wp = mem.write_port()
                    rp = mem.read_port()
                    m.d.comb += [
                        wp.addr.eq(Cat(cur_mod, w_addr)), wp.data.eq(wr_data[i]),
                        wp.en.eq(accept & (wslot == k)),
                        rp.addr.eq(rd_addr_of[i]), rp.en.eq(issue),
                    ]
                    mem_data.append(rp.data)
                row = []
                for b in range(n):
                    source = Signal(range(n), name=f"slot{k}_col{b}_mem")
                    m.d.comb += source.eq((s1_group + b) & (n - 1))
                    values = []
                    for j in range(P):      # s1_elem is a multiple of P: | is +
                        value = Signal(signed(cfg.act_bits), name=f"slot{k}_col{b}_value{j}")
                        m.d.comb += value.eq(Array(mem_data)[source][s1_elem | j])
                        values.append(value)
                    row.append(values)
                bank_data.append(row)
        else:
            bank_data = []
            for k in range(S):
                row = []
                for b in range(n):
                    mem = Memory(shape=self.i.payload.shape(), depth=depth, init=[],
                                 attrs={"no_rw_check": 1})
                    m.submodules[f"slot{k}_col{b}"] = mem
                    wp = mem.write_port()
                    rp = mem.read_port()
                    m.d.comb += [
                        wp.addr.eq(w_addr), wp.data.eq(self.i.payload),
                        wp.en.eq(accept & (wslot == k) & (cur_mod == b)),
                        rp.addr.eq(rd_word(b)), rp.en.eq(issue),
                    ]
                    # Elements c mod V .. + P - 1 of every bank before the rotations, which
                    # then move act_bits-wide values rather than whole words.
                    values = []
                    for j in range(P):
                        value = Signal(signed(cfg.act_bits), name=f"slot{k}_col{b}_value{j}")
                        m.d.comb += value.eq(rp.data[s1_lane | j])
                        values.append(value)
                    row.append(values)
                bank_data.append(row)

        # -- stage 2: the selected elements, registered ----------------------------------------
        # The block RAMs' clock-to-out (5.8 ns on ECP5) and the element select, then the two
        # rotations, were one path (the routed critical path, docs/fpga.md): a register between
        # them splits it. It moves with `advance` like every other stage.
        s2_valid = Signal()
        s2_c = Signal.like(s1_c)
        s2_last = Signal()
        s2_n = Signal.like(s1_n)
        s2_rows, s2_cols = Signal(n), Signal(n)
        s2_base = Signal(range(S))
        s2_mod = Signal(range(n))
        s2_data = [[[Signal(signed(cfg.act_bits), name=f"s2_slot{k}_col{b}_ch{j}",
                             reset_less=True) for j in range(P)]
                     for b in range(n)] for k in range(S)]
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_c.eq(s1_c), s2_last.eq(s1_last), s2_n.eq(s1_n),
                s2_rows.eq(s1_rows), s2_cols.eq(s1_cols), s2_base.eq(s1_base),
                s2_mod.eq(s1_mod),
            ]
            m.d.sync += [s2_data[k][b][j].eq(bank_data[k][b][j])
                         for k in range(S) for b in range(n) for j in range(P)]

        # -- output register: rotate slots to patch rows and banks to patch columns ----------
        patch_rows = []
        for r in range(n):
            slot = Signal(range(S), name=f"row{r}_slot")
            m.d.comb += slot.eq(Mux(s2_base + r >= S, s2_base + r - S, s2_base + r))
            words = []
            for b in range(n):
                channel_words = []
                for j in range(P):
                    word = Signal(signed(cfg.act_bits), name=f"row{r}_bank{b}_ch{j}")
                    m.d.comb += word.eq(Array(s2_data[k][b][j] for k in range(S))[slot])
                    channel_words.append(word)
                words.append(channel_words)
            patch_rows.append(words)
        col_banks = []
        for s in range(n):
            bank = Signal(range(n), name=f"col{s}_bank")
            m.d.comb += bank.eq(Mux(s2_mod + s >= n, s2_mod + s - n, s2_mod + s))
            col_banks.append(bank)
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(s2_valid),
                self.o.payload.c.eq(s2_c),
                self.o.payload.last.eq(s2_last),
                self.o.payload.n.eq(s2_n),
            ]
            for j in range(P):
                inside = 1 if j == 0 else j < s2_n      # channels past C are zero too
                for s in range(n):
                    for r in range(n):
                        value = Array(words[j] for words in patch_rows[r])[col_banks[s]]
                        m.d.sync += self.o.payload.d[j][r * n + s].eq(
                            Mux(s2_rows[r] & s2_cols[s] & inside, value, 0))

        m.d.comb += self.idle.eq((used == 0) & ~s1_valid & ~s2_valid & ~self.o.valid)
        return m
