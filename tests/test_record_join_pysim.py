# amaranth: UnusedElaboratable=no
"""Amaranth-pysim tests of :class:`hw.record_join.RecordJoin`: one record out of the frames of
two weight-load ports.

Each test drives the ports' frame beats and their loaders' outcomes cycle by cycle and checks
the strobes, the status and ``hold`` to the cycle: a record counts once both ports' frames
ended good with equal headers, and is rejected (status 0) when either was rejected or the
headers differ; a port that has ended its frame holds its next one until the join, whatever
order the ports end in; a rejected frame's outcome may come before its last beat.
"""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from hw.record_join import RecordJoin
from sw.config import AccelConfig

CFG = AccelConfig(weight_ports=2, c_max=8, k_max=4)


def simulate(script: list[dict], cfg: AccelConfig = CFG) -> list[dict]:
    """Drive one cycle per ``script`` entry, ``{(port, field): value}`` (the strobes 0 unless
    given, the status fields holding their last value), and return what each cycle shows."""
    dut = RecordJoin(cfg)
    ports = range(cfg.weight_ports)
    seen = []

    async def bench(ctx):
        status = {p: {"channels": 0, "k_count": 0, "k_base": 0} for p in ports}
        for drive in script:
            for p in ports:
                for name in ("beat", "last", "good", "bad"):
                    ctx.set(dut.port[p][name], drive.get((p, name), 0))
                for name in status[p]:
                    status[p][name] = drive.get((p, name), status[p][name])
                    ctx.set(dut.port[p][name], status[p][name])
            values = await ctx.tick().sample(dut.hold, dut.committed, dut.rejected,
                                             dut.records, dut.channels, dut.k_count,
                                             dut.k_base)
            seen.append(dict(zip(("hold", "committed", "rejected", "records", "channels",
                                  "k_count", "k_base"), values[2:])))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


def frame(p: int, beats: int) -> list[dict]:
    """Port ``p``'s frame of ``beats`` beats, one per cycle."""
    return [{(p, "beat"): 1, (p, "last"): int(k == beats - 1)} for k in range(beats)]


def good(p: int, channels: int = 5, k_count: int = 3, k_base: int = 7) -> dict:
    return {(p, "good"): 1, (p, "channels"): channels, (p, "k_count"): k_count,
            (p, "k_base"): k_base}


def merge(*drives: dict) -> dict:
    out = {}
    for d in drives:
        out.update(d)
    return out


def test_record_counts_when_both_ports_ended():
    """Port 0 ends first and holds its next frame; the record counts the cycle after port 1's
    outcome, with the header as status; then both ports are free again."""
    script = (frame(0, 2) + [good(0)] + frame(1, 3) + [good(1), {}, {}])
    seen = simulate(script)
    # port 0 began, ended its frame: held from the cycle after its last beat until the join
    assert [s["hold"] & 1 for s in seen] == [0, 0, 1, 1, 1, 1, 1, 1, 0]
    assert [s["hold"] >> 1 for s in seen] == [0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert [s["committed"] for s in seen] == [0] * 7 + [1, 0]
    assert not any(s["rejected"] for s in seen)
    assert [s["records"] for s in seen] == [0] * 8 + [1]
    assert (seen[-1]["channels"], seen[-1]["k_count"], seen[-1]["k_base"]) == (5, 3, 7)


@pytest.mark.parametrize("fault", ["port0_rejected", "port1_rejected", "headers_differ"])
def test_record_rejected(fault):
    """A good record, then one whose ports disagree or one of whose loaders rejected its
    frame: a rejected strobe once both ended, no count, the status 0; then a good record
    counts again."""
    one = frame(0, 1) + frame(1, 1) + [merge(good(0), good(1)), {}, {}]
    if fault == "headers_differ":
        outcomes = merge(good(0), good(1, k_base=8))
    else:
        bad = int(fault[4])
        outcomes = merge(good(1 - bad), {(bad, "bad"): 1, (bad, "channels"): 0,
                                         (bad, "k_count"): 0, (bad, "k_base"): 0})
    two = frame(0, 1) + frame(1, 1) + [outcomes, {}, {}]
    three = frame(0, 1) + frame(1, 1) + [merge(good(0, 2, 1, 0), good(1, 2, 1, 0)), {}, {}]
    seen = simulate(one + two + three)
    assert [n for n, s in enumerate(seen) if s["committed"]] == [3, 13]
    assert [n for n, s in enumerate(seen) if s["rejected"]] == [8]
    assert seen[8]["records"] == 1 and seen[9]["records"] == 1
    assert (seen[9]["channels"], seen[9]["k_count"], seen[9]["k_base"]) == (0, 0, 0)
    assert seen[-1]["records"] == 2
    assert (seen[-1]["channels"], seen[-1]["k_count"], seen[-1]["k_base"]) == (2, 1, 0)


def test_rejected_frame_ends_after_its_record_is_joined():
    """Port 1's loader rejects its frame at the header, before the frame's last beat; the
    record is joined (rejected) while the rest of the frame still goes by, and port 1's next
    frame is not held by it."""
    script = (frame(0, 1) + [good(0)]
              + [{(1, "beat"): 1}, {(1, "beat"): 1, (1, "bad"): 1}, {(1, "beat"): 1}, {},
                 {(1, "beat"): 1}, {(1, "beat"): 1, (1, "last"): 1}, {}]
              + frame(1, 1) + frame(0, 1) + [merge(good(0), good(1)), {}, {}])
    seen = simulate(script)
    assert [n for n, s in enumerate(seen) if s["rejected"]] == [4]
    assert not seen[8]["hold"] & 2, "port 1's next frame held after its rejected one"
    assert [n for n, s in enumerate(seen) if s["committed"]] == [12]
    assert seen[-1]["records"] == 1


def test_four_ports_join_at_the_last():
    """Four ports (``weight_ports`` 4) end their frames in the order 2, 0, 3, 1: each holds its
    next frame from the cycle after its last beat, the record counts the cycle after the last
    port's outcome; a second record on which port 3's header differs is rejected."""
    cfg = AccelConfig(weight_ports=4, c_max=8, k_max=4)
    order = [2, 0, 3, 1]
    script = [step for p in order for step in frame(p, 2) + [good(p)]] + [{}, {}]
    seen = simulate(script, cfg)
    ends = {p: 3 * n + 1 for n, p in enumerate(order)}      # the cycle of p's last beat
    for p in range(4):
        assert [(s["hold"] >> p) & 1 for s in seen[:12]] == \
            [int(ends[p] < c) for c in range(12)], f"port {p}'s hold"
    assert [n for n, s in enumerate(seen) if s["committed"]] == [12]
    assert seen[-1]["records"] == 1 and seen[-1]["hold"] == 0
    differ = [step for p in range(4) for step in frame(p, 1)] + \
        [merge(good(0), good(1), good(2), good(3, k_base=8)), {}, {}]
    seen = simulate(script + differ, cfg)
    assert [n for n, s in enumerate(seen) if s["rejected"]] == [len(script) + 5]
    assert seen[-1]["records"] == 1


def test_refuses_one_port():
    with pytest.raises(ValueError, match="two or more"):
        RecordJoin(AccelConfig())
