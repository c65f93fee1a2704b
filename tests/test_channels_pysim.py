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


@pytest.mark.parametrize("drain_width,P,K", [(1, 1, 5), (4, 1, 8), (4, 1, 6), (8, 1, 3),
                                             (4, 2, 7), (4, 2, 8), (2, 2, 5), (8, 4, 6)])
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_channels_in_order(drain_width, P, K, gaps, backpressure, rng):
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=drain_width,
                      lanes=max(4, drain_width),     # a lane drains one channel per cycle
                      act_width=P, fifo_depth=8, transform_channels=P,
                      stream_values=max(8, 4 * P))
    T = 4
    lo, hi = cfg.acc_range
    M = rng.integers(lo, hi + 1, size=(cfg.coords, K, T))
    M[:, 0, 0], M[:, -1, -1] = lo, hi
    beats = golden.drain_beats(M, drain_width)
    count = T * -(-K // P)
    out = run(ChannelSerialiser(cfg), beats, count, K, gaps=gaps, backpressure=backpressure,
              rng=rng).received["o"]
    # P channels a beat; in a tile's last beat the slots past K hold what the array drained
    # there (drain_beats' zero padding)
    expect = [{"m": [M[:, k + j, t].tolist() if k + j < K else [0] * cfg.coords
                     for j in range(P)], "k": k, "last": int(k + P >= K)}
              for t in range(T) for k in range(0, K, P)]
    assert out == expect


@pytest.mark.parametrize("P", [1, 2])
def test_one_beat_per_cycle(P):
    """One output beat (P channels) every cycle: 3 tiles of 8 channels, 24 / P beats."""
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, acc_bits=16, drain_width=4,
                      act_width=P, transform_channels=P)
    dut = ChannelSerialiser(cfg)
    M = np.arange(cfg.coords * 8 * 3).reshape(cfg.coords, 8, 3)
    stamps = run(dut, golden.drain_beats(M, 4), 24 // P, 8).beat_cycles["o"]
    assert stamps == list(range(stamps[0], stamps[0] + 24 // P))


def patch_beats(V: np.ndarray, P: int) -> list[dict]:
    """The gather's input beats for ``V[coord, c, tile]``: ``P`` consecutive channels each,
    fewer in a tile's last one (the missing ones zero), as the input transform sends them."""
    coords, C, T = V.shape
    zero = [0] * coords
    return [{"v": [V[:, c + j, t].tolist() if c + j < C else zero for j in range(P)],
             "c": c, "n": min(P, C - c), "last": int(c + P >= C)}
            for t in range(T) for c in range(0, C, P)]


@pytest.mark.parametrize("act_width,P,C", [(1, 1, 3), (4, 1, 8), (4, 1, 6), (3, 1, 2),
                                           (4, 2, 7), (4, 2, 8), (2, 2, 5), (8, 4, 6)])
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_gather_packs_consecutive_channels(act_width, P, C, gaps, backpressure, rng):
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=act_width, fifo_depth=16,
                      transform_channels=P, drain_width=P, lanes=max(4, P),
                      stream_values=max(8, 4 * P))
    T = 4
    lo, hi = cfg.v_range
    V = rng.integers(lo, hi + 1, size=(cfg.coords, C, T))
    V[:, 0, 0], V[:, -1, -1] = lo, hi
    V[:, :, 1] = 0
    channels = patch_beats(V, P)
    expect = golden.act_beats(V, act_width)
    out = run(ChannelGather(cfg), channels, len(expect), gaps=gaps, backpressure=backpressure,
              rng=rng).received["o"]
    assert out == expect


@pytest.mark.parametrize("P", [1, 2])
def test_gather_takes_one_beat_per_cycle(P):
    """One input beat (P channels) accepted every cycle: 3 tiles of 8 channels in cycles
    0 to 24 / P - 1."""
    cfg = AccelConfig(k_max=8, c_max=8, wmem_depth=64, act_width=4, drain_width=P,
                      transform_channels=P)
    V = np.broadcast_to(np.arange(8)[None, :, None], (cfg.coords, 8, 3))
    accepted = run(ChannelGather(cfg), patch_beats(V, P), 6).beat_cycles["i"]
    assert accepted == list(range(24 // P))


def test_errors():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not int"):
        ChannelSerialiser(4)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not str"):
        ChannelGather("cfg")
