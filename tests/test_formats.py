"""The packed weight format: exact round trips, hand-computed words, files and pass split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sw.config import AccelConfig
from sw import formats

SEED = 20261123


def sparse_U(cfg: AccelConfig, K: int, C: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
    U[rng.random(U.shape) >= density] = 0
    return U


CASES = [
    # tile, lanes, wgt_bits, K, C, density
    (2, 4, 8, 16, 8, 0.3),
    (2, 1, 8, 5, 3, 1.0),
    (2, 3, 4, 33, 7, 0.1),
    (2, (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8), 8, 20, 9, 0.5),
    (4, 4, 8, 12, 5, 0.2),
    (4, 2, 6, 9, 4, 0.0),
    (4, tuple(range(1, 37)), 8, 40, 3, 0.35),
    (2, 8, 16, 64, 16, 0.05),
]


def reference_column(col: np.ndarray, L: int, spl: int, wgt_bits: int, k_bits: int) -> list:
    """The words of one column by the v3 rules, written without :mod:`sw.formats`.

    ``col[k_local]`` is the column; output channel ``k_local`` goes to lane ``k_local % L``
    as row ``k_local // L``; word ``w`` holds entries ``[w*spl, (w+1)*spl)`` of each lane's
    ascending list in slots ``[l*spl, (l+1)*spl)``.
    """
    slot_bits = wgt_bits + k_bits + 1
    shares = [[(k // L, int(col[k])) for k in range(len(col)) if col[k] and k % L == lane]
              for lane in range(L)]
    words = []
    for w in range(max((-(-len(sh) // spl) for sh in shares), default=0)):
        word = 0
        for pos in range(L * spl):
            share = shares[pos // spl]
            idx = w * spl + pos % spl
            if idx < len(share):
                row, value = share[idx]
                bits = (1 << (wgt_bits + k_bits)) | (row << wgt_bits) \
                    | (value % (1 << wgt_bits))
                word |= bits << (pos * slot_bits)
        words.append(word)
    return words


@pytest.mark.parametrize("slots_per_lane", [1, 2, 3])
@pytest.mark.parametrize("tile,lanes,wgt_bits,K,C,density", CASES)
def test_pack_unpack_round_trip(tile, lanes, wgt_bits, K, C, density, slots_per_lane):
    cfg = AccelConfig(tile=tile, lanes=lanes, wgt_bits=wgt_bits, k_max=64, c_max=32,
                      slots_per_lane=slots_per_lane, wmem_depth=1024)
    U = sparse_U(cfg, K, C, density, SEED + K * C)
    packed = formats.pack_layer(U, cfg, name="round")
    back = formats.unpack_layer(packed, cfg)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, U)
    s = packed.stats
    nnz = int(np.count_nonzero(U))
    assert s.nnz == nnz
    # S = slots_per_lane * L slots per word, computed here from the lanes, not from the config.
    lanes_t = [lanes if isinstance(lanes, int) else lanes[xi] for xi in range(cfg.coords)]
    slots_t = [slots_per_lane * L for L in lanes_t]
    assert [formats.slot_layout(cfg, xi).slots for xi in range(cfg.coords)] == slots_t
    assert [formats.slot_layout(cfg, xi).lanes for xi in range(cfg.coords)] == lanes_t
    # k_row holds rows 0 .. ceil(64 / L) - 1.
    kb_t = [max(1, (-(-64 // L) - 1).bit_length()) for L in lanes_t]
    assert [formats.k_bits(cfg, xi) for xi in range(cfg.coords)] == kb_t
    # Words of a column = max over lanes l of ceil(n_l / slots_per_lane), n_l the non-zeros
    # of U[xi, k, c] with k mod L = l: computed independently from U.
    col_words = np.zeros((cfg.coords, C), dtype=np.int64)
    for xi, L in enumerate(lanes_t):
        lane_nnz = np.stack([(U[xi, lane::L] != 0).sum(axis=0) for lane in range(L)])
        col_words[xi] = (-(-lane_nnz // slots_per_lane)).max(axis=0)
        for c in range(C):
            assert formats.column_word_count(lane_nnz[:, c], slots_per_lane) == col_words[xi, c]
    np.testing.assert_array_equal(packed.column_words()[0], col_words)
    expect_words = [int(col_words[xi].sum()) for xi in range(cfg.coords)]
    assert list(s.words_per_pe) == expect_words
    assert s.slots == sum(w * sl for w, sl in zip(expect_words, slots_t))
    assert s.padding_slots == s.slots - nnz
    assert s.dense_bits == cfg.coords * K * C * wgt_bits
    assert packed.num_passes == 1 and packed.Kp == K
    # Every column, bit for bit, against the reference packer above.
    im = packed.passes[0]
    for xi, L in enumerate(lanes_t):
        for c, (start, count) in enumerate(im.directory[xi]):
            assert list(im.words[xi][start:start + count]) == \
                reference_column(U[xi, :, c], L, slots_per_lane, wgt_bits, kb_t[xi])


def test_column_word_count():
    # The fullest lane sets the length: ceil(n_l / slots_per_lane), maximised over lanes.
    assert formats.column_word_count([3, 1], 2) == 2
    assert formats.column_word_count([1, 4, 0], 3) == 2
    assert formats.column_word_count([0, 5], 1) == 5
    assert formats.column_word_count([2, 2, 2, 2], 2) == 1
    assert formats.column_word_count([0, 0], 2) == 0
    assert formats.column_word_count([], 2) == 0
    assert formats.column_word_count(np.array([7, 0, 2]), 4) == 2


def test_slot_layout_fields():
    # Default slots_per_lane = 2: PE 0 has L = 4 lanes and S = 8 slots, PE 15 L = 2 and S = 4.
    # k_row holds ceil(256 / L) rows: 64 rows (6 bits) at L = 4, 128 rows (7 bits) at L = 2.
    cfg = AccelConfig(wgt_bits=8, k_max=256, lanes=(4,) * 8 + (2,) * 8)
    assert cfg.slots_per_lane == 2
    lay = formats.slot_layout(cfg, 0)
    assert (lay.lanes, lay.slots) == (4, 8)
    assert (lay.value_lsb, lay.value_bits, lay.k_lsb, lay.k_bits, lay.valid_lsb) == \
        (0, 8, 8, 6, 14)
    assert (lay.slot_bits, lay.word_bits, lay.word_bytes, lay.hex_digits) == (15, 120, 15, 30)
    assert [lay.slot_lsb(i) for i in (0, 1, 7)] == [0, 15, 105]
    lay15 = formats.slot_layout(cfg, 15)
    assert (lay15.lanes, lay15.slots, lay15.k_bits, lay15.slot_bits, lay15.word_bits) == \
        (2, 4, 7, 16, 64)
    # slots_per_lane = 1: one slot per lane.
    one = AccelConfig(wgt_bits=8, k_max=256, lanes=(4,) * 8 + (2,) * 8, slots_per_lane=1)
    lay1 = formats.slot_layout(one, 0)
    assert (lay1.lanes, lay1.slots) == (4, 4)
    assert (lay1.slot_bits, lay1.word_bits, lay1.word_bytes, lay1.hex_digits) == (15, 60, 8, 15)
    assert formats.slot_layout(one, 15).word_bits == 32
    # k_bits = bits for ceil(k_max / L) - 1, at least 1.
    assert formats.k_bits(AccelConfig(k_max=1), 0) == 1                   # 1 row
    assert formats.k_bits(AccelConfig(k_max=4, lanes=4), 0) == 1          # 1 row
    assert formats.k_bits(AccelConfig(k_max=9, lanes=4), 0) == 2          # 3 rows
    assert formats.k_bits(AccelConfig(k_max=257), 0) == 7                 # 65 rows
    assert formats.k_bits(AccelConfig(k_max=257, lanes=1), 0) == 9        # 257 rows
    assert formats.k_bits(AccelConfig(k_max=256, lanes=1), 0) == 8        # 256 rows
    assert [formats.k_bits(AccelConfig(k_max=64, lanes=(1, 2, 3, 64) * 4), xi)
            for xi in range(4)] == [6, 5, 5, 1]                            # 64, 32, 22, 1
    # count_bits = bit_length(ceil(ceil(k_max / L) / slots_per_lane)): L = 4, 64 rows, 2 per
    # word -> 32 -> 6 bits; 1 per word -> 64 -> 7 bits.
    d = formats.directory_layout(AccelConfig(wmem_depth=4096, k_max=256, lanes=4), 0)
    assert (d.addr_bits, d.count_bits, d.entry_bits, d.count_lsb) == (13, 6, 19, 13)
    d = formats.directory_layout(AccelConfig(wmem_depth=4096, k_max=256, lanes=4,
                                             slots_per_lane=1), 0)
    assert (d.addr_bits, d.count_bits, d.entry_bits, d.count_lsb) == (13, 7, 20, 13)
    with pytest.raises(formats.FormatError, match="PE index 16 out of range"):
        formats.slot_layout(cfg, 16)


def test_one_word_by_hand():
    """wgt_bits 4, k_max 8, L = 3 lanes (ceil(8/3) = 3 rows, k_bits 2), slots_per_lane 1:
    S = 3 slots of 7 bits per word, slot = valid<<6 | k_row<<4 | (value & 0xF); slot l is
    lane l's, which holds output channels k with k mod 3 = l."""
    cfg = AccelConfig(wgt_bits=4, k_max=8, lanes=3, slots_per_lane=1, wmem_depth=4096)
    U = np.zeros((16, 8, 2), dtype=np.int64)
    U[5, 1, 0], U[5, 4, 0], U[5, 6, 0], U[5, 7, 0] = -3, 7, 1, -8
    U[5, 2, 1] = 2
    packed = formats.pack_layer(U, cfg)
    lay = formats.slot_layout(cfg, 5)
    assert (lay.lanes, lay.slots, lay.k_bits, lay.slot_bits, lay.word_bits) == (3, 3, 2, 7, 21)
    # Column 0: lane 0 gets k 6 (row 2); lane 1 gets k 1, 4, 7 (rows 0, 1, 2); lane 2 nothing.
    # Lane 1 is the fullest, 3 entries at one per word: 3 words.
    slot_k6 = (1 << 6) | (2 << 4) | 0x1        # 0x61
    slot_k1 = (1 << 6) | (0 << 4) | 0xD        # 0x4D, value -3 -> 0b1101
    slot_k4 = (1 << 6) | (1 << 4) | 0x7        # 0x57
    slot_k7 = (1 << 6) | (2 << 4) | 0x8        # 0x68, value -8
    # Column 1: k 2 is lane 2, row 0, in slot 2.
    slot_k2 = (1 << 6) | (0 << 4) | 0x2        # 0x42
    words = packed.passes[0].words[5]
    assert words == (slot_k6 | slot_k1 << 7, slot_k4 << 7, slot_k7 << 7, slot_k2 << 14)
    assert words == (0x26E1, 0x2B80, 0x3400, 0x108000)
    # Words 1 and 2 have padding in slot 0 (lane 0 is done) before lane 1's valid slot.
    assert formats.hex_text(words, lay.hex_digits) == "0026e1\n002b80\n003400\n108000\n"
    stream = formats.encode_stream([packed], cfg)
    # PE 5's body, a unit per word (format version 4): column 0's entry (start 0, count 3:
    # 3 << 13) with its first word, two units of a zero entry field and a word, then column 1's
    # entry (start 3, count 1) with its only word.
    assert bytes([0x00, 0x60, 0xE1, 0x26, 0, 0, 0, 0x80, 0x2B, 0, 0, 0, 0, 0x34, 0,
                  0x03, 0x20, 0, 0x80, 0x10]) in stream
    assert packed.passes[0].directory[5] == ((0, 3), (3, 1))
    assert packed.passes[0].words[0] == ()
    assert packed.passes[0].directory[0] == ((0, 0), (0, 0))
    # Directory entry: start in the low addr_bits (wmem_depth 4096 -> 13), count above it;
    # count_bits = bit_length(ceil(3 rows / 1)) = 2.
    assert formats.directory_layout(cfg, 5).count_bits == 2
    assert formats.directory_words(packed.passes[0], cfg, 5) == [3 << 13, 3 | 1 << 13]
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), U)


