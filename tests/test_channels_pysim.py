# amaranth: UnusedElaboratable=no
# (the constructor-error case creates a component that raises before it can be used)
"""Amaranth-pysim tests of ``hw.channels``: ``ChannelGather`` against
:func:`sw.golden.act_beats` and ``ChannelSerialiser`` against :func:`sw.golden.drain_beats`;
order, count and values under random gaps and back-pressure, and full throughput."""

from __future__ import annotations

import numpy as np
import pytest

from sw.config import AccelConfig
from hw.channels import ChannelGather, ChannelSerialiser
from streams import Phase, run_streams
from sw import golden

#: (valid gaps, back-pressure) of the randomised tests.
STALLS = [("none", "none"), ("stall25", "stall25"), ("bursts", "stall75")]


def run(dut, beats, count, K=None, **stalls):
    """Stream ``beats`` through ``i`` (``k_count`` set to ``K`` if given), take ``count`` from
    ``o``; returns the run."""
    def setup(ctx):
        if K is not None:
            ctx.set(dut.k_count, K)
    return run_streams(dut, Phase({"i": beats}, {"o": count}, setup), **stalls)


@pytest.mark.parametrize("drain_width,K", [(1, 5), (4, 8), (4, 6), (8, 3)])
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_channels_in_order(drain_width, K, gaps, backpressure, rng):
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=drain_width,
                      lanes=max(4, drain_width))     # a lane drains one channel per cycle
    T = 4
    lo, hi = cfg.acc_range
    M = rng.integers(lo, hi + 1, size=(cfg.coords, K, T))
    M[:, 0, 0], M[:, -1, -1] = lo, hi
    beats = golden.drain_beats(M, drain_width)
    out = run(ChannelSerialiser(cfg), beats, K * T, K, gaps=gaps, backpressure=backpressure,
              rng=rng).received["o"]
    expect = [{"m": M[:, k, t].tolist(), "k": k, "last": int(k == K - 1)}
              for t in range(T) for k in range(K)]
    assert out == expect


def test_one_channel_per_cycle():
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=4)
    dut = ChannelSerialiser(cfg)
    M = np.arange(cfg.coords * 8 * 3).reshape(cfg.coords, 8, 3)
    stamps = run(dut, golden.drain_beats(M, 4), 24, 8).beat_cycles["o"]
    assert stamps == list(range(stamps[0], stamps[0] + 24))


@pytest.mark.parametrize("act_width,C", [(1, 3), (4, 8), (4, 6), (3, 2)])
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_gather_packs_consecutive_channels(act_width, C, gaps, backpressure, rng):
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=act_width, fifo_depth=8)
    T = 4
    lo, hi = cfg.v_range
    V = rng.integers(lo, hi + 1, size=(cfg.coords, C, T))
    V[:, 0, 0], V[:, -1, -1] = lo, hi
    V[:, :, 1] = 0
    channels = [{"v": V[:, c, t].tolist(), "c": c, "last": int(c == C - 1)}
                for t in range(T) for c in range(C)]
    expect = golden.act_beats(V, act_width)
    out = run(ChannelGather(cfg), channels, len(expect), gaps=gaps, backpressure=backpressure,
              rng=rng).received["o"]
    assert out == expect


def test_gather_takes_one_channel_per_cycle():
    """One channel accepted every cycle: 24 channels in cycles 0 to 23."""
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=4)
    channels = [{"v": [c] * cfg.coords, "c": c, "last": int(c == 7)}
                for _ in range(3) for c in range(8)]
    accepted = run(ChannelGather(cfg), channels, 6).beat_cycles["i"]
    assert accepted == list(range(24))


def test_errors():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not int"):
        ChannelSerialiser(4)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not str"):
        ChannelGather("cfg")
