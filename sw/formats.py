"""The packed on-chip weight format: the one contract between ``sw/`` and ``hw/``.

Every number that fixes where a bit or a byte goes lives in this module, written once as a
public ``(name, bits)`` table: :data:`STREAM_HEADER_FIELDS`, :data:`RECORD_HEADER_FIELDS` and
:data:`PE_HEADER_FIELDS` for the weight-load stream's headers, :attr:`SlotLayout.fields` and
:attr:`DirectoryLayout.fields` for a slot and a directory entry of PE ``xi``. ``hw/layouts.py``
turns these tables into Amaranth layouts; the packer, the perf model and the tests use
:func:`pack_layer` and :func:`unpack_layer`. docs/formats.md draws the picture.

Summary (per PE ``xi``, ``S = cfg.word_slots(xi)`` slots per word)
-----------------------------------------------------------------
* **lane** of output channel ``k_local``: ``k_local mod L``; its accumulator **row**:
  ``k_row = k_local // L``. Every output channel belongs to one multiplier lane.
* **slot** = ``value`` (``wgt_bits``, two's complement) in bits ``[0, wgt_bits)``, then
  ``k_row`` (``k_bits``) above it, then the ``valid`` bit on top. An invalid (padding) slot
  is all zero bits.
* **word** = ``S = slots_per_lane · L`` slots, slot 0 in the least significant bits; slots
  ``[l · slots_per_lane, (l + 1) · slots_per_lane)`` are lane ``l``'s group, and the valid
  slots of a group are a prefix.
* **pass** ``p`` covers output channels ``[p*Kp, min(K, (p+1)*Kp))``; ``k_local = k - p*Kp``.
  Each pass is one memory image: its word addresses start at 0, and the weight memory is
  reloaded between passes.
* **column** ``(p, c)``: the non-zero ``U[xi, k, c]`` of the pass; lane ``l``'s ones in
  ascending ``k`` fill its group of consecutive words, ``slots_per_lane`` per word, so the
  column takes ``max_l ceil(n_l / slots_per_lane)`` words and a lane's padding only ends its
  share of the column; an all-zero column takes no word.
* **directory** per PE and pass: ``C`` entries in ascending ``c``; entry = ``start`` (word
  address, in the low ``addr_bits``) then ``count`` (words) above it. ``start`` of an empty
  column is the address where it would begin, so starts never decrease and may equal
  ``wmem_depth``.
* files: ``$readmemh`` text (one word per line, most significant digit first) and a
  little-endian binary stream for ``s_axis_wgt`` (framing in :func:`encode_stream`); every
  header field is an unsigned little-endian integer of whole bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw.config import AccelConfig

__all__ = [
    "FORMAT_VERSION", "SLOT_ORDER", "FIELD_ORDER", "BYTE_ORDER", "HEX_DIGIT_ORDER",
    "STREAM_MAGIC", "INVALID_SLOT", "SIGNED_FIELDS", "STREAM_HEADER_FIELDS",
    "RECORD_HEADER_FIELDS", "PE_HEADER_FIELDS", "FormatError", "SlotLayout", "DirectoryLayout",
    "PassImage", "PackStats", "PackedLayer", "StreamRecord", "slot_layout", "directory_layout",
    "k_bits", "column_word_count", "choose_kp", "pack_layer", "unpack_layer", "encode_slot", "decode_slot",
    "hex_text", "write_hex", "read_hex", "directory_words", "directory_entries",
    "RecordItem", "record_items", "record_writes", "encode_record", "record_frames",
    "port_pes", "record_pes", "encode_stream",
    "unit_bytes", "body_units",
    "decode_stream", "split_stream", "sha256_file",
    "layer_manifest", "build_manifest", "stream_bytes",
    "LANE_ORDER", "ActivationFrame", "activation_lanes", "beat_bytes", "pixel_beats", "activation_beats",
    "pack_activations", "unpack_activations", "WEIGHT_BEAT_BYTES",
]

#: Bumped whenever any bit or byte below moves. Version 4 sends a PE's record body as units
#: of a directory entry field and a word field each, column by column (:func:`body_units`),
#: so the loader writes a column's entry and its first word in one cycle.
FORMAT_VERSION = 4

#: Bytes per beat of the accelerator's weight stream ``s_axis_wgt`` (128-bit ``tdata``, a
#: ``tkeep`` bit per byte; only a record's final beat may be partial). The loader takes one
#: header field or body unit (:func:`unit_bytes`, 15 bytes in the default configuration) per
#: cycle, so 16 bytes per beat keep it busy (docs/loader.md).
WEIGHT_BEAT_BYTES = 16
#: Slot 0 of a word occupies its least significant bits.
SLOT_ORDER = "slot0_lsb"
#: Fields of a slot from the least significant bit up.
FIELD_ORDER = ("value", "k_row", "valid")
#: Byte order of every multi-byte field of the binary stream.
BYTE_ORDER = "little"
#: ``$readmemh`` lines are written most significant hex digit first (Verilog's reading order).
HEX_DIGIT_ORDER = "msd_first"
#: First four bytes of a weight-load stream.
STREAM_MAGIC = b"WNWS"
#: Bit pattern of a padding slot.
INVALID_SLOT = 0
#: Fields of :attr:`SlotLayout.fields` holding a two's-complement number (the others unsigned).
SIGNED_FIELDS = ("value",)

#: Stream header ``(name, bits)`` in stream order: :data:`STREAM_MAGIC` read as a
#: little-endian integer, :data:`FORMAT_VERSION`, PEs (``cfg.coords``), records that follow.
STREAM_HEADER_FIELDS = (("magic", 32), ("version", 16), ("coords", 16), ("records", 32))
#: Record header ``(name, bits)`` in stream order: layer index, pass index, ``C`` (directory
#: entries per PE), then the pass's output channels ``[k_base, k_base + k_count)``.
RECORD_HEADER_FIELDS = (("layer", 32), ("pass", 32), ("channels", 32), ("k_base", 32),
                        ("k_count", 32))
#: Per-PE header ``(name, bits)`` in stream order: directory entries (``C``), weight words.
PE_HEADER_FIELDS = (("entries", 32), ("words", 32))

_LE = "<"  # struct prefix for BYTE_ORDER
_STRUCT_CODES = {8: "B", 16: "H", 32: "I", 64: "Q"}


def _header_struct(fields: tuple[tuple[str, int], ...]) -> struct.Struct:
    """The :class:`struct.Struct` of a header table: unsigned little-endian integers."""
    return struct.Struct(_LE + "".join(_STRUCT_CODES[bits] for _, bits in fields))


_STREAM_HEADER = _header_struct(STREAM_HEADER_FIELDS)
_RECORD_HEADER = _header_struct(RECORD_HEADER_FIELDS)
_PE_HEADER = _header_struct(PE_HEADER_FIELDS)
_MAGIC = int.from_bytes(STREAM_MAGIC, BYTE_ORDER)


def stream_bytes(bits: int) -> int:
    """Bytes of an AXI-Stream ``tdata`` lane carrying one ``bits``-wide value (sign-extended)."""
    return (bits + 7) // 8


class FormatError(ValueError):
    """A weight image, a file or a stream does not follow the packed format."""


# -- activation streams (s_axis_act, m_axis_out) --------------------------------------------------

#: Value lane 0 of an activation beat occupies the least significant bytes of ``tdata``.
LANE_ORDER = "lane0_lsb"


@dataclass(frozen=True)
class ActivationFrame:
    """One ``s_axis_act`` or ``m_axis_out`` frame as bytes, beat after beat.

    Attributes
    ----------
    data : bytes
        Every beat's ``tdata``, :func:`beat_bytes` bytes per beat, least significant byte first.
    keep : bytes
        One ``tkeep`` bit per byte of ``data`` (each byte 0 or 1), as cocotbext-axi's
        ``AxiStreamFrame.tkeep`` lists them.
    """

    data: bytes
    keep: bytes


def beat_bytes(cfg: AccelConfig) -> int:
    """Bytes of one activation beat: ``stream_values · stream_bytes(act_bits)``."""
    return cfg.stream_values * stream_bytes(cfg.act_bits)


def pixel_beats(channels: int, cfg: AccelConfig) -> int:
    """Beats of one pixel of ``channels`` values: ``ceil(channels / stream_values)``."""
    return -(-channels // cfg.stream_values)


def activation_beats(height: int, width: int, channels: int, cfg: AccelConfig) -> int:
    """Beats of an ``height × width × channels`` frame: ``height · width · pixel_beats``."""
    return height * width * pixel_beats(channels, cfg)


def _lane_keep(channels: int, cfg: AccelConfig) -> np.ndarray:
    """``[pixel_beats · S]`` booleans: lane ``j`` of a pixel's beats holds a channel."""
    return np.arange(pixel_beats(channels, cfg) * cfg.stream_values) < channels