def test_word_of_two_slots_per_lane_by_hand():
    """wgt_bits 4, k_max 16, L = 2 lanes (8 rows, k_bits 3), slots_per_lane 2: S = 4 slots
    per word, slot = valid<<7 | k_row<<4 | (value & 0xF), word = 4 slots of 8 bits, slot 0
    lowest; slots 0-1 are lane 0's group (even k), slots 2-3 lane 1's (odd k)."""
    cfg = AccelConfig(wgt_bits=4, k_max=16, lanes=2, slots_per_lane=2, wmem_depth=4096)
    U = np.zeros((16, 8, 3), dtype=np.int64)
    U[5, [0, 1, 2, 4], 0] = [5, -3, 7, 1]            # column 0: lane 0 k 0, 2, 4; lane 1 k 1
    U[5, 7, 2] = -8                                  # column 1 empty; column 2: lane 1, k 7
    packed = formats.pack_layer(U, cfg)
    lay = formats.slot_layout(cfg, 5)
    assert (lay.lanes, lay.slots, lay.k_bits, lay.slot_bits, lay.word_bits) == (2, 4, 3, 8, 32)
    assert (lay.word_bytes, lay.hex_digits) == (4, 8)
    # Lane 0: 0x85 (k 0 = row 0, 5), 0x97 (k 2 = row 1, 7), 0xA1 (k 4 = row 2, 1).
    # Lane 1: 0x8D (k 1 = row 0, -3). Column 2: 0xB8 (k 7 = lane 1 row 3, -8).
    # Word 0: lane 0's first two in slots 0-1, lane 1's one in slot 2, padding in slot 3.
    # Word 1: lane 0's third in slot 0; lane 1 has nothing left.
    # Column 2's word: lane 0's group all padding, then lane 1's slot 2.
    words = packed.passes[0].words[5]
    assert words == (0x008D9785, 0x000000A1, 0x00B80000)
    assert formats.hex_text(words, lay.hex_digits) == "008d9785\n000000a1\n00b80000\n"
    # Directory: column 1 is empty and starts where column 2 begins.
    assert packed.passes[0].directory[5] == ((0, 2), (2, 0), (2, 1))
    assert packed.passes[0].directory[0] == ((0, 0), (0, 0), (0, 0))
    # count_bits = bit_length(ceil(ceil(16 / 2) / 2) = 4) = 3; addr_bits 13.
    dlay = formats.directory_layout(cfg, 5)
    assert (dlay.addr_bits, dlay.count_bits, dlay.entry_bits, dlay.entry_bytes) == (13, 3, 16, 2)
    entries = formats.directory_words(packed.passes[0], cfg, 5)
    assert entries == [2 << 13, 2, 2 | 1 << 13] == [0x4000, 0x0002, 0x2002]
    assert formats.hex_text(entries, dlay.hex_digits) == "4000\n0002\n2002\n"
    # PE 5's part of the record: entries 3, words 3, then its units little-endian (an entry
    # field and a word field each): column 0's entry with word 0, a zero entry field with
    # word 1, empty column 1's entry with a zero word field, column 2's entry with word 2.
    stream = formats.encode_stream([packed], cfg)
    assert bytes([3, 0, 0, 0, 3, 0, 0, 0,
                  0x00, 0x40, 0x85, 0x97, 0x8D, 0x00,
                  0x00, 0x00, 0xA1, 0, 0, 0,
                  0x02, 0x00, 0, 0, 0, 0,
                  0x02, 0x20, 0, 0, 0xB8, 0]) in stream
    assert formats.body_units(packed.passes[0], cfg, 5) == [
        ((0, 0x4000), (0, 0x008D9785)), (None, (1, 0x000000A1)), ((1, 0x0002), None),
        ((2, 0x2002), (2, 0x00B80000))]
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), U)
    # count_bits follows both ceilings: L = 2, slots_per_lane 2 and k_max 4, 9, 12, 13, 16,
    # 17 -> 2, 5, 6, 7, 8, 9 rows -> 1, 3, 3, 4, 4, 5 words at most -> 1, 2, 2, 3, 3, 3 bits.
    assert [formats.directory_layout(AccelConfig(k_max=k, lanes=2), 0).count_bits
            for k in (4, 9, 12, 13, 16, 17)] == [1, 2, 2, 3, 3, 3]
    # The same column at one slot per lane (S = 2, slot 0 lane 0, slot 1 lane 1): lane 0's
    # three entries take three words; count_bits = bit_length(8) = 4.
    one = AccelConfig(wgt_bits=4, k_max=16, lanes=2, slots_per_lane=1, wmem_depth=4096)
    packed1 = formats.pack_layer(U, one)
    assert packed1.passes[0].words[5] == (0x8D85, 0x0097, 0x00A1, 0xB800)
    assert packed1.passes[0].directory[5] == ((0, 3), (3, 0), (3, 1))
    assert formats.directory_layout(one, 5).count_bits == 4
    # The lanes split k_local, not k: in a later pass k_local restarts at 0. With one word of
    # memory, K = 5 needs two passes (one pass: lane 0 holds k 0, 2, 4, 2 words), Kp = 3.
    tiny = AccelConfig(wgt_bits=4, k_max=16, lanes=2, slots_per_lane=2, wmem_depth=1)
    V = np.zeros((16, 5, 1), dtype=np.int64)
    V[5, :, 0] = [1, 2, 3, 4, 5]
    split = formats.pack_layer(V, tiny)
    assert (split.Kp, [im.k_base for im in split.passes]) == (3, [0, 3])
    # Pass 0: lane 0 k 0, 2 (0x81, 0x93), lane 1 k 1 (0x82). Pass 1: k 3 is k_local 0, lane 0
    # row 0 (0x84), and k 4 is k_local 1, lane 1 row 0 (0x85).
    assert [im.words[5] for im in split.passes] == [(0x00829381,), (0x00850084,)]
    np.testing.assert_array_equal(formats.unpack_layer(split, tiny), V)


