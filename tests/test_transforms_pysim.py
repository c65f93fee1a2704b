# amaranth: UnusedElaboratable=no
"""Fast Amaranth-pysim tests of the transform units against :mod:`sw.golden`."""

from __future__ import annotations

import numpy as np
import pytest

from sw.config import AccelConfig
from hw.lockstep import Lockstep
from hw.transforms import InputTransform, OutputTransform, csd_digits
from streams import Phase, run_streams
from sw import golden
from verif.stalls import bench_rng

TILES = (2, 4)
#: (valid gaps, back-pressure) of the randomised tests.
STALLS = [("none", "none"), ("stall25", "stall75"), ("bursts", "bursts")]


def run(dut, beats, **stalls):
    """Stream ``beats`` through ``i`` and take as many from ``o``; returns the run."""
    return run_streams(dut, Phase({"i": beats}, {"o": len(beats)}), **stalls)


def input_beats(cfg, rng, count):
    """Tiles all zero, all minimum and all maximum, then ``count`` random ones; random ReLU."""
    lo, hi = cfg.act_range
    n = cfg.n
    tiles = [np.zeros((n, n), np.int64), np.full((n, n), lo), np.full((n, n), hi)]
    tiles += [np.array([[rng.randint(lo, hi) for _ in range(n)] for _ in range(n)])
              for _ in range(count)]
    return [{"d": t.ravel().tolist(), "relu": rng.randint(0, 1)} for t in tiles]


def expected_input(cfg, beat):
    v = golden.transform_input(np.array(beat["d"]).reshape(cfg.n, cfg.n), cfg)
    return (golden.winograd_relu(v) if beat["relu"] else v).ravel().tolist()


def output_beats(cfg, rng, count):
    """Matrices all zero, at both ends of the accumulator and of the activation range, then
    ``count`` random ones; random bias, multiplier, shift and ReLU."""
    lo, hi = cfg.m_range
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


#: Per unit: the component, its beats (edge cases, then random ones) and a beat's golden output.
UNITS = {"input": (InputTransform, input_beats, expected_input),
         "output": (OutputTransform, output_beats, expected_output)}


@pytest.mark.parametrize("unit", sorted(UNITS))
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_transform_matches_golden(unit, m, gaps, backpressure):
    component, make_beats, expected = UNITS[unit]
    cfg = AccelConfig(tile=m)
    rng = bench_rng(f"{unit}_transform/{m}")
    beats = make_beats(cfg, rng, 120)
    out = run(component(cfg), beats, gaps=gaps, backpressure=backpressure,
              rng=rng).received["o"]
    for beat, got in zip(beats, out, strict=True):
        assert got == expected(cfg, beat), f"beat {beat}"


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
    out = run(OutputTransform(cfg), beats).received["o"]
    assert [o[0] for o in out] == [-1, 0, 1, 2, 3]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_one_tile_per_cycle(unit):
    """Without stalls, N more beats take exactly N more cycles: the pipeline never bubbles."""
    component, make_beats, _ = UNITS[unit]
    cfg = AccelConfig(tile=2)
    beats = make_beats(cfg, bench_rng(f"{unit}_transform/one_per_cycle"), 40)[:40]
    short = run(component(cfg), beats[:10]).cycles
    full = run(component(cfg), beats)
    assert len(full.received["o"]) == len(beats) == 40
    assert full.cycles - short == 30


@pytest.mark.parametrize("unit", sorted(UNITS))
@pytest.mark.parametrize("gaps,backpressure", STALLS)
def test_lockstep_copies_match_golden(unit, gaps, backpressure):
    """``Lockstep`` of two units (the accelerator's transform_channels 2): each copy's beat is
    its own golden output, in order, under gaps and back-pressure; one beat per cycle."""
    component, make_beats, expected = UNITS[unit]
    cfg = AccelConfig(tile=2)
    rng = bench_rng(f"{unit}_transform/lockstep")
    singles = make_beats(cfg, rng, 60)
    beats = [[a, b] for a, b in zip(singles, reversed(singles))]
    dut = Lockstep([component(cfg) for _ in range(2)])
    assert dut.LATENCY == component.LATENCY
    out = run(dut, beats, gaps=gaps, backpressure=backpressure, rng=rng).received["o"]
    for beat, got in zip(beats, out, strict=True):
        assert got == [expected(cfg, beat[0]), expected(cfg, beat[1])], f"beat {beat}"
    if gaps == backpressure == "none":
        short = run(Lockstep([component(cfg) for _ in range(2)]), beats[:10]).cycles
        assert run(Lockstep([component(cfg) for _ in range(2)]), beats).cycles - short \
            == len(beats) - 10


def test_lockstep_refuses_mixed_units():
    with pytest.raises(ValueError, match="copies of one unit class"):
        Lockstep([InputTransform(AccelConfig()), OutputTransform(AccelConfig())])
    with pytest.raises(ValueError, match="one signature"):
        Lockstep([InputTransform(AccelConfig(tile=2)), InputTransform(AccelConfig(tile=4))])
    with pytest.raises(ValueError, match="copies of one unit class"):
        Lockstep([])


@pytest.mark.parametrize("coef", range(-40, 41))
def test_csd_digits_sum_to_coefficient(coef):
    digits = csd_digits(coef)
    assert sum(sign << shift for sign, shift in digits) == coef
    shifts = [shift for _, shift in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), "adjacent non-zero digits"


def test_bad_config_is_a_type_error():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig, not dict"):
        InputTransform({"tile": 2})
