"""``WeightLoader``: one record of the packed weight-load stream into the PEs' memories.

The host sends each (layer, pass) record of :func:`sw.formats.encode_record` as one byte frame.
The loader parses it as it arrives and turns every unit of a PE's record body (a directory
entry field and a weight word field, :func:`sw.formats.body_units`) into one write of
:class:`hw.array.SparseArray`'s load port, with the entry, the word or both. It keeps nothing
but the record's header fields, the column being walked and the unit being assembled, so its
cost does not grow with the memories it fills. Every byte count and field width comes from
:mod:`sw.formats`: the header fields from the layouts of :mod:`hw.layouts`, the unit, entry
and word sizes and the entry's ``count`` field from :func:`sw.formats.unit_bytes`,
:func:`sw.formats.directory_layout` and :func:`sw.formats.slot_layout`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream
from amaranth.lib.wiring import In, Out

from hw.array import SparseArray
from hw.layouts import pe_header_layout, record_header_layout
from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config
from hw.pe import load_write
from sw import formats

__all__ = ["WeightLoader", "accelerator_loader", "BYTE_LAYOUT", "beat_layout", "expected_writes"]

#: Payload of the byte stream: one record byte, ``last`` on the record's final byte.
BYTE_LAYOUT = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


def beat_layout(beat_bytes: int) -> data.StructLayout:
    """Payload of a stream of ``beat_bytes`` record bytes per beat: :data:`BYTE_LAYOUT` for 1;
    else ``data`` (byte ``j`` in bits ``8j .. 8j+7``), ``keep`` (one bit per byte, a prefix:
    only a frame's final beat may be partial) and ``last``."""
    if beat_bytes == 1:
        return BYTE_LAYOUT
    return data.StructLayout({"data": unsigned(8 * beat_bytes), "keep": unsigned(beat_bytes),
                              "last": unsigned(1)})


def expected_writes(image: formats.PassImage, cfg: AccelConfig, received: int | None = None,
                    pes: range | None = None) -> list[tuple[int, dict]]:
    """The ``wr`` beats a record of ``image`` makes, as ``(end, write)`` pairs.

    ``write`` is the payload of :attr:`WeightLoader.wr` as :func:`hw.pe.load_write` makes
    it: ``pe``, and the unit's entry and word (:func:`sw.formats.record_writes`' items that
    share an ``end``; a half with no item all 0). ``end`` is the byte offset just past the
    unit; with ``received``, only the writes whose units all lie in the first ``received``
    bytes; with ``pes``, of the record of those PEs (:func:`sw.formats.encode_record`).
    """
    half = {"directory": "entry", "words": "word"}
    beats: list[tuple[int, dict]] = []
    unit: dict = {}
    items = formats.record_writes(image, cfg, received, pes)
    for k, it in enumerate(items):
        unit[half[it.memory]] = (it.addr, it.value)
        if k + 1 == len(items) or items[k + 1].end != it.end:
            beats.append((it.end, load_write(it.pe, **unit)))
            unit = {}
    return beats


def _field_bytes(layout: data.StructLayout) -> dict[str, int]:
    """Bytes of each field of a header layout, in stream order.

    :mod:`sw.formats` makes every header field a whole number of bytes.
    """
    return {name: field.width // 8 for name, field in layout}


def _lookup(index, values: list[int]):
    """``values[index]`` as one expression (0 outside ``values``).

    An expression, not a ``Switch``: its Verilog is a continuous ``assign``, which Icarus
    evaluates at time 0. A ``Switch`` becomes an ``always @*`` block that Icarus runs only once
    an input changes, and this table's inputs keep their initial values after reset.
    """
    result = 0
    for value in sorted(set(values)):
        hit = 0
        for k, v in enumerate(values):
            if v == value:
                hit = hit | (index == k)
        result = Mux(hit, value, result)
    return result


class _Phase(enum.Enum, shape=3):
    RECORD = 0     # record header fields
    PE = 1         # per-PE header fields
    BODY = 2       # units of PE xi: an entry field and a word field each
    DROP = 3       # a rejected record: skip to its last byte


class WeightLoader(ConfiguredComponent):
    """Parses one weight-load record per frame into writes of the PEs' memories.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``coords``, ``c_max``, ``k_max``, ``wmem_depth`` and, per PE, the body unit,
        directory entry and weight word byte counts and the entry's ``count`` field of
        :mod:`sw.formats`.
    beat_bytes : int
        Record bytes per beat of ``i``: 1 (the default), or 2, 4, 8 or 16.
    pes : range, optional
        The PEs whose blocks a record holds, a run of indices (a weight-load port's share,
        :func:`sw.formats.port_pes`); all of them by default. The record is then
        :func:`sw.formats.encode_record` with these ``pes``, and its writes name the PEs by
        their index in the array.

    Members
    -------
    i : In(stream.Signature(beat_layout(beat_bytes)))
        The bytes of one record (:func:`sw.formats.encode_record`), ``last`` on its final beat.
        With ``beat_bytes`` 1, one byte per cycle; ``ready`` is high except while a byte that
        completes a body unit (or the next byte after a good record) would find ``wr``
        full, so it depends combinationally on ``wr.ready``. With more, a beat carries
        ``beat_bytes`` bytes (those below the first clear bit of ``keep``, a prefix), into
        a byte buffer from which the parser takes one whole header field or body unit per
        cycle;
        ``ready`` is high while the buffer has room for a beat and holds no frame's final
        byte.
    wr : Out(stream.Signature(SparseArray.layouts(cfg)[1]))
        Writes for the array's load port, one beat per body unit (:func:`sw.formats.body_units`)
        in stream order: per PE ``xi`` and column ``c``, its first unit as ``{pe: xi, entry:
        {en: 1, addr: c, data: entry}, word: {en: 1, addr: j, data: word}}`` (the word half
        all 0 for an empty column), each further unit as ``{pe: xi, word: {en: 1, addr: j,
        data: word}}`` with the entry half all 0; ``j`` counts the PE's words from 0
        (:func:`expected_writes`, :func:`hw.pe.load_write`). The payload is a register; a
        write leaves the cycle after its unit's final byte was accepted.
    channels : Out(range(c_max + 1))
        ``C`` of the last record loaded without error; 0 after reset and after a rejected
        record (its writes may have overwritten part of the memories, so no good record is
        held).
    k_count : Out(range(k_max + 1))
        ``k_count`` of that record (0 when ``channels`` is).
    k_base : Out(16)
        ``k_base`` of that record, its low 16 bits (0 when ``channels`` is).
    records : Out(16)
        Records loaded without error (wraps). It and the three fields above change together,
        in the cycle after the record's final write left ``wr``; a rejected record zeroes the
        three fields in the cycle ``error`` strobes, and leaves ``records`` alone.
    error : Out(1)
        One-cycle strobe, in the cycle after the byte that rejected a record was accepted.
    idle : Out(1)
        Between records: no partial record held, no write pending.

    Notes
    -----
    A record is rejected when ``C`` is 0 or above ``c_max``, ``k_count`` is 0 or above
    ``k_max``, a PE header's entry count differs from ``C``, its word count is above
    ``wmem_depth`` (each checked at the field's final byte, over all the field's bits), when
    a unit carries a word beyond the PE header's word count or the PE's last column ends
    short of it (checked at that unit, which then writes nothing), when ``last`` comes before
    the record's final byte (truncated), or when the record's final byte comes without
    ``last`` (too long). After the rejecting byte the loader drops every byte up to and
    including the next ``last`` (none if the rejecting byte carried ``last``) and then takes
    a new record.

    Every unit whose bytes all arrived has been written, also in a record that is rejected
    later (a truncation on a unit's final byte still writes that unit; a record that is too
    long has written all of it), except a unit rejected for the word count. The memories
    then hold a mix of the old and the new pass: the host must reload the pass before
    running it. The header fields ``layer`` and ``pass`` are not checked; they are for the
    host.

    Throughput: with ``beat_bytes`` 1, one byte per cycle while ``wr`` is ready, so a record of
    ``N`` bytes takes ``N`` cycles and the next record's first byte may follow its last one
    directly. With more, one header field or body unit per cycle and ``beat_bytes`` bytes per
    cycle in, whichever is slower, and one cycle more for a unit that starts a new parser
    state (a header field, a PE's first body unit) while its bytes are waiting: a record
    whose body units are at least ``beat_bytes`` long takes about ``N / beat_bytes``
    cycles (the default configuration's 15-byte units at 16 bytes per beat: one unit per
    cycle); a beat after a frame's final beat waits until the buffer has
    been parsed (a few cycles per record). A rejected record's remaining bytes
    are dropped one per cycle (after a bad header field, from the cycle after ``error``).

    Latency (:attr:`LATENCY`): a write is valid on ``wr`` one cycle after the byte that
    completes its unit is accepted, and ``error`` strobes one cycle after the
    rejecting byte. The status members change one cycle after the record's final write is
    taken, together with ``idle`` rising (unless the next record has begun by then).
    """

    #: Cycles from the byte completing a body unit to its write on ``wr``.
    LATENCY = 1

    def __init__(self, cfg: AccelConfig, beat_bytes: int = 1, pes: range | None = None):
        require_config(cfg)
        self._pes = formats.record_pes(cfg, pes)
        if beat_bytes not in (1, 2, 4, 8, 16):
            raise ValueError(f"beat_bytes must be 1, 2, 4, 8 or 16, not {beat_bytes!r}")
        self._beat_bytes = beat_bytes
        if formats.BYTE_ORDER != "little":
            raise ValueError(f"sw.formats.BYTE_ORDER is {formats.BYTE_ORDER!r}; the loader "
                             "assembles little-endian fields")
        self._record_bytes = _field_bytes(record_header_layout())
        self._pe_bytes = _field_bytes(pe_header_layout())
        self._entry_bytes = [formats.directory_layout(cfg, xi).entry_bytes for xi in self._pes]
        self._unit_bytes = [formats.unit_bytes(cfg, xi) for xi in self._pes]
        super().__init__(cfg, {
            "i": In(stream.Signature(beat_layout(beat_bytes))),
            "wr": Out(stream.Signature(SparseArray.layouts(cfg)[1])),
            "channels": Out(range(cfg.c_max + 1)),
            "k_count": Out(range(cfg.k_max + 1)),
            "k_base": Out(16),
            "records": Out(16),
            "error": Out(1),
            "idle": Out(1),
        })


    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        rec_sizes, rec_names = list(self._record_bytes.values()), list(self._record_bytes)
        pe_sizes, pe_names = list(self._pe_bytes.values()), list(self._pe_bytes)
        unit_bytes = max(rec_sizes + pe_sizes + self._unit_bytes)

        phase = Signal(_Phase)
        field = Signal(range(max(len(rec_sizes), len(pe_sizes))))
        pos = Signal(range(unit_bytes))          # byte of the current field or body unit
        item = Signal(range(cfg.c_max))          # the column of the PE's body
        xi = Signal(range(len(self._pes)))       # the PE's place in self._pes
        acc = Signal(8 * unit_bytes)             # the bytes of the current unit so far
        channels = Signal.like(self.channels)
        k_count = Signal.like(self.k_count)
        k_base = Signal.like(self.k_base)
        # ``item`` is the PE's last column: a register, set from ``item + 2`` against ``C`` as
        # ``item`` steps (``item`` compared with ``C - 1``, a carry chain, led to the record's
        # end and its status).
        item_end = Signal()
        # The column's words still to come after this unit (``left``), whether the next unit
        # continues the column (``cont``: ``left`` is not 0) and is its last (``left_one``).
        dlays = [formats.directory_layout(cfg, xi) for xi in self._pes]
        left = Signal(range(max(1 << d.count_bits for d in dlays)))
        cont = Signal()
        left_one = Signal()
        waddr = Signal(range(cfg.wmem_depth))    # the PE's next word address
        # The PE header's word count, counted down as words arrive: a word beyond it, or a PE
        # ending short of it, rejects the record, so no write reaches past ``wmem_depth``.
        words_left = Signal(range(cfg.wmem_depth + 1))
        words_none = Signal()                    # words_left is 0
        words_one = Signal()                     # words_left is 1
        commit = Signal()                        # a good record's final write is in wr
        # A bad header field's ``error`` strobe and status follow the rejecting byte (or unit)
        # as always, but the parser drops to the frame's end one cycle later. In that cycle
        # (``late``) the next byte, with one byte per beat, is dropped as in DROP (it could not
        # have made a write there either); with wide beats no unit is taken in it (the field's
        # parser state has just changed, so the next unit waits for its length). That takes
        # the checks off the parser's resets.
        late = Signal()
        # The parser state of the next cycle: these four registers are assigned through it.
        phase_n, field_n, xi_n, pos_n = (Signal.like(s, name=f"{name}_next") for name, s in
                                         [("phase", phase), ("field", field), ("xi", xi),
                                          ("pos", pos)])
        m.d.comb += [phase_n.eq(phase), field_n.eq(field), xi_n.eq(xi), pos_n.eq(pos)]
        m.d.sync += [phase.eq(phase_n), field.eq(field_n), xi.eq(xi_n), pos.eq(pos_n)]

        # -- the current unit: its final byte index and its value with this byte -------------
        def final_pos(phase, field, xi):
            return Mux(phase == _Phase.RECORD, _lookup(field, [n - 1 for n in rec_sizes]),
                Mux(phase == _Phase.PE, _lookup(field, [n - 1 for n in pe_sizes]),
                    Mux(phase == _Phase.BODY, _lookup(xi, [n - 1 for n in self._unit_bytes]), 0)))

        last_pos = Signal.like(pos)
        m.d.comb += last_pos.eq(final_pos(phase, field, xi))
        wr_free = ~self.wr.valid | self.wr.ready
        writes = phase == _Phase.BODY
        value = Signal.like(acc)
        if self._beat_bytes == 1:
            # ``acc`` keeps the unit's bytes below ``pos``; those from ``pos`` up are stale
            # and read as zero, so it needs no clearing between units and is loaded every
            # cycle (a byte at ``pos`` not taken is loaded again with the next one).
            m.d.comb += value.eq(Cat(Mux(pos == j, self.i.payload.data,
                                         Mux(pos > j, acc[8 * j:8 * j + 8], 0))
                                     for j in range(unit_bytes)))
            m.d.sync += acc.eq(value)
            # Whether this byte completes its unit is a register, computed from the next
            # state in the cycle before: the compare of ``pos`` with the unit's length looked
            # up from the state was on the path to every register the parser enables.
            unit_done = Signal(init=rec_sizes[0] == 1)
            m.d.sync += unit_done.eq(pos_n == final_pos(phase_n, field_n, xi_n))
            last = self.i.payload.last

            # -- handshake: a byte completing a body unit needs room in wr -------------------
            m.d.comb += self.i.ready.eq(Mux(commit | (writes & unit_done & ~late), wr_free, 1))
            take = self.i.valid & self.i.ready
            buffered = Const(0, 1)
        else:
            # -- byte buffer: beats in, one whole unit out per cycle -------------------------
            # The unit is taken once all its bytes are buffered (pos stays 0), or cut short
            # by the frame's final byte (then ``last`` ends the record as for one byte).
            # Its length is a register, computed from the parser state of the cycle before:
            # that takes the length lookup off the buffer's shift path (the routed critical
            # path, docs/fpga.md). A unit whose state changed in the previous cycle (a new
            # field, the body after the header, the next PE) waits that one cycle.
            # ``settled`` (the state did not change) and ``writes`` are registers, set from
            # the next state, so that ``take`` is two LUTs from registers.
            settled = Signal(init=1)
            writes = Signal()
            m.d.sync += [settled.eq(Cat(phase_n, field_n, xi_n) == Cat(phase, field, xi)),
                         writes.eq(phase_n == _Phase.BODY)]
            # Every length a unit can have (a DROP unit is one byte).
            lengths = sorted({1, *rec_sizes, *pe_sizes, *self._unit_bytes})
            unit_done, last, take, buffered, head = self._unit_buffer(
                m, unit_bytes, lengths, rec_sizes[0], last_pos + 1, settled, value,
                commit, writes, wr_free)
        with m.If(self.wr.ready):
            m.d.sync += self.wr.valid.eq(0)

        # A header field is at most this wide, and ``value`` is zero above the current unit's
        # bytes: its checks need not look at the width of a weight word (a 100-bit compare is
        # a 50-cell carry chain, the netlist's longest logic path before this).
        field_value = value[:8 * max(rec_sizes + pe_sizes)]
        sizes = {**self._record_bytes, **self._pe_bytes}
        if self._beat_bytes == 1:
            checks = self._byte_checks(m, pos_n, take, channels, sizes)
        else:
            # A header field has at least ``min(sizes)`` bytes: those are the buffer's own,
            # with no mask by the unit's length in front of the checks.
            shortest = min(sizes.values())
            field_value = Cat((head if j < shortest else value)[8 * j:8 * j + 8]
                              for j in range(max(sizes.values())))

            def above(v, bound):
                """``v > bound`` as a nonzero test of the bits above the bound's and a compare
                of the bound's width (not a carry chain across the whole field)."""
                n = bound.bit_length()
                return (v[n:] != 0) | (v[:n] > bound) if n < len(v) else v > bound

            n = len(channels)
            zero = field_value == 0
            checks = {
                "channels": zero | above(field_value, cfg.c_max),
                "k_count": zero | above(field_value, cfg.k_max),
                "entries": (field_value[n:] != 0) | (field_value[:n] != channels),
                "words": above(field_value, cfg.wmem_depth),
                "zero": zero,
            }
        bad = Signal()      # this byte completes a header field or unit that is not allowed
        final = Signal()    # this byte is the record's final byte
        issue_entry = Signal()   # this byte completes a unit that writes an entry
        issue_word = Signal()    # ... that writes a word
        issue = Signal()         # ... that writes (loads ``wr``)
        m.d.comb += issue.eq(issue_entry | issue_word)

        # -- the unit's fields: its entry in the low ``entry_bytes``, its word above ---------
        # A PE's entry size is one of a few (per-coordinate lanes change ``count_bits``);
        # the choice and the ``count`` field's mask are registers, looked up from the next PE.
        def per_pe(values, name):
            """``values[xi]`` as a register, loaded from ``xi_n`` (a constant when all equal)."""
            if len(set(values)) == 1:
                return Const(values[0])
            reg = Signal(range(max(values) + 1), name=name, init=values[0])
            m.d.sync += reg.eq(_lookup(xi_n, values))
            return reg

        entry_bits = max(d.entry_bits for d in dlays)
        count_lsb = dlays[0].count_lsb
        assert all(d.count_lsb == count_lsb for d in dlays)
        count_field = value[count_lsb:count_lsb + max(d.count_bits for d in dlays)]
        count = Signal.like(left)
        m.d.comb += count.eq(count_field & per_pe([(1 << d.count_bits) - 1 for d in dlays],
                                                  "count_mask"))
        word_bits = max(formats.slot_layout(cfg, xi).word_bits for xi in self._pes)
        entry_sizes = sorted(set(self._entry_bytes))
        word_value = value[8 * entry_sizes[0]:][:word_bits]
        if len(entry_sizes) > 1:
            which = per_pe([entry_sizes.index(n) for n in self._entry_bytes], "entry_size")
            for k, n in enumerate(entry_sizes[1:], 1):
                word_value = Mux(which == k, value[8 * n:][:word_bits], word_value)

        def next_pe():
            with m.If(xi == len(self._pes) - 1):
                m.d.comb += final.eq(1)
            with m.Else():
                m.d.comb += [xi_n.eq(xi + 1), phase_n.eq(_Phase.PE), field_n.eq(0)]

        with m.If(take & ~late):
            if self._beat_bytes == 1:
                with m.If(unit_done):
                    m.d.comb += pos_n.eq(0)
                with m.Else():
                    m.d.comb += pos_n.eq(pos + 1)

            with m.Switch(phase):
                with m.Case(_Phase.RECORD):
                    with m.If(unit_done):
                        m.d.comb += field_n.eq(field + 1)
                        with m.Switch(field):
                            with m.Case(rec_names.index("channels")):
                                m.d.comb += bad.eq(checks["channels"])
                                m.d.sync += channels.eq(field_value)
                            with m.Case(rec_names.index("k_base")):
                                m.d.sync += k_base.eq(field_value)
                            with m.Case(rec_names.index("k_count")):
                                m.d.comb += bad.eq(checks["k_count"])
                                m.d.sync += k_count.eq(field_value)
                        with m.If(field == len(rec_sizes) - 1):
                            m.d.comb += [phase_n.eq(_Phase.PE), field_n.eq(0), xi_n.eq(0)]
                with m.Case(_Phase.PE):
                    with m.If(unit_done):
                        m.d.comb += field_n.eq(field + 1)
                        with m.Switch(field):
                            with m.Case(pe_names.index("entries")):
                                m.d.comb += bad.eq(checks["entries"])
                            with m.Case(pe_names.index("words")):
                                m.d.comb += bad.eq(checks["words"])
                                m.d.sync += [words_left.eq(field_value),
                                             words_none.eq(checks["zero"]),
                                             words_one.eq(field_value == 1)]
                        with m.If(field == len(pe_sizes) - 1):
                            m.d.comb += [phase_n.eq(_Phase.BODY), field_n.eq(0)]
                            m.d.sync += [item.eq(0), item_end.eq(channels == 1), cont.eq(0),
                                         left.eq(0), left_one.eq(0), waddr.eq(0)]
                with m.Case(_Phase.BODY):
                    # A unit starts a column (its entry, and its first word unless ``count``
                    # is 0) or continues one (a word). The column ends with the unit that
                    # leaves no word to come; the PE with its last column's end.
                    with m.If(unit_done):
                        has_word = cont | (count != 0)
                        col_end = Mux(cont, left_one, count <= 1)
                        # A word beyond the PE header's count, or the PE's last column ending
                        # short of it, rejects the record; that unit writes nothing.
                        over = has_word & words_none
                        short = col_end & item_end & Mux(has_word, ~words_one, ~words_none)
                        m.d.comb += [bad.eq(over | short),
                                     issue_entry.eq(~cont & ~(over | short)),
                                     issue_word.eq(has_word & ~(over | short))]
                        with m.If(cont):
                            m.d.sync += [left.eq(left - 1), cont.eq(~left_one),
                                         left_one.eq(left == 2)]
                        with m.Else():
                            m.d.sync += [left.eq(Mux(count != 0, count - 1, 0)),
                                         cont.eq(count >= 2), left_one.eq(count == 2)]
                        with m.If(has_word):
                            m.d.sync += [waddr.eq(waddr + 1), words_left.eq(words_left - 1),
                                         words_none.eq(words_one),
                                         words_one.eq(words_left == 2)]
                        with m.If(col_end):
                            m.d.sync += [item.eq(item + 1), item_end.eq(item + 2 == channels)]
                            with m.If(item_end):
                                m.d.sync += item.eq(0)
                                next_pe()

        # -- writes ------------------------------------------------------------------------
        with m.If(issue):
            m.d.sync += self.wr.valid.eq(1)
        # With wide beats the payload is loaded whenever ``wr`` is free (an issue needs it
        # free; in the other cycles ``valid`` is low): ``take`` does not reach its enables.
        # A half the unit does not write is all 0 (a synchronous clear of its registers).
        with m.If(issue if self._beat_bytes == 1 else wr_free):
            m.d.sync += [
                self.wr.payload.pe.eq(xi + self._pes.start if self._pes.start else xi),
                self.wr.payload.entry.en.eq(issue_entry),
                self.wr.payload.entry.addr.eq(Mux(issue_entry, item, 0)),
                self.wr.payload.entry.data.eq(Mux(issue_entry, value[:entry_bits], 0)),
                self.wr.payload.word.en.eq(issue_word),
                self.wr.payload.word.addr.eq(Mux(issue_word, waddr, 0)),
                self.wr.payload.word.data.eq(Mux(issue_word, word_value, 0)),
            ]

        # -- end of a record: accept, reject, or drop to the frame's end ---------------------
        m.d.sync += self.error.eq(0)
        ends = final | last
        m.d.sync += late.eq(bad & ~last)   # with ``last``, the unit ends the frame anyway
        with m.If(late):
            m.d.comb += [phase_n.eq(Mux(take & last, _Phase.RECORD, _Phase.DROP)),
                         field_n.eq(0), pos_n.eq(0), xi_n.eq(0)]
            m.d.sync += item.eq(0)
        with m.If(take & ~late):
            with m.If(phase == _Phase.DROP):
                with m.If(last):
                    m.d.comb += [phase_n.eq(_Phase.RECORD), pos_n.eq(0)]
            with m.Else():
                with m.If(bad | (last & ~final) | (final & ~last)):
                    m.d.sync += self.error.eq(1)
                with m.If(ends):
                    m.d.comb += [phase_n.eq(Mux(last, _Phase.RECORD, _Phase.DROP)),
                                 field_n.eq(0), pos_n.eq(0), xi_n.eq(0)]
                    m.d.sync += item.eq(0)
                with m.If(final & last & ~bad):
                    m.d.sync += commit.eq(1)

        # -- status: a good record counts once its final write has left -----------------------
        # The three fields read 0 while ``error`` strobes and are cleared in the cycle after:
        # the rejection (a check on the incoming byte or unit) reaches one register, not
        # thirty. No record commits in that cycle: a byte or unit after a good record is
        # taken only as its final write leaves.
        shown = [self.channels, self.k_count, self.k_base]
        held = [Signal.like(s, name=f"{n}_held")
                for n, s in zip(("channels", "k_count", "k_base"), shown)]
        m.d.comb += [s.eq(Mux(self.error, 0, h)) for s, h in zip(shown, held)]
        with m.If(commit & self.wr.ready):
            m.d.sync += [
                commit.eq(0),
                held[0].eq(channels),
                held[1].eq(k_count),
                held[2].eq(k_base),
                self.records.eq(self.records + 1),
            ]
        with m.If(self.error):          # after the commit above: the rejected record is newer
            m.d.sync += [h.eq(0) for h in held]
        m.d.comb += self.idle.eq((phase == _Phase.RECORD) & (field == 0) & (pos == 0)
                                 & ~self.wr.valid & ~buffered)
        return m

    def _byte_checks(self, m: Module, pos_n, take, channels, sizes: dict[str, int]) -> dict:
        """The header checks of the byte stream, one byte at a time: for each checked field,
        whether the field completed by this byte (at ``pos``) holds a value not allowed.

        Little-endian bytes arrive least significant first, so a compare is carried from byte
        to byte in a one-bit register, each byte against the matching byte of the bound (a
        constant, or the record's ``C`` for ``entries``): the field is above the bound when
        its byte is above the bound's, or equal and the bytes below were above. The registers
        are updated at every byte and restart at a unit's first byte (``pos`` 0), so they need
        no field or phase of their own. That replaces a compare of the whole assembled field
        (the byte at ``pos`` muxed into it, then a carry chain) with an 8-bit one on the
        incoming byte: it was the standalone loader's routed critical path."""
        cfg = self._cfg
        byte = self.i.payload.data
        # ``pos`` one-hot over a header field's bytes, registered from the next state: a copy
        # of ``pos`` of its own, next to these few gates (``pos`` itself also selects every
        # byte of ``acc``).
        n = max(sizes.values())
        at = Signal(n, init=1, name="check_pos")
        m.d.sync += at.eq(Cat(pos_n == p for p in range(n)))
        first = at[0]

        def at_pos(exprs):
            """``exprs[pos]`` (0 when ``pos`` is beyond them, in another unit)."""
            result = 0
            for p, expr in enumerate(exprs):
                result = result | Mux(at[p], expr, 0)
            return result

        def running(name, now):
            """``now(before)`` with ``before`` this field's flag over its earlier bytes."""
            flag = Signal(name=f"{name}_so_far")
            before = flag & ~first
            value = Signal(name=f"{name}_now")
            m.d.comb += value.eq(now(before))
            with m.If(take):
                m.d.sync += flag.eq(value)
            return value

        def above(name, bound):
            n = sizes[name]
            if bound >> (8 * n):
                return Const(0, 1)
            parts = [(bound >> (8 * p)) & 0xFF for p in range(n)]
            gt = at_pos([byte > k for k in parts])
            eq = at_pos([byte == k for k in parts])
            return running(f"{name}_above", lambda before: gt | (eq & before))

        def nonzero(name):
            return running(f"{name}_nonzero", lambda before: before | (byte != 0))

        n = sizes["entries"]
        c_bytes = Cat(channels, Const(0, max(0, 8 * n - len(channels))))
        differs = running("entries_differ", lambda before: before | (
            byte != at_pos([c_bytes[8 * p:8 * p + 8] for p in range(n)])))
        # The unit's bytes so far are nonzero: one register serves both ``C`` and ``k_count``.
        nz = nonzero("field")
        return {
            "channels": ~nz | above("channels", cfg.c_max),
            "k_count": ~nz | above("k_count", cfg.k_max),
            "entries": differs,
            "words": above("words", cfg.wmem_depth),
            "zero": ~nz,
        }

    def _unit_buffer(self, m: Module, unit_bytes: int, lengths: list[int], first_len: int,
                     next_len, settled, value, commit, writes, wr_free):
        """The byte buffer of a wide ``i``: returns ``(unit_done, last, take, buffered,
        head)`` for the parser (``head``: the buffer's first ``unit_bytes`` bytes, unmasked)
        and drives ``value`` (the unit's bytes, zero above its length).

        The unit's length is a register loaded with ``next_len`` (the length of the current
        parser state's unit; one of ``lengths``; ``first_len`` after reset), so it is that of
        the current unit one cycle after the state changed: no unit is taken unless
        ``settled``.

        Everything the buffer's next contents depend on, except whether a unit is taken, is
        worked out from registers: the beat is placed at ``level`` (register) into the bytes
        held, the result is shifted down by the unit's length (a one-hot register over
        ``lengths``), and ``take`` only chooses between the two (or empties the buffer after a
        frame's tail). The beat is placed whether it is accepted or not: the bytes from
        ``level`` up are not read, so they need not be zero, and ``accept`` only reaches
        ``level``. Whether the bytes held complete the unit, whether they are exactly the
        unit, and whether there is room for a beat (``i.ready``) are registers worked out with
        the next level. That takes the length compare and the shift amounts off the path from
        ``take`` (through the shifters) to the buffer."""
        B = self._beat_bytes
        cap = unit_bytes + 2 * B - 1            # room for a beat while a whole unit waits
        buf = Signal(8 * cap)                   # byte j at bits 8j; any value from `level` up
        level = Signal(range(cap + 1))
        buf_last = Signal()                     # the buffer's final byte ends the frame
        unit_len = Signal(range(unit_bytes + 1), init=first_len)
        # ``unit_len`` one-hot over ``lengths``, for the shift.
        len_is = Signal(len(lengths), init=1 << lengths.index(first_len))
        complete = Signal()                     # level >= unit_len
        exact = Signal()                        # level == unit_len
        m.d.sync += [unit_len.eq(next_len),
                     len_is.eq(Cat(next_len == n for n in lengths))]
        m.d.comb += value.eq(Cat(Mux(j < unit_len, buf[8 * j:8 * j + 8], 0)
                                 for j in range(unit_bytes)))
        # The unit ends the frame: the frame's last byte is buffered, and the unit is cut
        # short by it or ends on it.
        last = buf_last & (~complete | exact)
        take = Signal()
        m.d.comb += take.eq(settled & (complete | buf_last)
                            & Mux(commit | (writes & complete), wr_free, 1))

        payload = self.i.payload
        # The bytes of this beat: keep is a prefix, so its length is where its ones end (a
        # one-hot decode, two LUT levels), not a popcount (an adder tree of carry chains in
        # front of the level's adder: the routed critical path of 6793fe6, docs/fpga.md).
        count = Signal(range(B + 1))
        keep = payload.keep
        ends = [keep[j] & (~keep[j + 1] if j + 1 < B else 1) for j in range(B)]
        for bit in range(len(count)):
            terms = [ends[j] for j in range(B) if (j + 1) >> bit & 1]
            m.d.comb += count[bit].eq(Cat(*terms).any())
        incoming = payload.data                 # the bytes above ``count`` are never read
        room = Signal(init=1)                   # level + B <= cap
        m.d.comb += self.i.ready.eq(~buf_last & room)
        accept = self.i.valid & self.i.ready

        def byte(v, j):
            return v[8 * j:8 * j + 8]

        # The bytes held with the beat placed at ``level`` (``level + B <= cap`` when a beat
        # is accepted): byte j takes the beat's byte ``j - level`` when that is one of its
        # bytes, selected by the low bits of ``level``.
        merged, heres = [], []
        for j in range(cap):
            lo, hi = max(0, j - B + 1), min(j, cap - B)       # levels that place a byte at j
            if lo > hi:
                merged.append(byte(buf, j))
                continue
            here = Signal(name=f"beat_at_{j}", init=lo == 0)     # lo <= level <= hi
            heres.append((here, lo, hi))
            index = Signal(range(B), name=f"beat_byte_{j}")
            m.d.comb += index.eq(j - level)                 # modulo B
            merged.append(Mux(here, incoming.word_select(index, 8), byte(buf, j)))
        # ... shifted down by the unit's length.
        shifted = [Const(0, 8)] * cap
        for n, length in enumerate(lengths):
            for j in range(cap - length):
                shifted[j] = shifted[j] | Mux(len_is[n], merged[j + length], 0)
        nxt = Signal(8 * cap)
        # (A unit taken cut short is the frame's tail: it takes every byte held, the level
        # drops to 0 and no beat comes with it, so what the buffer holds then is not read.)
        m.d.comb += nxt.eq(Mux(take, Cat(shifted), Cat(merged)))
        # The next level and its flags, for each of take or not and accept or not, from
        # registers (and the beat's ``count``); ``take`` and ``accept`` only choose.
        after = Signal(signed(len(level) + 1))
        m.d.comb += after.eq(level - unit_len)
        kept = Signal.like(level)               # the bytes left if a unit is taken
        m.d.comb += kept.eq(Mux(complete, after[:len(level)], 0))
        options = []
        for base in (level, kept):
            for add in (0, count):
                lv = Signal.like(level, name=f"level_{len(options)}")
                flags = Signal(3 + len(heres), name=f"flags_{len(options)}")
                # where the next beat goes: decoded, not compared (no carry chain)
                at = [0] * (cap - B + 1)
                for p in range(cap - B + 1):
                    at[p] = lv == p
                m.d.comb += [lv.eq(base + add),
                             flags.eq(Cat(lv <= cap - B, lv >= next_len, lv == next_len,
                                          *(Cat(at[lo:hi + 1]).any() for _, lo, hi in heres)))]
                options.append(Cat(lv, flags))
        chosen = Mux(take, Mux(accept, options[3], options[2]),
                     Mux(accept, options[1], options[0]))
        m.d.sync += [buf.eq(nxt),
                     Cat(level, room, complete, exact, *(h for h, _, _ in heres)).eq(chosen)]
        with m.If(accept & payload.last):
            m.d.sync += buf_last.eq(1)
        with m.Elif(take & last):
            m.d.sync += buf_last.eq(0)
        return complete, last, take, (level != 0) | buf_last, buf[:8 * unit_bytes]


def accelerator_loader(cfg: AccelConfig, port: int = 0) -> WeightLoader:
    """The loader of weight-load port ``port`` as the accelerator uses it:
    :data:`sw.formats.WEIGHT_BEAT_BYTES` bytes per beat, over the port's PEs
    (:func:`sw.formats.port_pes`). The ``weight_loader`` component of :mod:`hw.gen` (and so of
    ``fpga.synth``) is port 0's, so a block-alone measurement is of a loader the accelerator
    holds."""
    return WeightLoader(cfg, formats.WEIGHT_BEAT_BYTES, formats.port_pes(cfg, port))
