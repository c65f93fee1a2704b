# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of :class:`hw.loader.WeightLoader` against :mod:`sw.formats`.

Records come from :func:`sw.formats.pack_layer` and :func:`sw.formats.encode_record`; the
writes the loader makes must be, in order and count, every PE's
:func:`sw.formats.directory_words` followed by its ``PassImage.words``. Rejected records are
made from good ones by rewriting one header field, cutting the frame, or extending it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sw.config import AccelConfig
from hw.loader import WeightLoader, expected_writes
from hw.pe import DIRECTORY
from streams import Phase, run_streams
from sw import formats

#: Names of the record header fields, in stream order.
RECORD_FIELDS = tuple(name for name, _ in formats.RECORD_HEADER_FIELDS)

#: Small configurations covering 1- to 5-byte words, 1- and 2-byte directory entries,
#: per-coordinate lanes on both tile sizes, and memories small enough to force several passes.
CONFIGS = {
    "t2_lanes": AccelConfig(tile=2, lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=6, wmem_depth=12),
    "t4_lanes": AccelConfig(tile=4, lanes=tuple(xi % 3 + 1 for xi in range(36)), k_max=4,
                            c_max=3, wmem_depth=300),
    "t2_bytes": AccelConfig(tile=2, lanes=1, wgt_bits=4, k_max=4, c_max=4, wmem_depth=8),
}


@dataclass
class Frame:
    """One frame on ``i`` and what the loader must do with it."""

    data: bytes
    writes: list[dict]
    error_at: int | None = None           # index of the byte whose acceptance rejects it
    status: tuple[int, int, int] | None = None   # (C, k_count, k_base) of a good record


def pe_header_offset(image: formats.PassImage, cfg: AccelConfig, xi: int) -> int:
    """Byte offset of PE ``xi``'s header in the record."""
    ends = [end for end, wr in expected_writes(image, cfg) if wr["pe"] < xi]
    return max(ends, default=formats._RECORD_HEADER.size)


def field_end(header, index: int) -> int:
    """Offset just past field ``index`` of a header struct (the last byte it sets to ones)."""
    values = [0] * len(header.unpack(bytes(header.size)))
    values[index] = 0xFFFFFFFF
    return max(k for k, b in enumerate(header.pack(*values)) if b) + 1


def good_frame(layer: int, image: formats.PassImage, cfg: AccelConfig) -> Frame:
    return Frame(formats.encode_record(layer, image, cfg),
                 [wr for _, wr in expected_writes(image, cfg)],
                 status=(len(image.directory[0]), image.k_count, image.k_base & 0xFFFF))


def bad_frame(data: bytes, image: formats.PassImage, cfg: AccelConfig, error_at: int) -> Frame:
    """A rejected frame: the writes whose bytes all arrived up to ``error_at`` are issued."""
    return Frame(data, [wr for _, wr in expected_writes(image, cfg, error_at + 1)],
                 error_at=error_at)


def random_U(cfg: AccelConfig, rng, K: int, C: int, density: float) -> np.ndarray:
    """Sparse weights with the extreme values of ``wgt_range`` mixed in."""
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
    pick = rng.random(U.shape)
    U[pick < 0.1] = lo
    U[pick > 0.9] = hi
    U[rng.random(U.shape) >= density] = 0
    return U


def random_records(cfg: AccelConfig, rng, layers: int,
                   c_max: int | None = None) -> list[tuple[int, formats.PassImage]]:
    """Every pass of ``layers`` random layers of at most ``c_max`` channels; the first layer
    has ``k_max + 1`` output channels, so several passes."""
    c_max = c_max or cfg.c_max
    out = []
    for li in range(layers):
        K = int(rng.integers(1, 2 * cfg.k_max + 1)) if li else cfg.k_max + 1
        C = int(rng.integers(1, c_max + 1)) if li else c_max
        packed = formats.pack_layer(random_U(cfg, rng, K, C, float(rng.uniform(0.05, 1))), cfg)
        out += [(li, im) for im in packed.passes]
    assert len(out) > layers
    return out


