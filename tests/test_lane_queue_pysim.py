# amaranth: UnusedElaboratable=no
"""Amaranth-pysim test of :class:`hw.lane_queue.LaneQueue` against a Python deque.

Random groups of 1..slots entries go in whenever the queue says it has room (and sometimes not
even then), random back-pressure on the output; every entry must come out once, in order, with
its group's fields and ``last`` on the group's final entry; ``empty`` must be exact.
"""

from __future__ import annotations

from collections import deque

import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.lane_queue import LaneQueue
from verif.stalls import bench_rng, pattern

GROUP = data.StructLayout({"tag": unsigned(8), "flag": unsigned(1)})
SLOT = data.StructLayout({"value": unsigned(6)})


@pytest.mark.parametrize("slots", [1, 2, 3])
@pytest.mark.parametrize("gaps,backpressure", [("none", "none"), ("stall25", "stall75"),
                                               ("bursts", "bursts"), ("none", "stall75")])
def test_lane_queue_keeps_order_and_groups(slots, gaps, backpressure):
    rng = bench_rng(f"lane_queue/{slots}/{gaps}/{backpressure}")
    dut = LaneQueue(GROUP, SLOT, slots=slots, depth=4)
    groups = []
    for g in range(120):
        size = rng.randint(1, slots)
        groups.append(({"tag": g % 256, "flag": rng.randint(0, 1)},
                       [rng.randrange(64) for _ in range(size)]))
    expect = deque((grp, value, s == len(values) - 1)
                   for grp, values in groups for s, value in enumerate(values))
    total = len(expect)
    received = []

    async def producer(ctx):
        gap = pattern(gaps, rng)
        for grp, values in groups:
            while True:
                # the queue's room is for a group written in the next cycle
                room = ctx.get(dut.room)
                await ctx.tick()
                if room and not next(gap):
                    break
            ctx.set(dut.i_count, len(values))
            ctx.set(dut.i_group, grp)
            ctx.set(dut.i_slot, [{"value": v} for v in values] +
                    [{"value": 0}] * (slots - len(values)))
            await ctx.tick()
            ctx.set(dut.i_count, 0)

    async def consumer(ctx):
        stall = pattern(backpressure, rng)
        cycles = 0
        while len(received) < total:
            ready = not next(stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            assert cycles < 40 * total, "the queue stopped giving entries"
            if valid and ready:
                received.append(({"tag": payload.group.tag, "flag": payload.group.flag},
                                 payload.slot.value, bool(payload.last)))
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        assert ctx.get(dut.empty), "not empty after every entry left"
        assert not ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert received == list(expect)


def test_lane_queue_rejects_bad_parameters():
    with pytest.raises(ValueError, match="slots must be an integer >= 1, not 0"):
        LaneQueue(GROUP, SLOT, slots=0, depth=4)
    with pytest.raises(ValueError, match="depth must be an integer >= 4, not 2"):
        LaneQueue(GROUP, SLOT, slots=2, depth=2)
