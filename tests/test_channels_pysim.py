# amaranth: UnusedElaboratable=no
# (the constructor-error case creates a component that raises before it can be used)
"""Amaranth-pysim tests of ``hw.channels``: ``ChannelGather`` against
:func:`sw.golden.act_beats` and ``ChannelSerialiser`` against :func:`sw.golden.drain_beats`;
order, count and values under random gaps and back-pressure, and full throughput."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sw.config import AccelConfig
from hw.channels import ChannelGather, ChannelSerialiser
from streams import stream_get, stream_put
from sw import golden

SEED = int(os.environ.get("SEED") or 4204)


def run(dut, beats, count, K, prng, idle):
    out = []

    async def producer(ctx):
        if K is not None:
            ctx.set(dut.k_count, K)
        for beat in beats:
            await stream_put(ctx, dut.i, beat, rng=prng, idle=idle)

    async def consumer(ctx):
        for _ in range(count):
            out.append(await stream_get(ctx, dut.o, rng=prng, idle=idle))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return out


@pytest.mark.parametrize("drain_width,K", [(1, 5), (4, 8), (4, 6), (8, 3)])
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_channels_in_order(drain_width, K, idle):
    seed = SEED + drain_width * 10 + K + int(idle * 10)
    print(f"seed {seed}")
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=drain_width)
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    T = 4
    lo, hi = cfg.acc_range
    M = rng.integers(lo, hi + 1, size=(cfg.coords, K, T))
    M[:, 0, 0], M[:, -1, -1] = lo, hi
    beats = golden.drain_beats(M, drain_width)
    out = run(ChannelSerialiser(cfg), beats, K * T, K, prng, idle)
    expect = [{"m": M[:, k, t].tolist(), "k": k, "last": int(k == K - 1)}
              for t in range(T) for k in range(K)]
    assert out == expect


def test_one_channel_per_cycle():
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=4)
    dut = ChannelSerialiser(cfg)
    M = np.arange(cfg.coords * 8 * 3).reshape(cfg.coords, 8, 3)
    beats = golden.drain_beats(M, 4)
    stamps = []

    async def producer(ctx):
        ctx.set(dut.k_count, 8)
        for beat in beats:
            await stream_put(ctx, dut.i, beat)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(stamps) < 24:
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                stamps.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert stamps == list(range(stamps[0], stamps[0] + 24))


@pytest.mark.parametrize("act_width,C", [(1, 3), (4, 8), (4, 6), (3, 2)])
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_gather_packs_consecutive_channels(act_width, C, idle):
    seed = SEED + act_width * 10 + C + int(idle * 10)
    print(f"seed {seed}")
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=act_width, fifo_depth=8)
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    T = 4
    lo, hi = cfg.v_range
    V = rng.integers(lo, hi + 1, size=(cfg.coords, C, T))
    V[:, 0, 0], V[:, -1, -1] = lo, hi
    V[:, :, 1] = 0
    channels = [{"v": V[:, c, t].tolist(), "c": c, "last": int(c == C - 1)}
                for t in range(T) for c in range(C)]
    expect = golden.act_beats(V, act_width)
    out = run(ChannelGather(cfg), channels, len(expect), None, prng, idle)
    assert out == expect


def test_gather_takes_one_channel_per_cycle():
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=4)
    dut = ChannelGather(cfg)
    stamps = []

    async def producer(ctx):
        for t in range(3):
            for c in range(8):
                await stream_put(ctx, dut.i, {"v": [c] * cfg.coords, "c": c,
                                              "last": int(c == 7)})
                stamps.append(1)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        seen = 0
        while seen < 6:
            await ctx.tick()
            seen += ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    cycles = []

    async def counter(ctx):
        async for _ in ctx.tick():
            cycles.append(len(stamps))

    sim.add_testbench(counter, background=True)
    sim.run()
    # every cycle after the first accepts one channel: 24 channels in 24 cycles
    assert cycles.index(24) <= 24


def test_errors():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not int"):
        ChannelSerialiser(4)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not str"):
        ChannelGather("cfg")