def pack_activations(x: np.ndarray, cfg: AccelConfig) -> ActivationFrame:
    """An NHWC activation array as the beats of one ``s_axis_act`` (or ``m_axis_out``) frame.

    Steps: the pixels of ``x`` (``[..., C]``, every axis but the last in raster order) one after
    the other; per pixel, ``pixel_beats(C)`` beats, beat ``b`` carrying channels
    ``b·S .. b·S + S - 1`` (``S = stream_values``), channel ``b·S + j`` in lane ``j``; lane ``j``
    is bytes ``j·B .. j·B + B - 1`` of the beat (``B = stream_bytes(act_bits)``), the value
    sign-extended to ``8·B`` bits, little-endian. The lanes past ``C`` of a pixel's last beat
    (when ``S`` does not divide ``C``) are zero bytes with ``tkeep`` 0; every other byte has
    ``tkeep`` 1. A pixel never shares a beat with the next one.

    Raises
    ------
    FormatError
        ``x`` is not an integer array with a channel axis, or holds a value outside
        ``act_bits``.
    """
    lanes, keep = activation_lanes(x, cfg)
    B = stream_bytes(cfg.act_bits)
    data = (lanes[..., None] >> (8 * np.arange(B))) & 0xFF          # beat, lane, byte
    keep_bytes = np.repeat(keep, B, axis=-1)
    return ActivationFrame(data.astype(np.uint8).tobytes(), keep_bytes.astype(np.uint8).tobytes())


