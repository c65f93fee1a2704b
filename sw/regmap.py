"""The AXI4-Lite register map of the accelerator: one table for the RTL, the host and the C header.

Plain Python with no HDL import, so host code (:mod:`sw.driver`) and header generation can use it
without Amaranth. :class:`hw.csr.ControlRegisters` builds its address decoder from this module,
and refuses to elaborate if the two ever disagree.

Every register is 32 bits wide at a byte offset that is a multiple of 4; the low two address
bits select nothing (byte lanes come from ``wstrb``). Two kinds of location exist:

* the fixed registers of :data:`REGISTERS`, among them the performance counters of
  :data:`PERF_REGISTERS` (one per field of :data:`PERF_COUNTERS`, each summed over every PE);
* the quantisation memory, ``quant_offset(k, field)`` for ``k < cfg.k_max`` and ``field`` in
  :data:`QUANT_FIELDS`.

Any other offset below ``2 ** addr_bits(cfg)`` is unmapped and answers SLVERR.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Register", "Location", "REGISTERS", "RO", "RW", "WO",
    "ID", "VERSION", "CTRL", "STATUS", "HEIGHT", "WIDTH", "CHANNELS", "KOUT", "PAD", "RELU",
    "WGT_RECORDS", "WGT_CHANNELS", "WGT_KCOUNT", "CYCLES", "ARRAY_CYCLES", "PERF_BUSY",
    "PERF_MACS", "PERF_EMPTY_SLOTS", "PERF_STALLS", "PERF_ZEROS_SKIPPED", "CONFIG_REGISTERS",
    "ID_MAGIC", "VERSION_VALUE", "CTRL_START", "CTRL_CLEAR", "CTRL_AWAIT", "CTRL_BITS",
    "STATUS_BUSY", "STATUS_DONE",
    "STATUS_ERROR", "STATUS_OVERFLOW", "STATUS_REFUSED", "STATUS_BAD_CONFIG", "STICKY_FLAGS",
    "RELU_WINOGRAD", "RELU_SPATIAL", "PERF_COUNTERS", "PERF_REGISTERS", "QUANT_BASE",
    "QUANT_STRIDE", "QUANT_FIELDS", "UNMAPPED_EXAMPLE", "RESP_OKAY", "RESP_SLVERR",
    "perf_counter_offset", "quant_offset", "addr_bits", "decode", "config_bits", "quant_bits",
    "shape_problem", "weights_problem", "c_defines",
]

#: Access kinds. ``RW`` registers are configuration: writes to them are refused while busy.
RO, RW, WO = "RO", "RW", "W"

#: AXI response codes used by the slave.
RESP_OKAY, RESP_SLVERR = 0, 2


@dataclass(frozen=True)
class Register:
    """One fixed 32-bit register: ``name``, byte ``offset``, ``access`` (RO/RW/W) and ``doc``."""

    name: str
    offset: int
    access: str
    doc: str


@dataclass(frozen=True)
class Location:
    """What :func:`decode` finds at an offset.

    ``name`` is printable (``"WIDTH"``, ``"PERF_MACS"``, ``"QUANT5.bias"``); ``access`` is RO,
    RW or W; ``register`` is the fixed :class:`Register`, or ``None`` for a quantisation field
    (``index`` = output channel ``k``, ``field`` = the quantisation field's name).
    """

    name: str
    access: str
    register: Register | None = None
    index: int | None = None
    field: str | None = None


ID = Register("ID", 0x000, RO, "Magic number 0x574E4E57 ('WNNW'): the accelerator is there.")
VERSION = Register("VERSION", 0x004, RO, "Version of this register map (3).")
CTRL = Register("CTRL", 0x008, WO,
                "bit0 START: begin a run (one-cycle pulse); refused while busy (REFUSED) or "
                "with an invalid shape (BAD_CONFIG). bit1 CLEAR: clear the sticky flags ERROR, "
                "OVERFLOW, REFUSED and BAD_CONFIG. bit2 AWAIT (with START): the run takes the "
                "input at once, and its array waits for the next weight record committed "
                "after this START (send it after the write's response); refused only while a "
                "run is on; the record is checked when it is in, and one not for CHANNELS and "
                "KOUT sets BAD_CONFIG and is not used (the run waits for the next). Other bits "
                "must be 0. Reads 0.")
STATUS = Register("STATUS", 0x00C, RO,
                  "bit0 BUSY, bit1 DONE (set when a run ends, cleared by START), bit2 ERROR, "
                  "bit3 OVERFLOW, bit4 REFUSED (a configuration write or START while busy), "
                  "bit5 BAD_CONFIG (START with an invalid shape, or an awaited record not for "
                  "CHANNELS and KOUT); bits 2-5 are sticky until "
                  "CTRL.CLEAR.")
HEIGHT = Register("HEIGHT", 0x010, RW, "Input height H (16 bits, >= 1).")
WIDTH = Register("WIDTH", 0x014, RW, "Input width W (1 .. w_max).")
CHANNELS = Register("CHANNELS", 0x018, RW, "Input channels C (1 .. c_max).")
KOUT = Register("KOUT", 0x01C, RW, "Output channels K of this pass (1 .. k_max).")
PAD = Register("PAD", 0x020, RW, "Zero padding of the 3x3 convolution, 0 or 1.")
RELU = Register("RELU", 0x024, RW,
                "bit0: ReLU on the Winograd-domain input V; bit1: ReLU on the spatial output.")
WGT_RECORDS = Register("WGT_RECORDS", 0x030, RO,
                       "Weight records accepted by the loader since reset (16 bits, wraps).")
WGT_CHANNELS = Register("WGT_CHANNELS", 0x034, RO, "Input channels C of the loaded weights.")
WGT_KCOUNT = Register("WGT_KCOUNT", 0x038, RO, "Output channels K of the loaded weights.")
CYCLES = Register("CYCLES", 0x040, RO, "Cycles of the current or last run.")
ARRAY_CYCLES = Register("ARRAY_CYCLES", 0x044, RO,
                        "Cycles the sparse array was not idle (free-running, wraps).")
PERF_BUSY = Register("PERF_BUSY", 0x048, RO,
                     "Sum over the PEs of the cycles at least one lane took a pair "
                     "(free-running, wraps).")
PERF_MACS = Register("PERF_MACS", 0x04C, RO,
                     "Sum over the PEs of the multiplications (free-running, wraps).")
PERF_EMPTY_SLOTS = Register("PERF_EMPTY_SLOTS", 0x050, RO,
                            "Sum over the PEs of the lanes without a multiplication in their "
                            "busy cycles (free-running, wraps).")
PERF_STALLS = Register("PERF_STALLS", 0x054, RO,
                       "Sum over the PEs of the cycles a walker held a column but could not "
                       "read, or an output beat waited (free-running, wraps).")
PERF_ZEROS_SKIPPED = Register("PERF_ZEROS_SKIPPED", 0x058, RO,
                              "Sum over the PEs of the zero activations dropped "
                              "(free-running, wraps).")

#: Every fixed register, in address order.
REGISTERS = (ID, VERSION, CTRL, STATUS, HEIGHT, WIDTH, CHANNELS, KOUT, PAD, RELU,
             WGT_RECORDS, WGT_CHANNELS, WGT_KCOUNT, CYCLES, ARRAY_CYCLES,
             PERF_BUSY, PERF_MACS, PERF_EMPTY_SLOTS, PERF_STALLS, PERF_ZEROS_SKIPPED)
#: The layer-shape configuration, refused while busy.
CONFIG_REGISTERS = tuple(reg for reg in REGISTERS if reg.access == RW)

ID_MAGIC = 0x574E4E57
#: 2 since the per-PE counter blocks (at 0x100 + xi * 0x20 in version 1) became the five
#: summed PERF_* registers; 3 since CTRL.AWAIT (a run whose weight record loads after START).
VERSION_VALUE = 3

CTRL_START = 1 << 0
CTRL_CLEAR = 1 << 1
CTRL_AWAIT = 1 << 2
#: The width of CTRL's field: a write with a bit above it is refused (SLVERR).
CTRL_BITS = (CTRL_START | CTRL_CLEAR | CTRL_AWAIT).bit_length()

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_ERROR = 1 << 2
STATUS_OVERFLOW = 1 << 3
STATUS_REFUSED = 1 << 4
STATUS_BAD_CONFIG = 1 << 5
#: The flags CTRL.CLEAR clears.
STICKY_FLAGS = STATUS_ERROR | STATUS_OVERFLOW | STATUS_REFUSED | STATUS_BAD_CONFIG

RELU_WINOGRAD = 1 << 0
RELU_SPATIAL = 1 << 1

#: Bit masks by their C name (without the ``WINNOW_`` prefix).
_BITS = {
    "CTRL_START": CTRL_START, "CTRL_CLEAR": CTRL_CLEAR, "CTRL_AWAIT": CTRL_AWAIT,
    "STATUS_BUSY": STATUS_BUSY, "STATUS_DONE": STATUS_DONE, "STATUS_ERROR": STATUS_ERROR,
    "STATUS_OVERFLOW": STATUS_OVERFLOW, "STATUS_REFUSED": STATUS_REFUSED,
    "STATUS_BAD_CONFIG": STATUS_BAD_CONFIG, "STICKY_FLAGS": STICKY_FLAGS,
    "RELU_WINOGRAD": RELU_WINOGRAD, "RELU_SPATIAL": RELU_SPATIAL,
}

#: The performance counters, in the field order of :func:`hw.pe.perf_layout`, which builds its
#: layout from this tuple (:class:`hw.csr.ControlRegisters` checks at build time that the two
#: agree; importing the layout here would pull Amaranth into the host side). Every PE counts
#: each of them; the registers show each field summed over all PEs.
PERF_COUNTERS = ("busy", "macs", "empty_slots", "stalls", "zeros_skipped")
#: The register of each counter, by field name, in :data:`PERF_COUNTERS` order.
PERF_REGISTERS = dict(zip(PERF_COUNTERS, (PERF_BUSY, PERF_MACS, PERF_EMPTY_SLOTS, PERF_STALLS,
                                          PERF_ZEROS_SKIPPED)))

#: Quantisation entry ``k`` starts at ``QUANT_BASE + k * QUANT_STRIDE``, one word per field.
QUANT_BASE = 0x1000
QUANT_STRIDE = 0x10
#: Field order of a quantisation entry (offsets 0, 4, 8); the names are the fields of the
#: output transform's requantisation (signed bias, signed multiplier, unsigned shift).
QUANT_FIELDS = ("bias", "multiplier", "shift")

#: An offset that is unmapped in every configuration (between the fixed registers and the
#: quantisation memory), for tests of the SLVERR answer.
UNMAPPED_EXAMPLE = QUANT_BASE - 4

assert all(reg.name == f"PERF_{field.upper()}" for field, reg in PERF_REGISTERS.items())
assert REGISTERS[-1].offset < UNMAPPED_EXAMPLE and len(QUANT_FIELDS) * 4 <= QUANT_STRIDE


def _field_index(kind: str, field: str, fields: tuple[str, ...]) -> int:
    if field not in fields:
        raise ValueError(f"{kind} field {field!r} is unknown; choose one of {', '.join(fields)}")
    return fields.index(field)


def _index(kind: str, value, limit: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (
            limit is not None and value >= limit):
        bound = f"in [0, {limit})" if limit is not None else ">= 0"
        raise ValueError(f"{kind} {value!r} is out of range; expected an integer {bound}")
    return value


def perf_counter_offset(field: str) -> int:
    """Byte offset of the performance counter ``field`` (summed over the PEs)."""
    _field_index("performance counter", field, PERF_COUNTERS)
    return PERF_REGISTERS[field].offset


def quant_offset(k: int, field: str, cfg=None) -> int:
    """Byte offset of quantisation ``field`` of output channel ``k`` (``k < cfg.k_max``)."""
    _index("quantisation entry", k, cfg.k_max if cfg is not None else None)
    return QUANT_BASE + k * QUANT_STRIDE + 4 * _field_index("quantisation", field, QUANT_FIELDS)


def addr_bits(cfg) -> int:
    """Width of ``s_axi_awaddr``/``s_axi_araddr``: enough for the last quantisation entry."""
    return (QUANT_BASE + cfg.k_max * QUANT_STRIDE - 1).bit_length()


def decode(cfg, offset: int) -> Location | None:
    """The register at byte ``offset`` (low two bits ignored), or ``None`` if it is unmapped."""
    word = offset & ~3
    for reg in REGISTERS:
        if reg.offset == word:
            return Location(reg.name, reg.access, register=reg)
    if QUANT_BASE <= word < QUANT_BASE + cfg.k_max * QUANT_STRIDE:
        k, field = divmod(word - QUANT_BASE, QUANT_STRIDE)
        if field // 4 < len(QUANT_FIELDS):
            name = QUANT_FIELDS[field // 4]
            return Location(f"QUANT{k}.{name}", RW, index=k, field=name)
    return None


def config_bits(cfg) -> dict[Register, int]:
    """Width of the unsigned field behind each configuration register (wider values are
    refused with SLVERR)."""
    return {HEIGHT: 16, WIDTH: cfg.w_max.bit_length(), CHANNELS: cfg.c_max.bit_length(),
            KOUT: cfg.k_max.bit_length(), PAD: 1, RELU: 2}


def quant_bits(cfg) -> dict[str, tuple[int, bool]]:
    """``(bits, signed)`` of each quantisation field, in :data:`QUANT_FIELDS` order."""
    return {"bias": (cfg.bias_bits, True), "multiplier": (cfg.mult_bits, True),
            "shift": (cfg.shift_bits, False)}


def shape_problem(cfg, h: int, w: int, c: int, k: int, pad: int) -> str | None:
    """Why START would be refused for this layer shape (BAD_CONFIG), or ``None`` if it is valid.

    The hardware accepts ``1 <= C <= c_max``, ``1 <= K <= k_max``, ``1 <= W <= w_max``,
    ``1 <= H < 2**16``, ``pad`` in {0, 1} and a padded input of at least 3x3.
    """
    if pad not in (0, 1):
        return f"PAD={pad} is not supported (0 or 1)"
    for name, value, hi in (("CHANNELS", c, cfg.c_max), ("KOUT", k, cfg.k_max),
                            ("WIDTH", w, cfg.w_max), ("HEIGHT", h, (1 << 16) - 1)):
        if not 1 <= value <= hi:
            return f"{name}={value} is out of range; this accelerator takes 1..{hi}"
    if w + 2 * pad < 3 or h + 2 * pad < 3:
        return (f"input {h}x{w} with pad {pad} is smaller than the 3x3 kernel "
                f"(H + 2*pad and W + 2*pad must be at least 3)")
    return None


def weights_problem(c: int, k: int, wgt_channels: int, wgt_k_count: int) -> str | None:
    """Why START would be refused for the loaded weights (BAD_CONFIG), or ``None``.

    START needs a weight record for this pass: WGT_CHANNELS must equal CHANNELS and WGT_KCOUNT
    must equal KOUT. Both read 0 after a reset and after a rejected record, so a START with no
    good record loaded since then is refused too.
    """
    if wgt_channels == 0:
        return ("no weight record is loaded (WGT_CHANNELS=0: none since reset, or the last "
                "one was rejected)")
    if wgt_channels != c:
        return (f"CHANNELS={c} but the loaded weight record is for {wgt_channels} input "
                f"channels (WGT_CHANNELS)")
    if wgt_k_count != k:
        return (f"KOUT={k} but the loaded weight record holds {wgt_k_count} output channels "
                f"(WGT_KCOUNT)")
    return None


def _hex(value: int) -> str:
    return f"0x{value:03X}u"


def c_defines(cfg) -> list[str]:
    """``#define`` lines of the register map for ``cfg``, for the C header.

    Fixed registers become ``WINNOW_REG_<NAME>``; bits ``WINNOW_CTRL_*``, ``WINNOW_STATUS_*``,
    ``WINNOW_RELU_*`` (the performance counters are fixed registers too, ``WINNOW_REG_PERF_*``);
    the quantisation memory becomes the function-like macro ``WINNOW_REG_QUANT(k, field)``
    with field indices ``WINNOW_QUANT_<FIELD>``.
    """
    lines = ["/* register map (AXI4-Lite, 32-bit registers, byte offsets) */",
             f"#define WINNOW_AXI_ADDR_BITS {addr_bits(cfg)}",
             f"#define WINNOW_REGMAP_VERSION {VERSION_VALUE}",
             f"#define WINNOW_ID_MAGIC 0x{ID_MAGIC:08X}u"]
    lines += [f"#define WINNOW_REG_{reg.name} {_hex(reg.offset)}" for reg in REGISTERS]
    lines += [f"#define WINNOW_{name} 0x{mask:02X}u" for name, mask in _BITS.items()]
    lines += [f"#define WINNOW_QUANT_BASE 0x{QUANT_BASE:04X}u",
              f"#define WINNOW_QUANT_STRIDE {_hex(QUANT_STRIDE)}"]
    lines += [f"#define WINNOW_QUANT_{name.upper()} {i}" for i, name in enumerate(QUANT_FIELDS)]
    lines.append("#define WINNOW_REG_QUANT(k, field) "
                 "(WINNOW_QUANT_BASE + (k) * WINNOW_QUANT_STRIDE + (field) * 4u)")
    return lines