def test_pass_split_when_memory_is_small():
    cfg = AccelConfig(lanes=2, slots_per_lane=2, wmem_depth=7, k_max=16)   # S = 4 slots
    U = np.zeros((16, 12, 3), dtype=np.int64)
    U[:, :, :] = 1                       # dense: ceil(Kp/2) per lane, 2 per word, 3 columns
    # One pass (Kp=12): 3 columns x 3 words = 9 > 7; two passes (Kp=6): 3 x 2 = 6 <= 7.
    packed = formats.pack_layer(U, cfg)
    assert packed.Kp == 6 and packed.num_passes == 2
    assert [(im.k_base, im.k_count) for im in packed.passes] == [(0, 6), (6, 6)]
    assert packed.stats.max_words_per_pass == (6,) * 16
    assert packed.stats.words_per_pe == (12,) * 16
    # Per PE: 2 passes x 3 columns x 2 words x 4 slots = 48 slots for 36 weights, 12 padding.
    assert (packed.stats.slots, packed.stats.padding_slots) == (16 * 48, 16 * 12)
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), U)
    # Only even k non-zero: all of a column is lane 0's, so the column is as long as lane 0
    # needs. One pass: 6 weights in lane 0 -> 3 words per column, 9 > 7 (the 6 weights would
    # fill only 2 words of 4 slots). Two passes (Kp = 6, k_local 0, 2, 4): 2 words per column.
    even = np.zeros((16, 12, 3), dtype=np.int64)
    even[:, 0::2, :] = 1
    packed = formats.pack_layer(even, cfg)
    assert packed.Kp == 6 and packed.num_passes == 2
    assert packed.stats.max_words_per_pass == (6,) * 16
    # Per PE: 2 passes x 3 columns x 2 words x 4 slots = 48 slots for 18 weights, 30 padding.
    assert (packed.stats.slots, packed.stats.padding_slots) == (16 * 48, 16 * 30)
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), even)
    # k_max bounds Kp even when the memory is large: 40 channels -> 3 even passes.
    big = formats.pack_layer(np.ones((16, 40, 2), dtype=np.int64),
                             AccelConfig(k_max=16, wmem_depth=4096))
    assert big.Kp == 14 and [im.k_count for im in big.passes] == [14, 14, 12]
    np.testing.assert_array_equal(formats.unpack_layer(big, AccelConfig(k_max=16)),
                                  np.ones((16, 40, 2)))


