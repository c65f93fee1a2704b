"""The Amaranth layouts of :mod:`hw.layouts` against the public tables of :mod:`sw.formats`."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from hw import layouts
from sw import formats
from sw.config import AccelConfig

CONFIGS = [
    AccelConfig(tile=2, lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=6, wmem_depth=12),
    AccelConfig(tile=4, lanes=tuple(xi % 3 + 1 for xi in range(36)), k_max=40, c_max=3,
                wmem_depth=300, slots_per_lane=3),
    AccelConfig(tile=2, lanes=1, wgt_bits=4, k_max=4, c_max=4, wmem_depth=8, slots_per_lane=1),
]


def members(layout: data.StructLayout) -> list[tuple[str, int, int, bool]]:
    """``(name, offset, width, signed)`` of every member, in layout order."""
    return [(name, f.offset, f.width, Shape.cast(f.shape).signed) for name, f in layout]


def table(fields, signed=()) -> list[tuple[str, int, int, bool]]:
    """What :func:`members` must give for a ``(name, bits)`` table, fields back to back."""
    offsets = np.cumsum([0] + [bits for _, bits in fields]).tolist()
    return [(name, lsb, bits, name in signed) for (name, bits), lsb in zip(fields, offsets)]


@pytest.mark.parametrize("make, fields, size", [
    (layouts.stream_header_layout, formats.STREAM_HEADER_FIELDS, 12),
    (layouts.record_header_layout, formats.RECORD_HEADER_FIELDS, 20),
    (layouts.pe_header_layout, formats.PE_HEADER_FIELDS, 8),
])
def test_header_layouts(make, fields, size):
    layout = make()
    assert members(layout) == table(fields)
    assert layout.size == 8 * size


def test_record_header_reads_the_encoded_bytes():
    """A little-endian header read as one integer is a value of its layout."""
    cfg = CONFIGS[0]
    packed = formats.pack_layer(np.ones((cfg.coords, 11, 2), dtype=np.int64), cfg)
    im = packed.passes[1]
    record = formats.encode_record(7, im, cfg)
    rec = layouts.record_header_layout()
    head = data.Const(rec, int.from_bytes(record[:rec.size // 8], "little"))
    assert (head.layer, head["pass"], head.channels, head.k_base, head.k_count) == \
        (7, 1, 2, im.k_base, im.k_count)
    pe = layouts.pe_header_layout()
    start = rec.size // 8
    pe0 = data.Const(pe, int.from_bytes(record[start:start + pe.size // 8], "little"))
    assert (pe0.entries, pe0.words) == (2, len(im.words[0]))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["t2_lanes", "t4_lanes", "t2_bytes"])
def test_slot_word_and_entry_layouts(cfg):
    for xi in range(cfg.coords):
        lay, dlay = formats.slot_layout(cfg, xi), formats.directory_layout(cfg, xi)
        slot = layouts.slot_layout(cfg, xi)
        assert members(slot) == table(lay.fields, formats.SIGNED_FIELDS)
        assert [f.offset for _, f in slot] == [lay.value_lsb, lay.k_lsb, lay.valid_lsb]
        assert slot.size == lay.slot_bits
        word = layouts.word_layout(cfg, xi)
        assert (word.elem_shape, word.length, word.size) == (slot, lay.slots, lay.word_bits)
        entry = layouts.directory_entry_layout(cfg, xi)
        assert members(entry) == table(dlay.fields)
        assert (entry.size, dict(entry)["count"].offset) == (dlay.entry_bits, dlay.count_lsb)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["t2_lanes", "t4_lanes", "t2_bytes"])
def test_layouts_decode_packed_images(cfg):
    """Every packed word and directory entry, viewed through the layouts, is what
    :func:`sw.formats.decode_slot` and :func:`sw.formats.directory_entries` say, and the valid
    slots, each read as lane ``slot // slots_per_lane`` and row ``k_row``, give back ``U``."""
    rng = np.random.default_rng(11)
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, cfg.k_max, cfg.c_max))
    U[rng.random(U.shape) < 0.5] = 0
    for im in formats.pack_layer(U, cfg).passes:
        for xi in range(cfg.coords):
            lay, word_layout = formats.slot_layout(cfg, xi), layouts.word_layout(cfg, xi)
            L, spl = lay.lanes, cfg.slots_per_lane
            seen = np.zeros((im.k_count, cfg.c_max), dtype=np.int64)
            for c, (start, count) in enumerate(im.directory[xi]):
                for word in im.words[xi][start:start + count]:
                    view = data.Const(word_layout, word)
                    for s in range(lay.slots):
                        bits = (word >> lay.slot_lsb(s)) & ((1 << lay.slot_bits) - 1)
                        valid, value, k_row = formats.decode_slot(bits, lay)
                        assert (view[s].valid, view[s].value, view[s].k_row) == \
                            (valid, value, k_row)
                        if valid:
                            # Slot s is lane s // spl's: output channel k_local = k_row·L + lane.
                            seen[view[s].k_row * L + s // spl, c] = view[s].value
            np.testing.assert_array_equal(seen, U[xi, im.k_base:im.k_base + im.k_count])
            entry = layouts.directory_entry_layout(cfg, xi)
            got = [(data.Const(entry, v).start, data.Const(entry, v).count)
                   for v in formats.directory_words(im, cfg, xi)]
            assert tuple(got) == im.directory[xi]
