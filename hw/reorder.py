"""``OutputReorder``: requantised ``m×m`` output tiles back into an NHWC raster.

The output transform produces one ``m×m`` tile of one output channel per beat, tile row by
tile row (a *band* of ``m`` output rows), tile by tile, channel by channel. The host wants the
feature map as a raster, row by row, pixel by pixel, channel by channel (NHWC). A band is the
unit that has to be complete before its first raster row can leave, so the reorder buffer holds
two bands: one fills from the tile stream while the other drains as the raster.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config

__all__ = ["OutputReorder"]


class OutputReorder(ConfiguredComponent):
    """Double-buffered band memory turning output tiles into an NHWC raster.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies the tile size ``m`` (``tile``), ``act_bits``, ``w_max``, ``k_max``,
        ``stream_values`` and ``transform_channels`` (P, which divides ``stream_values``).

    Members
    -------
    i : In(stream.Signature(ArrayLayout(ArrayLayout(signed(act_bits), m*m), P)))
        The requantised ``m×m`` tiles of ``P`` consecutive output channels ``k .. k + P - 1``,
        each row-major (element ``(r, s)`` at ``r*m + s``), as the output transforms emit them
        (:class:`hw.transforms.OutputTransform` in :class:`hw.lockstep.Lockstep`). Beats in
        order: for ``ty`` in ``0 .. tiles_h-1``, for ``tx`` in ``0 .. tiles_w-1``, for ``k``
        in ``0, P, 2P ..`` below ``K``, with
        ``tiles_h = ceil(out_h / m)`` and ``tiles_w = ceil(out_w / m)``; the tiles of channels
        ``k + j >= K`` in a tile's final beat are ignored. Accepted one per cycle while the
        band being filled has room.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(act_bits), V),
                                          "keep": unsigned(V), "last": unsigned(1)})))
        The ``out_h × out_w × K`` output in NHWC raster order, ``V = stream_values`` channels
        of one pixel per beat as :func:`sw.formats.activation_lanes` cuts it: for ``y`` in
        ``0 .. out_h-1``, for ``x`` in ``0 .. out_w-1``, ``ceil(K / V)`` beats, beat ``g``
        holding channels ``g·V .. g·V + V - 1`` in ``data[0 .. V-1]``; ``keep`` bit ``j`` set
        when channel ``g·V + j < K`` (element ``j`` is zero otherwise); ``last`` on the frame's
        final beat. Elements of partial edge tiles with ``y >= out_h`` or ``x >= out_w`` are
        dropped. The payload is a register.
    out_height : In(16)
        ``out_h >= 1``, output rows of the frame.
    out_width : In(range(w_max + 1))
        ``1 <= out_w <= w_max``, output columns of the frame.
    channels : In(range(k_max + 1))
        ``1 <= K <= k_max``, output channels of the frame.
    idle : Out(1)
        Nothing buffered and no output pending: the only time ``out_height``, ``out_width``
        and ``channels`` may change. They must hold still for a whole frame; frames follow
        each other back to back (after a frame's last input beat, the next beat on ``i``
        belongs to the next frame).

    Notes
    -----
    Memory: ``2 · m · W · Kw · V · act_bits`` bits, ``W = m · ceil(w_max / m)``,
    ``Kw = ceil(k_max / V)`` words per pixel (two bands of ``m`` rows of ``W`` columns of
    ``Kw`` words of ``V`` channels; see :attr:`memory_bits`), in ``m²`` banks, bank ``(r, s)``
    holding row ``r`` and the columns ``x ≡ s (mod m)`` of both bands,
    ``2 · ceil(w_max / m) · Kw`` words deep, each word written ``act_bits`` at a time (one
    write enable per element). A beat of channels ``k .. k + P - 1`` is one write: elements
    ``k mod V .. k mod V + P - 1`` of the word at ``tx · ceil(K / V) + k div V`` in each of
    the ``m²`` banks; an output beat is one read of one bank. The configuration m 2, w_max 64,
    k_max 256, 8 bits, ``V = 8`` needs 524,288 bits (64 KiB).

    Order of reads: a band is read once complete, except its first row, whose pixels are read
    as their tile columns complete (the writer meanwhile fills later columns of that band), so
    after a frame's final tile only the final column's first-row pixels and the final band's
    other rows are left.

    Latency: a value is valid on ``o`` :attr:`LATENCY` cycles after the input beat that
    completes its tile column (first row) or its band (other rows), when the reader is
    waiting for it (column count or band complete flag, memory read, output register).

    Throughput: one beat (``P`` channels' tiles) per cycle on ``i``, and one beat (up to
    ``V`` channels of one pixel) per cycle on ``o`` while a band is complete and ``o`` is
    ready. With ``P = 1``: filling the next band (``tiles_w · K`` beats) overlaps draining
    the current one (``rows · out_w · ceil(K / V)`` beats), and without gaps and
    back-pressure the slower of the two sets the pace. When the drain is the slower (few channels), ``o`` moves a beat
    every cycle with no bubble between bands nor between back-to-back frames: a frame takes
    ``ceil(K / P) + LATENCY - 1 + out_h · out_w · ceil(K / V)`` cycles from its first input
    beat to its last output, each back-to-back frame of the same shape
    ``out_h · out_w · ceil(K / V)`` more. When the fill is the slower, ``i`` takes a tile
    every cycle, and what the final tile completes leaves ``LATENCY`` cycles after it, one
    beat per cycle.
    """

    #: Cycles from the input beat that completes a tile column (or a band) to the first value
    #: it lets out, the reader waiting for it.
    LATENCY = 3

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        i_layout, o_layout = self.layouts(cfg)
        super().__init__(cfg, {
            "i": In(stream.Signature(i_layout)),
            "o": Out(stream.Signature(o_layout)),
            "out_height": In(16),
            "out_width": In(range(cfg.w_max + 1)),
            "channels": In(range(cfg.k_max + 1)),
            "idle": Out(1),
        })

    @staticmethod
    def layouts(cfg: AccelConfig) -> tuple[data.ArrayLayout, data.StructLayout]:
        """Payload layouts of ``i`` and ``o``, without building the component (for benches)."""
        i_layout = data.ArrayLayout(data.ArrayLayout(signed(cfg.act_bits), cfg.tile * cfg.tile),
                                    cfg.transform_channels)
        V = cfg.stream_values
        o_layout = data.StructLayout({"data": data.ArrayLayout(signed(cfg.act_bits), V),
                                      "keep": unsigned(V), "last": unsigned(1)})
        return i_layout, o_layout

    @staticmethod
    def band_tiles(cfg: AccelConfig) -> int:
        """Tile columns a band holds: ``ceil(w_max / m)``."""
        return -(-cfg.w_max // cfg.tile)

    @staticmethod
    def pixel_words(cfg: AccelConfig) -> int:
        """Memory words of one pixel: ``ceil(k_max / stream_values)``."""
        return -(-cfg.k_max // cfg.stream_values)

    @classmethod
    def memory_bits(cls, cfg: AccelConfig) -> int:
        """Bits of band memory: ``2 · m · (m · ceil(w_max / m)) · pixel_words · V · act_bits``."""
        return (2 * cfg.tile * cfg.tile * cls.band_tiles(cfg) * cls.pixel_words(cfg)
                * cfg.stream_values * cfg.act_bits)


    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        mm = cfg.tile
        log_m = mm.bit_length() - 1
        V = cfg.stream_values
        log_v = V.bit_length() - 1
        P = cfg.transform_channels
        log_p = P.bit_length() - 1
        words = self.pixel_words(cfg)
        band_words = self.band_tiles(cfg) * words       # words of one band in one bank
        K = self.channels
        tiles_w = (self.out_width + (mm - 1)) >> log_m
        beats = Signal(range(words + 1))                # beats (words) of one pixel
        m.d.comb += beats.eq((K + (V - 1)) >> log_v)

        full = Signal(2)            # band b is complete and not yet fully read

        # -- write side: one tile per cycle into the band being filled ------------------------
        wband = Signal()
        w_offset = Signal(range(band_words))    # tx * beats, first word of the tile column
        w_tx = Signal(range(self.band_tiles(cfg)))
        w_k = Signal(range(cfg.k_max))
        accept = Signal()
        # w_k is the beat's first channel, a multiple of P: a tile column's last beat holds
        # channel K - 1.
        w_k_last = (w_k == K - 1) if P == 1 else (w_k == ((K - 1) >> log_p) << log_p)
        w_band_end = (w_tx == tiles_w - 1) & w_k_last
        m.d.comb += [
            self.i.ready.eq(~full.bit_select(wband, 1)),
            accept.eq(self.i.valid & self.i.ready),
        ]
        with m.If(accept):
            m.d.sync += w_k.eq(w_k + P)
            with m.If(w_k_last):
                m.d.sync += [w_k.eq(0), w_tx.eq(w_tx + 1), w_offset.eq(w_offset + beats)]
            with m.If(w_band_end):
                m.d.sync += [w_offset.eq(0), w_tx.eq(0), wband.eq(~wband)]
        w_addr = Signal(range(2 * band_words))
        m.d.comb += w_addr.eq(Mux(wband, band_words, 0) + w_offset + (w_k >> log_v))
        w_lane = Signal(range(V))                       # a multiple of P
        m.d.comb += w_lane.eq(w_k & (V - 1))

        # -- read side: walk a band in raster order --------------------------------------------
        # A band is read once it is complete, except its first row: a pixel of that row is read
        # as soon as its tile column is complete (its K channels written), while the writer
        # fills the band's later columns. So the first row of a band leaves while the band's
        # tiles arrive, and after the frame's final tile only the band's other rows are left
        # to go.
        rband = Signal()
        y0 = Signal(16)                         # first output row of the band being read
        r_row = Signal(range(mm))
        r_x = Signal(range(cfg.w_max))
        r_k = Signal(range(words))              # beat of the pixel: channels r_k·V ..
        r_tx_base = Signal(range(band_words))   # (r_x // m) * beats
        # `rows_left` (out_height - y0), `last_band` (rows_left <= m) and `last_row` (the band's
        # final row index) are registers, loaded every cycle with their value for the next
        # cycle: at a band's end from the next band's y0, otherwise from the current one
        # (which follows out_height while no frame is in progress). Their carry chains then
        # lie between registers, not on the band end (as in hw.linebuf): the path from the
        # shape registers through them into `full` was the routed critical path (docs/fpga.md).
        rows_left = Signal(16)
        last_band = Signal()
        last_row = Signal(range(mm))
        # `k_last` (r_k is the pixel's last beat), `x_last` (r_x is the row's last pixel) and
        # `last_keep` (the keep of a pixel's last beat) are registers too, loaded with their
        # value for the next cycle from registers and the shape (the issue only chooses):
        # `channels` through `beats` and two carry chains into the band end and `full` was the
        # routed critical path of ed992dc (docs/fpga.md). The shape holds still from the cycle
        # a frame's first beat is accepted, and nothing is read before the cycle after, so they
        # have followed it by then. The last beat holds K mod V channels (V when that is 0):
        # `last_keep` decodes K's low bits, no carry chain (K - (beats - 1)·V, two of them,
        # was aaab6bb's routed critical path).
        k_last = Signal()
        x_last = Signal()
        last_keep = Signal(V)
        k_low = K[:log_v] if log_v else Const(0, 1)
        m.d.sync += [last_keep[j].eq((k_low == 0) | (j < k_low)) for j in range(V)]
        row_last = r_row == last_row
        r_band_end = k_last & x_last & row_last

        # Read pipeline: issue -> the read ports hold (bank, last) -> output register. A read
        # is issued only when its data can move on, so the ports' data (which hold while their
        # enable is low) never needs a skid register.
        r_valid = Signal()
        r_bank = Signal(range(mm * mm))
        r_keep = Signal(V)
        r_frame_last = Signal()
        out_load = Signal()
        r_advance = Signal()
        issue = Signal()
        readable = Signal()
        m.d.comb += [
            readable.eq(full.bit_select(rband, 1)
                        | ((rband == wband) & (r_row == 0) & ((r_x >> log_m) < w_tx))),
            out_load.eq(~self.o.valid | self.o.ready),
            r_advance.eq(r_valid & out_load),
            issue.eq(readable & (~r_valid | r_advance)),
        ]
        r_addr = Signal(range(2 * band_words))
        m.d.comb += r_addr.eq(Mux(rband, band_words, 0) + r_tx_base + r_k)
        with m.If(issue):
            m.d.sync += [
                r_valid.eq(1),
                r_bank.eq((r_row << log_m) | r_x[:log_m]),
                r_keep.eq(Mux(k_last, last_keep, (1 << V) - 1)),
                r_frame_last.eq(r_band_end & last_band),
                r_k.eq(r_k + 1),
            ]
            with m.If(k_last):
                m.d.sync += [r_k.eq(0), r_x.eq(r_x + 1)]
                with m.If(r_x[:log_m] == mm - 1):
                    m.d.sync += r_tx_base.eq(r_tx_base + beats)
                with m.If(x_last):
                    m.d.sync += [r_x.eq(0), r_tx_base.eq(0), r_row.eq(r_row + 1)]
                    with m.If(row_last):
                        m.d.sync += [r_row.eq(0), rband.eq(~rband),
                                     y0.eq(Mux(last_band, 0, y0 + mm))]
        with m.Elif(r_advance):
            m.d.sync += r_valid.eq(0)
        width = self.out_width
        m.d.sync += [
            k_last.eq(Mux(issue, Mux(k_last, beats == 1, r_k + 2 == beats), r_k + 1 == beats)),
            x_last.eq(Mux(issue & k_last, Mux(x_last, width == 1, r_x + 2 == width),
                          r_x + 1 == width)),
        ]

        rows_stay = Signal(16)
        rows_next = Signal(16)
        m.d.comb += [
            rows_stay.eq(self.out_height - y0),
            # after a band that is not the last, y0 grows by m; rows_left (a register) holds
            # out_height - y0 already, so only the constant is subtracted
            rows_next.eq(Mux(last_band, self.out_height, rows_left - mm)),
        ]

        def load_rows(rows):
            return [rows_left.eq(rows), last_band.eq(rows <= mm),
                    last_row.eq(Mux(rows <= mm, rows - 1, mm - 1))]

        with m.If(issue & r_band_end):
            m.d.sync += load_rows(rows_next)
        with m.Else():
            m.d.sync += load_rows(rows_stay)

        # A band is complete when its final tile is written, and free again once its final
        # value has been read out of the memory (the port holds it from then on).
        for b in range(2):
            with m.If(accept & w_band_end & (wband == b)):
                m.d.sync += full[b].eq(1)
            with m.Elif(issue & r_band_end & (rband == b)):
                m.d.sync += full[b].eq(0)

        # -- band memory: bank (r, s) holds row r, columns x ≡ s (mod m), of both bands ------
        bank_data = []
        for r in range(mm):
            for s in range(mm):
                # One write enable per act_bits element (block-RAM byte enables): a beat
                # writes elements k mod V .. + P - 1 of a word and leaves the other channels
                # as they are (those of channels >= K too: the read side never keeps them).
                # The reader reads a full band, or in the band being filled only the first
                # row's completed tile columns, so no address is read and written in one cycle:
                # Yosys need not emulate the block RAM's read-during-write behaviour
                # (no_rw_check; the output_reorder proof checks the addresses differ).
                mem = Memory(shape=unsigned(V * cfg.act_bits), depth=2 * band_words, init=[],
                             attrs={"no_rw_check": 1})
                m.submodules[f"bank_r{r}_s{s}"] = mem
                wp = mem.write_port(granularity=cfg.act_bits)
                rp = mem.read_port()
                here = (r_row == r) & (r_x[:log_m] == s)
                values = [self.i.payload[j][r * mm + s] for j in range(P)]
                m.d.comb += [
                    wp.addr.eq(w_addr), wp.data.eq(Cat(values[lane % P] for lane in range(V))),
                    wp.en.eq(Mux(accept, ((1 << P) - 1) << w_lane, 0)),
                    rp.addr.eq(r_addr), rp.en.eq(issue & here),
                ]
                bank_data.append(rp.data)

        # -- output register --------------------------------------------------------------
        with m.If(out_load):
            m.d.sync += self.o.valid.eq(r_valid)
        with m.If(r_advance):
            word = Array(bank_data)[r_bank]
            m.d.sync += [
                self.o.payload.data.eq(Cat(Mux(r_keep[j], word[j * cfg.act_bits:
                                                               (j + 1) * cfg.act_bits], 0)
                                           for j in range(V))),
                self.o.payload.keep.eq(r_keep),
                self.o.payload.last.eq(r_frame_last),
            ]

        m.d.comb += self.idle.eq((full == 0) & (w_tx == 0) & (w_k == 0) & ~r_valid
                                 & ~self.o.valid)
        return m