def activation_lanes(x: np.ndarray, cfg: AccelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The beats of :func:`pack_activations` as values: ``[beats, stream_values]`` int64 lanes
    (zero where there is no channel) and the matching ``[beats, stream_values]`` keep flags.

    Raises
    ------
    FormatError
        As :func:`pack_activations`.
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 1 or not np.issubdtype(x.dtype, np.integer):
        raise FormatError(f"activations: expected an integer array [..., C] with C >= 1, got "
                          f"{x.dtype} of shape {x.shape}")
    lo, hi = cfg.act_range
    if x.size and (x.min() < lo or x.max() > hi):
        raise FormatError(f"activations: values {x.min()} .. {x.max()} do not fit act_bits = "
                          f"{cfg.act_bits} ([{lo}, {hi}])")
    C = x.shape[-1]
    keep = _lane_keep(C, cfg)
    lanes = np.zeros((x.size // C, keep.size), dtype=np.int64)
    lanes[:, :C] = x.reshape(-1, C)
    V = cfg.stream_values
    return lanes.reshape(-1, V), np.broadcast_to(keep, lanes.shape).reshape(-1, V)


def unpack_activations(frame: ActivationFrame, channels: int, cfg: AccelConfig) -> np.ndarray:
    """Inverse of :func:`pack_activations`: ``[pixels, channels]`` int64 values.

    Raises
    ------
    FormatError
        ``frame`` is not a whole number of pixels of ``channels`` values, or its ``tkeep`` does
        not mark exactly the lanes that hold a channel.
    """
    B = stream_bytes(cfg.act_bits)
    keep = np.repeat(_lane_keep(channels, cfg), B)
    data = np.frombuffer(bytes(frame.data), dtype=np.uint8)
    got_keep = np.frombuffer(bytes(frame.keep), dtype=np.uint8)
    if data.size % keep.size or got_keep.size != data.size:
        raise FormatError(f"activation frame: {data.size} data bytes and {got_keep.size} tkeep "
                          f"bits are not whole pixels of {channels} channels ({keep.size} bytes "
                          "each, one tkeep bit per byte)")
    pixels = data.size // keep.size
    bad = np.flatnonzero(got_keep.reshape(pixels, keep.size) != keep)
    if bad.size:
        p, byte = divmod(int(bad[0]), keep.size)
        raise FormatError(f"activation frame: pixel {p} byte {byte} has tkeep "
                          f"{got_keep[bad[0]]}, expected {int(keep[byte])} ({channels} channels "
                          f"in beats of {cfg.stream_values})")
    lanes = data.reshape(pixels, -1, B).astype(np.int64)
    values = (lanes << (8 * np.arange(B))).sum(axis=-1)
    values = np.where(values >= 1 << (8 * B - 1), values - (1 << (8 * B)), values)
    return values[:, :channels]


def k_bits(cfg: AccelConfig, xi: int) -> int:
    """Width of the accumulator row ``k_row = k_local // L`` in a slot of PE ``xi``."""
    return max(1, (cfg.accumulator_rows(xi) - 1).bit_length())


@dataclass(frozen=True)
class SlotLayout:
    """Bit positions of one PE's slot and word.

    Attributes
    ----------
    lanes : int
        Multiplier lanes of the PE (``L``).
    slots : int
        Slots per word, ``cfg.word_slots(xi) = slots_per_lane · L``.
    value_lsb, value_bits : int
        Two's-complement weight field.
    k_lsb, k_bits : int
        ``k_row`` field (accumulator row, ``k_local // L``).
    valid_lsb : int
        The valid bit.
    slot_bits, word_bits : int
        ``value_bits + k_bits + 1`` and ``slots * slot_bits``.
    word_bytes : int
        Bytes per word in the binary stream, ``ceil(word_bits / 8)``.
    hex_digits : int
        Hex digits per ``$readmemh`` line, ``ceil(word_bits / 4)``.
    """

    lanes: int
    slots: int
    value_lsb: int
    value_bits: int
    k_lsb: int
    k_bits: int
    valid_lsb: int
    slot_bits: int
    word_bits: int
    word_bytes: int
    hex_digits: int

    @property
    def fields(self) -> tuple[tuple[str, int], ...]:
        """``(name, bits)`` of a slot's fields, least significant first (:data:`FIELD_ORDER`).

        ``value`` is two's complement (:data:`SIGNED_FIELDS`); a word is :attr:`slots` such
        slots, slot 0 least significant (:data:`SLOT_ORDER`).
        """
        return tuple(zip(FIELD_ORDER, (self.value_bits, self.k_bits, 1)))

    def slot_lsb(self, slot: int) -> int:
        """Least significant bit of slot ``slot`` within a word."""
        return slot * self.slot_bits


def slot_layout(cfg: AccelConfig, xi: int) -> SlotLayout:
    """Field offsets and widths of PE ``xi``'s slots and words."""
    if not 0 <= xi < cfg.coords:
        raise FormatError(f"PE index {xi} out of range [0, {cfg.coords})")
    slots = cfg.word_slots(xi)
    kb = k_bits(cfg, xi)
    slot = cfg.wgt_bits + kb + 1
    word = slots * slot
    return SlotLayout(lanes=cfg.lanes_per_coord[xi], slots=slots, value_lsb=0,
                      value_bits=cfg.wgt_bits, k_lsb=cfg.wgt_bits,
                      k_bits=kb, valid_lsb=cfg.wgt_bits + kb, slot_bits=slot, word_bits=word,
                      word_bytes=-(-word // 8), hex_digits=-(-word // 4))


@dataclass(frozen=True)
class DirectoryLayout:
    """Bit positions of one PE's directory entry: ``start`` low, ``count`` above it.

    ``addr_bits`` holds ``[0, wmem_depth]`` (an empty column at the end of a full memory starts
    at ``wmem_depth``); ``count_bits`` holds ``ceil(ceil(k_max / L) / slots_per_lane)``, the
    longest column.
    """

    addr_bits: int
    count_bits: int
    entry_bits: int
    entry_bytes: int
    hex_digits: int

    @property
    def fields(self) -> tuple[tuple[str, int], ...]:
        """``(name, bits)`` of an entry's fields, least significant first: ``start``, ``count``."""
        return (("start", self.addr_bits), ("count", self.count_bits))

    @property
    def start_lsb(self) -> int:
        return 0

    @property
    def count_lsb(self) -> int:
        return self.addr_bits


def directory_layout(cfg: AccelConfig, xi: int) -> DirectoryLayout:
    """Field widths of PE ``xi``'s directory entries."""
    addr = max(1, cfg.wmem_depth.bit_length())
    count = max(1, (-(-cfg.accumulator_rows(xi) // cfg.slots_per_lane)).bit_length())
    entry = addr + count
    return DirectoryLayout(addr_bits=addr, count_bits=count, entry_bits=entry,
                           entry_bytes=-(-entry // 8), hex_digits=-(-entry // 4))


def encode_slot(value: int, k_row: int, layout: SlotLayout) -> int:
    """Bits of one valid slot."""
    mask = (1 << layout.value_bits) - 1
    return ((value & mask) << layout.value_lsb) | (k_row << layout.k_lsb) \
        | (1 << layout.valid_lsb)


def decode_slot(bits: int, layout: SlotLayout) -> tuple[bool, int, int]:
    """``(valid, value, k_row)`` of one slot's bits."""
    raw = (bits >> layout.value_lsb) & ((1 << layout.value_bits) - 1)
    value = raw - (1 << layout.value_bits) if raw >> (layout.value_bits - 1) else raw
    k_row = (bits >> layout.k_lsb) & ((1 << layout.k_bits) - 1)
    return bool((bits >> layout.valid_lsb) & 1), value, k_row


@dataclass(frozen=True)
class PassImage:
    """The memory contents of every PE for one pass over output channels.

    Attributes
    ----------
    index : int
        Pass number ``p``.
    k_base, k_count : int
        The pass covers output channels ``[k_base, k_base + k_count)``.
    words : tuple of tuple of int
        ``words[xi]``: PE ``xi``'s weight memory, address 0 first.
    directory : tuple of tuple of (int, int)
        ``directory[xi][c] = (start, count)``.
    """

    index: int
    k_base: int
    k_count: int
    words: tuple[tuple[int, ...], ...]
    directory: tuple[tuple[tuple[int, int], ...], ...]


@dataclass(frozen=True)
class PackStats:
    """What the packed image costs.

    Attributes
    ----------
    nnz : int
        Non-zero weights stored.
    slots, padding_slots : int
        Slots in all words, and how many of them are invalid padding.
    words_per_pe : tuple of int
        Words per PE summed over passes.
    max_words_per_pass : tuple of int
        Per PE, the largest single-pass image (what must fit ``wmem_depth``).
    weight_bits, directory_bits : int
        Bits of all words and of all directory entries.
    dense_bits : int
        ``n² · K · C · wgt_bits``, a dense Winograd-domain image.
    """

    nnz: int
    slots: int
    padding_slots: int
    words_per_pe: tuple[int, ...]
    max_words_per_pass: tuple[int, ...]
    weight_bits: int
    directory_bits: int
    dense_bits: int

    @property
    def bits_per_nonzero(self) -> float:
        """Words plus directory bits per stored non-zero (``inf`` if there is none)."""
        return (self.weight_bits + self.directory_bits) / self.nnz if self.nnz else float("inf")

    @property
    def overhead_vs_dense(self) -> float:
        """Packed bits (words + directory) divided by dense bits."""
        return (self.weight_bits + self.directory_bits) / self.dense_bits

    def to_dict(self) -> dict:
        return {
            "nnz": self.nnz, "slots": self.slots, "padding_slots": self.padding_slots,
            "words_per_pe": list(self.words_per_pe),
            "max_words_per_pass": list(self.max_words_per_pass),
            "weight_bits": self.weight_bits, "directory_bits": self.directory_bits,
            "dense_bits": self.dense_bits, "bits_per_nonzero": self.bits_per_nonzero,
            "overhead_vs_dense": self.overhead_vs_dense,
        }


@dataclass(frozen=True)
class PackedLayer:
    """One layer in the packed format (see the module docstring).

    Attributes
    ----------
    name : str
    K, C : int
        Output and input channels of the layer.
    Kp : int
        Output channels per pass.
    passes : tuple of PassImage
    stats : PackStats
    """

    name: str
    K: int
    C: int
    Kp: int
    passes: tuple[PassImage, ...]
    stats: PackStats

    @property
    def num_passes(self) -> int:
        return len(self.passes)

    @property
    def coords(self) -> int:
        return len(self.passes[0].words)

    def column_words(self) -> np.ndarray:
        """Word count of every column, int64 ``[passes, coords, C]``."""
        return np.array([[[cnt for _, cnt in d] for d in im.directory] for im in self.passes],
                        dtype=np.int64).reshape(self.num_passes, self.coords, self.C)


def _check_layer(U: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    U = np.asarray(U)
    if U.ndim != 3 or U.shape[0] != cfg.coords:
        raise FormatError(f"U has shape {U.shape}; expected [{cfg.coords}, K, C] for "
                          f"F({cfg.tile},3)")
    if not np.issubdtype(U.dtype, np.integer):
        raise FormatError(f"U has dtype {U.dtype}; expected integers (quantise first)")
    _, K, C = U.shape
    if K < 1 or C < 1:
        raise FormatError(f"U has shape {U.shape}; K and C must be at least 1")
    if C > cfg.c_max:
        raise FormatError(f"C = {C} input channels exceeds c_max = {cfg.c_max}")
    lo, hi = cfg.wgt_range
    if U.min() < lo or U.max() > hi:
        raise FormatError(f"U holds values in [{U.min()}, {U.max()}], outside the "
                          f"{cfg.wgt_bits}-bit weight range [{lo}, {hi}]")
    return U.astype(np.int64)


def column_word_count(lane_counts, slots_per_lane: int) -> int:
    """Words of a column whose lane ``l`` holds ``lane_counts[l]`` weights.

    Each lane's weights fill its own group of ``slots_per_lane`` slots per word, so the
    column is as long as its fullest lane needs: ``max_l ceil(n_l / slots_per_lane)``.
    """
    return max((-(-int(n) // slots_per_lane) for n in lane_counts), default=0)


def _pass_words(nz: np.ndarray, kp: int, cfg: AccelConfig) -> np.ndarray:
    """Words per (pass, PE) for pass size ``kp``; ``nz`` is bool ``[coords, K, C]``."""
    K = nz.shape[1]
    out = np.zeros((-(-K // kp), cfg.coords), dtype=np.int64)
    for p, k_base in enumerate(range(0, K, kp)):
        block = nz[:, k_base:k_base + kp, :].astype(np.int64)           # [coords, kp, C]
        for xi in range(cfg.coords):
            lanes = cfg.lanes_per_coord[xi]
            per_lane = np.stack([block[xi, l::lanes, :].sum(axis=0) for l in range(lanes)])
            out[p, xi] = (-(-per_lane // cfg.slots_per_lane)).max(axis=0).sum()
    return out


def choose_kp(U: np.ndarray, cfg: AccelConfig) -> int:
    """Output channels per pass: the fewest passes whose every PE image fits ``wmem_depth``.

    For ``P = ceil(K / k_max), ceil(K / k_max) + 1, ...`` passes, try the even split
    ``Kp = ceil(K / P)`` and return the first that fits, so passes are as few and as equal
    (hence as well balanced in drain and reload time) as the memory allows.

    Raises
    ------
    FormatError
        If even one output channel per pass does not fit.
    """
    U = _check_layer(U, cfg)
    nz = U != 0
    K = U.shape[1]
    tried = set()
    for passes in range(-(-K // cfg.k_max), K + 1):
        kp = -(-K // passes)
        if kp not in tried and _pass_words(nz, kp, cfg).max() <= cfg.wmem_depth:
            return kp
        tried.add(kp)
    need = int(_pass_words(nz, 1, cfg).max())
    raise FormatError(f"one output channel per pass needs {need} words in a PE, more than "
                      f"wmem_depth = {cfg.wmem_depth}; C = {U.shape[2]} is too large for "
                      "this memory")


def pack_layer(layer_U_int: np.ndarray, cfg: AccelConfig, name: str = "layer") -> PackedLayer:
    """Pack quantised Winograd-domain weights into the on-chip format: the whole layout transform.

    Steps
    -----
    1. **Pass split.** ``Kp`` = :func:`choose_kp`: ``Kp = ceil(K / P)`` for the fewest passes
       ``P`` such that every PE's words for every pass fit ``wmem_depth`` (``Kp <= k_max``).
       Pass ``p`` covers output channels ``[p*Kp, min(K, (p+1)*Kp))``, ``k_local = k - p*Kp``.
    2. **Per-PE columns, per lane.** For pass ``p``, PE ``xi`` (``L`` lanes) and input channel
       ``c`` in ascending order, lane ``l``'s share of the column is the list of
       ``(k_local // L, U[xi, k, c])`` with ``U != 0`` and ``k_local mod L = l``, ascending.
    3. **Slot packing.** Each entry becomes a slot: value in bits ``[0, wgt_bits)`` (two's
       complement), ``k_row`` in the next ``k_bits``, valid bit on top (:func:`slot_layout`).
    4. **Words.** Word ``w`` of the column holds entries ``[w · spl, (w + 1) · spl)`` of lane
       ``l``'s list in its slots ``[l · spl, (l + 1) · spl)`` (``spl = slots_per_lane``), slot 0
       least significant, padded with :data:`INVALID_SLOT`; so the valid slots of a lane's
       group are a prefix, and the column takes :func:`column_word_count` words. An all-zero
       column has no word. Columns are laid out back to back from address 0 of the pass image.
    5. **Directory.** Entry ``c`` of PE ``xi`` in pass ``p`` is ``(start, count)`` of column
       ``(p, c)``; an empty column gets ``count = 0`` and ``start`` = the next free address.

    Parameters
    ----------
    layer_U_int : ndarray of int, shape [n*n, K, C]
        Quantised Winograd-domain weights, coordinate ``xi = i*n + j``.
    cfg : AccelConfig
    name : str
        Layer name, kept for reports and error messages.

    Returns
    -------
    PackedLayer

    Raises
    ------
    FormatError
        Wrong shape or dtype, values outside ``wgt_range``, ``C > c_max``, or a memory too small.
    """
    U = _check_layer(layer_U_int, cfg)
    K, C = U.shape[1], U.shape[2]
    kp = choose_kp(U, cfg)                                                        # step 1
    layouts = [slot_layout(cfg, xi) for xi in range(cfg.coords)]
    images = []
    for p, k_base in enumerate(range(0, K, kp)):
        k_count = min(kp, K - k_base)
        all_words, all_dirs = [], []
        for xi, lay in enumerate(layouts):
            block = U[xi, k_base:k_base + k_count, :]
            words: list[int] = []
            directory: list[tuple[int, int]] = []
            lanes, spl = lay.lanes, cfg.slots_per_lane
            for c in range(C):
                shares = [[encode_slot(int(block[k, c]), int(k) // lanes, lay)   # steps 2, 3
                           for k in np.flatnonzero(block[:, c]) if k % lanes == l]
                          for l in range(lanes)]
                start = len(words)
                for w in range(column_word_count(map(len, shares), spl)):        # step 4
                    word = 0
                    for l, share in enumerate(shares):
                        for s, bits in enumerate(share[w * spl:(w + 1) * spl]):
                            word |= bits << lay.slot_lsb(l * spl + s)
                    words.append(word)
                directory.append((start, len(words) - start))                     # step 5
            all_words.append(tuple(words))
            all_dirs.append(tuple(directory))
        images.append(PassImage(p, k_base, k_count, tuple(all_words), tuple(all_dirs)))
    return PackedLayer(name, K, C, kp, tuple(images), _stats(U, images, layouts, cfg))


def _stats(U: np.ndarray, images: list[PassImage], layouts: list[SlotLayout],
           cfg: AccelConfig) -> PackStats:
    nnz = int(np.count_nonzero(U))
    words = [sum(len(im.words[xi]) for im in images) for xi in range(cfg.coords)]
    slots = sum(w * lay.slots for w, lay in zip(words, layouts))
    dir_bits = sum(directory_layout(cfg, xi).entry_bits * len(im.directory[xi])
                   for im in images for xi in range(cfg.coords))
    return PackStats(
        nnz=nnz, slots=slots, padding_slots=slots - nnz, words_per_pe=tuple(words),
        max_words_per_pass=tuple(max(len(im.words[xi]) for im in images)
                                 for xi in range(cfg.coords)),
        weight_bits=sum(w * lay.word_bits for w, lay in zip(words, layouts)),
        directory_bits=dir_bits, dense_bits=int(U.size) * cfg.wgt_bits)


def unpack_layer(packed: PackedLayer, cfg: AccelConfig) -> np.ndarray:
    """Exact inverse of :func:`pack_layer`: int64 ``U [n*n, K, C]``.

    Raises
    ------
    FormatError
        If the image breaks a rule of the format (directory out of range, a valid slot after a
        padding slot of its lane, non-ascending or out-of-pass rows, a non-zero padding slot,
        a word with no valid slot, a stored zero, a trailing word no column owns).
    """
    if packed.coords != cfg.coords:
        raise FormatError(f"layer {packed.name}: image has {packed.coords} PEs, config has "
                          f"{cfg.coords}")
    U = np.zeros((cfg.coords, packed.K, packed.C), dtype=np.int64)
    for im in packed.passes:
        for xi in range(cfg.coords):
            lay = slot_layout(cfg, xi)
            words, directory = im.words[xi], im.directory[xi]
            where = f"layer {packed.name} pass {im.index} PE {xi}"
            if len(directory) != packed.C:
                raise FormatError(f"{where}: directory has {len(directory)} entries, "
                                  f"expected C = {packed.C}")
            expect_start = 0
            for c, (start, count) in enumerate(directory):
                if start != expect_start:
                    raise FormatError(f"{where} column {c}: starts at {start}, expected "
                                      f"{expect_start} (columns are back to back)")
                expect_start = start + count
                if expect_start > len(words):
                    raise FormatError(f"{where} column {c}: words [{start}, {expect_start}) "
                                      f"past the end of {len(words)} words")
                _unpack_column(words[start:expect_start], lay, im, xi, c, U, where)
            if expect_start != len(words):
                raise FormatError(f"{where}: {len(words) - expect_start} trailing words no "
                                  "column owns")
    return U


def _unpack_column(words, lay: SlotLayout, im: PassImage, xi: int, c: int, U: np.ndarray,
                   where: str) -> None:
    slot_mask = (1 << lay.slot_bits) - 1
    lanes = lay.lanes
    spl = lay.slots // lanes
    last_row = [-1] * lanes
    ended = [False] * lanes          # the lane's share of the column has ended (padding seen)
    for w, word in enumerate(words):
        if word >> lay.word_bits:
            raise FormatError(f"{where} column {c}: word {w} wider than {lay.word_bits} bits")
        if word == 0:
            raise FormatError(f"{where} column {c}: word {w} holds no valid slot")
        for pos in range(lay.slots):
            lane = pos // spl
            bits = (word >> lay.slot_lsb(pos)) & slot_mask
            valid, value, k_row = decode_slot(bits, lay)
            if not valid:
                # Padding only ends a lane's share of the column, and is all zero bits.
                if bits != INVALID_SLOT:
                    raise FormatError(f"{where} column {c}: bad padding in word {w} slot "
                                      f"{pos}")
                ended[lane] = True
                continue
            if ended[lane]:
                raise FormatError(f"{where} column {c}: valid slot after padding of lane "
                                  f"{lane} in word {w}")
            k_local = k_row * lanes + lane
            if k_row <= last_row[lane] or k_local >= im.k_count or value == 0:
                raise FormatError(f"{where} column {c}: slot (k_local={k_local}, "
                                  f"value={value}) breaks ascending order, the pass "
                                  "range, or holds a zero")
            last_row[lane] = k_row
            U[xi, im.k_base + k_local, c] = value


# -- $readmemh files ------------------------------------------------------------------------------

def hex_text(values, digits: int, comment: str = "") -> str:
    """``$readmemh`` text: an optional ``//`` comment line, then one value per line."""
    lines = [f"// {comment}"] if comment else []
    lines += [f"{v:0{digits}x}" for v in values]
    return "\n".join(lines) + "\n"


def write_hex(path: str | Path, values, digits: int, comment: str = "") -> None:
    """Write :func:`hex_text` to ``path``."""
    Path(path).write_text(hex_text(values, digits, comment))


def read_hex(path: str | Path, bits: int) -> list[int]:
    """Read a ``$readmemh`` file written by :func:`write_hex` (``//`` comments allowed).

    Raises
    ------
    FormatError
        A line that is not hex, or a value wider than ``bits``.
    """
    out = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("//", 1)[0].strip()
        if not text:
            continue
        try:
            value = int(text, 16)
        except ValueError:
            raise FormatError(f"{path}:{lineno}: {text!r} is not a hex word") from None
        if value >> bits:
            raise FormatError(f"{path}:{lineno}: {text} is wider than {bits} bits")
        out.append(value)
    return out


def directory_words(image: PassImage, cfg: AccelConfig, xi: int) -> list[int]:
    """PE ``xi``'s directory entries of one pass as integers (start low, count above)."""
    lay = directory_layout(cfg, xi)
    return [start | (count << lay.count_lsb) for start, count in image.directory[xi]]


def directory_entries(values, cfg: AccelConfig, xi: int) -> tuple[tuple[int, int], ...]:
    """Inverse of :func:`directory_words`."""
    lay = directory_layout(cfg, xi)
    mask = (1 << lay.addr_bits) - 1
    return tuple((v & mask, v >> lay.count_lsb) for v in values)


# -- weight-load stream ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamRecord:
    """One (layer, pass) record of the weight-load stream."""

    layer: int
    image: PassImage


@dataclass(frozen=True)
class RecordItem:
    """One directory entry or weight word of a record, as a loader must write it.

    ``end`` is the byte offset in :func:`encode_record`'s bytes just past the body unit that
    holds the item (:func:`body_units`: a column's entry and its first word share a unit, so
    they share ``end``); ``memory`` is ``"directory"`` (``addr`` = input channel) or
    ``"words"`` (``addr`` = word index).
    """

    end: int
    pe: int
    memory: str
    addr: int
    value: int


def unit_bytes(cfg: AccelConfig, xi: int) -> int:
    """Bytes of one unit of PE ``xi``'s record body: its directory entry field
    (``directory_layout(cfg, xi).entry_bytes``), then its word field (``word_bytes``)."""
    return directory_layout(cfg, xi).entry_bytes + slot_layout(cfg, xi).word_bytes


def body_units(image: PassImage, cfg: AccelConfig,
               xi: int) -> list[tuple[tuple[int, int] | None, tuple[int, int] | None]]:
    """PE ``xi``'s record body, one ``(entry, word)`` pair per unit, in stream order.

    Column ``c`` (entry ``(start, count)``) takes ``max(1, count)`` units: the first carries
    ``entry = (c, entry bits)`` and, unless the column is empty, ``word = (start, word)``;
    each further one ``entry = None`` and the column's next word ``(j, word)``. An empty
    column's unit has ``word = None``. In the bytes (:func:`encode_record`) a ``None`` field
    is all zero bytes, and a unit's entry field comes first.

    Raises
    ------
    FormatError
        The columns are not back to back from word 0 over all of the PE's words (the only
        layout :func:`pack_layer` makes, and the one the loader's word addresses assume).
    """
    words, directory = image.words[xi], image.directory[xi]
    where = f"pass {image.index} PE {xi}"
    units: list[tuple[tuple[int, int] | None, tuple[int, int] | None]] = []
    expect = 0
    for c, ((start, count), entry) in enumerate(zip(directory,
                                                     directory_words(image, cfg, xi))):
        if start != expect or start + count > len(words):
            raise FormatError(f"{where} column {c}: words [{start}, {start + count}) are not "
                              f"the next of {len(words)} (columns are back to back)")
        expect = start + count
        if count == 0:
            units.append(((c, entry), None))
        for j in range(start, start + count):
            units.append(((c, entry) if j == start else None, (j, words[j])))
    if expect != len(words):
        raise FormatError(f"{where}: {len(words) - expect} trailing words no column owns")
    return units


def port_pes(cfg: AccelConfig, port: int) -> range:
    """The PEs whose share of every record weight-load port ``port`` carries.

    The ``cfg.weight_ports`` ports split the PEs into contiguous runs in index order, the
    first ``coords mod weight_ports`` of them one PE longer: 0..7 and 8..15 for two ports at
    F(2,3).
    """
    ports = cfg.weight_ports
    if not 0 <= port < ports:
        raise ValueError(f"weight-load port {port} of {ports}")
    size, extra = divmod(cfg.coords, ports)
    lo = port * size + min(port, extra)
    return range(lo, lo + size + (port < extra))


def record_pes(cfg: AccelConfig, pes: range | None = None) -> range:
    """The PEs a record holds: ``pes`` (a run of PE indices, checked), or all of them."""
    if pes is None:
        return range(cfg.coords)
    if pes.step != 1 or not 0 <= pes.start < pes.stop <= cfg.coords:
        raise ValueError(f"PEs {pes} are not a run of the config's {cfg.coords}")
    return pes


def record_items(image: PassImage, cfg: AccelConfig,
                 pes: range | None = None) -> list[RecordItem]:
    """Every item of ``image``'s record (of PEs ``pes``, all by default; see
    :func:`encode_record`) in stream order, with where its unit ends in the bytes (a column's
    entry before its first word)."""
    pos = _RECORD_HEADER.size
    items = []
    for xi in record_pes(cfg, pes):
        pos += _PE_HEADER.size
        size = unit_bytes(cfg, xi)
        for entry, word in body_units(image, cfg, xi):
            pos += size
            if entry is not None:
                items.append(RecordItem(pos, xi, "directory", *entry))
            if word is not None:
                items.append(RecordItem(pos, xi, "words", *word))
    return items


def record_writes(image: PassImage, cfg: AccelConfig, received: int | None = None,
                  pes: range | None = None) -> list[RecordItem]:
    """The memory writes a weight loader makes for ``image``'s record, in stream order.

    Parameters
    ----------
    image : PassImage
        The pass whose record (:func:`encode_record`) is sent.
    cfg : AccelConfig
    received : int, optional
        Bytes of the record that arrived before the loader stopped taking it (a truncated or
        rejected frame). ``None``: the whole record.
    pes : range, optional
        The PEs the record holds (a weight-load port's share, :func:`port_pes`); all of them
        by default.

    Returns
    -------
    list of RecordItem
        Per PE ``xi`` in order, per column ``c``: directory entry ``c``
        (``memory="directory"``, ``addr=c``), then the column's words (``memory="words"``,
        ``addr=j``, ``j`` counting from 0 over the PE's columns); of these, exactly the items
        whose units all arrived (``end <= received``). Items with the same ``end`` share a
        unit, and a loader writes them in one cycle.
    """
    items = record_items(image, cfg, pes)
    return items if received is None else [it for it in items if it.end <= received]


def encode_record(layer: int, image: PassImage, cfg: AccelConfig,
                  pes: range | None = None) -> bytes:
    """The bytes of one (layer, pass) record of the weight-load stream.

    This is the "per record" part of the framing in :func:`encode_stream`, and
    :class:`hw.loader.WeightLoader` parses it. With ``pes`` (a run of PE indices), the record
    header followed by those PEs' blocks only: a weight-load port's share of the record
    (:func:`record_frames`).

    Raises
    ------
    FormatError
        A PE's columns are not back to back (:func:`body_units`).
    """
    C = len(image.directory[0])
    out = bytearray(_RECORD_HEADER.pack(layer, image.index, C, image.k_base, image.k_count))
    for xi in record_pes(cfg, pes):
        eb, wb = directory_layout(cfg, xi).entry_bytes, slot_layout(cfg, xi).word_bytes
        try:
            units = body_units(image, cfg, xi)
        except FormatError as err:
            raise FormatError(f"record layer {layer} {err}") from None
        out += _PE_HEADER.pack(C, len(image.words[xi]))
        for entry, word in units:
            out += (0 if entry is None else entry[1]).to_bytes(eb, BYTE_ORDER)
            out += (0 if word is None else word[1]).to_bytes(wb, BYTE_ORDER)
    return bytes(out)


def record_frames(layer: int, image: PassImage, cfg: AccelConfig) -> tuple[bytes, ...]:
    """One (layer, pass) record as the host sends it: one frame per weight-load port.

    Frame ``p`` is :func:`encode_record` of the PEs :func:`port_pes` gives port ``p``: the
    record header, then those PEs' blocks. With one port it is the whole record. The frames
    go out at once, one on each port, and the accelerator counts the record when every port
    has taken its frame (docs/loader.md).
    """
    return tuple(encode_record(layer, image, cfg, port_pes(cfg, p))
                 for p in range(cfg.weight_ports))


def encode_stream(packed_layers, cfg: AccelConfig) -> bytes:
    """The byte stream for ``s_axis_wgt``: every pass of every layer, in order.

    Framing (all integers little-endian, :data:`BYTE_ORDER`; the headers are
    :data:`STREAM_HEADER_FIELDS`, :data:`RECORD_HEADER_FIELDS` and :data:`PE_HEADER_FIELDS`)::

        stream header   magic "WNWS" (4 B) | version u16 | coords u16 | records u32
        per record      layer index u32 | pass u32 | C u32 | k_base u32 | k_count u32
          per PE xi     entries u32 (= C) | words u32
                        units × (entry field (directory_layout(cfg, xi).entry_bytes B)
                                 | word field (slot_layout(cfg, xi).word_bytes B))

    The units are :func:`body_units`: column by column, ``max(1, count)`` units per column,
    the column's entry in its first unit's entry field and its words in the word fields; the
    other fields are zero. Each word and entry is its integer value in ``word_bytes`` /
    ``entry_bytes`` little-endian bytes; the bits above ``word_bits`` / ``entry_bits`` are
    zero. A record is :func:`encode_record`.
    """
    records = [(li, im) for li, pl in enumerate(packed_layers) for im in pl.passes]
    out = bytearray(_STREAM_HEADER.pack(_MAGIC, FORMAT_VERSION, cfg.coords, len(records)))
    for li, im in records:
        out += encode_record(li, im, cfg)
    return bytes(out)


def split_stream(data: bytes, cfg: AccelConfig,
                 source: str = "stream") -> list[tuple[int, int, bytes]]:
    """``(layer index, pass index, record bytes)`` of every record of a weight-load stream.

    The stream is validated exactly as by :func:`decode_stream`. Each record's bytes are its
    slice of ``data``, which is what :func:`encode_record` makes of the decoded record (the
    stream without its header is their concatenation), ready to be sent as one ``s_axis_wgt``
    frame.

    Raises
    ------
    FormatError
        Whatever :func:`decode_stream` rejects, naming ``source``.
    """
    out = []
    pos = _STREAM_HEADER.size
    for rec in decode_stream(data, cfg, source):
        size = len(encode_record(rec.layer, rec.image, cfg))
        out.append((rec.layer, rec.image.index, bytes(data[pos:pos + size])))
        pos += size
    return out


def decode_stream(data: bytes, cfg: AccelConfig, source: str = "stream") -> list[StreamRecord]:
    """Inverse of :func:`encode_stream`.

    Raises
    ------
    FormatError
        Bad magic or version, a coordinate count that does not match ``cfg``, truncation,
        trailing bytes, or a record body that breaks :func:`body_units` (columns not back to
        back, a nonzero field where the format has none, a word count unlike the header's).
    """
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise FormatError(f"{source}: truncated at byte {pos} (needs {n} more)")
        pos += n
        return data[pos - n:pos]

    magic, version, coords, count = _STREAM_HEADER.unpack(take(_STREAM_HEADER.size))
    if magic != _MAGIC or version != FORMAT_VERSION:
        text = magic.to_bytes(len(STREAM_MAGIC), BYTE_ORDER)
        raise FormatError(f"{source}: not a winnow weight stream version {FORMAT_VERSION} "
                          f"(magic {text!r}, version {version})")
    if coords != cfg.coords:
        raise FormatError(f"{source}: stream has {coords} PEs, config has {cfg.coords}")
    records = []
    for _ in range(count):
        li, p, C, k_base, k_count = _RECORD_HEADER.unpack(take(_RECORD_HEADER.size))
        words, dirs = [], []
        for xi in range(cfg.coords):
            slay, dlay = slot_layout(cfg, xi), directory_layout(cfg, xi)
            n_ent, n_words = _PE_HEADER.unpack(take(_PE_HEADER.size))
            if n_ent != C:
                raise FormatError(f"{source}: record layer {li} pass {p} PE {xi} has {n_ent} "
                                  f"directory entries, expected C = {C}")
            where = f"{source}: record layer {li} pass {p} PE {xi}"
            pe_words: list[int] = []
            entries: list[tuple[int, int]] = []

            def unit() -> tuple[int, int]:
                return (int.from_bytes(take(dlay.entry_bytes), BYTE_ORDER),
                        int.from_bytes(take(slay.word_bytes), BYTE_ORDER))

            for c in range(n_ent):
                entry, word = unit()
                (start, n_col), = directory_entries([entry], cfg, xi)
                if start != len(pe_words):
                    raise FormatError(f"{where} column {c}: starts at {start}, expected "
                                      f"{len(pe_words)} (columns are back to back)")
                entries.append((start, n_col))
                if n_col == 0 and word:
                    raise FormatError(f"{where} column {c}: the empty column's word field "
                                      "is not zero")
                if n_col:
                    pe_words.append(word)
                for _ in range(n_col - 1):
                    entry, word = unit()
                    if entry:
                        raise FormatError(f"{where} column {c}: entry field of word "
                                          f"{len(pe_words)} is not zero")
                    pe_words.append(word)
            if len(pe_words) != n_words:
                raise FormatError(f"{where}: its columns hold {len(pe_words)} words, the "
                                  f"header says {n_words}")
            dirs.append(tuple(entries))
            words.append(tuple(pe_words))
        records.append(StreamRecord(li, PassImage(p, k_base, k_count, tuple(words),
                                                  tuple(dirs))))
    if pos != len(data):
        raise FormatError(f"{source}: {len(data) - pos} trailing bytes after {count} records")
    return records


# -- manifest --------------------------------------------------------------------------------------

def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def layer_manifest(packed: PackedLayer, U: np.ndarray, cfg: AccelConfig, *,
                   quant: dict | None = None, source_shape=None,
                   files: dict | None = None) -> dict:
    """The manifest entry of one layer.

    ``quant`` carries the quantisation parameters (lists and floats, JSON-ready); ``files``
    maps ``"p{pass}.pe{xi}"`` / ``"p{pass}.pe{xi}.dir"`` keys to file names.
    """
    nz = np.asarray(U) != 0
    return {
        "name": packed.name,
        "K": packed.K, "C": packed.C,
        "source_shape": list(source_shape) if source_shape is not None else None,
        "Kp": packed.Kp, "passes": packed.num_passes,
        "pass_k": [[im.k_base, im.k_count] for im in packed.passes],
        "density": float(nz.mean()),
        "coord_density": [float(x) for x in nz.reshape(cfg.coords, -1).mean(axis=1)],
        "words_per_pe": [[len(im.words[xi]) for xi in range(cfg.coords)]
                         for im in packed.passes],
        "stats": packed.stats.to_dict(),
        "quant": quant or {},
        "files": files or {},
    }


def build_manifest(layers: list[dict], cfg: AccelConfig, outdir: str | Path,
                   file_names) -> dict:
    """The whole manifest: config, format constants, layers, and a SHA-256 per output file."""
    outdir = Path(outdir)
    return {
        "format_version": FORMAT_VERSION,
        "format": {"slot_order": SLOT_ORDER, "field_order": list(FIELD_ORDER),
                   "byte_order": BYTE_ORDER, "hex_digit_order": HEX_DIGIT_ORDER,
                   "stream_magic": STREAM_MAGIC.decode(),
                   "k_bits": [k_bits(cfg, xi) for xi in range(cfg.coords)],
                   "slot_bits": [slot_layout(cfg, xi).slot_bits for xi in range(cfg.coords)],
                   "word_bits": [slot_layout(cfg, xi).word_bits for xi in range(cfg.coords)],
                   "dir_entry_bits": [directory_layout(cfg, xi).entry_bits
                                      for xi in range(cfg.coords)]},
        "config": cfg.to_dict(),
        "layers": layers,
        "checksums": {name: sha256_file(outdir / name) for name in sorted(file_names)},
    }