def test_pass_split_impossible():
    cfg = AccelConfig(lanes=1, wmem_depth=2, k_max=4)
    with pytest.raises(formats.FormatError, match="one output channel per pass needs 3 words"):
        formats.pack_layer(np.ones((16, 4, 3), dtype=np.int64), cfg)


@pytest.mark.parametrize("bad,match", [
    (np.ones((9, 2, 2), dtype=np.int64), r"expected \[16, K, C\]"),
    (np.ones((16, 2, 2)), "expected integers"),
    (np.full((16, 2, 2), 128), r"outside the 8-bit weight range \[-128, 127\]"),
    (np.ones((16, 2, 300), dtype=np.int64), "C = 300 input channels exceeds c_max = 256"),
])
def test_pack_rejects(bad, match):
    with pytest.raises(formats.FormatError, match=match):
        formats.pack_layer(bad, AccelConfig(c_max=256, k_max=256))


def test_unpack_rejects_corrupt_images():
    cfg = AccelConfig(lanes=2, slots_per_lane=2)      # S = 4 slots: 0-1 lane 0, 2-3 lane 1
    U = np.zeros((16, 6, 2), dtype=np.int64)
    U[0, :5, 0] = [1, 2, 3, 4, 5]       # lane 0: k 0, 2, 4 (rows 0-2); lane 1: k 1, 3 (rows 0-1)
    packed = formats.pack_layer(U, cfg)
    im = packed.passes[0]
    lay = formats.slot_layout(cfg, 0)
    mask = (1 << lay.slot_bits) - 1

    def slot(value, row, pos):
        return formats.encode_slot(value, row, lay) << lay.slot_lsb(pos)

    def with_pe0(words=None, directory=None):
        w = list(im.words)
        d = list(im.directory)
        if words is not None:
            w[0] = words
        if directory is not None:
            d[0] = directory
        bad = formats.PassImage(0, 0, 6, tuple(w), tuple(d))
        return formats.PackedLayer("bad", 6, 2, 6, (bad,), packed.stats)

    def rejects(match, **image):
        with pytest.raises(formats.FormatError, match=match):
            formats.unpack_layer(with_pe0(**image), cfg)

    # Word 0: lane 0 rows 0, 1 and lane 1 rows 0, 1; word 1: lane 0 row 2, three padding slots.
    w0, w1 = im.words[0]
    assert w0 == slot(1, 0, 0) | slot(3, 1, 1) | slot(2, 0, 2) | slot(4, 1, 3)
    assert w1 == slot(5, 2, 0)
    assert im.directory[0] == ((0, 2), (2, 0))
    # A lane's padding ends only that lane: lane 1 may go on in word 1 after lane 0's padding,
    # and that is exactly how the packer stores k 5 (lane 1, row 2).
    more = formats.unpack_layer(with_pe0(words=(w0, w1 | slot(6, 2, 2))), cfg)
    U5 = U.copy()
    U5[0, 5, 0] = 6
    np.testing.assert_array_equal(more, U5)
    assert formats.pack_layer(U5, cfg).passes[0].words[0] == (w0, w1 | slot(6, 2, 2))

    # Rows ascend within a lane: swapped in a word, repeated across words.
    swapped = (w0 & ~(mask | mask << lay.slot_bits)) | ((w0 >> lay.slot_bits) & mask) \
        | ((w0 & mask) << lay.slot_bits)
    rejects("breaks ascending order", words=(swapped, w1))
    rejects(r"slot \(k_local=2, value=5\) breaks ascending order", words=(w0, slot(5, 1, 0)))
    # A row past the pass (lane 1 row 3 is k_local 7, k_count 6) and a stored zero.
    rejects(r"\(k_local=7, value=6\) breaks ascending order, the pass range",
            words=(w0, w1 | slot(6, 3, 2)))
    rejects(r"\(k_local=5, value=0\).* holds a zero", words=(w0, w1 | slot(0, 2, 2)))
    # Padding is all zero bits.
    rejects("bad padding in word 1 slot 1", words=(w0, w1 | 1 << lay.slot_lsb(1)))
    rejects("bad padding in word 1 slot 3",
            words=(w0, w1 | (1 << lay.k_lsb) << lay.slot_lsb(3)))     # row 1, not valid
    # A lane's valid slots are a prefix of its group: no padding before a valid slot in a word
    # (lane 0: slot 0 padding, slot 1 valid) ...
    rejects("valid slot after padding of lane 0 in word 1", words=(w0, w1 << lay.slot_lsb(1)))
    # ... nor across the column's words (lane 1: word 0 slot 3 padding, word 1 slot 2 valid).
    rejects("valid slot after padding of lane 1 in word 1",
            words=(w0 & ~(mask << lay.slot_lsb(3)), w1 | slot(4, 1, 2)))
    # Every word of a column holds a valid slot, so no column is longer than its lanes need.
    rejects("column 0: word 2 holds no valid slot", words=(w0, w1, 0),
            directory=((0, 3), (3, 0)))
    rejects("column 0: word 1 holds no valid slot", words=(w0, 0, w1),
            directory=((0, 3), (3, 0)))
    rejects(f"word 1 wider than {lay.word_bits} bits", words=(w0, w1 | 1 << lay.word_bits))
    # The directory: back to back, inside the image, nothing left over.
    rejects("column 1: starts at 1, expected 2", directory=((0, 2), (1, 0)))
    rejects("past the end", directory=((0, 3), (3, 0)))
    rejects("1 trailing words", directory=((0, 1), (1, 0)))


