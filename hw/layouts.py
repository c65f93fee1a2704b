"""Amaranth layouts of the packed weight format, made from the public tables of :mod:`sw.formats`.

Every width here comes from a ``(name, bits)`` table of :mod:`sw.formats`, so the RTL and the
packer cannot disagree. A header layout lists its fields in stream order from bit 0 up; as the
stream is little-endian (:data:`sw.formats.BYTE_ORDER`), byte ``j`` of a header is bits
``[8j, 8j + 8)`` of a value of its layout. A slot, a word and a directory entry are laid out
least significant field first, as in the memories.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from sw import formats
from sw.config import AccelConfig

__all__ = ["header_layout", "stream_header_layout", "record_header_layout", "pe_header_layout",
           "slot_layout", "word_layout", "directory_entry_layout"]


def header_layout(fields: tuple[tuple[str, int], ...]) -> data.StructLayout:
    """The layout of one stream header table.

    Parameters
    ----------
    fields : tuple of (str, int)
        ``(name, bits)`` in stream order, e.g. :data:`sw.formats.RECORD_HEADER_FIELDS`.

    Returns
    -------
    StructLayout
        One ``unsigned(bits)`` member per field, the first at bit 0.
    """
    return data.StructLayout({name: unsigned(bits) for name, bits in fields})


def stream_header_layout() -> data.StructLayout:
    """The stream header, :data:`sw.formats.STREAM_HEADER_FIELDS`."""
    return header_layout(formats.STREAM_HEADER_FIELDS)


def record_header_layout() -> data.StructLayout:
    """A record header, :data:`sw.formats.RECORD_HEADER_FIELDS`."""
    return header_layout(formats.RECORD_HEADER_FIELDS)


def pe_header_layout() -> data.StructLayout:
    """A per-PE header of a record, :data:`sw.formats.PE_HEADER_FIELDS`."""
    return header_layout(formats.PE_HEADER_FIELDS)


def slot_layout(cfg: AccelConfig, xi: int) -> data.StructLayout:
    """One weight slot of PE ``xi``: :attr:`sw.formats.SlotLayout.fields`.

    Parameters
    ----------
    cfg : AccelConfig
    xi : int
        PE (Winograd coordinate) index.

    Returns
    -------
    StructLayout
        ``value`` (``signed(wgt_bits)``, :data:`sw.formats.SIGNED_FIELDS`), ``k_local`` and
        ``valid`` (unsigned), from bit 0 up; ``slot_bits`` wide.
    """
    return data.StructLayout({
        name: signed(bits) if name in formats.SIGNED_FIELDS else unsigned(bits)
        for name, bits in formats.slot_layout(cfg, xi).fields})


def word_layout(cfg: AccelConfig, xi: int) -> data.ArrayLayout:
    """One weight word of PE ``xi``: ``S = cfg.word_slots(xi)`` slots, slot 0 at bit 0.

    Returns
    -------
    ArrayLayout
        ``S`` elements of :func:`slot_layout`; ``word_bits`` wide.
    """
    return data.ArrayLayout(slot_layout(cfg, xi), formats.slot_layout(cfg, xi).slots)


def directory_entry_layout(cfg: AccelConfig, xi: int) -> data.StructLayout:
    """One directory entry of PE ``xi``: :attr:`sw.formats.DirectoryLayout.fields`.

    Returns
    -------
    StructLayout
        ``start`` (word address, bit 0 up) and ``count`` (words) above it, both unsigned;
        ``entry_bits`` wide.
    """
    return data.StructLayout({name: unsigned(bits)
                              for name, bits in formats.directory_layout(cfg, xi).fields})
