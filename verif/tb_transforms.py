"""cocotb benches for the Winograd transform units, checked bit for bit against :mod:`sw.golden`.

One bench serves both units: ``$WINNOW_COMPONENT`` names the unit (``input_transform`` or
``output_transform``) and ``$WINNOW_CONFIG`` its ``winnow.json``. Each test streams tiles from
``i`` to ``o`` through a :class:`~verif.streams.StreamBench` whose model is the unit's golden
model below, so every output beat is checked in order against it. Tests:

- ``random_tiles``: ``$WINNOW_SAMPLES`` random tiles (default 420), 2 % of them the edge tiles
  (all zero, all minimum, all maximum), for every back-pressure pattern × valid-gap pattern.
- ``edge_tiles``: every edge tile, plus for each Winograd coordinate the tiles that drive it to
  its exact minimum and maximum (the corners of the width analysis), under 75 % stalls.
"""

from __future__ import annotations

import os
import random
from typing import Callable

import cocotb
import numpy as np

from sw.config import AccelConfig
from hw.transforms import InputTransform, OutputTransform
from sw import golden
from verif.stalls import GAP_PATTERNS, PATTERNS
from verif.streams import StreamBench, case_config, sample_count

DEFAULT_SAMPLES = 420
EDGE_FRACTION = 0.02


def _extreme_tiles(mat: np.ndarray, lo: int, hi: int) -> list[np.ndarray]:
    """For each coordinate (i, j) of ``mat X matᵀ``, the inputs X reaching its min and its max."""
    tiles = []
    for i in range(mat.shape[0]):
        for j in range(mat.shape[0]):
            coef = np.outer(mat[i], mat[j])
            tiles.append(np.where(coef > 0, hi, lo))
            tiles.append(np.where(coef > 0, lo, hi))
    return tiles