def test_hex_round_trip(tmp_path):
    cfg = AccelConfig(lanes=(3,) * 16)
    U = sparse_U(cfg, 10, 6, 0.4, SEED)
    packed = formats.pack_layer(U, cfg)
    im = packed.passes[0]
    for xi in (0, 7, 15):
        lay, dlay = formats.slot_layout(cfg, xi), formats.directory_layout(cfg, xi)
        formats.write_hex(tmp_path / "w.hex", im.words[xi], lay.hex_digits, "a comment")
        text = (tmp_path / "w.hex").read_text().splitlines()
        assert text[0] == "// a comment"
        assert all(len(line) == lay.hex_digits for line in text[1:])
        assert formats.read_hex(tmp_path / "w.hex", lay.word_bits) == list(im.words[xi])
        formats.write_hex(tmp_path / "d.hex", formats.directory_words(im, cfg, xi),
                          dlay.hex_digits)
        back = formats.directory_entries(formats.read_hex(tmp_path / "d.hex", dlay.entry_bits),
                                         cfg, xi)
        assert back == im.directory[xi]
    (tmp_path / "bad.hex").write_text("12\nzz\n")
    with pytest.raises(formats.FormatError, match=r"bad.hex:2: 'zz' is not a hex word"):
        formats.read_hex(tmp_path / "bad.hex", 8)
    (tmp_path / "wide.hex").write_text("1ff\n")
    with pytest.raises(formats.FormatError, match="wider than 8 bits"):
        formats.read_hex(tmp_path / "wide.hex", 8)


def test_stream_round_trip_and_framing():
    cfg = AccelConfig(lanes=2, k_max=8, wmem_depth=1024)
    a = formats.pack_layer(sparse_U(cfg, 20, 3, 0.3, SEED), cfg, name="a")   # 3 passes
    b = formats.pack_layer(sparse_U(cfg, 4, 2, 0.6, SEED + 1), cfg, name="b")
    data = formats.encode_stream([a, b], cfg)
    assert data[:4] == b"WNWS"
    assert int.from_bytes(data[4:6], "little") == formats.FORMAT_VERSION
    assert int.from_bytes(data[6:8], "little") == 16
    assert int.from_bytes(data[8:12], "little") == 4                 # records: 3 + 1 passes
    # First record header: layer 0, pass 0, C 3, k_base 0, k_count 7 (20 = 7 + 7 + 6).
    assert [int.from_bytes(data[12 + 4 * i:16 + 4 * i], "little") for i in range(5)] == \
        [0, 0, 3, 0, 7]
    recs = formats.decode_stream(data, cfg)
    assert [(r.layer, r.image.index) for r in recs] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [r.image for r in recs] == list(a.passes) + list(b.passes)
    # Exact length: headers + per PE (8 B + units * (2 B + 6 B)) per record, a unit per word
    # and per empty column. Words are 4 slots (2 lanes x 2 slots per lane) of 8 + 2 + 1 = 11
    # bits (ceil(8 / 2) = 4 rows, k_bits 2) = 44 bits; entries 11 + 2 = 13 bits (count up to
    # ceil(4 / 2) = 2 words).
    lay, dlay = formats.slot_layout(cfg, 0), formats.directory_layout(cfg, 0)
    assert (lay.slots, lay.k_bits, lay.word_bits, dlay.entry_bits) == (4, 2, 44, 13)
    assert (lay.word_bytes, dlay.entry_bytes) == (6, 2)
    assert formats.unit_bytes(cfg, 0) == 8
    units = [sum(max(1, count) for _, count in im.directory[xi])
             for pl in (a, b) for im in pl.passes for xi in range(16)]
    assert units == [len(formats.body_units(im, cfg, xi))
                     for pl in (a, b) for im in pl.passes for xi in range(16)]
    body = sum(8 + n * 8 for n in units)
    assert len(data) == 12 + 4 * 20 + body
    with pytest.raises(formats.FormatError, match="truncated"):
        formats.decode_stream(data[:-1], cfg)
    with pytest.raises(formats.FormatError, match="1 trailing bytes"):
        formats.decode_stream(data + b"\0", cfg)
    with pytest.raises(formats.FormatError, match="stream has 16 PEs, config has 36"):
        formats.decode_stream(data, AccelConfig(tile=4))
    with pytest.raises(formats.FormatError, match="not a winnow weight stream"):
        formats.decode_stream(b"XXXX" + data[4:], cfg)


