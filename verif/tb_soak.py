"""cocotb bench of the soak (:mod:`verif.soak`): random short layers until enough transfers.

``$WINNOW_SOAK_JOB`` is the job file :func:`verif.soak.run_soak` writes: ``transfers`` (the
target), ``seed``, ``results`` (the report this bench writes) and ``progress`` (a small JSON
file rewritten every couple of seconds, for the progress bar).

Per layer (:func:`verif.soak.random_soak_layer`, one to three images of random size), each port
gets a stall pattern of :data:`verif.soak.STALL_CHOICES`: cocotbext-axi pause generators on
``s_axis_wgt`` and ``s_axis_act`` (valid gaps), ``m_axis_out`` (back-pressure) and each
AXI4-Lite channel (AW, W, AR gaps; B, R back-pressure). Per pass: the weight record on
``s_axis_wgt`` (WGT_RECORDS must count it, WGT_CHANNELS and WGT_KCOUNT must name it), the
quantisation entries; per image: HEIGHT .. RELU, START, the input frame while the output
frame is taken, then STATUS must read exactly DONE. Every record but the soak's first is sent
while a run goes, as :class:`sw.driver.DeviceBackend` does (the weight ring,
:class:`hw.weight_ring.WeightRing`): a later pass's during the previous pass's last image, a
layer's first during the last run of the layer before. So the ring loads beside runs under
every stall pattern.

A :class:`WireMonitor` samples the three streams' handshakes once per cycle and feeds a
:class:`verif.soak.FrameScoreboard` per port, which the bench checks after every weight load
and every run against the beats it queued (weights, inputs) or predicted with
:func:`sw.golden.conv_layer` (outputs, bytes with ``tkeep`` 0 included: they must be zero). The
output frame cocotbext-axi's sink assembled must also be the monitor's beats. The first
discrepancy, unexpected STATUS or timeout fails the soak; the report is written either way.

``test_scoreboard_catches_a_dropped_beat`` proves the chain can fail: the monitor hides one
output beat of a run, and the scoreboard must report exactly one lost beat.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, with_timeout
from cocotb.utils import get_sim_time

from sw import formats, golden, regmap, winograd
from sw.config import AccelConfig
from sw.driver import DeviceLayer, record_ahead
from verif.axi_transport import AxiTransport
from verif.soak import (PORTS, PROGRESS_SECONDS, STALL_CHOICES, STREAM_PORTS, Discrepancy,
                        FrameScoreboard, random_image, random_soak_layer, stream_beats)
from verif.stalls import pattern
from verif.tb_system import start

CLOCK_NS = 10
#: STATUS polls after a run's final output beat before the bench gives up (each poll is one
#: AXI4-Lite read, a few cycles).
MAX_POLLS = 200
#: Cycles from a weight record's last beat to WGT_RECORDS counting it before the bench gives up:
#: generous, as a record sent during a run may wait in the weight ring for the run's end.
LOAD_BUDGET = 1_000_000


class SoakFailure(AssertionError):
    """The soak found a discrepancy; ``discrepancy`` says which kind when a scoreboard did."""

    def __init__(self, message: str, discrepancy: Discrepancy | None = None):
        super().__init__(message)
        self.discrepancy = discrepancy


class WireMonitor:
    """Every handshake of the three streams, sampled once per cycle, to the scoreboards.

    It samples just after the falling clock edge, when the DUT's outputs and the drivers'
    inputs (changed only at the rising edge) are stable, so a beat with ``tvalid`` and
    ``tready`` high there is transferred at the next rising edge. Input beats are taken with
    the bytes whose ``tkeep`` is 0 zeroed (a source may drive anything there); output beats as
    driven.

    ``drop = (port, index)`` hides the ``index``-th beat (counting from 0) of ``port`` from its
    scoreboard, for the test that shows a lost beat is caught.
    """

    def __init__(self, dut, boards: dict[str, FrameScoreboard]):
        self.boards = boards
        self.counts = dict.fromkeys(STREAM_PORTS, 0)
        self.drop: tuple[str, int] | None = None
        self._clk = dut.clk
        self._ports = []
        for port in STREAM_PORTS:
            keep = getattr(dut, f"{port}_tkeep")
            self._ports.append((port, getattr(dut, f"{port}_tvalid"),
                                getattr(dut, f"{port}_tready"), getattr(dut, f"{port}_tdata"),
                                keep, getattr(dut, f"{port}_tlast"), port != "m_axis_out"))

    async def run(self) -> None:
        while True:
            await FallingEdge(self._clk)
            for port, valid, ready, data, keep, last, mask in self._ports:
                if not (int(valid.value) and int(ready.value)):
                    continue
                index = self.counts[port]
                self.counts[port] = index + 1
                if self.drop == (port, index):
                    continue
                keep_bits = keep.value.to_unsigned()
                tdata = data.value.to_unsigned()
                if mask:
                    tdata &= sum(0xFF << (8 * j) for j in range(len(keep))
                                 if keep_bits >> j & 1)
                self.boards[port].receive((tdata, keep_bits, int(last.value)))


class Soak:
    """The accelerator behind an :class:`~verif.axi_transport.AxiTransport`, a wire monitor and
    a scoreboard per stream, and the counts of the report.

    Parameters
    ----------
    dut : cocotb handle
        The ``accelerator`` top level, out of reset.
    cfg : AccelConfig
        Its configuration.
    seed : int
        Seed of the stall patterns.
    """

    def __init__(self, dut, cfg: AccelConfig, seed: int):
        self.dut, self.cfg, self.seed = dut, cfg, seed
        # From the port itself, so the bench follows the built Verilog's weight beat width.
        self.wgt_beat_bytes = len(dut.s_axis_wgt_tkeep)
        self.bus = AxiTransport(dut)
        for port in (self.bus.act, self.bus.wgt, self.bus.out):
            port.log.setLevel(logging.WARNING)         # one INFO line per frame otherwise
        self.boards = {port: FrameScoreboard(port) for port in STREAM_PORTS}
        self.monitor = WireMonitor(dut, self.boards)
        cocotb.start_soon(self.monitor.run())
        self.reads = self.writes = 0
        self.layers = self.passes = self.runs = self.multi_pass_layers = 0
        self.loads_during_runs = 0
        self._preloaded: DeviceLayer | None = None     # its first record went during a run
        self.stalls_used = {port: dict.fromkeys(STALL_CHOICES, 0)
                            for port in ("s_axis_wgt", "s_axis_act", "m_axis_out", "s_axi")}
        self.shapes = {"C": [], "K": [], "H": [], "W": [], "pad": [0, 0], "relu": [0, 0, 0, 0]}

    # -- counts ---------------------------------------------------------------------------------
    @property
    def transfers(self) -> dict[str, int]:
        """Transfers per port so far, and their total."""
        counts = {**self.monitor.counts, "s_axi": self.reads + self.writes}
        return {**{port: counts[port] for port in PORTS}, "total": sum(counts.values())}

    def discrepancies(self) -> Discrepancy:
        """The scoreboards' discrepancies, summed over the ports."""
        total = Discrepancy()
        for board in self.boards.values():
            for name in ("lost", "duplicated", "reordered", "mismatched"):
                setattr(total, name, getattr(total, name) + getattr(board.totals, name))
            total.first = total.first or board.totals.first
        return total

    # -- registers -------------------------------------------------------------------------------
    async def read(self, offset: int) -> int:
        value = await self.bus.read(offset)
        self.reads += 1
        return value

    async def write(self, offset: int, value: int) -> None:
        await self.bus.write(offset, value & 0xFFFF_FFFF)
        self.writes += 1

    async def wait_status(self, what: str, done: bool) -> int:
        """Poll STATUS until BUSY is low (and with ``done``, DONE is high); return it."""
        for _ in range(MAX_POLLS):
            status = await self.read(regmap.STATUS.offset)
            if not status & regmap.STATUS_BUSY and (status & regmap.STATUS_DONE or not done):
                return status
        raise SoakFailure(f"{what}: STATUS {status:#x} after {MAX_POLLS} polls")

    # -- stalls ----------------------------------------------------------------------------------
    def choose_stalls(self, rng: np.random.Generator, index: int) -> None:
        """A stall pattern of :data:`STALL_CHOICES` for every port, for layer ``index``."""
        names, weights = list(STALL_CHOICES), list(STALL_CHOICES.values())
        axil = self.bus.axil
        ports = {"s_axis_wgt": [self.bus.wgt], "s_axis_act": [self.bus.act],
                 "m_axis_out": [self.bus.out],
                 "s_axi": [axil.write_if.aw_channel, axil.write_if.w_channel,
                           axil.write_if.b_channel, axil.read_if.ar_channel,
                           axil.read_if.r_channel]}
        for port, channels in ports.items():
            name = names[int(rng.choice(len(names), p=weights))]
            self.stalls_used[port][name] += 1
            for k, channel in enumerate(channels):
                channel.set_pause_generator(
                    pattern(name, random.Random(f"{self.seed}/{index}/{port}/{k}")))

    # -- one layer -------------------------------------------------------------------------------
    async def load(self, layer: DeviceLayer, p: int) -> None:
        """Send pass ``p``'s record; the loader must count it and report its shape."""
        record = layer.records[p]
        image = layer.packed.passes[p]
        what = f"layer {layer.name} pass {p} (C={layer.qlayer.C} k_count={image.k_count})"
        before = await self.read(regmap.WGT_RECORDS.offset)
        self.boards["s_axis_wgt"].expect(
            stream_beats(record, b"\1" * len(record), self.wgt_beat_bytes, mask_unkept=True),
            len(record))
        await self.bus.send_weights((record,))
        # Counted once its last write has left (a record sent during a run may wait for the
        # run's end in the weight ring, so BUSY is no sign of it).
        deadline = get_sim_time("ns") + LOAD_BUDGET * CLOCK_NS
        while (records := await self.read(regmap.WGT_RECORDS.offset)) == before:
            if get_sim_time("ns") > deadline:
                break
        status = await self.read(regmap.STATUS.offset)
        shape = (await self.read(regmap.WGT_CHANNELS.offset),
                 await self.read(regmap.WGT_KCOUNT.offset))
        if status & regmap.STICKY_FLAGS or records != (before + 1) & 0xFFFF \
                or shape != (layer.qlayer.C, image.k_count):
            raise SoakFailure(f"{what}: after the record STATUS {status:#x}, WGT_RECORDS "
                              f"{before} -> {records}, WGT_CHANNELS/KCOUNT {shape}")
        self.check("s_axis_wgt", what)
        self.passes += 1

    def check(self, port: str, what: str) -> None:
        found = self.boards[port].check()
        if not found.clean:
            raise SoakFailure(f"{what}: {port}: lost {found.lost}, duplicated "
                              f"{found.duplicated}, reordered {found.reordered}, mismatched "
                              f"{found.mismatched}; first difference: {found.first}", found)

    async def run(self, layer: DeviceLayer, p: int, x: np.ndarray, y: np.ndarray,
                  alongside=None) -> None:
        """One image ``x`` through pass ``p``; its outputs must be ``y`` (the pass's channels).
        ``alongside`` (a coroutine: the next record's :meth:`load`) runs from START on, while
        the frames stream."""
        q, cfg = layer.qlayer, self.cfg
        k_count = y.shape[0]
        C, H, W = x.shape
        what = (f"seed {self.seed} layer {layer.name} pass {p} run {self.runs} (C={C} "
                f"K={k_count} H={H} W={W} pad={q.pad} relu={int(q.winograd_relu)}"
                f"{int(q.spatial_relu)})")
        for reg, value in ((regmap.HEIGHT, H), (regmap.WIDTH, W), (regmap.CHANNELS, C),
                           (regmap.KOUT, k_count), (regmap.PAD, q.pad),
                           (regmap.RELU, int(q.winograd_relu) | int(q.spatial_relu) << 1)):
            await self.write(reg.offset, value)
        await self.write(regmap.CTRL.offset, regmap.CTRL_START)
        beat = formats.beat_bytes(cfg)
        act = formats.pack_activations(x.transpose(1, 2, 0), cfg)
        want = formats.pack_activations(y.transpose(1, 2, 0), cfg)
        self.boards["s_axis_act"].expect(stream_beats(act.data, act.keep, beat, True), x.size)
        self.boards["m_axis_out"].expect(stream_beats(want.data, want.keep, beat, False), y.size)
        grid = winograd.tile_grid(H, W, cfg.tile, q.pad)
        in_beats, out_beats = len(act.data) // beat, len(want.data) // beat
        # Generous: every pair of the tiles once per cycle, every beat stalled 20 times over.
        budget = 20_000 + 20 * (grid.tiles * C * k_count + in_beats + out_beats)
        try:
            streamed = with_timeout(self.bus.stream(act), budget * CLOCK_NS, "ns")
            if alongside is None:
                got = await streamed
            else:
                got, _ = await self.bus.concurrently(streamed, alongside)
        except TimeoutError:
            raise SoakFailure(f"{what}: no complete output frame within {budget} cycles; "
                              f"{self.boards['m_axis_out'].received} of {out_beats} output "
                              f"beats seen") from None
        status = await self.wait_status(what, done=True)
        if status != regmap.STATUS_DONE:
            raise SoakFailure(f"{what}: STATUS {status:#x} after the run, expected DONE only")
        self.check("s_axis_act", what)
        monitored = list(self.boards["m_axis_out"]._received)
        self.check("m_axis_out", what)
        if stream_beats(got.data, got.keep, beat, False) != monitored:
            raise SoakFailure(f"{what}: the frame cocotbext-axi's sink assembled differs from "
                              "the beats seen on the wire")
        self.runs += 1

    async def layer(self, rng: np.random.Generator, layer: DeviceLayer,
                    following: DeviceLayer | None = None) -> None:
        """``layer`` (:func:`verif.soak.random_soak_layer`) on random images, every pass, every
        image; with ``following``, that layer's first record is sent during the last run."""
        q = layer.qlayer
        images = [random_image(self.cfg, rng, q.C, q.pad) for _ in range(int(rng.integers(1, 6)))]
        outputs = [golden.conv_layer(x, q, self.cfg) for x in images]
        self.choose_stalls(rng, layer.index)
        for p, image in enumerate(layer.packed.passes):
            if p == 0 and self._preloaded is not layer:
                await self.load(layer, p)     # else sent during the run before
            self._preloaded = None
            for k_local in range(image.k_count):
                k = image.k_base + k_local
                for name, values in (("bias", q.bias), ("multiplier", q.multiplier),
                                     ("shift", q.shift)):
                    await self.write(regmap.quant_offset(k_local, name), int(values[k]))
            for i, (x, y) in enumerate(zip(images, outputs)):
                ahead = record_ahead(layer, p, following) if i == len(images) - 1 else None
                await self.run(layer, p, x, y[image.k_base:image.k_base + image.k_count],
                               None if ahead is None else self.load(*ahead))
                if ahead is not None:
                    self.loads_during_runs += 1
                    if ahead[1] == 0:
                        self._preloaded = following
        self.layers += 1
        self.multi_pass_layers += layer.packed.num_passes > 1
        for name, value in (("C", q.C), ("K", q.K)):
            self.shapes[name].append(value)
        for x in images:
            self.shapes["H"].append(x.shape[1])
            self.shapes["W"].append(x.shape[2])
        self.shapes["pad"][q.pad] += 1
        self.shapes["relu"][int(q.winograd_relu) | int(q.spatial_relu) << 1] += 1

    def report(self, target: int, seconds: float, failure: str | None) -> dict:
        """The soak's report (:mod:`verif.soak` documents the keys)."""
        cycles = round(get_sim_time("ns") / CLOCK_NS)
        found = self.discrepancies()
        transfers = self.transfers
        return {
            "passed": failure is None and found.clean and transfers["total"] >= target,
            "failure": failure, "seed": self.seed, "target_transfers": target,
            "transfers": transfers, "axi_lite": {"reads": self.reads, "writes": self.writes},
            "layers": self.layers, "multi_pass_layers": self.multi_pass_layers,
            "loads_during_runs": self.loads_during_runs,
            "passes": self.passes, "runs": self.runs,
            "frames_checked": {port: b.frames for port, b in self.boards.items()},
            "beats_checked": {port: b.beats for port, b in self.boards.items()},
            "values_checked": sum(b.values for b in self.boards.values()),
            "discrepancies": {"lost": found.lost, "duplicated": found.duplicated,
                              "reordered": found.reordered, "mismatched": found.mismatched},
            "stall_patterns": self.stalls_used,
            "shapes": {**{name: [min(v), max(v)] if v else None
                          for name, v in self.shapes.items() if name not in ("pad", "relu")},
                       "pad_0_1": self.shapes["pad"], "relu_modes_0_to_3": self.shapes["relu"]},
            "sim_cycles": cycles, "sim_wall_seconds": round(seconds, 1),
            "cycles_per_second": round(cycles / seconds) if seconds else None,
            "transfers_per_second": round(transfers["total"] / seconds) if seconds else None,
        }


