"""``RegisterModel``: the transaction-level model of the register block, for the benches.

It answers every AXI4-Lite access as :class:`hw.csr.ControlRegisters` must, from the register
table in :mod:`sw.regmap`; the CSR bench checks the RTL against it.
"""

from sw.regmap import (ARRAY_CYCLES, CHANNELS, CONFIG_REGISTERS, CTRL, CTRL_AWAIT, CTRL_BITS, CTRL_CLEAR,
                       CTRL_START,
                       CYCLES, HEIGHT, ID, ID_MAGIC, KOUT, PAD, PERF_COUNTERS, PERF_REGISTERS,
                       QUANT_FIELDS, RESP_OKAY, RESP_SLVERR, RO, RW, STATUS, STATUS_BAD_CONFIG,
                       STATUS_BUSY, STATUS_DONE, STATUS_ERROR, STATUS_OVERFLOW, STATUS_REFUSED,
                       STICKY_FLAGS, VERSION, VERSION_VALUE, WGT_CHANNELS, WGT_KCOUNT, WGT_RECORDS,
                       WIDTH, config_bits, decode, quant_bits, shape_problem, weights_problem)

__all__ = ["RegisterModel"]


def _word(value: int) -> int:
    """``value`` as a 32-bit register word (two's complement for negative values)."""
    return value & 0xFFFF_FFFF


def _fits(word: int, bits: int, is_signed: bool) -> bool:
    if is_signed:
        value = word - (1 << 32) if word >> 31 else word
        return -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    return word < (1 << bits)


class RegisterModel:
    """Behavioural model of the register block: what every access answers and changes.

    The executable form of the rules of :class:`hw.csr.ControlRegisters` (see its Notes), at
    transaction level: each :meth:`write` and :meth:`read` is one complete AXI4-Lite transfer.
    The datapath side is plain attributes: ``busy`` (bool), ``run_busy`` (bool, a run alone:
    what refuses a START with AWAIT), ``inputs`` (WGT_*, CYCLES,
    ARRAY_CYCLES by register name), ``perf[field]`` (the summed counters of the PERF_*
    registers, by :data:`sw.regmap.PERF_COUNTERS` name); :meth:`pulse` stands for a
    ``done``/``error``/``overflow`` pulse and :meth:`awaited` for the arrival of an AWAIT
    run's record. ``starts`` counts accepted STARTs. The model starts
    as the hardware does after configuration; ``rst`` does not clear the quantisation memory,
    so after a reset set ``quant`` from the hardware.
    """

    def __init__(self, cfg, counter_bits: int = 32):
        self.cfg = cfg
        self.counter_bits = counter_bits
        self.busy = False
        self.run_busy = False
        self.starts = 0
        self.config = {reg: 0 for reg in CONFIG_REGISTERS}
        self.quant = [{name: 0 for name in QUANT_FIELDS} for _ in range(cfg.k_max)]
        self.flags = 0
        self.inputs = {reg: 0 for reg in (WGT_RECORDS, WGT_CHANNELS, WGT_KCOUNT, CYCLES,
                                          ARRAY_CYCLES)}
        self.perf = {name: 0 for name in PERF_COUNTERS}
        self._perf_field = {reg: name for name, reg in PERF_REGISTERS.items()}

    def pulse(self, which: str) -> None:
        """A ``done``, ``error`` or ``overflow`` pulse from the datapath."""
        self.flags |= {"done": STATUS_DONE, "error": STATUS_ERROR,
                       "overflow": STATUS_OVERFLOW}[which]

    def awaited(self) -> None:
        """The record an AWAIT run waited for is in: WGT_CHANNELS and WGT_KCOUNT must equal
        CHANNELS and KOUT, else BAD_CONFIG. (In a run, whose START checked CHANNELS >= 1, that
        is :func:`sw.regmap.weights_problem`'s check.)"""
        h, w, c, k, pad = self.shape()
        if (self.inputs[WGT_CHANNELS], self.inputs[WGT_KCOUNT]) != (c, k):
            self.flags |= STATUS_BAD_CONFIG

    def status(self) -> int:
        return self.flags | (STATUS_BUSY if self.busy else 0)

    def shape(self) -> tuple[int, int, int, int, int]:
        """``(h, w, c, k, pad)`` as the registers hold them."""
        return (self.config[HEIGHT], self.config[WIDTH], self.config[CHANNELS],
                self.config[KOUT], self.config[PAD])

    def read(self, offset: int) -> tuple[int, int]:
        """``(resp, data)`` of a read of byte ``offset``."""
        loc = decode(self.cfg, offset)
        if loc is None:
            return RESP_SLVERR, 0
        if loc.register is None:
            return RESP_OKAY, _word(self.quant[loc.index][loc.field])
        reg = loc.register
        fixed = {ID: ID_MAGIC, VERSION: VERSION_VALUE, CTRL: 0, STATUS: self.status()}
        if reg in fixed:
            return RESP_OKAY, fixed[reg]
        if reg in self._perf_field:
            return RESP_OKAY, self.perf[self._perf_field[reg]]
        return RESP_OKAY, self.config[reg] if reg in self.config else self.inputs[reg]

    def write(self, offset: int, value: int, strb: int = 0xF) -> int:
        """The response to a write of ``value`` with byte enables ``strb`` at ``offset``."""
        loc = decode(self.cfg, offset)
        if loc is None or loc.access == RO:
            return RESP_SLVERR
        mask = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)
        old = self.read(offset)[1] if loc.access == RW else 0
        word = (old & ~mask) | (_word(value) & mask)
        start = loc.register == CTRL and word & CTRL_START
        held_by = self.run_busy if word & CTRL_AWAIT else self.busy
        if (self.busy and loc.access == RW) or (start and held_by):
            self.flags |= STATUS_REFUSED
            return RESP_SLVERR
        if loc.register is None:
            bits, is_signed = quant_bits(self.cfg)[loc.field]
        elif loc.register == CTRL:
            bits, is_signed = CTRL_BITS, False
        else:
            bits, is_signed = config_bits(self.cfg)[loc.register], False
        if not _fits(word, bits, is_signed):
            return RESP_SLVERR
        if loc.register is None:
            self.quant[loc.index][loc.field] = word - (1 << 32) if is_signed and word >> 31 \
                else word
        elif loc.register != CTRL:
            self.config[loc.register] = word
        else:
            h, w, c, k, pad = self.shape()
            if word & CTRL_START and (
                    shape_problem(self.cfg, h, w, c, k, pad) is not None
                    or (not word & CTRL_AWAIT
                        and weights_problem(c, k, self.inputs[WGT_CHANNELS],
                                            self.inputs[WGT_KCOUNT]) is not None)):
                self.flags |= STATUS_BAD_CONFIG
                return RESP_SLVERR
            if word & CTRL_CLEAR:
                self.flags &= ~STICKY_FLAGS
            if word & CTRL_START:
                self.flags &= ~STATUS_DONE
                self.starts += 1
        return RESP_OKAY