def test_encode_record_and_split_stream():
    cfg = AccelConfig(lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=8)
    a = formats.pack_layer(sparse_U(cfg, 20, 3, 0.3, SEED + 2), cfg, name="a")   # 3 passes
    b = formats.pack_layer(sparse_U(cfg, 4, 5, 0.6, SEED + 3), cfg, name="b")
    data = formats.encode_stream([a, b], cfg)
    records = formats.split_stream(data, cfg)
    assert [(li, p) for li, p, _ in records] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    # The stream is its 12-byte header followed by the records, back to back.
    assert b"".join(rec for _, _, rec in records) == data[12:]
    for (li, p, rec), im in zip(records, a.passes + b.passes):
        assert rec == formats.encode_record(li, im, cfg)
        assert isinstance(rec, bytes)
        # Record header: layer, pass, C, k_base, k_count as little-endian u32.
        C = len(im.directory[0])
        assert [int.from_bytes(rec[4 * i:4 * i + 4], "little") for i in range(5)] == \
            [li, p, C, im.k_base, im.k_count]
        # Per PE: entries, words, then its units (entry field, word field); PE 1 has 2 lanes.
        assert int.from_bytes(rec[20:24], "little") == C
        assert int.from_bytes(rec[24:28], "little") == len(im.words[0])
        sizes = [8 + len(formats.body_units(im, cfg, xi)) * formats.unit_bytes(cfg, xi)
                 for xi in range(cfg.coords)]
        assert len(rec) == 20 + sum(sizes)
        entry0 = formats.directory_words(im, cfg, 0)[0]
        size0 = formats.directory_layout(cfg, 0).entry_bytes
        assert rec[28:28 + size0] == entry0.to_bytes(size0, "little")
    # Edge weights survive the trip through a record.
    U = np.zeros((cfg.coords, 3, 2), dtype=np.int64)
    U[:, 0, 0], U[:, 2, 1] = cfg.wgt_range
    edge = formats.pack_layer(U, cfg)
    stream = formats.encode_stream([edge], cfg)
    (_, _, rec), = formats.split_stream(stream, cfg)
    assert formats.decode_stream(stream[:12] + rec, cfg)[0].image == edge.passes[0]


def test_split_stream_errors_name_the_source():
    cfg = AccelConfig(lanes=2, k_max=8, c_max=4)
    data = formats.encode_stream([formats.pack_layer(sparse_U(cfg, 9, 2, 0.5, SEED), cfg)], cfg)
    assert len(formats.split_stream(data, cfg)) == 2
    with pytest.raises(formats.FormatError, match=r"^w.bin: truncated at byte"):
        formats.split_stream(data[:-1], cfg, "w.bin")
    with pytest.raises(formats.FormatError, match=r"^w.bin: 2 trailing bytes after 2 records"):
        formats.split_stream(data + b"\0\0", cfg, "w.bin")
    with pytest.raises(formats.FormatError, match=r"^w.bin: stream has 16 PEs, config has 36"):
        formats.split_stream(data, AccelConfig(tile=4), "w.bin")
    with pytest.raises(formats.FormatError, match=r"^stream: not a winnow weight stream"):
        formats.split_stream(b"WNWX" + data[4:], cfg)
    bad = bytearray(data)
    bad[12 + 20] = 3                                 # PE 0 of record 0: 3 entries, C = 2
    with pytest.raises(formats.FormatError,
                       match=r"^w.bin: record layer 0 pass 0 PE 0 has 3 directory entries, "
                             r"expected C = 2"):
        formats.split_stream(bytes(bad), cfg, "w.bin")


def test_record_bodies_are_checked_both_ways():
    """A body breaking :func:`sw.formats.body_units` is refused when encoded and when decoded,
    naming the record, PE and column."""
    cfg = AccelConfig(wgt_bits=4, k_max=16, lanes=2, slots_per_lane=2, wmem_depth=4096)
    U = np.zeros((16, 8, 3), dtype=np.int64)
    U[5, [0, 1, 2, 4], 0] = [5, -3, 7, 1]            # PE 5: column 0 two words, column 1
    U[5, 7, 2] = -8                                  # empty, column 2 one word
    packed = formats.pack_layer(U, cfg)
    im = packed.passes[0]
    # Encoding: the columns must be back to back over all the words.
    for directory, match in [(((0, 2), (1, 0), (2, 1)), r" column 1: words \[1, 1\)"),
                             (((0, 2), (2, 0), (2, 2)), r" column 2: words \[2, 4\)"),
                             (((0, 1), (1, 0), (1, 1)), ": 1 trailing words")]:
        bad = formats.PassImage(0, 0, 8, im.words, im.directory[:5] + (directory,)
                                + im.directory[6:])
        with pytest.raises(formats.FormatError, match=r"^record layer 7 pass 0 PE 5" + match):
            formats.encode_record(7, bad, cfg)
    # Decoding: PE 5's units start after the record header, PEs 0-4 (8 B header and 3 units
    # of 2 + 4 bytes each) and PE 5's header.
    data = bytearray(formats.encode_stream([packed], cfg))
    pe5 = 12 + 20 + 5 * (8 + 3 * 6) + 8
    unit = [data[pe5 + 6 * u:pe5 + 6 * u + 6] for u in range(4)]
    assert unit[1][:2] == b"\0\0" and unit[2][2:] == b"\0\0\0\0"

    def rejects(offset, value, match):
        bad = bytearray(data)
        bad[offset] = value
        with pytest.raises(formats.FormatError,
                           match=r"^w.bin: record layer 0 pass 0 PE 5" + match):
            formats.decode_stream(bytes(bad), cfg, "w.bin")

    rejects(pe5 + 6, 1, r" column 0: entry field of word 1 is not zero")
    rejects(pe5 + 12 + 3, 1, r" column 1: the empty column's word field is not zero")
    rejects(pe5 + 12, 3, r" column 1: starts at 3, expected 2")
    rejects(pe5 - 4, 4, r": its columns hold 3 words, the header says 4")
    assert formats.decode_stream(bytes(data), cfg)[0].image == im


