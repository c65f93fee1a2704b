# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of the transform units against :mod:`sw.golden`."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sw.config import AccelConfig
from hw.transforms import InputTransform, OutputTransform, csd_digits
from streams import stream_get, stream_put
from sw import golden

SEED = int(os.environ.get("SEED") or 20260)
TILES = (2, 4)


def run(dut, beats, count, *, rng=None, idle=0.0):
    """Push ``beats`` into ``dut.i`` and collect ``count`` outputs; returns (outputs, cycles)."""
    out = []
    clock = [0]
    cycles = []

    async def counter(ctx):
        async for _ in ctx.tick():
            clock[0] += 1

    async def producer(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i, beat, rng=rng, idle=idle)

    async def consumer(ctx):
        for _ in range(count):
            out.append(await stream_get(ctx, dut.o, rng=rng, idle=idle))
        cycles.append(clock[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(counter, background=True)
    sim.run()
    return out, cycles[0]


def input_tiles(cfg, rng, count):
    lo, hi = cfg.act_range
    n = cfg.n
    tiles = [np.zeros((n, n), np.int64), np.full((n, n), lo), np.full((n, n), hi)]
    tiles += [np.array([[rng.randint(lo, hi) for _ in range(n)] for _ in range(n)])
              for _ in range(count)]
    return tiles


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("idle", [0.0, 0.5])
def test_input_transform_matches_golden(m, idle):
    cfg = AccelConfig(tile=m)
    rng = random.Random(SEED + m)
    tiles = input_tiles(cfg, rng, 120)
    relus = [rng.randint(0, 1) for _ in tiles]
    beats = [{"d": t.ravel().tolist(), "relu": r} for t, r in zip(tiles, relus)]
    out, _ = run(InputTransform(cfg), beats, len(beats), rng=rng, idle=idle)
    for t, r, got in zip(tiles, relus, out):
        v = golden.transform_input(t, cfg)
        if r:
            v = golden.winograd_relu(v)
        assert got == v.ravel().tolist(), f"seed {SEED}: tile {t.tolist()} relu={r}"


def output_beats(cfg, rng, count):
    lo, hi = cfg.acc_range
    n = cfg.n
    mats = [np.zeros((n, n), np.int64), np.full((n, n), lo), np.full((n, n), hi),
            np.full((n, n), cfg.act_range[0]), np.full((n, n), cfg.act_range[1])]
    mats += [np.array([[rng.randint(-(1 << 20), 1 << 20) for _ in range(n)] for _ in range(n)])
             for _ in range(count // 2)]
    mats += [np.array([[rng.randint(lo, hi) for _ in range(n)] for _ in range(n)])
             for _ in range(count - count // 2)]
    beats = []
    for mat in mats:
        beats.append({
            "m": mat.ravel().tolist(),
            "bias": rng.randint(-(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1)
            if rng.random() < 0.2 else rng.randint(-5000, 5000),
            "multiplier": rng.randint(-(1 << (cfg.mult_bits - 1)), (1 << (cfg.mult_bits - 1)) - 1),
            "shift": rng.randint(1, (1 << cfg.shift_bits) - 1),
            "relu": rng.randint(0, 1),
        })
    return beats


def expected_output(cfg, beat):
    y = golden.transform_output(np.array(beat["m"]).reshape(cfg.n, cfg.n), cfg)
    return golden.requantize(y[None], [beat["bias"]], [beat["multiplier"]], [beat["shift"]],
                             bool(beat["relu"]), cfg)[0].ravel().tolist()


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("idle", [0.0, 0.5])
def test_output_transform_matches_golden(m, idle):
    cfg = AccelConfig(tile=m)
    rng = random.Random(SEED + 10 * m)
    beats = output_beats(cfg, rng, 120)
    out, _ = run(OutputTransform(cfg), beats, len(beats), rng=rng, idle=idle)
    for beat, got in zip(beats, out):
        assert got == expected_output(cfg, beat), f"seed {SEED}: beat {beat}"


def test_output_transform_rounds_half_up():
    """Ties go to +inf: with shift 1, (2k+1)/2 rounds to k+1 for both signs."""
    cfg = AccelConfig(tile=2)
    n = cfg.n
    beats = []
    for value in (-3, -1, 1, 3, 5):
        # Only M[0,0] set: every Y element that sees it equals value (A^T[:,0] is 0/1).
        mat = [0] * (n * n)
        mat[0] = value
        beats.append({"m": mat, "bias": 0, "multiplier": 1, "shift": 1, "relu": 0})
    out, _ = run(OutputTransform(cfg), beats, len(beats))
    assert [o[0] for o in out] == [-1, 0, 1, 2, 3]


@pytest.mark.parametrize("unit", [InputTransform, OutputTransform])
def test_one_tile_per_cycle(unit):
    """Without stalls, N more beats take exactly N more cycles: the pipeline never bubbles."""
    cfg = AccelConfig(tile=2)
    rng = random.Random(SEED)
    if unit is InputTransform:
        beats = [{"d": t.ravel().tolist(), "relu": 0} for t in input_tiles(cfg, rng, 37)]
    else:
        beats = output_beats(cfg, rng, 35)
    _, short = run(unit(cfg), beats[:10], 10)
    out, full = run(unit(cfg), beats, len(beats))
    assert len(out) == len(beats) == 40
    assert full - short == 30


@pytest.mark.parametrize("coef", range(-40, 41))
def test_csd_digits_sum_to_coefficient(coef):
    digits = csd_digits(coef)
    assert sum(sign << shift for sign, shift in digits) == coef
    shifts = [shift for _, shift in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), "adjacent non-zero digits"


def test_bad_config_is_a_type_error():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        InputTransform({"tile": 2})
