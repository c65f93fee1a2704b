# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of ``hw.free_running.FreeRunning`` around the output transform: every
tile out once, in order, equal to the golden model, under random gaps and back-pressure (edge
values included); one beat per cycle with latency ``LATENCY`` when nothing stalls; ``i.ready``
a function of the beats held alone; the unit's stage enable constant."""

from __future__ import annotations

import pytest

from hw.free_running import FreeRunning
from hw.transforms import OutputTransform
from streams import Phase, run_streams
from sw.config import AccelConfig
from test_transforms_pysim import expected_output, output_beats
from verif.stalls import bench_rng

STALLS = [("none", "none"), ("stall25", "stall25"), ("bursts", "stall75"),
          ("stall75", "bursts")]
DEPTH = OutputTransform.LATENCY + 2


@pytest.mark.parametrize("m", (2, 4))
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_every_tile_in_order_matches_golden(m, gaps, backpressure):
    cfg = AccelConfig(tile=m)
    rng = bench_rng(f"free_running/{m}/{gaps}/{backpressure}")
    beats = output_beats(cfg, rng, 150)
    dut = FreeRunning(OutputTransform(cfg), depth=DEPTH)
    run = run_streams(dut, Phase({"i": beats}, {"o": len(beats)}), gaps=gaps,
                      backpressure=backpressure, rng=rng,
                      probes={"ready": dut.i.ready, "busy": dut.busy})
    for index, (beat, got) in enumerate(zip(beats, run.received["o"], strict=True)):
        assert got == expected_output(cfg, beat), f"beat {index}: {beat}"
    # i.ready is low exactly when DEPTH beats are admitted and not yet taken on o
    held, ins, outs = 0, set(run.beat_cycles["i"]), set(run.beat_cycles["o"])
    for cycle, ready in enumerate(run.trace["ready"][:run.cycles + 1]):
        assert ready == (held < DEPTH), f"cycle {cycle}: ready {ready} with {held} held"
        assert run.trace["busy"][cycle] == (held > 0), f"cycle {cycle}: busy with {held}"
        held += (cycle in ins) - (cycle in outs)


def test_one_beat_per_cycle():
    cfg = AccelConfig(tile=2)
    beats = output_beats(cfg, bench_rng("free_running/rate"), 60)
    dut = FreeRunning(OutputTransform(cfg), depth=DEPTH)
    run = run_streams(dut, Phase({"i": beats}, {"o": len(beats)}))
    assert run.beat_cycles["i"] == list(range(len(beats)))
    assert run.beat_cycles["o"] == list(range(dut.LATENCY, dut.LATENCY + len(beats)))


def test_unit_output_always_ready():
    """The unit's sink is the constant 1, so its one stage enable is constant too."""
    cfg = AccelConfig(tile=2)
    unit = OutputTransform(cfg)
    dut = FreeRunning(unit, depth=DEPTH)
    beats = output_beats(cfg, bench_rng("free_running/ready"), 30)
    run = run_streams(dut, Phase({"i": beats}, {"o": len(beats)}), gaps="stall25",
                      backpressure="stall75", rng=bench_rng("free_running/ready/stalls"),
                      probes={"unit_ready": unit.o.ready, "unit_i_ready": unit.i.ready})
    assert set(run.trace["unit_ready"]) == {1}
    assert set(run.trace["unit_i_ready"]) == {1}


@pytest.mark.parametrize("depth", [0, OutputTransform.LATENCY + 1, 9.0, True, "16"])
def test_too_shallow_a_queue_is_refused(depth):
    with pytest.raises(ValueError, match=r"depth must be an integer >= unit.LATENCY \+ 2 "
                                         r"\(9\) for one beat per cycle, got "):
        FreeRunning(OutputTransform(AccelConfig(tile=2)), depth=depth)