def test_manifest(tmp_path):
    cfg = AccelConfig(lanes=4, k_max=256, wmem_depth=1024)
    U = np.zeros((16, 4, 2), dtype=np.int64)
    U[0, 0, 0] = U[3, 1, 1] = 5
    packed = formats.pack_layer(U, cfg, name="c1")
    (tmp_path / "x.bin").write_bytes(b"abc")
    entry = formats.layer_manifest(packed, U, cfg, quant={"shift": [1]}, source_shape=(4, 2, 3, 3),
                                   files={"p0.pe0": "x.bin"})
    man = formats.build_manifest([entry], cfg, tmp_path, ["x.bin"])
    man = json.loads(json.dumps(man))
    assert man["checksums"] == {
        "x.bin": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    layer = man["layers"][0]
    assert (layer["K"], layer["C"], layer["Kp"], layer["passes"]) == (4, 2, 4, 1)
    assert layer["density"] == 2 / 128
    assert layer["coord_density"][0] == 1 / 8 and layer["coord_density"][3] == 1 / 8
    assert sum(layer["coord_density"]) == 2 / 8
    assert layer["words_per_pe"] == [[1, 0, 0, 1] + [0] * 12]
    assert layer["source_shape"] == [4, 2, 3, 3]
    # k_row holds ceil(256 / 4) = 64 rows: 6 bits, 15-bit slots; 4 lanes x 2 slots per lane =
    # 8 slots = 120-bit words; entries 11 + 6 bits (count up to 64 / 2 = 32 words).
    assert man["format_version"] == formats.FORMAT_VERSION == 4
    assert man["format"]["field_order"] == ["value", "k_row", "valid"]
    assert man["format"]["k_bits"] == [6] * 16
    assert man["format"]["slot_bits"] == [15] * 16
    assert man["format"]["word_bits"] == [120] * 16
    assert man["format"]["dir_entry_bits"] == [17] * 16
    assert man["config"]["slots_per_lane"] == 2
    assert AccelConfig.from_dict(man["config"]) == cfg


def test_record_items_locate_every_entry_and_word():
    cfg = AccelConfig(lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=8)
    rng = np.random.default_rng(3)
    U = rng.integers(-128, 128, size=(16, 8, 5))
    U[rng.random(U.shape) < 0.6] = 0
    image = formats.pack_layer(U, cfg).passes[0]
    data = formats.encode_record(0, image, cfg)
    items = formats.record_items(image, cfg)
    assert len(items) == 16 * 5 + sum(len(w) for w in image.words)
    for it in items:
        # A unit is the entry field, then the word field.
        entry_bytes = formats.directory_layout(cfg, it.pe).entry_bytes
        unit = data[it.end - formats.unit_bytes(cfg, it.pe):it.end]
        field = unit[:entry_bytes] if it.memory == "directory" else unit[entry_bytes:]
        assert int.from_bytes(field, "little") == it.value
    # A column's entry and its first word share a unit (and an end); the entry comes first.
    ends = [it.end for it in items]
    assert ends == sorted(ends)
    for xi in range(16):
        heads = [(it, nxt) for it, nxt in zip(items, items[1:])
                 if it.pe == xi and it.memory == "directory" and nxt.memory == "words"
                 and nxt.pe == xi]
        assert all(it.end == nxt.end and nxt.addr == image.directory[xi][it.addr][0]
                   for it, nxt in heads)
        assert len(heads) == sum(count > 0 for _, count in image.directory[xi])
    trailing_headers = 0
    for xi in range(15, -1, -1):           # PEs after the last item add only their headers
        if any(it.pe == xi for it in items):
            break
        trailing_headers += 1
    assert items[-1].end + trailing_headers * 8 == len(data)


def read_header(data: bytes, fields, offset: int = 0) -> tuple[dict, int]:
    """The fields of a header table read from ``data`` at ``offset``, and the offset past it."""
    values = {}
    for name, bits in fields:
        assert bits % 8 == 0
        values[name] = int.from_bytes(data[offset:offset + bits // 8], formats.BYTE_ORDER)
        offset += bits // 8
    return values, offset


def test_header_tables_fix_the_stream_bytes():
    """Walking the public tables over encoded bytes finds every header field; the header sizes
    are ``sum(bits) / 8`` (12, 20 and 8 bytes)."""
    assert [sum(bits for _, bits in t) // 8 for t in (
        formats.STREAM_HEADER_FIELDS, formats.RECORD_HEADER_FIELDS,
        formats.PE_HEADER_FIELDS)] == [12, 20, 8]
    cfg = AccelConfig(lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=8)
    packed = formats.pack_layer(sparse_U(cfg, 20, 3, 0.3, SEED + 4), cfg)
    data = formats.encode_stream([packed], cfg)
    head, pos = read_header(data, formats.STREAM_HEADER_FIELDS)
    assert head == {"magic": int.from_bytes(formats.STREAM_MAGIC, "little"),
                    "version": formats.FORMAT_VERSION, "coords": cfg.coords,
                    "records": packed.num_passes}
    for im in packed.passes:
        record = formats.encode_record(0, im, cfg)
        assert data[pos:pos + len(record)] == record
        rec, at = read_header(record, formats.RECORD_HEADER_FIELDS)
        assert rec == {"layer": 0, "pass": im.index, "channels": packed.C,
                       "k_base": im.k_base, "k_count": im.k_count}
        for xi in range(cfg.coords):
            pe, at = read_header(record, formats.PE_HEADER_FIELDS, at)
            assert pe == {"entries": packed.C, "words": len(im.words[xi])}
            at += len(formats.body_units(im, cfg, xi)) * formats.unit_bytes(cfg, xi)
        assert at == len(record)
        # Round trip: the stream header and this one record decode to the pass.
        one = formats.encode_stream([formats.PackedLayer("p", packed.K, packed.C, packed.Kp,
                                                         (im,), packed.stats)], cfg)
        assert one[12:] == record
        assert formats.decode_stream(one, cfg)[0].image == im
        pos += len(record)
    assert pos == len(data)


@pytest.mark.parametrize("lanes, slots_per_lane", [(1, 1), ((1, 2, 3, 4) * 4, 2), (8, 3)])
def test_slot_and_entry_fields(lanes, slots_per_lane):
    """``fields`` are the offsets of the layouts, least significant first."""
    cfg = AccelConfig(lanes=lanes, slots_per_lane=slots_per_lane, k_max=40, wmem_depth=100)
    for xi in range(cfg.coords):
        lay, dlay = formats.slot_layout(cfg, xi), formats.directory_layout(cfg, xi)
        assert [name for name, _ in lay.fields] == list(formats.FIELD_ORDER)
        assert lay.fields == (("value", lay.value_bits), ("k_row", lay.k_bits), ("valid", 1))
        # k_row indexes the lane's accumulator rows, k_local // L < ceil(k_max / L).
        rows = cfg.accumulator_rows(xi)
        assert rows == -(-40 // cfg.lanes_per_coord[xi])
        assert lay.k_bits == formats.k_bits(cfg, xi) == max(1, (rows - 1).bit_length())
        lsbs = np.cumsum([0] + [bits for _, bits in lay.fields]).tolist()
        assert lsbs == [lay.value_lsb, lay.k_lsb, lay.valid_lsb, lay.slot_bits]
        assert lay.word_bits == lay.slots * lsbs[-1]
        assert dlay.fields == (("start", dlay.addr_bits), ("count", dlay.count_bits))
        assert (dlay.start_lsb, dlay.count_lsb) == (0, dlay.addr_bits)
        assert sum(bits for _, bits in dlay.fields) == dlay.entry_bits
    assert set(formats.SIGNED_FIELDS) <= set(formats.FIELD_ORDER)


def test_record_writes_are_the_items_whose_bytes_arrived():
    cfg = AccelConfig(lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=8)
    image = formats.pack_layer(sparse_U(cfg, 8, 4, 0.4, SEED + 5), cfg).passes[0]
    items = formats.record_items(image, cfg)
    size = len(formats.encode_record(0, image, cfg))
    assert formats.record_writes(image, cfg) == items
    assert formats.record_writes(image, cfg, size) == items
    assert formats.record_writes(image, cfg, 20 + 8) == []
    for received in (20 + 8 + 1, items[3].end - 1, items[3].end, size // 2, size - 1):
        writes = formats.record_writes(image, cfg, received)
        assert writes == items[:len(writes)]
        assert all(it.end <= received for it in writes)
        assert len(writes) == len(items) or items[len(writes)].end > received


# -- activation streams ---------------------------------------------------------------------------

@pytest.mark.parametrize("act_bits", [8, 12, 3])
@pytest.mark.parametrize("values", [1, 2, 8, 16])
@pytest.mark.parametrize("C", [1, 3, 8, 13, 16])
def test_activation_frame_round_trip(act_bits, values, C, rng):
    """pack → unpack is the identity, with the extremes and zeros, every C against every S."""
    cfg = AccelConfig(act_bits=act_bits, stream_values=values)
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, size=(3, 2, C))
    x.flat[0], x.flat[-1], x.flat[len(x.flat) // 2] = lo, hi, 0
    frame = formats.pack_activations(x, cfg)
    beats = formats.activation_beats(3, 2, C, cfg)
    assert len(frame.data) == len(frame.keep) == beats * formats.beat_bytes(cfg)
    np.testing.assert_array_equal(formats.unpack_activations(frame, C, cfg), x.reshape(-1, C))


def test_activation_beats_by_hand():
    """Two pixels of C = 3 in beats of S = 2 at 8 bits: channel j of a beat in byte j; the
    second beat of each pixel carries one value, tkeep 0 on its padding byte."""
    cfg = AccelConfig(stream_values=2)
    frame = formats.pack_activations(np.array([[[1, -2, 3], [-128, 127, 0]]]), cfg)
    assert frame.data == bytes([1, 0xFE, 3, 0, 0x80, 0x7F, 0, 0])
    assert frame.keep == bytes([1, 1, 1, 0, 1, 1, 1, 0])
    wide = AccelConfig(act_bits=12, stream_values=1)
    assert formats.pack_activations(np.array([[-2]]), wide).data == bytes([0xFE, 0xFF])
    assert formats.pixel_beats(13, AccelConfig()) == 2 and formats.beat_bytes(AccelConfig()) == 8


def test_activation_frame_refusals():
    cfg = AccelConfig(stream_values=2)
    with pytest.raises(formats.FormatError, match=r"values -129 \.\. 0 do not fit act_bits"):
        formats.pack_activations(np.array([[-129, 0]]), cfg)
    with pytest.raises(formats.FormatError, match="expected an integer array"):
        formats.pack_activations(np.array([0.5]), cfg)
    frame = formats.pack_activations(np.array([[1, 2, 3]]), cfg)
    with pytest.raises(formats.FormatError, match="not whole pixels of 3 channels"):
        formats.unpack_activations(formats.ActivationFrame(frame.data[:-1], frame.keep[:-1]),
                                   3, cfg)
    with pytest.raises(formats.FormatError, match="pixel 0 byte 3 has tkeep 1, expected 0"):
        formats.unpack_activations(formats.ActivationFrame(frame.data, b"\1" * 4), 3, cfg)