def _write_json(path: Path, value: dict) -> None:
    """Replace ``path`` at once, so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


@cocotb.test()
async def test_scoreboard_catches_a_dropped_beat(dut):
    """One output beat hidden from the scoreboard: exactly one lost beat, nothing else."""
    cfg = await start(dut)
    soak = Soak(dut, cfg, seed=1)
    rng = np.random.default_rng(1)
    layer = random_soak_layer(cfg, rng, 0)
    while layer.packed.num_passes != 1:
        layer = random_soak_layer(cfg, rng, 0)
    q = layer.qlayer
    x = random_image(cfg, rng, q.C, q.pad)
    y = golden.conv_layer(x, q, cfg)
    soak.choose_stalls(rng, 0)
    await soak.load(layer, 0)
    for k in range(q.K):
        for name, values in (("bias", q.bias), ("multiplier", q.multiplier), ("shift", q.shift)):
            await soak.write(regmap.quant_offset(k, name), int(values[k]))
    soak.monitor.drop = ("m_axis_out", soak.monitor.counts["m_axis_out"] + 1)
    try:
        await soak.run(layer, 0, x, y)
    except SoakFailure as failure:
        found = failure.discrepancy
        assert found is not None and (found.lost, found.duplicated, found.reordered,
                                      found.mismatched) == (1, 0, 0, 0), str(failure)
        dut._log.info("the hidden beat was reported: %s", failure)
    else:
        raise AssertionError("a run with a hidden output beat passed the scoreboard")


@cocotb.test()
async def test_soak(dut):
    """Random layers under random stalls until the job's transfer count: all bit-exact."""
    job = json.loads(Path(os.environ["WINNOW_SOAK_JOB"]).read_text())
    target, seed = int(job["transfers"]), int(job["seed"])
    results, progress = Path(job["results"]), Path(job["progress"])
    cfg = await start(dut)
    dut._log.warning("soak: seed %d, %d transfers", seed, target)
    soak = Soak(dut, cfg, seed)
    rng = np.random.default_rng(seed)
    t0 = last = time.perf_counter()
    failure = None
    try:
        index = 0
        layer = random_soak_layer(cfg, rng, index)
        while soak.transfers["total"] < target:
            following = random_soak_layer(cfg, rng, index + 1)
            await soak.layer(rng, layer, following)
            layer, index = following, index + 1
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS:
                last = now
                _write_json(progress, {"transfers": soak.transfers["total"], "target": target,
                                       "layers": soak.layers, "runs": soak.runs,
                                       "cycles": round(get_sim_time("ns") / CLOCK_NS),
                                       "seconds": now - t0})
    except Exception as err:
        failure = f"{type(err).__name__}: {err}"
        raise
    finally:
        _write_json(results, soak.report(target, time.perf_counter() - t0, failure))
    found = soak.discrepancies()
    assert found.clean, f"seed {seed}: {found}"