@dataclass
class Observed:
    writes: list[dict]
    errors: list[int]                     # bytes accepted before each error strobe
    commits: list[tuple[int, ...]]        # (writes taken, records, C, k_count, k_base)
    stalled_bytes: int                    # cycles a byte was offered and not taken
    accept_cycles: list[int]              # the cycle each byte was accepted in
    write_cycles: list[int]               # the cycle each write was taken in


def load(cfg: AccelConfig, frames: list[Frame], rng=None, gaps: str = "none",
         backpressure: str = "none") -> Observed:
    """Feed ``frames`` back to back and collect what the loader does, checking every cycle.

    ``idle`` is high exactly when the accepted bytes end a frame and no write is pending;
    ``channels``, ``k_count`` and ``k_base`` change only together with ``records``; the
    runner checks the stream rules of ``wr`` and that no write beyond the expected ones comes.
    """
    dut = WeightLoader(cfg)
    beats = [{"data": byte, "last": int(k == len(f.data) - 1)}
             for f in frames for k, byte in enumerate(f.data)]
    status = ("records", "channels", "k_count", "k_base")
    probes = {"i_valid": dut.i.valid, "i_ready": dut.i.ready, "wr_valid": dut.wr.valid,
              "error": dut.error, "idle": dut.idle, **{n: getattr(dut, n) for n in status}}
    run = run_streams(dut, Phase({"i": beats}, {"wr": sum(len(f.writes) for f in frames)}),
                      gaps=gaps, backpressure=backpressure, rng=rng, probes=probes)
    trace = {name: np.array(values, dtype=np.int64) for name, values in run.trace.items()}
    accepted, taken = run.before("i"), run.before("wr")

    boundaries = np.cumsum([0] + [len(f.data) for f in frames])
    idle = np.isin(accepted, boundaries) & (trace["wr_valid"] == 0)
    wrong = np.flatnonzero(trace["idle"] != idle)
    assert not wrong.size, (f"idle = {trace['idle'][wrong[0]]} after {accepted[wrong[0]]} bytes "
                            f"with wr.valid = {trace['wr_valid'][wrong[0]]}")
    assert trace["idle"][-1], "not idle after the last frame"

    now = np.stack([trace[n] for n in status], axis=1)
    before = np.vstack([np.zeros((1, len(status)), np.int64), now[:-1]])
    changes = np.flatnonzero((now != before).any(axis=1))
    for cycle in changes:
        assert now[cycle, 0] != before[cycle, 0], \
            f"status changed without a record: {tuple(now[cycle].tolist())}"
    return Observed(run.received["wr"], accepted[trace["error"] != 0].tolist(),
                    [(int(taken[c]), *now[c].tolist()) for c in changes],
                    int(((trace["i_valid"] != 0) & (trace["i_ready"] == 0)).sum()),
                    run.beat_cycles["i"], run.beat_cycles["wr"])


def check(seen: Observed, frames: list[Frame]) -> None:
    """Writes in order and count, one strobe per rejected frame, status per good frame."""
    want = [wr for f in frames for wr in f.writes]
    for n, (got, exp) in enumerate(zip(seen.writes, want)):
        assert got == exp, f"write {n}: got {got}, expected {exp}"
    assert len(seen.writes) == len(want)
    errors, commits = [], []
    offset = writes = 0
    for f in frames:
        writes += len(f.writes)
        if f.error_at is not None:
            errors.append(offset + f.error_at + 1)
        else:
            commits.append((writes, len(commits) + 1, *f.status))
        offset += len(f.data)
    assert seen.errors == errors
    assert seen.commits == commits


# -- good records ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("gaps, backpressure", [("stall25", "none"), ("none", "stall75"),
                                                 ("bursts", "bursts")])
