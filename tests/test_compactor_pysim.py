# amaranth: UnusedElaboratable=no
# (the constructor-error cases create components that raise before they can be used)
"""Amaranth-pysim test of ``hw.compactor.CompactingQueue`` against a Python deque: random
input masks and random takes, every visible entry and the level checked every cycle."""

from __future__ import annotations

import collections
import os
import random

import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from hw.compactor import CompactingQueue

SEED = int(os.environ.get("SEED") or 4304)


@pytest.mark.parametrize("inputs,outputs,depth", [(1, 1, 2), (4, 1, 8), (8, 4, 16), (3, 2, 8)])
def test_queue_matches_a_deque(inputs, outputs, depth):
    seed = SEED + inputs * 100 + outputs * 10 + depth
    print(f"seed {seed}")
    rng = random.Random(seed)
    dut = CompactingQueue(unsigned(12), inputs=inputs, outputs=outputs, depth=depth)
    model = collections.deque()
    serial = [0]
    checked = [0]

    async def bench(ctx):
        for _ in range(600):
            level = len(model)
            assert ctx.get(dut.level) == level
            assert ctx.get(dut.room) == (level <= depth - inputs)
            count = min(level, outputs)
            assert ctx.get(dut.o_count) == count
            for j in range(count):
                assert ctx.get(dut.o_data[j]) == model[j], f"entry {j}"
            take = rng.randint(0, count)
            mask = [rng.random() < 0.6 for _ in range(inputs)] if ctx.get(dut.room) \
                else [False] * inputs
            data = [rng.randrange(1 << 12) for _ in range(inputs)]
            ctx.set(dut.o_take, take)
            ctx.set(dut.i_valid, sum(1 << i for i, v in enumerate(mask) if v))
            for i, x in enumerate(data):
                ctx.set(dut.i_data[i], x)
            await ctx.tick()
            for _ in range(take):
                model.popleft()
            model.extend(x for x, v in zip(data, mask) if v)
            serial[0] += sum(mask)
            checked[0] += take

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert checked[0] > 100 and serial[0] > 100


@pytest.mark.parametrize("kwargs,text", [
    (dict(inputs=0, outputs=1, depth=4), "inputs must be an integer >= 1, not 0"),
    (dict(inputs=4, outputs=1, depth=4), "depth must be an integer >= 5, not 4"),
    (dict(inputs=2, outputs=2, depth=6), "depth must be a power of two, not 6"),
])
def test_errors(kwargs, text):
    with pytest.raises(ValueError, match=text):
        CompactingQueue(unsigned(8), **kwargs)
