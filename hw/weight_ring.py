"""``WeightRing``: places each weight record in the PEs' memories beside the pass that runs.

The loader writes a record as if it owned the memories: weight words from address 0, directory
entries at their channel. This block, between the loader and the array, makes the weight memory
a ring and the directory two banks, so the next pass's record can load while the current pass
runs (issue 13: the loads were half of a two-pass layer's time):

- a record's weight words go to ``base + j`` (modulo ``wmem_depth``), where ``base`` is where
  the previous good record ended; its directory entries' ``start`` fields move by the same
  ``base``, so the PEs read absolute addresses and need no adder;
- its directory entries go to the bank the running pass does not read; each good record flips
  the bank, and a START makes the PEs read the bank of the last good record;
- while a pass runs, a beat that would land on it waits (back-pressure to the loader) until
  the run ends: one whose weight word has an offset in its record at or beyond
  ``wmem_depth`` minus the running pass's words, or whose directory entry is of the running
  pass's bank (a second record loaded during one run). A beat may carry an entry and a word
  of one PE; either half holds it. Beats leave in order, so a record held at its first entry
  holds all its words too.

So the host may send the next pass's record as soon as the current pass has started. It loads
at full speed when the two passes' words fit the memory together (the larger of the two
records' per-PE word counts, summed, at most ``wmem_depth``), and otherwise finishes after the
run, as it would have without the ring.

With several weight-load ports (``AccelConfig.weight_ports``) the ring has an input and an
output per port, each placing its own loader's writes (a share of the PEs,
``sw.formats.port_pes``) with the same ``base`` and bank; a record's span is the highest word
over all of them.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.array import SparseArray
from hw.component import ConfiguredComponent, port_member
from hw.pe import directory_bank_bit
from hw.stream_buffer import StreamBuffer
from sw import formats
from sw.config import AccelConfig, require_config

__all__ = ["WeightRing"]


class WeightRing(ConfiguredComponent):
    """Relocates the loader's writes into a ring of weight words and two directory banks.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``wmem_depth`` (the ring's size), ``c_max`` (the directory bank bit, from
        :func:`hw.pe.directory_bank_bit`) and the directory entry layout of :mod:`sw.formats`
        (its ``start`` field, the low ``addr_bits`` of ``data``).

    Members
    -------
    i, i1 : In(stream.Signature(SparseArray.layouts(cfg)[1]))
        The loader's writes (:attr:`hw.loader.WeightLoader.wr`), each beat a directory entry
        (``entry``), a weight word (``word``) or both, of PE ``pe``, a beat with ``valid``
        setting at least one ``en``: addresses as in the record (directory entry ``c`` at
        ``c``, weight word ``j`` at ``j``). ``ready`` is a register. ``i1``, ... (with
        ``weight_ports`` 2 to 4) are the other ports' loaders: their beats are placed alike, with
        the same ``base`` and bank, independently of ``i``'s.
    o, o1 : Out(stream.Signature(SparseArray.layouts(cfg)[1], always_ready=True))
        The same beats, every port's placed: the word at ``(base + j) mod wmem_depth``, the
        entry at ``c + bank · 2**directory_bank_bit(cfg)`` with ``start`` moved to
        ``(start + base) mod wmem_depth``; ``pe`` and the ``en`` bits unchanged. A half whose
        ``en`` is clear is moved all the same (it writes nothing). ``valid`` and the payload
        are registers. ``o1`` carries ``i1``'s beats.
    committed : In(1)
        One-cycle strobe: the loader accepted a record (its final write has entered ``i``).
        The ring then advances ``base`` past the record's words (its span: the highest
        ``word.addr + 1`` of its beats with ``word.en``, over all ports) and flips the load
        bank.
    rejected : In(1)
        One-cycle strobe: the loader rejected a record. The next record starts at the same
        ``base`` and bank (the rejected one's writes are overwritten; the loader reports no
        good record, so no START can use them).
    start : In(1)
        One-cycle strobe: a run starts (with the last committed record).
    running : In(1)
        A run is in progress: a beat whose word (``word.en``) or entry (``entry.en``) would
        land on its words or its directory bank waits.
    bank : Out(1)
        The directory bank the PEs read: that of the last record committed before the last
        START (0 after reset).
    busy : Out(1)
        A beat is held.

    Notes
    -----
    ``committed`` must come in a cycle after the one in which the record's final write entered
    ``i``, and before the next record's first write does (the loader's status changes one
    cycle after the final write left it, and a new record's first write follows a header of
    several cycles). A record is at least one beat per PE (each carries a directory entry),
    more beats than the ring holds (two), so a second record sent during one run, held at its
    first entry, cannot commit (and flip the load bank back) before the run ends. A write of a
    rejected record still waiting in the loader when ``rejected`` strobes counts in the next
    record's span: ring words are then left unused, nothing is misplaced. Latency: a beat
    leaves on ``o`` two cycles after it was taken on ``i`` unless it waits.
    """

    #: Cycles from a beat taken on ``i`` to it on ``o`` (when it does not wait).
    LATENCY = 2

    def __init__(self, cfg: AccelConfig):
        require_config(cfg)
        self._layout = SparseArray.layouts(cfg)[1]
        ports = {}
        for p in range(cfg.weight_ports):
            ports[port_member("i", p)] = In(stream.Signature(self._layout))
            ports[port_member("o", p)] = Out(stream.Signature(self._layout, always_ready=True))
        super().__init__(cfg, {
            **ports,
            "committed": In(1),
            "rejected": In(1),
            "start": In(1),
            "running": In(1),
            "bank": Out(1),
            "busy": Out(1),
        })

    def ports(self) -> list[tuple]:
        """``(i, o)`` of every weight-load port, in port order."""
        return [(getattr(self, port_member("i", p)), getattr(self, port_member("o", p)))
                for p in range(self._cfg.weight_ports)]

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        depth = cfg.wmem_depth
        start_bits = formats.directory_layout(cfg, 0).addr_bits
        bank_bit = directory_bank_bit(cfg)

        def ring(total):
            """``total mod depth`` for ``total < 2 · depth``."""
            if depth & (depth - 1) == 0:
                return total[:max(1, (depth - 1).bit_length())]
            return Mux(total >= depth, total - depth, total)

        base = Signal(range(depth))          # where the record being loaded starts
        last_span = Signal(range(depth + 1))  # the words of the last committed record
        load_bank = Signal()                 # the directory bank the loader writes
        room = Signal(range(depth + 1))      # running: word offsets below this are free

        # -- in: relocate both halves, and remember how far the record reaches ---------------
        # A half whose `en` is clear is moved too: it writes nothing, and no multiplexer on
        # `en` lies in front of the buffer.
        helds, reaches = [], []
        for p, (port_i, _) in enumerate(self.ports()):
            wr = port_i.payload
            held = StreamBuffer(data.StructLayout({"wr": self._layout,
                                                   "offset": unsigned(len(wr.word.addr))}))
            m.submodules[port_member("held", p)] = held
            helds.append(held)
            placed = held.i.payload.wr
            m.d.comb += [
                held.i.valid.eq(port_i.valid),
                port_i.ready.eq(held.i.ready),
                held.i.payload.offset.eq(wr.word.addr),
                placed.pe.eq(wr.pe),
                placed.word.en.eq(wr.word.en),
                placed.word.addr.eq(ring(wr.word.addr + base)),
                placed.word.data.eq(wr.word.data),
                placed.entry.en.eq(wr.entry.en),
                placed.entry.addr.eq(wr.entry.addr | (load_bank << bank_bit)),
                placed.entry.data.eq(wr.entry.data),
                placed.entry.data[:start_bits].eq(ring(wr.entry.data[:start_bits] + base)),
            ]
            reaches.append((port_i.valid & port_i.ready & wr.word.en, wr.word.addr))
        # Each port's reach (its highest word + 1 so far) in a register of its own, so a
        # port's path is one compare however many ports there are (four compares in series
        # were the routed critical path with four ports, docs/fpga.md); the record's span,
        # the farthest reach, is only read when the record commits.
        reaches_r = []
        for p, (took, addr) in enumerate(reaches):
            reach = Signal(range(depth + 1), name=port_member("reach", p))
            reaches_r.append(reach)
            with m.If(took & (addr >= reach)):
                m.d.sync += reach.eq(addr + 1)
        farthest = reaches_r
        while len(farthest) > 1:
            pairs = [Mux(a > b, a, b) for a, b in zip(farthest[::2], farthest[1::2])]
            farthest = pairs + farthest[len(pairs) * 2:]
        span = Signal(range(depth + 1))      # the record's words so far (its highest word + 1)
        m.d.comb += span.eq(farthest[0])
        with m.If(self.committed):
            m.d.sync += [base.eq(ring(base + span)), last_span.eq(span),
                         load_bank.eq(~load_bank)]
        with m.If(self.committed | self.rejected):
            m.d.sync += [reach.eq(0) for reach in reaches_r]
        with m.If(self.start):
            m.d.sync += [self.bank.eq(~load_bank), room.eq(depth - last_span)]

        # -- out: wait while either half would land on the running pass ----------------------
        busy = []
        for p, (held, (_, port_o)) in enumerate(zip(helds, self.ports())):
            head = held.o.payload
            on_run = Signal(name=port_member("on_run", p))
            m.d.comb += [
                on_run.eq(self.running
                          & ((head.wr.word.en & (head.offset >= room))
                             | (head.wr.entry.en & (head.wr.entry.addr[bank_bit] == self.bank)))),
                held.o.ready.eq(~on_run),
            ]
            m.d.sync += port_o.valid.eq(held.o.valid & ~on_run)
            with m.If(held.o.valid & ~on_run):
                m.d.sync += port_o.payload.eq(head.wr)
            busy += [held.busy, port_o.valid]
        m.d.comb += self.busy.eq(reduce(operator.or_, busy))
        return m
