"""cocotb bench for :class:`hw.loader.WeightLoader` on the generated Verilog.

``$WINNOW_CONFIG`` names the ``winnow.json`` of the case. Each test:

1. packs random sparse layers (extreme weights mixed in, several passes) with
   :func:`sw.formats.pack_layer` and makes one frame per record with
   :func:`sw.formats.encode_record`, in beats of :data:`sw.formats.WEIGHT_BEAT_BYTES` bytes
   as the accelerator's ``s_axis_wgt`` carries them (``keep`` a prefix, junk in the unused
   lanes of a partial final beat, ``last`` on the final beat): the generated component is
   :func:`hw.loader.accelerator_loader`;
2. in ``random_records`` sends them back to back; in ``rejected_records`` it puts between
   good records one with ``C = c_max + 1``, one truncated inside a PE header, and one with
   extra bytes after its end;
3. checks every write on ``wr`` bit for bit, in order and count, against the PEs'
   :func:`sw.formats.directory_words` and ``PassImage.words`` (for a rejected record, the
   entries and words whose bytes all arrived), with an in-order scoreboard under the
   back-pressure pattern (the harness is a :class:`~verif.streams.StreamBench`);
4. checks each ``error`` strobe comes after the beat holding the rejecting byte and no later
   than the rejected frame's final beat (the loader parses from a byte buffer, so the strobe
   follows the unit holding that byte, before any beat of the next frame), and that ``records``,
   ``channels``, ``k_count`` and ``k_base`` step through the good records in order, the last
   three dropping to 0 at each rejected record.

``$WINNOW_SAMPLES`` sets the number of random layers per test (default 2).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from hw.array import SparseArray
from sw.config import AccelConfig
from hw.loader import beat_layout, expected_writes
from sw import formats
from verif.streams import StreamBench, case_config, sample_count

DEFAULT_LAYERS = 2
#: Record bytes per beat of ``i``: the accelerator's.
BEAT_BYTES = formats.WEIGHT_BEAT_BYTES
#: Names of the record header fields, in stream order.
RECORD_FIELDS = tuple(name for name, _ in formats.RECORD_HEADER_FIELDS)


def _records(cfg: AccelConfig, rng: np.random.Generator, layers: int):
    """Every pass of random layers; the first has ``k_max + 1`` output channels."""
    lo, hi = cfg.wgt_range
    out = []
    for li in range(layers):
        K = cfg.k_max + 1 if li == 0 else int(rng.integers(1, 2 * cfg.k_max + 1))
        C = int(rng.integers(1, cfg.c_max + 1))
        U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
        pick = rng.random(U.shape)
        U[pick < 0.1], U[pick > 0.9] = lo, hi
        U[rng.random(U.shape) >= rng.uniform(0.05, 1.0)] = 0
        out += [(li, im) for im in formats.pack_layer(U, cfg).passes]
    return out


def _good(li: int, image: formats.PassImage, cfg: AccelConfig) -> dict:
    return {"data": formats.encode_record(li, image, cfg),
            "writes": [wr for _, wr in expected_writes(image, cfg)], "error_at": None,
            "status": (len(image.directory[0]), image.k_count, image.k_base & 0xFFFF)}


def _bad(data: bytes, image: formats.PassImage, cfg: AccelConfig, error_at: int) -> dict:
    return {"data": data, "error_at": error_at, "status": None,
            "writes": [wr for _, wr in expected_writes(image, cfg, error_at + 1)]}


def _rejects(li: int, image: formats.PassImage, cfg: AccelConfig, rng: random.Random):
    data = formats.encode_record(li, image, cfg)
    index = RECORD_FIELDS.index("channels")
    fields = list(formats._RECORD_HEADER.unpack_from(data))
    fields[index] = cfg.c_max + 1
    wide = formats._RECORD_HEADER.pack(*fields) + data[formats._RECORD_HEADER.size:]
    marker = [0] * len(fields)
    marker[index] = 0xFFFFFFFF
    c_end = max(k for k, b in enumerate(formats._RECORD_HEADER.pack(*marker)) if b) + 1
    xi = rng.randrange(1, cfg.coords)
    cut = max(end for end, wr in expected_writes(image, cfg) if wr["pe"] < xi) + 3
    return [_bad(wide, image, cfg, c_end - 1),
            _bad(data[:cut], image, cfg, cut - 1),
            _bad(data + bytes([rng.randrange(256) for _ in range(4)]), image, cfg,
                 len(data) - 1)]


def _beats(data: bytes, rng: random.Random) -> list[dict]:
    """The beats of one frame: :data:`BEAT_BYTES` bytes each, byte ``j`` in bits ``8j``."""
    beats = []
    for k in range(0, len(data), BEAT_BYTES):
        chunk = data[k:k + BEAT_BYTES]
        junk = bytes(rng.randrange(256) for _ in range(BEAT_BYTES - len(chunk)))
        beats.append({"data": int.from_bytes(chunk + junk, "little"),
                      "keep": (1 << len(chunk)) - 1, "last": int(k + BEAT_BYTES >= len(data))})
    return beats


async def _run(dut, bench: StreamBench, frames: list[dict]):
    await bench.start()
    assert int(dut.idle.value) == 1, "not idle after reset"
    driver = bench.drivers["i"]
    errors, statuses = [], []

    async def watch():
        # Registers are read after the edge: ``driver.sent`` counts the beats taken up to
        # this edge, so a strobe here follows the beat holding the rejecting byte when it is
        # past that beat.
        status = (0, 0, 0, 0)
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.error.value):
                errors.append(driver.sent)
            now = tuple(int(getattr(dut, s).value)
                        for s in ("records", "channels", "k_count", "k_base"))
            if now != status:
                statuses.append(now)
                status = now

    cocotb.start_soon(watch())
    expect_errors, expect_status = [], []
    offset = good = 0
    for f in frames:
        beats = _beats(f["data"], bench.rng)
        bench.send({"i": beats}, {"wr": f["writes"]})
        if f["error_at"] is None:
            good += 1
            expect_status.append((good & 0xFFFF, *f["status"]))
        else:
            expect_errors.append((offset + f["error_at"] // BEAT_BYTES + 1,
                                  offset + len(beats)))
            # a rejected record zeroes channels, k_count and k_base (records stays)
            if expect_status and any(expect_status[-1][1:]):
                expect_status.append((good & 0xFFFF, 0, 0, 0))
        offset += len(beats)

    cycles = await bench.drain(40 * BEAT_BYTES * offset + 200, idle=True)
    await bench.finish()
    assert int(dut.idle.value) == 1, "not idle after the last frame"
    assert len(errors) == len(expect_errors) and all(
        lo <= got <= hi for got, (lo, hi) in zip(errors, expect_errors)), \
        f"error strobes after beats {errors}, expected in {expect_errors}"
    assert statuses == expect_status, f"status sequence {statuses}, expected {expect_status}"
    dut._log.info(f"{bench.name}: {len(frames)} frames, {offset} beats, {len(errors)} "
                  f"rejected, {cycles} cycles")


def _setup(dut, name: str, gaps: str, backpressure: str):
    cfg = case_config()
    bench = StreamBench(dut, name, inputs={"i": beat_layout(BEAT_BYTES)},
                        outputs={"wr": SparseArray.layouts(cfg)[1]}, gaps=gaps,
                        backpressure=backpressure)
    records = _records(cfg, np.random.default_rng(bench.rng.randrange(1 << 32)),
                       sample_count(DEFAULT_LAYERS))
    return cfg, bench, records


@cocotb.test()
@cocotb.parametrize(gaps=("none", "stall25"), backpressure=("none", "stall75", "bursts"))
async def random_records(dut, gaps: str, backpressure: str):
    """Every pass of random packed layers, back to back."""
    cfg, bench, records = _setup(dut, f"weight_loader gaps={gaps} backpressure={backpressure}",
                                 gaps, backpressure)
    await _run(dut, bench, [_good(li, im, cfg) for li, im in records])


@cocotb.test()
@cocotb.parametrize(backpressure=("none", "stall75"))
async def rejected_records(dut, backpressure: str):
    """C above c_max, a truncated record and a too-long one, each between good records."""
    cfg, bench, records = _setup(dut, f"weight_loader rejects backpressure={backpressure}",
                                 "stall25", backpressure)
    frames = []
    for n, bad in enumerate(_rejects(*records[1], cfg, bench.rng)):
        frames += [_good(*records[n % len(records)], cfg), bad]
    frames.append(_good(*records[-1], cfg))
    await _run(dut, bench, frames)