def test_random_records(name, gaps, backpressure, rng):
    """Every pass of random packed layers, back to back, under valid gaps and back-pressure."""
    cfg = CONFIGS[name]
    frames = [good_frame(li, im, cfg) for li, im in random_records(cfg, rng, 2)]
    seen = load(cfg, frames, rng, gaps, backpressure)
    check(seen, frames)
    assert seen.commits[-1][1:] == (len(frames), *frames[-1].status)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_byte_per_cycle(name, rng):
    """With ``wr`` always ready, no byte waits (``N`` bytes take ``N`` cycles), and every
    write leaves :attr:`~hw.loader.WeightLoader.LATENCY` cycles after its final byte."""
    cfg = CONFIGS[name]
    records = random_records(cfg, rng, 2)
    frames = [good_frame(li, im, cfg) for li, im in records]
    seen = load(cfg, frames)
    check(seen, frames)
    assert seen.stalled_bytes == 0
    first = seen.accept_cycles[0]
    assert seen.accept_cycles == list(range(first, first + sum(len(f.data) for f in frames)))
    # Each write leaves LATENCY cycles after the byte that completes its entry or word.
    completing, offset = [], 0
    for (li, im), f in zip(records, frames):
        completing += [offset + end - 1 for end, _ in expected_writes(im, cfg)]
        offset += len(f.data)
    assert seen.write_cycles == [seen.accept_cycles[b] + WeightLoader.LATENCY
                                 for b in completing]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_edge_records(name, rng):
    """Full-density extreme weights, an all-zero layer (no words), all-max, a wide k_base."""
    cfg = CONFIGS[name]
    lo, hi = cfg.wgt_range
    C = min(2, cfg.c_max)
    U = np.where(rng.random((cfg.coords, cfg.k_max, C)) < 0.5, lo, hi)
    U[0] = lo
    U[-1] = hi
    zeros = np.zeros((cfg.coords, 1, 1), dtype=np.int64)
    full = np.full((cfg.coords, cfg.k_max, C), hi)
    passes = [formats.pack_layer(layer, cfg).passes for layer in (U, zeros, full)]
    frames = [good_frame(li, im, cfg) for li, images in enumerate(passes) for im in images]
    assert all(wr["mem"] == DIRECTORY for wr in frames[len(passes[0])].writes), \
        "the all-zero layer has words"
    # k_base is a u32 in the stream; the status shows its low 16 bits.
    im = formats.pack_layer(zeros, cfg).passes[0]
    wide = formats.PassImage(im.index, (1 << 16) + 5, im.k_count, im.words, im.directory)
    frames.append(good_frame(9, wide, cfg))
    assert frames[-1].status[2] == 5
    check(load(cfg, frames, rng, "stall25", "stall25"), frames)


# -- rejected records --------------------------------------------------------------------------

def reject_then_good(cfg: AccelConfig, rng, make_bad) -> None:
    """A good record, the rejected one ``make_bad(layer, image)`` gives, and a good one."""
    records = random_records(cfg, rng, 1, c_max=2)
    first, (li, im), last = records[0], records[1], records[-1]
    bad = make_bad(li, im)
    assert bad.error_at is not None and len(bad.data) > 0
    frames = [good_frame(*first, cfg), bad, good_frame(*last, cfg)]
    seen = load(cfg, frames, rng, "stall25", "stall25")
    check(seen, frames)
    assert seen.commits[-1][1:] == (2, *frames[-1].status)


def with_field(data: bytes, header, index: int, value: int, offset: int = 0) -> bytes:
    """``data`` with field ``index`` of the ``header`` struct at ``offset`` set to ``value``."""
    fields = list(header.unpack_from(data, offset))
    fields[index] = value
    return data[:offset] + header.pack(*fields) + data[offset + header.size:]


def header_reject(cfg: AccelConfig, field: str, value) -> callable:
    index = RECORD_FIELDS.index(field)

    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        good = formats._RECORD_HEADER.unpack_from(data)[index]
        data = with_field(data, formats._RECORD_HEADER, index, value(good))
        return bad_frame(data, im, cfg, field_end(formats._RECORD_HEADER, index) - 1)
    return make


@pytest.mark.parametrize("field, name, kind", [
    ("channels", "t2_lanes", "zero"), ("channels", "t2_bytes", "above_max"),
    ("channels", "t4_lanes", "high_bytes"),
    ("k_count", "t2_bytes", "zero"), ("k_count", "t2_lanes", "above_max"),
    ("k_count", "t2_lanes", "high_bytes"),
])
def test_reject_header_count(field, name, kind, rng):
    """C or k_count == 0, or above c_max or k_max (also when only the high bytes are wrong), is
    rejected at that field."""
    cfg = CONFIGS[name]
    most, high = {"channels": (cfg.c_max, 1 << 24), "k_count": (cfg.k_max, 1 << 16)}[field]
    value = {"zero": lambda n: 0, "above_max": lambda n: most + 1,
             "high_bytes": lambda n: n | high}[kind]
    reject_then_good(cfg, rng, header_reject(cfg, field, value))


