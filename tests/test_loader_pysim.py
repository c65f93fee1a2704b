# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of :class:`hw.loader.WeightLoader` against :mod:`sw.formats`.

Records come from :func:`sw.formats.pack_layer` and :func:`sw.formats.encode_record`; the
writes the loader makes must be, in order and count, one per body unit of every PE
(:func:`sw.formats.body_units`), with the unit's directory entry, its weight word or both
(:func:`hw.loader.expected_writes`). Rejected records are
made from good ones by rewriting one header field, cutting the frame, or extending it.

Every behaviour is checked with one byte per beat and with wide beats (``beat_bytes`` 2, 4 or 8,
``keep`` a prefix, junk in the unused lanes of a frame's partial final beat); the top level
streams :data:`sw.formats.WEIGHT_BEAT_BYTES` (8) bytes per beat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from sw.config import AccelConfig
from hw.loader import WeightLoader, expected_writes
from streams import Phase, run_streams
from sw import formats

#: Names of the record header fields, in stream order.
RECORD_FIELDS = tuple(name for name, _ in formats.RECORD_HEADER_FIELDS)

#: Bytes per beat of ``i``: the byte stream and every wide width the loader takes.
BEATS = (1, 2, 4, 8, 16)
#: The wide widths.
WIDE = BEATS[1:]

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


def unit_sizes(image: formats.PassImage, cfg: AccelConfig) -> list[int]:
    """Bytes of each unit a good record of ``image`` is parsed in, in stream order: the record
    header's fields, then per PE its header's fields and its body units
    (:func:`sw.formats.body_units`, :func:`sw.formats.unit_bytes` each)."""
    units = [bits // 8 for _, bits in formats.RECORD_HEADER_FIELDS]
    for xi in range(cfg.coords):
        units += [bits // 8 for _, bits in formats.PE_HEADER_FIELDS]
        units += [formats.unit_bytes(cfg, xi)] * len(formats.body_units(image, cfg, xi))
    assert sum(units) == len(formats.encode_record(0, image, cfg))
    return units


def new_states(cfg: AccelConfig) -> int:
    """Units of a good record that start a new parser state (a header field, a PE's first body
    unit): with wide beats each may wait one cycle for the loader's registered unit length."""
    fields = len(formats.RECORD_HEADER_FIELDS) + cfg.coords * len(formats.PE_HEADER_FIELDS)
    return fields + cfg.coords


def pe_header_offset(image: formats.PassImage, cfg: AccelConfig, xi: int) -> int:
    """Byte offset of PE ``xi``'s header in the record."""
    ends = [end for end, wr in expected_writes(image, cfg) if wr["pe"] < xi]
    return max(ends, default=formats._RECORD_HEADER.size)


def field_end(header, index: int) -> int:
    """Offset just past field ``index`` of a header struct (the last byte it sets to ones)."""
    values = [0] * len(header.unpack(bytes(header.size)))
    values[index] = 0xFFFFFFFF
    return max(k for k, b in enumerate(header.pack(*values)) if b) + 1


def good_frame(layer: int, image: formats.PassImage, cfg: AccelConfig,
               pes: range | None = None) -> Frame:
    return Frame(formats.encode_record(layer, image, cfg, pes),
                 [wr for _, wr in expected_writes(image, cfg, pes=pes)],
                 status=(len(image.directory[0]), image.k_count, image.k_base & 0xFFFF))


def bad_frame(data: bytes, image: formats.PassImage, cfg: AccelConfig, error_at: int,
              pes: range | None = None) -> Frame:
    """A rejected frame: the writes whose bytes all arrived up to ``error_at`` are issued."""
    return Frame(data, [wr for _, wr in expected_writes(image, cfg, error_at + 1, pes)],
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


def frame_beats(data: bytes, beat_bytes: int, rng=None) -> list[dict]:
    """The beats of ``i`` carrying one frame: a byte each for ``beat_bytes`` 1; else
    ``beat_bytes`` bytes each (byte ``j`` in bits ``8j``), ``keep`` a prefix that is full on
    all but a partial final beat, whose unused lanes hold random junk (zeros without ``rng``)."""
    if beat_bytes == 1:
        return [{"data": byte, "last": int(k == len(data) - 1)} for k, byte in enumerate(data)]
    beats = []
    for k in range(0, len(data), beat_bytes):
        chunk = data[k:k + beat_bytes]
        spare = beat_bytes - len(chunk)
        junk = bytes(rng.integers(0, 256, spare).tolist()) if rng is not None else bytes(spare)
        beats.append({"data": int.from_bytes(chunk + junk, "little"),
                      "keep": (1 << len(chunk)) - 1, "last": int(k + beat_bytes >= len(data))})
    return beats


@dataclass
class Observed:
    writes: list[dict]
    errors: list[int]                     # bytes accepted before each error strobe
    error_writes: list[int]               # writes issued (taken or in wr) at each error strobe
    commits: list[tuple[int, ...]]        # (writes taken, records, C, k_count, k_base)
    zeroed: list[int]                     # indices into commits that a rejection overrode
    stalled_bytes: int                    # cycles a beat of i was offered and not taken
    accept_cycles: list[int]              # the cycle each beat of i was accepted in
    write_cycles: list[int]               # the cycle each write was taken in


def load(cfg: AccelConfig, frames: list[Frame], rng=None, gaps: str = "none",
         backpressure: str = "none", beat_bytes: int = 1, pes: range | None = None) -> Observed:
    """Feed ``frames`` back to back, ``beat_bytes`` bytes per beat, and collect what the
    loader does, checking every cycle.

    With one byte per beat, ``idle`` is high exactly when the accepted bytes end a frame and
    no write is pending; with wide beats, only then (bytes still buffered keep it low).
    ``channels``, ``k_count`` and ``k_base`` change only together with ``records``, or to 0
    with the ``error`` strobe of a rejected record; the
    runner checks the stream rules of ``wr`` and that no write beyond the expected ones comes.
    """
    dut = WeightLoader(cfg, beat_bytes, pes)
    beats = [beat for f in frames for beat in frame_beats(f.data, beat_bytes, rng)]
    status = ("records", "channels", "k_count", "k_base")
    probes = {"i_valid": dut.i.valid, "i_ready": dut.i.ready, "wr_valid": dut.wr.valid,
              "error": dut.error, "idle": dut.idle, **{n: getattr(dut, n) for n in status}}
    run = run_streams(dut, Phase({"i": beats}, {"wr": sum(len(f.writes) for f in frames)}),
                      gaps=gaps, backpressure=backpressure, rng=rng, probes=probes)
    trace = {name: np.array(values, dtype=np.int64) for name, values in run.trace.items()}
    taken = run.before("wr")
    sizes = [bin(beat.get("keep", 1)).count("1") for beat in beats]
    accepted = np.cumsum([0] + sizes)[run.before("i")]       # bytes, not beats

    boundaries = np.cumsum([0] + [len(f.data) for f in frames])
    idle = np.isin(accepted, boundaries) & (trace["wr_valid"] == 0)
    wrong = np.flatnonzero((trace["idle"] != idle) if beat_bytes == 1
                           else (trace["idle"] != 0) & ~idle)
    assert not wrong.size, (f"idle = {trace['idle'][wrong[0]]} after {accepted[wrong[0]]} bytes "
                            f"with wr.valid = {trace['wr_valid'][wrong[0]]}")
    assert trace["idle"][-1], "not idle after the last frame"

    now = np.stack([trace[n] for n in status], axis=1)
    before = np.vstack([np.zeros((1, len(status)), np.int64), now[:-1]])
    changes = np.flatnonzero((now != before).any(axis=1))
    error = trace["error"] != 0
    for cycle in changes:
        if now[cycle, 0] == before[cycle, 0]:       # only a rejected record, and it zeroes
            assert error[cycle] and not now[cycle, 1:].any(), \
                f"status changed without a record: {tuple(now[cycle].tolist())}"
    assert not now[error, 1:].any(), "a rejected record left WGT_CHANNELS/KCOUNT/KBASE set"
    changes = changes[now[changes, 0] != before[changes, 0]]
    return Observed(run.received["wr"], accepted[error].tolist(),
                    (taken + trace["wr_valid"])[error].tolist(),
                    [(int(taken[c]), *now[c].tolist()) for c in changes],
                    [n for n, c in enumerate(changes) if error[c]],
                    int(((trace["i_valid"] != 0) & (trace["i_ready"] == 0)).sum()),
                    run.beat_cycles["i"], run.beat_cycles["wr"])


def check(seen: Observed, frames: list[Frame], beat_bytes: int = 1) -> None:
    """Writes in order and count, one strobe per rejected frame, status per good frame.

    A strobe comes once the rejected frame's writes (and no later ones) have been issued:
    with one byte per beat, in the cycle after the rejecting byte; with wide beats, once the
    beat holding that byte has arrived and before any byte of the next frame."""
    want = [wr for f in frames for wr in f.writes]
    for n, (got, exp) in enumerate(zip(seen.writes, want)):
        assert got == exp, f"write {n}: got {got}, expected {exp}"
    assert len(seen.writes) == len(want)
    errors, error_writes, commits = [], [], []
    offset = writes = 0
    for f in frames:
        writes += len(f.writes)
        if f.error_at is not None:
            errors.append((offset + f.error_at + 1, offset + len(f.data)))
            error_writes.append(writes)
        else:
            commits.append((writes, len(commits) + 1, *f.status))
        offset += len(f.data)
    if beat_bytes == 1:
        assert seen.errors == [rejecting for rejecting, _ in errors]
    else:
        assert len(seen.errors) == len(errors), f"{len(seen.errors)} error strobes, " \
                                                f"expected {len(errors)}"
        for got, (rejecting, end) in zip(seen.errors, errors):
            assert rejecting <= got <= end, f"error strobe after {got} bytes, expected " \
                                            f"{rejecting} to {end}"
    assert seen.error_writes == error_writes
    # a record whose commit falls in the cycle the next record is rejected shows zeros: that
    # may happen only when the next frame is the rejected one
    for n in seen.zeroed:
        index = [i for i, f in enumerate(frames) if f.error_at is None][n]
        assert index + 1 < len(frames) and frames[index + 1].error_at is not None, \
            f"record {n + 1} was zeroed without a rejected record after it"
        commits[n] = (*commits[n][:2], 0, 0, 0)
    assert seen.commits == commits


# -- good records ----------------------------------------------------------------------------

@pytest.mark.parametrize("beat_bytes", BEATS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("gaps, backpressure", [("stall25", "none"), ("none", "stall75"),
                                                 ("bursts", "bursts")])
def test_random_records(name, gaps, backpressure, beat_bytes, rng):
    """Every pass of random packed layers, back to back, under valid gaps and back-pressure."""
    cfg = CONFIGS[name]
    frames = [good_frame(li, im, cfg) for li, im in random_records(cfg, rng, 2)]
    seen = load(cfg, frames, rng, gaps, backpressure, beat_bytes)
    check(seen, frames, beat_bytes)
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
    # Each write leaves LATENCY cycles after the byte that completes its unit.
    completing, offset = [], 0
    for (li, im), f in zip(records, frames):
        completing += [offset + end - 1 for end, _ in expected_writes(im, cfg)]
        offset += len(f.data)
    assert seen.write_cycles == [seen.accept_cycles[b] + WeightLoader.LATENCY
                                 for b in completing]


@pytest.mark.parametrize("beat_bytes", BEATS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_edge_records(name, beat_bytes, rng):
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
    assert all(wr["entry"]["en"] for wr in frames[len(passes[0])].writes), \
        "the all-zero layer has words"
    # k_base is a u32 in the stream; the status shows its low 16 bits.
    im = formats.pack_layer(zeros, cfg).passes[0]
    wide = formats.PassImage(im.index, (1 << 16) + 5, im.k_count, im.words, im.directory)
    frames.append(good_frame(9, wide, cfg))
    assert frames[-1].status[2] == 5
    check(load(cfg, frames, rng, "stall25", "stall25", beat_bytes), frames, beat_bytes)


@pytest.mark.parametrize("beat_bytes", WIDE)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_wide_beat_rate(name, beat_bytes, rng):
    """With wide beats and ``wr`` always ready, one unit (header field or body unit) per
    cycle and ``beat_bytes`` bytes per cycle in, whichever is slower: a record of ``N`` bytes
    in ``U`` units takes, from its first beat to its final write, at least
    ``max(ceil(N / beat_bytes), U) + LATENCY`` cycles and at most one cycle per unit or per
    beat's worth of its bytes, whichever is more, plus one per unit that starts a new parser
    state (:func:`new_states`), plus ``LATENCY + 1``. The next record's first beat follows its
    final write within a cycle; no write comes before its bytes."""
    cfg = CONFIGS[name]
    records = random_records(cfg, rng, 2)
    frames = [good_frame(li, im, cfg) for li, im in records]
    seen = load(cfg, frames, beat_bytes=beat_bytes)
    check(seen, frames, beat_bytes)
    beats = np.cumsum([0] + [len(frame_beats(f.data, beat_bytes)) for f in frames])
    writes = np.cumsum([0] + [len(f.writes) for f in frames])
    latency = WeightLoader.LATENCY
    for r, (f, (_, im)) in enumerate(zip(frames, records)):
        units = unit_sizes(im, cfg)
        start = seen.accept_cycles[beats[r]]
        span = seen.write_cycles[writes[r + 1] - 1] - start + 1
        fewest = max(-(-len(f.data) // beat_bytes), len(units)) + latency
        most = (sum(max(1, -(-n // beat_bytes)) for n in units) + new_states(cfg)
                + latency + 1)
        assert fewest <= span <= most, f"record {r}: {span} cycles, expected {fewest} to {most}"
        if r + 1 < len(frames):
            assert seen.accept_cycles[beats[r + 1]] - seen.write_cycles[writes[r + 1] - 1] <= 1
    # No write leaves before LATENCY cycles after the beat holding its final byte.
    for r, (li, im) in enumerate(records):
        for w, (end, _) in enumerate(expected_writes(im, cfg)):
            beat = beats[r] + (end - 1) // beat_bytes
            assert seen.write_cycles[writes[r] + w] >= seen.accept_cycles[beat] + latency


@pytest.mark.parametrize("beat_bytes,slack", [(4, 1.01), (8, 1.02), (16, 1.04)])
def test_wide_rate_of_a_full_layer(beat_bytes, slack):
    """The figures of docs/loader.md: the 43,908-byte record of a 64->64 layer at weight
    density 0.2 (seed 0; 2,735 body units of 16 bytes) loads within a few percent of its beat
    count at every width: 10,983 cycles at 4 bytes per beat, 5,545 at 8 and 2,826 at 16, the
    top level's width (one unit per cycle; the same layer took 3,883 cycles at 16 bytes per
    beat in format version 3, where each directory entry was a unit of its own)."""
    cfg = AccelConfig(c_max=256, k_max=64, w_max=64, wmem_depth=4096)
    gen = np.random.default_rng(0)
    U = gen.integers(-127, 128, size=(cfg.coords, 64, 64))
    U[gen.random(U.shape) >= 0.2] = 0
    (image,) = formats.pack_layer(U, cfg).passes
    frame = good_frame(0, image, cfg)
    assert len(frame.data) == 43908 and len(frame.writes) == 2735
    assert formats.unit_bytes(cfg, 0) == 16
    seen = load(cfg, [frame], beat_bytes=beat_bytes)
    check(seen, [frame], beat_bytes)
    span = seen.write_cycles[-1] - seen.accept_cycles[0] + 1
    beats = -(-len(frame.data) // beat_bytes)
    assert beats + WeightLoader.LATENCY <= span <= slack * beats, span


# -- rejected records --------------------------------------------------------------------------

def reject_then_good(cfg: AccelConfig, rng, make_bad, beat_bytes: int = 1) -> None:
    """A good record, the rejected one ``make_bad(layer, image)`` gives, and a good one."""
    records = random_records(cfg, rng, 1, c_max=2)
    first, (li, im), last = records[0], records[1], records[-1]
    bad = make_bad(li, im)
    assert bad.error_at is not None and len(bad.data) > 0
    frames = [good_frame(*first, cfg), bad, good_frame(*last, cfg)]
    seen = load(cfg, frames, rng, "stall25", "stall25", beat_bytes)
    check(seen, frames, beat_bytes)
    assert len(seen.errors) == 1
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
@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
def test_reject_header_count(field, name, kind, beat_bytes, rng):
    """C or k_count == 0, or above c_max or k_max (also when only the high bytes are wrong), is
    rejected at that field."""
    cfg = CONFIGS[name]
    most, high = {"channels": (cfg.c_max, 1 << 24), "k_count": (cfg.k_max, 1 << 16)}[field]
    value = {"zero": lambda n: 0, "above_max": lambda n: most + 1,
             "high_bytes": lambda n: n | high}[kind]
    reject_then_good(cfg, rng, header_reject(cfg, field, value), beat_bytes)


def pe_reject(cfg: AccelConfig, field: int, value, xi: int) -> callable:
    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        at = pe_header_offset(im, cfg, xi)
        good = formats._PE_HEADER.unpack_from(data, at)[field]
        data = with_field(data, formats._PE_HEADER, field, value(good), at)
        return bad_frame(data, im, cfg, at + field_end(formats._PE_HEADER, field) - 1)
    return make


@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
@pytest.mark.parametrize("kind", ["more", "fewer", "high_bytes"])
def test_reject_entries(kind, beat_bytes, rng):
    """A PE block whose entry count is not C; the PEs before it have been written."""
    cfg = CONFIGS["t2_lanes"]
    value = {"more": lambda n: n + 1, "fewer": lambda n: n - 1,
             "high_bytes": lambda n: n | 1 << 16}[kind]
    reject_then_good(cfg, rng, pe_reject(cfg, 0, value, 5), beat_bytes)


@pytest.mark.parametrize("name, kind", [("t2_lanes", "above_depth"), ("t2_bytes", "above_depth"),
                                        ("t2_lanes", "high_bytes")])
@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
def test_reject_words(name, kind, beat_bytes, rng):
    """A PE block with more words than wmem_depth; the PEs before it have been written."""
    cfg = CONFIGS[name]
    value = {"above_depth": lambda n: cfg.wmem_depth + 1, "high_bytes": lambda n: n | 1 << 24}
    reject_then_good(cfg, rng, pe_reject(cfg, 1, value[kind], cfg.coords - 1), beat_bytes)


@pytest.mark.parametrize("name", ["t2_lanes", "t2_bytes"])
@pytest.mark.parametrize("kind", ["fewer", "more"])
@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
def test_reject_word_count(name, kind, beat_bytes, rng):
    """A PE header whose word count is not what its columns hold: with ``fewer``, the unit
    carrying the word beyond it is rejected; with ``more``, the unit that ends the PE's last
    column. The rejected unit writes nothing (neither its entry nor its word); the units
    before it, this PE's included, have been written."""
    cfg = CONFIGS[name]

    def fits(im, x):
        return 0 < len(im.words[x]) < cfg.wmem_depth

    records = random_records(cfg, rng, 2)
    li, im = next((li, im) for li, im in records[1:] if any(fits(im, x) for x in range(cfg.coords)))
    xi = max(x for x in range(cfg.coords) if fits(im, x))
    n = len(im.words[xi])
    data = formats.encode_record(li, im, cfg)
    at = pe_header_offset(im, cfg, xi)
    data = with_field(data, formats._PE_HEADER, 1, n - 1 if kind == "fewer" else n + 1, at)
    body = at + formats._PE_HEADER.size
    units = formats.body_units(im, cfg, xi)
    size = formats.unit_bytes(cfg, xi)
    # fewer: the unit of the PE's last word; more: the PE's last unit.
    bad = (max(u for u, (_, word) in enumerate(units) if word is not None)
           if kind == "fewer" else len(units) - 1)
    frame = bad_frame(data, im, cfg, body + (bad + 1) * size - 1)
    frame.writes = [wr for _, wr in expected_writes(im, cfg, body + bad * size)]
    frames = [good_frame(*records[0], cfg), frame, good_frame(*records[-1], cfg)]
    seen = load(cfg, frames, rng, "stall25", "stall25", beat_bytes)
    check(seen, frames, beat_bytes)
    assert len(seen.errors) == 1


@pytest.mark.parametrize("name", ["t2_lanes", "t2_bytes"])
@pytest.mark.parametrize("cut", ["first_byte", "in_header", "end_of_header", "in_pe",
                                 "end_of_item", "before_final"])
@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
def test_reject_truncated(name, cut, beat_bytes, rng):
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
    reject_then_good(cfg, rng, make, beat_bytes)


@pytest.mark.parametrize("name, extra", [("t2_lanes", 1), ("t2_bytes", 5)])
@pytest.mark.parametrize("beat_bytes", (1, 4, 8))
def test_reject_too_long(name, extra, beat_bytes, rng):
    """The record's final byte without ``last``: every write issued, the extra bytes dropped."""
    cfg = CONFIGS[name]

    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        frame = bad_frame(data + bytes(rng.integers(0, 256, extra).tolist()), im, cfg,
                          len(data) - 1)
        assert len(frame.writes) == len(expected_writes(im, cfg))
        return frame
    reject_then_good(cfg, rng, make, beat_bytes)


@pytest.mark.parametrize("beat_bytes", WIDE)
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("end", ["cut_on_beat", "cut_in_beat", "cut_on_item", "long_in_beat",
                                 "long_by_beats"])
def test_wide_frame_ends(name, end, beat_bytes, rng):
    """Wide beats: a frame cut short or too long, ending on a beat boundary (a full final
    beat) or inside a beat (a partial final beat, junk in its unused lanes), is rejected at
    its final byte or at the record's final byte; the good record after it loads."""
    cfg = CONFIGS[name]

    def make(li, im):
        data = formats.encode_record(li, im, cfg)
        if end.startswith("cut"):
            ends = [e for e, _ in expected_writes(im, cfg) if e < len(data)]
            cuts = {"cut_on_beat": range(beat_bytes, len(data), beat_bytes),
                    "cut_in_beat": [n for n in range(1, len(data)) if n % beat_bytes],
                    "cut_on_item": ends}[end]
            n = int(rng.choice(cuts))
            return bad_frame(data[:n], im, cfg, n - 1)
        extra = {"long_in_beat": 1 if (len(data) + 1) % beat_bytes else 2,
                 "long_by_beats": 2 * beat_bytes + -len(data) % beat_bytes}[end]
        longer = data + bytes(rng.integers(0, 256, extra).tolist())
        assert (len(longer) % beat_bytes == 0) == (end == "long_by_beats")
        return bad_frame(longer, im, cfg, len(data) - 1)
    reject_then_good(cfg, rng, make, beat_bytes)


@pytest.mark.parametrize("beat_bytes", BEATS)
def test_reject_on_a_last_byte_and_in_a_row(beat_bytes, rng):
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
    seen = load(cfg, frames, rng, "stall25", "stall25", beat_bytes)
    check(seen, frames, beat_bytes)
    assert len(seen.errors) == 3


def test_rejects_a_bad_config():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        WeightLoader({"tile": 2})


@pytest.mark.parametrize("beat_bytes", [0, 3, 32, "4"])
def test_rejects_a_bad_beat_width(beat_bytes):
    with pytest.raises(ValueError, match=f"^beat_bytes must be 1, 2, 4, 8 or 16, not "
                                         f"{beat_bytes!r}$"):
        WeightLoader(CONFIGS["t2_lanes"], beat_bytes)


# -- a weight-load port's share of the PEs ---------------------------------------------------

@pytest.mark.parametrize("beat_bytes", (1, 16))
@pytest.mark.parametrize("name", ["t2_lanes", "t4_lanes"])
def test_port_records(name, beat_bytes, rng):
    """A loader over one port's PEs (``weight_ports`` 2, :func:`sw.formats.port_pes`) takes
    that port's frames (:func:`sw.formats.record_frames`): the writes are those PEs' units,
    named by their index in the array, under gaps and back-pressure; a frame whose first PE
    block is wrong is rejected, and the next good one commits."""
    cfg = replace(CONFIGS[name], weight_ports=2)
    records = random_records(cfg, rng, 2)
    for port in range(cfg.weight_ports):
        pes = formats.port_pes(cfg, port)
        assert [f[port] for f in (formats.record_frames(li, im, cfg) for li, im in records)] \
            == [formats.encode_record(li, im, cfg, pes) for li, im in records]
        frames = [good_frame(li, im, cfg, pes) for li, im in records]
        li, image = records[0]
        data = bytearray(frames[0].data)
        at = formats._RECORD_HEADER.size              # the port's first PE's `entries`
        data[at:at + 4] = (len(image.directory[0]) + 1).to_bytes(4, "little")
        frames.insert(1, bad_frame(bytes(data), image, cfg, at + 3, pes))
        seen = load(cfg, frames, rng, "stall25", "stall75", beat_bytes, pes)
        check(seen, frames, beat_bytes)
        assert {wr["pe"] for wr in seen.writes} == set(pes)


def test_port_pes_split():
    """The ports split the PEs into contiguous runs that cover them once, sizes within one."""
    for tile in (2, 4):
        for ports in (2, 3, 4):
            cfg = AccelConfig(tile=tile, weight_ports=ports)
            runs = [formats.port_pes(cfg, p) for p in range(ports)]
            assert [xi for r in runs for xi in r] == list(range(cfg.coords))
            assert max(map(len, runs)) - min(map(len, runs)) <= 1
    assert formats.port_pes(AccelConfig(), 0) == range(16)
    assert [formats.port_pes(AccelConfig(weight_ports=3), p) for p in range(3)] == \
        [range(0, 6), range(6, 11), range(11, 16)]
    with pytest.raises(ValueError, match="port 2 of 2"):
        formats.port_pes(AccelConfig(weight_ports=2), 2)