class InputTransformModel:
    """Stimulus and golden outputs for :class:`hw.transforms.InputTransform`."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.layouts = InputTransform.layouts(cfg)

    def edge_tiles(self) -> list[np.ndarray]:
        n, (lo, hi) = self.cfg.n, self.cfg.act_range
        return [np.zeros((n, n), np.int64), np.full((n, n), lo), np.full((n, n), hi)]

    def _beat(self, tile, relu) -> dict:
        return {"d": [int(v) for v in np.ravel(tile)], "relu": int(relu)}

    def random_beats(self, rng: random.Random, count: int) -> list[dict]:
        n, (lo, hi) = self.cfg.n, self.cfg.act_range
        edges = self.edge_tiles()
        beats = []
        for _ in range(count):
            if rng.random() < EDGE_FRACTION:
                tile = rng.choice(edges)
            else:
                tile = [rng.randint(lo, hi) for _ in range(n * n)]
            beats.append(self._beat(tile, rng.randint(0, 1)))
        return beats

    def directed_beats(self) -> list[dict]:
        tiles = self.edge_tiles() + _extreme_tiles(self.cfg.BT, *self.cfg.act_range)
        return [self._beat(t, relu) for t in tiles for relu in (0, 1)]

    def expected(self, beats: list[dict]) -> list[list[int]]:
        n = self.cfg.n
        d = np.array([b["d"] for b in beats], dtype=np.int64).reshape(-1, n, n)
        v = golden.transform_input(d, self.cfg)
        relu = np.array([b["relu"] for b in beats], dtype=bool)
        v = np.where(relu[:, None, None], golden.winograd_relu(v), v)
        return v.reshape(len(beats), -1).tolist()


class OutputTransformModel:
    """Stimulus and golden outputs for :class:`hw.transforms.OutputTransform`.

    Random accumulators are drawn at a random magnitude ``2**k`` and the shift is chosen near
    the one that maps that magnitude onto ``act_bits``, so the outputs cover the unsaturated
    range, both clamps and the rounding, not just saturation.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.layouts = OutputTransform.layouts(cfg)

    def edge_tiles(self) -> list[np.ndarray]:
        n = self.cfg.n
        (alo, ahi), (lo, hi) = self.cfg.m_range, self.cfg.act_range
        return [np.zeros((n, n), np.int64), np.full((n, n), lo), np.full((n, n), hi),
                np.full((n, n), alo), np.full((n, n), ahi)]

    def _requant(self, rng: random.Random, magnitude_bits: int) -> dict:
        cfg = self.cfg
        mult_hi = (1 << (cfg.mult_bits - 1)) - 1
        bias_hi = (1 << (cfg.bias_bits - 1)) - 1
        if rng.random() < 0.8:
            multiplier = rng.randint((mult_hi + 1) // 2, mult_hi)  # normalised, as quantisers emit
        else:
            multiplier = rng.randint(-mult_hi - 1, mult_hi)
        gain_bits = int(np.abs(cfg.AT).sum(axis=1).max()).bit_length() * 2
        ideal = magnitude_bits + gain_bits + cfg.mult_bits - cfg.act_bits
        shift = min(max(ideal + rng.randint(-4, 2), 1), (1 << cfg.shift_bits) - 1)
        bias_bits = min(magnitude_bits + 2, cfg.bias_bits - 1)
        bias = (rng.randint(-bias_hi - 1, bias_hi) if rng.random() < 0.05
                else rng.randint(-(1 << bias_bits), (1 << bias_bits)))
        return {"bias": bias, "multiplier": multiplier, "shift": shift,
                "relu": rng.randint(0, 1)}

    def _beat(self, tile, params) -> dict:
        return {"m": [int(v) for v in np.ravel(tile)], **params}

    def random_beats(self, rng: random.Random, count: int) -> list[dict]:
        n, (alo, ahi) = self.cfg.n, self.cfg.m_range
        edges = self.edge_tiles()
        beats = []
        for _ in range(count):
            k = rng.randint(0, self.cfg.m_bits - 1)
            if rng.random() < EDGE_FRACTION:
                tile = rng.choice(edges)
            else:
                tile = [max(alo, min(ahi, rng.randint(-(1 << k), 1 << k))) for _ in range(n * n)]
            beats.append(self._beat(tile, self._requant(rng, k)))
        return beats

    def directed_beats(self) -> list[dict]:
        cfg = self.cfg
        tiles = self.edge_tiles() + _extreme_tiles(cfg.AT, *cfg.m_range)
        max_shift = (1 << cfg.shift_bits) - 1
        params = [
            {"bias": 0, "multiplier": 1, "shift": 1, "relu": 0},
            {"bias": -(1 << (cfg.bias_bits - 1)), "multiplier": (1 << (cfg.mult_bits - 1)) - 1,
             "shift": max_shift, "relu": 0},
            {"bias": (1 << (cfg.bias_bits - 1)) - 1, "multiplier": -(1 << (cfg.mult_bits - 1)),
             "shift": max_shift, "relu": 1},
        ]
        return [self._beat(t, p) for t in tiles for p in params]

    def expected(self, beats: list[dict]) -> list[list[int]]:
        cfg = self.cfg
        m = np.array([b["m"] for b in beats], dtype=np.int64).reshape(-1, cfg.n, cfg.n)
        y = golden.transform_output(m, cfg)
        out = []
        for relu in (0, 1):
            rows = [k for k, b in enumerate(beats) if b["relu"] == relu]
            if rows:
                q = golden.requantize(y[rows], [beats[k]["bias"] for k in rows],
                                      [beats[k]["multiplier"] for k in rows],
                                      [beats[k]["shift"] for k in rows], bool(relu), cfg)
                out += list(zip(rows, q.reshape(len(rows), -1).tolist()))
        return [values for _, values in sorted(out)]


MODELS = {"input_transform": InputTransformModel, "output_transform": OutputTransformModel}


async def _stream_through(dut, test: str, gaps: str, backpressure: str,
                          make_beats: Callable[[object, random.Random], list[dict]]) -> None:
    """Stream ``make_beats(model, rng)`` through the unit and check every tile."""
    component = os.environ["WINNOW_COMPONENT"]
    model = MODELS[component](case_config())
    i_layout, o_layout = model.layouts
    bench = StreamBench(dut, f"{component} m={model.cfg.tile} {test} gaps={gaps} "
                             f"backpressure={backpressure}",
                        inputs={"i": i_layout}, outputs={"o": o_layout}, gaps=gaps,
                        backpressure=backpressure,
                        model=lambda beats: {"o": model.expected(beats["i"])})
    beats = make_beats(model, bench.rng)
    await bench.start()
    bench.send({"i": beats}, context=lambda k: f" for input {beats[k]}")
    cycles = await bench.drain()
    await bench.finish()
    dut._log.info(f"{bench.name}: {len(beats)} tiles in {cycles} cycles")


@cocotb.test()
@cocotb.parametrize(backpressure=PATTERNS, gaps=GAP_PATTERNS)
async def random_tiles(dut, backpressure: str, gaps: str):
    """Random tiles (with edge tiles mixed in) under one back-pressure × gap pattern."""
    count = sample_count(DEFAULT_SAMPLES)
    await _stream_through(dut, "random", gaps, backpressure,
                          lambda model, rng: model.random_beats(rng, count))


@cocotb.test()
async def edge_tiles(dut):
    """All-zero, all-min, all-max and per-coordinate extreme tiles under 75 % stalls."""
    await _stream_through(dut, "edge", "stall75", "stall75",
                          lambda model, rng: model.directed_beats())