def pe_reject(cfg: AccelConfig, field: int, value, xi: int) -> callable:
    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        at = pe_header_offset(im, cfg, xi)
        good = formats._PE_HEADER.unpack_from(data, at)[field]
        data = with_field(data, formats._PE_HEADER, field, value(good), at)
        return bad_frame(data, im, cfg, at + field_end(formats._PE_HEADER, field) - 1)
    return make


@pytest.mark.parametrize("kind", ["more", "fewer", "high_bytes"])
def test_reject_entries(kind, rng):
    """A PE block whose entry count is not C; the PEs before it have been written."""
    cfg = CONFIGS["t2_lanes"]
    value = {"more": lambda n: n + 1, "fewer": lambda n: n - 1,
             "high_bytes": lambda n: n | 1 << 16}[kind]
    reject_then_good(cfg, rng, pe_reject(cfg, 0, value, 5))


@pytest.mark.parametrize("name, kind", [("t2_lanes", "above_depth"), ("t2_bytes", "above_depth"),
                                        ("t2_lanes", "high_bytes")])
def test_reject_words(name, kind, rng):
    """A PE block with more words than wmem_depth; the PEs before it have been written."""
    cfg = CONFIGS[name]
    value = {"above_depth": lambda n: cfg.wmem_depth + 1, "high_bytes": lambda n: n | 1 << 24}
    reject_then_good(cfg, rng, pe_reject(cfg, 1, value[kind], cfg.coords - 1))


@pytest.mark.parametrize("name", ["t2_lanes", "t2_bytes"])
@pytest.mark.parametrize("cut", ["first_byte", "in_header", "end_of_header", "in_pe",
                                 "end_of_item", "before_final"])
def test_reject_truncated(name, cut, rng):
    """``last`` before the record's end: rejected at that byte, nothing to drop."""
    cfg = CONFIGS[name]

    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        ends = [end for end, _ in expected_writes(im, cfg)]
        n = {"first_byte": 1, "in_header": formats._RECORD_HEADER.size // 2,
             "end_of_header": formats._RECORD_HEADER.size,
             "in_pe": int(rng.integers(formats._RECORD_HEADER.size + 1, len(data) - 1)),
             "end_of_item": ends[len(ends) // 2], "before_final": len(data) - 1}[cut]
        return bad_frame(data[:n], im, cfg, n - 1)
    reject_then_good(cfg, rng, make)


@pytest.mark.parametrize("name, extra", [("t2_lanes", 1), ("t2_bytes", 5)])
def test_reject_too_long(name, extra, rng):
    """The record's final byte without ``last``: every write issued, the extra bytes dropped."""
    cfg = CONFIGS[name]

    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        frame = bad_frame(data + bytes(rng.integers(0, 256, extra).tolist()), im, cfg,
                          len(data) - 1)
        assert len(frame.writes) == len(expected_writes(im, cfg))
        return frame
    reject_then_good(cfg, rng, make)


def test_reject_on_a_last_byte_and_in_a_row(rng):
    """A bad C on a byte that also ends the frame, then two bad records back to back."""
    cfg = CONFIGS["t2_lanes"]
    li, im = random_records(cfg, rng, 1, c_max=2)[0]
    data = formats.encode_record(li, im, cfg)
    c_end = field_end(formats._RECORD_HEADER, RECORD_FIELDS.index("channels"))
    short = with_field(data, formats._RECORD_HEADER, RECORD_FIELDS.index("channels"), 0)[:c_end]
    frames = [bad_frame(short, im, cfg, c_end - 1),
              header_reject(cfg, "k_count", lambda K: 0)(li, im),
              bad_frame(data[:-1], im, cfg, len(data) - 2),
              good_frame(li, im, cfg)]
    seen = load(cfg, frames, rng, "stall25", "stall25")
    check(seen, frames)
    assert len(seen.errors) == 3


def test_rejects_a_bad_config():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        WeightLoader({"tile": 2})
