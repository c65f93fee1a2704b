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


@pytest.mark.parametrize("slots_per_lane", [1, 2, 3])
@pytest.mark.parametrize("tile,lanes,wgt_bits,K,C,density", CASES)
def test_pack_unpack_round_trip(tile, lanes, wgt_bits, K, C, density, slots_per_lane):
    cfg = AccelConfig(tile=tile, lanes=lanes, wgt_bits=wgt_bits, k_max=64, c_max=32,
                      slots_per_lane=slots_per_lane)
    U = sparse_U(cfg, K, C, density, SEED + K * C)
    packed = formats.pack_layer(U, cfg, name="round")
    back = formats.unpack_layer(packed, cfg)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, U)
    s = packed.stats
    nnz = int(np.count_nonzero(U))
    assert s.nnz == nnz
    # S = slots_per_lane * L slots per word, computed here from the lanes, not from the config.
    lanes_t = cfg.lanes_per_coord
    slots_t = [slots_per_lane * (lanes if isinstance(lanes, int) else lanes[xi])
               for xi in range(cfg.coords)]
    assert [formats.slot_layout(cfg, xi).slots for xi in range(cfg.coords)] == slots_t
    assert [formats.slot_layout(cfg, xi).lanes for xi in range(cfg.coords)] == list(lanes_t)
    # Words = sum of ceil(column nnz / S): computed independently from U.
    col_nnz = (U != 0).sum(axis=1)                                    # [coords, C]
    col_words = np.stack([-(-col_nnz[xi] // slots_t[xi]) for xi in range(cfg.coords)])
    np.testing.assert_array_equal(packed.column_words()[0], col_words)
    expect_words = [int(col_words[xi].sum()) for xi in range(cfg.coords)]
    assert list(s.words_per_pe) == expect_words
    assert s.slots == sum(w * sl for w, sl in zip(expect_words, slots_t))
    assert s.padding_slots == s.slots - nnz
    assert s.dense_bits == cfg.coords * K * C * wgt_bits
    assert packed.num_passes == 1 and packed.Kp == K


def test_slot_layout_fields():
    # Default slots_per_lane = 2: PE 0 has L = 4 lanes and S = 8 slots, PE 15 L = 2 and S = 4.
    cfg = AccelConfig(wgt_bits=8, k_max=256, lanes=(4,) * 8 + (2,) * 8)
    assert cfg.slots_per_lane == 2
    lay = formats.slot_layout(cfg, 0)
    assert (lay.lanes, lay.slots) == (4, 8)
    assert (lay.value_lsb, lay.value_bits, lay.k_lsb, lay.k_bits, lay.valid_lsb) == \
        (0, 8, 8, 8, 16)
    assert (lay.slot_bits, lay.word_bits, lay.word_bytes, lay.hex_digits) == (17, 136, 17, 34)
    assert [lay.slot_lsb(i) for i in (0, 1, 7)] == [0, 17, 119]
    lay15 = formats.slot_layout(cfg, 15)
    assert (lay15.lanes, lay15.slots, lay15.word_bits) == (2, 4, 68)
    # slots_per_lane = 1: one slot per lane, the words of format version 1.
    one = AccelConfig(wgt_bits=8, k_max=256, lanes=(4,) * 8 + (2,) * 8, slots_per_lane=1)
    lay1 = formats.slot_layout(one, 0)
    assert (lay1.lanes, lay1.slots) == (4, 4)
    assert (lay1.slot_bits, lay1.word_bits, lay1.word_bytes, lay1.hex_digits) == (17, 68, 9, 17)
    assert formats.slot_layout(one, 15).word_bits == 34
    assert formats.k_bits(AccelConfig(k_max=1)) == 1
    assert formats.k_bits(AccelConfig(k_max=257)) == 9
    # count_bits = bit_length(ceil(k_max / S)): S = 8 -> 32 -> 6 bits; S = 4 -> 64 -> 7 bits.
    d = formats.directory_layout(AccelConfig(wmem_depth=4096, k_max=256, lanes=4), 0)
    assert (d.addr_bits, d.count_bits, d.entry_bits, d.count_lsb) == (13, 6, 19, 13)
    d = formats.directory_layout(AccelConfig(wmem_depth=4096, k_max=256, lanes=4,
                                             slots_per_lane=1), 0)
    assert (d.addr_bits, d.count_bits, d.entry_bits, d.count_lsb) == (13, 7, 20, 13)
    with pytest.raises(formats.FormatError, match="PE index 16 out of range"):
        formats.slot_layout(cfg, 16)


def test_one_word_by_hand():
    """wgt_bits 4, k_max 8 (k_bits 3), 3 lanes, slots_per_lane 1 (S = 3 slots per word):
    slot = valid<<7 | k<<4 | (value & 0xF)."""
    cfg = AccelConfig(wgt_bits=4, k_max=8, lanes=3, slots_per_lane=1, wmem_depth=4096)
    U = np.zeros((16, 8, 2), dtype=np.int64)
    U[5, 1, 0], U[5, 4, 0], U[5, 6, 0], U[5, 7, 0] = -3, 7, 1, -8
    U[5, 2, 1] = 2
    packed = formats.pack_layer(U, cfg)
    words = packed.passes[0].words[5]
    slot_a = (1 << 7) | (1 << 4) | 0xD         # k=1, value -3 -> 0b1101
    slot_b = (1 << 7) | (4 << 4) | 0x7         # k=4, value 7
    slot_c = (1 << 7) | (6 << 4) | 0x1         # k=6, value 1
    slot_d = (1 << 7) | (7 << 4) | 0x8         # k=7, value -8
    slot_e = (1 << 7) | (2 << 4) | 0x2
    assert words == (slot_a | slot_b << 8 | slot_c << 16, slot_d, slot_e)
    assert words[0] == 0xE1C79D
    lay = formats.slot_layout(cfg, 5)
    assert (lay.lanes, lay.slots, lay.word_bits) == (3, 3, 24)
    assert formats.hex_text(words, lay.hex_digits) == "e1c79d\n0000f8\n0000a2\n"
    stream = formats.encode_stream([packed], cfg)
    assert bytes([0x9D, 0xC7, 0xE1, 0xF8, 0, 0, 0xA2, 0, 0]) in stream
    assert packed.passes[0].directory[5] == ((0, 2), (2, 1))
    assert packed.passes[0].words[0] == ()
    assert packed.passes[0].directory[0] == ((0, 0), (0, 0))
    # Directory entry: start in the low addr_bits (wmem_depth 4096 -> 13), count above it.
    assert formats.directory_words(packed.passes[0], cfg, 5) == [2 << 13, 2 | 1 << 13]


def test_word_of_two_slots_per_lane_by_hand():
    """wgt_bits 4, k_max 8 (k_bits 3), L = 2 lanes, slots_per_lane 2: S = 4 slots per word,
    slot = valid<<7 | k<<4 | (value & 0xF), word = 4 slots of 8 bits, slot 0 lowest."""
    cfg = AccelConfig(wgt_bits=4, k_max=8, lanes=2, slots_per_lane=2, wmem_depth=4096)
    U = np.zeros((16, 8, 3), dtype=np.int64)
    U[5, [0, 1, 4, 6, 7], 0] = [5, -3, 7, 1, -8]     # column 0: 5 slots -> 2 words
    U[5, 2, 2] = 2                                   # column 1 empty, column 2: 1 slot
    packed = formats.pack_layer(U, cfg)
    lay = formats.slot_layout(cfg, 5)
    assert (lay.lanes, lay.slots, lay.slot_bits, lay.word_bits) == (2, 4, 8, 32)
    assert (lay.word_bytes, lay.hex_digits) == (4, 8)
    # Slots 0x85 (k0, 5), 0x9D (k1, -3), 0xC7 (k4, 7), 0xE1 (k6, 1); 0xF8 (k7, -8); 0xA2 (k2, 2).
    words = packed.passes[0].words[5]
    assert words == (0xE1C79D85, 0x000000F8, 0x000000A2)
    assert formats.hex_text(words, lay.hex_digits) == "e1c79d85\n000000f8\n000000a2\n"
    # Directory: column 1 is empty and starts where column 2 begins.
    assert packed.passes[0].directory[5] == ((0, 2), (2, 0), (2, 1))
    assert packed.passes[0].directory[0] == ((0, 0), (0, 0), (0, 0))
    # count_bits = bit_length(ceil(k_max / S)) = bit_length(ceil(8 / 4) = 2) = 2; addr_bits 13.
    dlay = formats.directory_layout(cfg, 5)
    assert (dlay.addr_bits, dlay.count_bits, dlay.entry_bits, dlay.entry_bytes) == (13, 2, 15, 2)
    entries = formats.directory_words(packed.passes[0], cfg, 5)
    assert entries == [2 << 13, 2, 2 | 1 << 13] == [0x4000, 0x0002, 0x2002]
    assert formats.hex_text(entries, dlay.hex_digits) == "4000\n0002\n2002\n"
    # PE 5's part of the record: entries 3, words 3, then the entries and words little-endian.
    stream = formats.encode_stream([packed], cfg)
    assert bytes([3, 0, 0, 0, 3, 0, 0, 0, 0x00, 0x40, 0x02, 0x00, 0x02, 0x20,
                  0x85, 0x9D, 0xC7, 0xE1, 0xF8, 0, 0, 0, 0xA2, 0, 0, 0]) in stream
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), U)
    # count_bits follows the ceiling: S = 4 and k_max 4, 9, 12, 13, 16, 17 -> 1, 3, 3, 4, 4, 5
    # words at most -> 1, 2, 2, 3, 3, 3 bits.
    assert [formats.directory_layout(AccelConfig(k_max=k, lanes=2), 0).count_bits
            for k in (4, 9, 12, 13, 16, 17)] == [1, 2, 2, 3, 3, 3]
    # The same slots at one slot per lane (S = 2): column 0 takes 3 words, count_bits 3.
    one = AccelConfig(wgt_bits=4, k_max=8, lanes=2, slots_per_lane=1, wmem_depth=4096)
    packed1 = formats.pack_layer(U, one)
    assert packed1.passes[0].words[5] == (0x9D85, 0xE1C7, 0x00F8, 0x00A2)
    assert packed1.passes[0].directory[5] == ((0, 3), (3, 0), (3, 1))
    assert formats.directory_layout(one, 5).count_bits == 3


def test_pass_split_when_memory_is_small():
    cfg = AccelConfig(lanes=2, slots_per_lane=2, wmem_depth=7, k_max=16)   # S = 4 slots
    U = np.zeros((16, 12, 3), dtype=np.int64)
    U[:, :, :] = 1                       # dense: ceil(Kp/4) words per column, 3 columns
    # One pass (Kp=12): 3 columns x 3 words = 9 > 7; two passes (Kp=6): 3 x 2 = 6 <= 7.
    packed = formats.pack_layer(U, cfg)
    assert packed.Kp == 6 and packed.num_passes == 2
    assert [(im.k_base, im.k_count) for im in packed.passes] == [(0, 6), (6, 6)]
    assert packed.stats.max_words_per_pass == (6,) * 16
    assert packed.stats.words_per_pe == (12,) * 16
    # Per PE: 2 passes x 3 columns x 2 words x 4 slots = 48 slots for 36 weights, 12 padding.
    assert (packed.stats.slots, packed.stats.padding_slots) == (16 * 48, 16 * 12)
    np.testing.assert_array_equal(formats.unpack_layer(packed, cfg), U)
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
    cfg = AccelConfig(lanes=2, slots_per_lane=2)      # S = 4 slots per word
    U = np.zeros((16, 6, 2), dtype=np.int64)
    U[0, :5, 0] = [1, 2, 3, 4, 5]                     # word 0: k 0..3; word 1: k 4, 3 padding
    packed = formats.pack_layer(U, cfg)
    im = packed.passes[0]
    lay = formats.slot_layout(cfg, 0)
    mask = (1 << lay.slot_bits) - 1

    def with_pe0(words=None, directory=None):
        w = list(im.words)
        d = list(im.directory)
        if words is not None:
            w[0] = words
        if directory is not None:
            d[0] = directory
        bad = formats.PassImage(0, 0, 6, tuple(w), tuple(d))
        return formats.PackedLayer("bad", 6, 2, 6, (bad,), packed.stats)

    w0, w1 = im.words[0]
    assert w1 == formats.encode_slot(5, 4, lay)
    swapped = (w0 & ~(mask | mask << lay.slot_bits)) | ((w0 >> lay.slot_bits) & mask) \
        | ((w0 & mask) << lay.slot_bits)
    with pytest.raises(formats.FormatError, match="breaks ascending order"):
        formats.unpack_layer(with_pe0(words=(swapped, w1)), cfg)
    with pytest.raises(formats.FormatError, match="bad padding in word 0 slot 1"):
        formats.unpack_layer(with_pe0(words=(w0 & mask, w1)), cfg)
    # The valid slots of a word are a prefix: no padding in slot 0, no valid slot after padding.
    with pytest.raises(formats.FormatError, match="bad padding in word 1 slot 0"):
        formats.unpack_layer(with_pe0(words=(w0, w1 << lay.slot_lsb(2))), cfg)
    gap = w1 | formats.encode_slot(6, 5, lay) << lay.slot_lsb(2)
    with pytest.raises(formats.FormatError, match="valid slot after padding in word 1"):
        formats.unpack_layer(with_pe0(words=(w0, gap)), cfg)
    with pytest.raises(formats.FormatError, match="past the end"):
        formats.unpack_layer(with_pe0(directory=((0, 3), (3, 0))), cfg)
    with pytest.raises(formats.FormatError, match="1 trailing words"):
        formats.unpack_layer(with_pe0(directory=((0, 1), (1, 0))), cfg)


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
    cfg = AccelConfig(lanes=2, k_max=8)
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
    # Exact length: headers + per PE (8 B + entries * 2 B + words * 6 B) per record. Words are
    # 4 slots (2 lanes x 2 slots per lane) of 12 bits = 48 bits; entries 11 + 2 = 13 bits.
    lay, dlay = formats.slot_layout(cfg, 0), formats.directory_layout(cfg, 0)
    assert (lay.slots, lay.word_bits, dlay.entry_bits) == (4, 48, 13)
    assert (lay.word_bytes, dlay.entry_bytes) == (6, 2)
    body = sum(8 + len(im.directory[xi]) * 2 + len(im.words[xi]) * 6
               for pl in (a, b) for im in pl.passes for xi in range(16))
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
        # Per PE: entries, words, then entry and word bytes; PE 1 has 2 lanes.
        assert int.from_bytes(rec[20:24], "little") == C
        assert int.from_bytes(rec[24:28], "little") == len(im.words[0])
        sizes = [8 + C * formats.directory_layout(cfg, xi).entry_bytes
                 + len(im.words[xi]) * formats.slot_layout(cfg, xi).word_bytes
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


def test_manifest(tmp_path):
    cfg = AccelConfig(lanes=4, k_max=256)
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
    # 17-bit slots, 4 lanes x 2 slots per lane = 8 slots = 136-bit words; entries 11 + 6 bits.
    assert man["format_version"] == formats.FORMAT_VERSION == 2
    assert man["format"]["slot_bits"] == [17] * 16
    assert man["format"]["word_bits"] == [136] * 16
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
        size = (formats.directory_layout(cfg, it.pe).entry_bytes if it.memory == "directory"
                else formats.slot_layout(cfg, it.pe).word_bytes)
        assert int.from_bytes(data[it.end - size:it.end], "little") == it.value
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
            at += packed.C * formats.directory_layout(cfg, xi).entry_bytes \
                + len(im.words[xi]) * formats.slot_layout(cfg, xi).word_bytes
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
        assert lay.fields == (("value", lay.value_bits), ("k_local", lay.k_bits), ("valid", 1))
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
