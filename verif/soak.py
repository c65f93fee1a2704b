"""``python -m verif.soak``: a million transfers through the whole accelerator, scoreboarded.

The soak runs many short layers of random shape on :class:`hw.top.Accelerator` (default
:class:`~sw.config.AccelConfig`, Verilator) through :mod:`verif.tb_soak`, every port stalled at
random, until at least ``--transfers`` transfers have been made. A *transfer* is one
AXI4-Stream beat on ``s_axis_wgt``, ``s_axis_act`` or ``m_axis_out`` (a handshake seen on the
wire) or one AXI4-Lite transaction on ``s_axi`` (a complete read or write). Every beat of the
three streams is checked in order against the beats the bench expects (the weight records and
input frames it queued, the outputs of :func:`sw.golden.conv_layer`): values bit-exact, and
none lost, duplicated or reordered (:class:`FrameScoreboard`).

The layers (:func:`random_soak_layer`) draw ``C`` and ``K`` (mostly up to 16, sometimes up to
``c_max``/``k_max``; a configuration whose ``wmem_depth`` cannot hold a layer runs it in several
passes, the default's 512 words hold every 64×64 layer in one), the weight density, the
padding and both ReLU modes, the requantisation, and per image ``H`` and ``W`` (partial edge
tiles); each layer picks a stall pattern of :mod:`verif.stalls` for each port: valid gaps on
``s_axis_wgt``, ``s_axis_act`` and the AXI4-Lite AW, W and AR channels, back-pressure on
``m_axis_out`` and the B and R channels.

Every weight record but the first is sent while a run goes (the next pass's, or the next
layer's first), so the weight ring (:class:`hw.weight_ring.WeightRing`) loads beside runs
throughout.

The report (``build/soak/soak.json`` by default) holds the transfers per port, the layers,
passes and runs (``loads_during_runs``: records sent during a run), the beats and values checked, the lost, duplicated, reordered and mismatched
counts, the simulated cycles, the wall times and the simulation speed. ``make soak`` runs
1,000,000 transfers; ``verif/test_soak.py`` runs a short soak in the normal test suite.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np

from sw import formats, quant
from sw.config import AccelConfig
from sw.driver import DeviceLayer

__all__ = ["DEFAULT_TRANSFERS", "CASE", "PORTS", "STREAM_PORTS", "STALL_CHOICES",
           "Discrepancy", "classify", "FrameScoreboard", "random_soak_layer", "random_image",
           "stream_beats", "run_soak", "main"]

#: ``make soak``'s transfer count.
DEFAULT_TRANSFERS = 1_000_000
#: The build directory's case name (``build/sim/soak_default``).
CASE = "soak_default"
#: The AXI4-Stream ports whose beats are scoreboarded.
STREAM_PORTS = ("s_axis_wgt", "s_axis_act", "m_axis_out")
#: Every port whose transfers are counted.
PORTS = STREAM_PORTS + ("s_axi",)
#: Stall patterns a layer draws for each port, and their weights: every layer stalls every
#: port somehow, mostly lightly, so the soak keeps a useful speed.
STALL_CHOICES = {"stall25": 0.5, "bursts": 0.3, "stall75": 0.2}
#: Seconds between the bench's progress reports.
PROGRESS_SECONDS = 2.0

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "soak" / "soak.json"


# -- the scoreboard ---------------------------------------------------------------------------

@dataclass
class Discrepancy:
    """How a received beat sequence differs from the expected one (all 0 when it does not).

    Attributes
    ----------
    lost : int
        Expected beats that never arrived.
    duplicated : int
        Received beats beyond the expected ones that repeat an expected beat.
    reordered : int
        Beats that arrived, but at another position than expected.
    mismatched : int
        Received beats whose value is not the expected one (a corrupted beat, or an extra beat
        that equals no expected beat).
    first : str
        The first difference in words, for the failure message.
    """

    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    mismatched: int = 0
    first: str = ""

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.mismatched)


def classify(expected: Sequence[Hashable], received: Sequence[Hashable]) -> Discrepancy:
    """Classify the difference between two beat sequences.

    The sequences are aligned on their longest common runs (:class:`difflib.SequenceMatcher`).
    A beat the alignment finds missing at one place and arriving at another counts as
    reordered (a swapped pair counts once: one of the two moved). A beat replaced in place
    by one that is expected nowhere else is a mismatch (a corrupted value). What remains of
    the expected beats is lost; what remains of the received ones is duplicated when it equals
    an expected beat, and a mismatch when it equals none.
    """
    result = Discrepancy()
    if list(expected) == list(received):
        return result
    matcher = difflib.SequenceMatcher(None, expected, received, autojunk=False)
    missing: Counter = Counter()         # expected beats not found in place
    extra: Counter = Counter()           # received beats not found in place
    replaced = 0                         # positions where one beat stands for another
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if not result.first:
            result.first = (f"expected beats #{i1}..#{i2 - 1} {list(expected[i1:i2])[:3]}, "
                            f"received #{j1}..#{j2 - 1} {list(received[j1:j2])[:3]}")
        missing.update(expected[i1:i2])
        extra.update(received[j1:j2])
        if tag == "replace":
            replaced += min(i2 - i1, j2 - j1)
    moved = missing & extra
    missing -= moved
    extra -= moved
    result.reordered = sum(moved.values())
    lost, surplus = sum(missing.values()), sum(extra.values())
    in_place = min(replaced, lost, surplus)
    known = set(expected)
    foreign = sum(count for beat, count in extra.items() if beat not in known)
    # Corrupted beats replaced in place first, then any other beat nobody expected.
    result.mismatched = in_place + max(0, foreign - in_place)
    result.lost = lost - in_place
    result.duplicated = surplus - result.mismatched
    return result


@dataclass
class FrameScoreboard:
    """In-order scoreboard of one stream port, frame by frame.

    The bench :meth:`expect`\\ s the beats of each frame it queues or predicts, a wire monitor
    :meth:`receive`\\ s every beat that makes a handshake, and :meth:`check` compares the two
    (:func:`classify`) once the frames should all have gone. A beat is any hashable value
    (the soak uses ``(tdata, tkeep, tlast)``).

    Attributes
    ----------
    port : str
        The port's name, for messages.
    beats, values, frames : int
        Beats, kept values and frames checked so far (counted when they match).
    totals : Discrepancy
        The discrepancies of every check so far, summed.
    """

    port: str
    beats: int = 0
    values: int = 0
    frames: int = 0
    totals: Discrepancy = field(default_factory=Discrepancy)
    _expected: list = field(default_factory=list)
    _values: int = 0
    _frames: int = 0
    _received: list = field(default_factory=list)

    def expect(self, beats: Sequence[Hashable], values: int) -> None:
        """One frame of ``beats`` holding ``values`` data values is due next."""
        self._expected.extend(beats)
        self._values += values
        self._frames += 1

    def receive(self, beat: Hashable) -> None:
        """``beat`` made a handshake on the wire."""
        self._received.append(beat)

    @property
    def received(self) -> int:
        """Beats received since the last :meth:`check`."""
        return len(self._received)

    def check(self) -> Discrepancy:
        """Compare what arrived with what was expected since the last check, then start over.

        Returns the discrepancy (also added to :attr:`totals`); the beats, values and frames
        count only when it is clean.
        """
        found = classify(self._expected, self._received)
        for name in ("lost", "duplicated", "reordered", "mismatched"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(found, name))
        if found.clean:
            self.beats += len(self._expected)
            self.values += self._values
            self.frames += self._frames
        elif not self.totals.first:
            self.totals.first = f"{self.port}: {found.first}"
        self._expected, self._received, self._values, self._frames = [], [], 0, 0
        return found


def stream_beats(data: bytes, keep: bytes, beat_bytes: int, mask_unkept: bool) -> list[tuple]:
    """The beats of one AXI4-Stream frame as ``(tdata, tkeep, tlast)`` integers.

    ``data`` and ``keep`` hold one byte and one ``tkeep`` bit per byte lane (a final partial
    beat is padded with unkept zero bytes). With ``mask_unkept`` the bytes whose ``tkeep`` is 0
    are taken as zero (a source may drive anything there); without, they are compared as
    driven (the accelerator's outputs promise zero there).
    """
    pad = -len(data) % beat_bytes
    data, keep = bytes(data) + bytes(pad), bytes(keep) + bytes(pad)
    count = len(data) // beat_bytes
    beats = []
    for b in range(count):
        lanes = slice(b * beat_bytes, (b + 1) * beat_bytes)
        kept = keep[lanes]
        raw = data[lanes] if not mask_unkept else bytes(
            d if k else 0 for d, k in zip(data[lanes], kept))
        beats.append((int.from_bytes(raw, "little"),
                      sum((k & 1) << j for j, k in enumerate(kept)), int(b == count - 1)))
    return beats


# -- the stimulus -----------------------------------------------------------------------------

def _small_or_full(rng: np.random.Generator, limit: int) -> int:
    """Mostly ``1 .. min(16, limit)`` (short layers, a fast soak), sometimes ``1 .. limit``."""
    top = limit if rng.random() < 0.25 else min(16, limit)
    return int(rng.integers(1, top + 1))


def random_soak_layer(cfg: AccelConfig, rng: np.random.Generator, index: int) -> DeviceLayer:
    """A random sparse layer within ``cfg``, packed for it (one record per pass).

    ``C`` and ``K`` are mostly at most 16 and sometimes up to ``c_max``/``k_max``; the weight
    density is 0.02 .. 0.9 with the extreme weights planted; padding, both ReLU modes, bias,
    multiplier and shift are random (the shift keeps outputs spread over the int8 range).
    """
    C, K = _small_or_full(rng, cfg.c_max), _small_or_full(rng, cfg.k_max)
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
    U[rng.random(U.shape) >= rng.uniform(0.02, 0.9)] = 0
    U.flat[int(rng.integers(U.size))], U.flat[int(rng.integers(U.size))] = lo, hi
    layer = quant.QuantLayer(
        name=f"soak{index}", U=U,
        bias=rng.integers(-3000, 3000, size=K),
        multiplier=rng.integers(1, 1 << 12, size=K),
        shift=rng.integers(8, 18, size=K), pad=int(rng.integers(0, 2)),
        winograd_relu=bool(rng.integers(0, 2)), spatial_relu=bool(rng.integers(0, 2)),
        in_scale=1.0, w_scale=np.ones(K), out_scale=1.0)
    packed = formats.pack_layer(U, cfg, name=layer.name)
    return DeviceLayer.of(index, layer, packed, cfg)


def random_image(cfg: AccelConfig, rng: np.random.Generator, channels: int,
                 pad: int) -> np.ndarray:
    """``[C, H, W]`` int8 activations: ``H`` 1..8 above the kernel's minimum, ``W`` mostly
    small and sometimes up to ``w_max``, a random share of zeros, the extremes planted."""
    low = 3 - 2 * pad
    height = int(rng.integers(low, low + 8))
    width = int(rng.integers(low, (cfg.w_max if rng.random() < 0.3 else min(12, cfg.w_max)) + 1))
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, size=(channels, height, width))
    x[rng.random(x.shape) < rng.uniform(0.0, 0.8)] = 0
    x.flat[int(rng.integers(x.size))], x.flat[int(rng.integers(x.size))] = lo, hi
    return x


# -- running it -------------------------------------------------------------------------------

def run_soak(transfers: int, seed: int, out: Path, *, case: str = CASE,
             sim: str | None = None, cfg: AccelConfig | None = None,
             progress=None) -> dict:
    """Build the accelerator, soak it with ``transfers`` transfers, write and return the report.

    ``progress(report)`` is called with the bench's latest progress dict (``transfers``,
    ``target``, ``layers``, ``runs``, ``cycles``) about every :data:`PROGRESS_SECONDS` while the
    simulation runs.

    Raises
    ------
    AssertionError
        The bench failed: a scoreboard discrepancy, an unexpected STATUS, a timeout. The report
        is still written, with ``passed`` false and the failure.
    """
    from verif.runner import BUILD_SECONDS, SIM_DIR, run_bench
    from verif.simulator import fast_simulator

    cfg = cfg or AccelConfig()
    sim = sim or fast_simulator()
    job_dir = SIM_DIR / case
    job_dir.mkdir(parents=True, exist_ok=True)
    results, progress_file = job_dir / "soak_results.json", job_dir / "soak_progress.json"
    results.unlink(missing_ok=True)
    progress_file.unlink(missing_ok=True)
    job = job_dir / "soak_job.json"
    job.write_text(json.dumps({"transfers": transfers, "seed": seed, "results": str(results),
                               "progress": str(progress_file)}, indent=1) + "\n")
    t0 = time.perf_counter()
    failure = None
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            if progress is not None and progress_file.exists():
                try:
                    progress(json.loads(progress_file.read_text()))
                except (ValueError, OSError):
                    continue       # caught mid-write; the next poll reads it whole

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_bench("accelerator", cfg, "verif.tb_soak", case,
                  extra_env={"WINNOW_SOAK_JOB": str(job), "COCOTB_LOG_LEVEL": "WARNING"},
                  sim=sim)
    except AssertionError as err:
        failure = str(err)
    finally:
        stop.set()
        watcher.join()
    wall = time.perf_counter() - t0
    report = json.loads(results.read_text()) if results.exists() else {"passed": False}
    report.update({
        "command": f"python -m verif.soak --transfers {transfers} --seed {seed}",
        "simulator": sim, "config": json.loads(cfg.to_json()),
        "build_seconds": round(BUILD_SECONDS.get(case, 0.0), 1),
        "wall_seconds": round(wall, 1),
    })
    if failure:
        report["passed"] = False
        report.setdefault("failure", failure)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if failure:
        raise AssertionError(failure)
    return report


def _summary(report: dict) -> str:
    lines = [f"soak: {'PASSED' if report.get('passed') else 'FAILED'}, seed {report.get('seed')}"]
    t = report.get("transfers", {})
    if t:
        lines.append("  transfers: " + ", ".join(f"{port} {t[port]:,}" for port in PORTS)
                     + f"; total {t['total']:,}")
    if "layers" in report:
        lines.append(f"  layers {report['layers']:,}, passes {report['passes']:,}, runs "
                     f"{report['runs']:,} ({report.get('loads_during_runs', 0):,} weight "
                     f"records sent during a run); values checked "
                     f"{report['values_checked']:,}")
        d = report["discrepancies"]
        lines.append(f"  lost {d['lost']}, duplicated {d['duplicated']}, reordered "
                     f"{d['reordered']}, mismatched {d['mismatched']}")
        lines.append(f"  {report['sim_cycles']:,} cycles in {report['sim_wall_seconds']:.0f} s "
                     f"of simulation ({report['cycles_per_second']:,.0f} cycles/s); build "
                     f"{report['build_seconds']:.0f} s, wall {report['wall_seconds']:.0f} s")
    if report.get("failure"):
        lines.append(f"  failure: {report['failure']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from verif.stalls import session_seed

    parser = argparse.ArgumentParser(
        prog="python -m verif.soak",
        description="Soak the whole accelerator (default configuration, Verilator when "
                    "available) with random short layers under random stalls on every port, "
                    "every beat scoreboarded against the golden model.")
    parser.add_argument("--transfers", type=int, default=DEFAULT_TRANSFERS,
                        help="stop after at least this many transfers (stream beats and "
                             "AXI4-Lite transactions; default %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="stimulus and stall seed (default: $SEED, else the fixed default "
                             "of verif.stalls)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="report file (default build/soak/soak.json)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                        help="simulator (default: the fastest at hand)")
    args = parser.parse_args(argv)
    if args.transfers < 1:
        parser.error(f"--transfers {args.transfers}: give at least 1")
    seed = session_seed() if args.seed is None else args.seed
    os.environ["SEED"] = str(seed)
    print(f"soak: {args.transfers:,} transfers, seed {seed}", flush=True)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,.0f}/{task.total:,.0f} transfers"),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn()) as bar:
        task = bar.add_task("build + soak", total=args.transfers, detail="")

        printed = [0.0]

        def progress(state: dict) -> None:
            rate = state["cycles"] / state["seconds"] if state.get("seconds") else 0
            detail = (f"{state['layers']} layers, {state['runs']} runs, "
                      f"{state['cycles']:,} cycles, {rate:,.0f} cycles/s")
            bar.update(task, completed=min(state["transfers"], args.transfers),
                       description="soak", detail=detail)
            # Without a terminal (a CI log) the bar is not drawn: a line every 30 s instead.
            if not bar.console.is_terminal and time.monotonic() - printed[0] >= 30:
                printed[0] = time.monotonic()
                print(f"soak: {state['transfers']:,}/{args.transfers:,} transfers, {detail}",
                      flush=True)

        try:
            report = run_soak(args.transfers, seed, args.out, sim=args.sim, progress=progress)
        except AssertionError:
            report = json.loads(args.out.read_text())
    print(_summary(report))
    print(f"report: {args.out}")
    return 0 if report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
