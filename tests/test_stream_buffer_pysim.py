"""Amaranth-pysim tests of ``hw.stream_buffer.StreamBuffer``: every beat out once, in order,
with its payload, under random gaps and back-pressure (edge values included); one beat per
cycle when nothing stalls; ``i.ready`` a function of the registers alone."""

from __future__ import annotations

import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from hw.stream_buffer import StreamBuffer
from streams import Phase, run_streams

LAYOUT = data.StructLayout({"v": signed(8), "k": 6, "last": 1})
STALLS = [("none", "none"), ("stall25", "stall25"), ("bursts", "stall75"),
          ("stall75", "bursts")]


def beats(rng, count):
    values = [-128, 127, 0, -1] + [int(v) for v in rng.integers(-128, 128, count - 4)]
    return [{"v": v, "k": int(k), "last": int(i % 7 == 6)}
            for i, (v, k) in enumerate(zip(values, rng.integers(0, 64, count)))]


@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_every_beat_in_order(gaps, backpressure, rng):
    sent = beats(rng, 300)
    dut = StreamBuffer(LAYOUT)
    run = run_streams(dut, Phase({"i": sent}, {"o": len(sent)}), gaps=gaps,
                      backpressure=backpressure, rng=rng,
                      probes={"ready": dut.i.ready, "busy": dut.busy})
    assert run.received["o"] == sent
    # i.ready is low exactly when two beats are held: it never waits on o.ready
    held, ins, outs = 0, set(run.beat_cycles["i"]), set(run.beat_cycles["o"])
    for cycle, ready in enumerate(run.trace["ready"][:run.cycles + 1]):
        assert ready == (held < 2), f"cycle {cycle}: ready {ready} with {held} beats held"
        assert run.trace["busy"][cycle] == (held > 0)
        held += (cycle in ins) - (cycle in outs)


def test_one_beat_per_cycle_latency_one(rng):
    sent = beats(rng, 50)
    run = run_streams(StreamBuffer(LAYOUT), Phase({"i": sent}, {"o": len(sent)}))
    assert run.beat_cycles["i"] == list(range(50))
    assert run.beat_cycles["o"] == list(range(StreamBuffer.LATENCY, StreamBuffer.LATENCY + 50))


def test_plain_shape():
    run = run_streams(StreamBuffer(signed(4)), Phase({"i": [-8, 7, 0, 3]}, {"o": 4}))
    assert run.received["o"] == [-8, 7, 0, 3]
