"""``python -m verif.bench_system``: the whole accelerator on full-size VGG-nagadomi layers.

Where ``python -m verif.bench`` measures the sparse array alone, this bench runs the whole
:class:`hw.top.Accelerator` RTL as a user sees it: weights over ``s_axis_wgt``, registers over
``s_axi``, activations in over ``s_axis_act`` and outputs back over ``m_axis_out``, with the
host's register sequence of :class:`sw.driver.DeviceBackend` on
:class:`verif.axi_transport.AxiTransport` (:mod:`verif.tb_bench_system`, one cocotb simulation
for every case, streams at full rate). Every output value of every case is compared with
:func:`sw.golden.conv_layer`; a case that differs fails the run.

Cases
-----
- **Layers** (:data:`SYSTEM_LAYERS`): VGG-nagadomi's 64->64 at 32x32, 128->128 at 16x16 and
  256->256 at 8x8, padding 1 (so 256, 64 and 16 F(2x2, 3x3) tiles), at full size.
- **Weights**: :func:`verif.bench.make_weights` (seeded N(0, 1) kernels, ``balanced`` or
  ``per-layer`` pruning to the exact density ``w``, int8).
- **Activations**: a spatial int8 image whose elements are non-zero with a probability chosen
  by bisection so that the density of the transformed input ``V = B^T d B`` (what the PEs' zero
  filters see; no Winograd ReLU) is the target ``a``; the record's ``a`` is the measured one.
- **Requantisation**: per output channel, :func:`sw.quant.quantize_multiplier` of
  ``96 / max|Y_k|`` and a small random bias, no ReLU, so the outputs span the int8 range and
  the bit-exact check sees every bit.
- **Configuration** (:data:`SYSTEM_CONFIG`): the bench's array (:data:`verif.bench.BENCH_CONFIG`:
  64 multipliers, ``k_max`` 64, ``c_max`` 256, ``wmem_depth`` 2048), so the 128- and
  256-channel layers run as 2 and 4 passes over output channels, each pass re-streaming the
  image; and four weight-load ports (``weight_ports`` 4: each record as four frames at once,
  ``s_axis_wgt`` to ``s_axis_wgt3``, each over a quarter of the PEs), so a record loads at
  four body units a cycle: the first pass's record is the one load no pass hides, and the 128-
  and 256-channel layers' records are long (docs/results.md, "A band's last row read as it
  arrives (0abfec7), and four weight-load ports"). ``c_max`` is 256 and not the default 64
  because the driver splits a layer over output channels only: a layer with ``C > c_max`` is
  refused (:func:`sw.formats.pack_layer`). Any other configuration can be given with
  ``--config`` (cases it cannot run are refused by name).

Record keys (``build/bench/system.json``, one per case)
-------------------------------------------------------
``run_cycles``
    START to DONE of every pass plus the part of every pass's weight load that no run hides:
    the sum over passes of the ``CYCLES`` register and of ``load_cycles - hidden_load_cycles``
    (the first pass's record is sent after its own START, which has CTRL.AWAIT, so its load
    lies inside that run's ``CYCLES``; pass ``p + 1``'s is sent while pass ``p`` runs,
    :class:`sw.driver.DeviceBackend`).
``load_cycles``
    Clock cycles of the ``s_axis_wgt`` frames (first beat offered to last beat taken), summed
    over passes.
``hidden_load_cycles``
    The part of ``load_cycles`` that overlapped a run (START to its last output beat): the
    first pass's own (AWAIT), or the previous pass's.
``array_busy_cycles``
    The ``ARRAY_CYCLES`` register's count over the runs (cycles the sparse array was not idle).
``ideal_cycles``, ``dense_winograd_cycles``, ``model_array_cycles``
    :func:`sw.perf.model_layer` on the packed layer and the case's ``V``: non-zero pairs over
    the multipliers, the same array with no skipping, and the modelled array time.
``weight_stream_cycles``
    The fewest cycles the weight-load ports can bring the layer's records in: the sum over
    passes of the record's longest frame (:func:`sw.formats.record_frames`, one per port, all
    sent at once; with one port the whole record) in bytes over
    :data:`sw.formats.WEIGHT_BEAT_BYTES`, rounded up. Every load lies inside the run (an
    exposed load adds to it, a hidden one overlaps a run), so ``run_cycles`` is at least
    this, and ``speedup_ceiling`` (``dense_winograd_cycles / max(ideal_cycles,
    weight_stream_cycles)``) bounds the speedup any schedule of these records could show.
``bit_exact``
    Every output value equal to the golden model's (the run fails otherwise).

Also ``w``/``a`` (measured densities), their targets, the shape, ``passes``, ``macs`` (the PE
counters, checked against the model's pairs), ``host_cycles`` (everything the host did for the
case, register traffic included), ``seed``, wall time, and the ratios ``ideal_over_run``,
``busy_over_run``, ``speedup_vs_dense`` (``dense_winograd_cycles / run_cycles``) and
``speedup_target`` (``0.8 / (w * a)``), the targets of the wide-stream work.

The streams are whatever the transport and the driver make of ``cfg``; the bench holds no
stream width of its own.

Run time: the simulation speed depends on the Verilator options of :data:`verif.runner.VERILATOR`
(docs/verification.md, "Simulation speed"); at the former ``-O0`` flags the whole accelerator
ran at about 500 cycles/s, and the eight conv64/conv128 cases of docs/results.md (wide streams,
8 values and 4 weight bytes per beat: conv64 at w = 0.2, a = 0.5 is about 41,000 cycles) took
about 24 minutes on a loaded machine. So the default is :data:`DEFAULT_GRID` (conv64, both
prunings, w = 0.2, a = 0.5); ``--layers conv64 conv128 conv256`` adds the other layers
at that point, and ``--full`` runs every layer, pruning and density of :mod:`verif.bench`
(54 cases, about 4.3 million cycles: 318 s at 2a3a637 with Verilator, which is what
``make bench`` runs). The bench holds no speed assumption: a faster simulator or wider
streams only make it finish sooner.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from sw import formats, golden, perf, quant, regmap, winograd
from sw.config import AccelConfig, ConfigError
from verif.bench import A_DENSITIES, BENCH_CONFIG, PRUNINGS, W_DENSITIES, make_weights

__all__ = ["SYSTEM_CONFIG", "SYSTEM_LAYERS", "DEFAULT_GRID", "RECORD_KEYS", "Spec",
           "make_system_case", "case_layer", "pass_layers", "golden_conv", "run_system_bench", "markdown", "main"]

ROOT = Path(__file__).resolve().parent.parent

#: The accelerator under test: the array of ``make bench`` with four weight-load ports (see the
#: module docstring).
SYSTEM_CONFIG = dataclasses.replace(BENCH_CONFIG, weight_ports=4)
#: VGG-nagadomi layers at full size: channels (``C = K``) and the square map's side.
SYSTEM_LAYERS = {"conv64": (64, 32), "conv128": (128, 16), "conv256": (256, 8)}
#: The default subset (``make bench``): conv64, both prunings, one point w = 0.2, a = 0.5; about
#: 225,000 simulated cycles, what fits beside the array bench in 20 minutes at today's speed.
DEFAULT_GRID = {"layers": ("conv64",), "prunings": PRUNINGS, "w": (0.2,), "a": (0.5,)}
#: Keys every record has (the issue's list and the bench's own).
RECORD_KEYS = ("layer", "pruning", "w", "a", "run_cycles", "load_cycles", "array_busy_cycles",
               "ideal_cycles", "dense_winograd_cycles", "weight_stream_cycles",
               "speedup_ceiling", "bit_exact", "passes", "seed")
#: Padding of the VGG layers (output map = input map).
PAD = 1


@dataclasses.dataclass(frozen=True)
class Spec:
    """One bench point: ``layer`` name, ``channels`` (``C = K``), square map ``size``,
    ``pruning``, target weight density ``w`` and activation density ``a``."""

    layer: str
    channels: int
    size: int
    pruning: str
    w: float
    a: float

    @property
    def name(self) -> str:
        return f"{self.layer}_{self.pruning}_w{self.w}_a{self.a}"


def _v_density(x: np.ndarray, cfg: AccelConfig) -> float:
    """Density of the transformed input ``V`` of ``x [C, H, W]`` with padding :data:`PAD`."""
    C, H, W = x.shape
    grid = winograd.tile_grid(H, W, cfg.tile, PAD)
    d = winograd.extract_tiles(x, grid).reshape(C, grid.tiles, cfg.n, cfg.n)
    return float((golden.transform_input(d, cfg) != 0).mean())


def spatial_input(cfg: AccelConfig, channels: int, size: int, a_density: float,
                  rng: np.random.Generator) -> np.ndarray:
    """An int ``[C, size, size]`` image whose transformed input has density ``a_density``.

    The values are uniform over ``cfg.act_range`` without 0; an element is kept when its own
    uniform draw is below ``s``, and ``s`` is bisected (20 steps) until the density of ``V``
    is closest to ``a_density`` (``s = 1`` for ``a_density = 1``: a dense image).
    """
    lo, hi = cfg.act_range
    values = rng.integers(lo, hi, size=(channels, size, size))
    values[values >= 0] += 1                                  # uniform over [lo, hi] \\ {0}
    u = rng.random(values.shape)
    if a_density >= 1:
        return values
    s_lo, s_hi = 0.0, 1.0
    for _ in range(20):
        s = (s_lo + s_hi) / 2
        if _v_density(np.where(u < s, values, 0), cfg) < a_density:
            s_lo = s
        else:
            s_hi = s
    best = min((s_lo, s_hi), key=lambda s: abs(_v_density(np.where(u < s, values, 0), cfg)
                                                - a_density))
    return np.where(u < best, values, 0)


def make_system_case(cfg: AccelConfig, spec: Spec, rng: np.random.Generator) -> dict:
    """The stimulus of one case: the arrays :mod:`verif.tb_bench_system` reads.

    Keys ``x`` [C, H, W], ``U`` [n*n, K, C], ``bias``, ``multiplier``, ``shift`` [K] and
    ``pad``, ``winograd_relu``, ``spatial_relu`` (scalars).
    """
    U = make_weights(cfg, spec.channels, spec.w, spec.pruning, rng)
    x = spatial_input(cfg, spec.channels, spec.size, spec.a, rng)
    K = U.shape[1]
    probe = case_layer({"U": U, "bias": np.zeros(K, np.int64), "multiplier": np.ones(K, np.int64),
                        "shift": np.ones(K, np.int64), "pad": PAD, "winograd_relu": False,
                        "spatial_relu": False}, spec.name)
    packed = formats.pack_layer(U, cfg, name=spec.name)
    Y = np.concatenate([golden.conv_layer_trace(x, sub, cfg).Y             # [K, T, m, m]
                        for _, sub in pass_layers(probe, packed)])
    peak = np.maximum(np.abs(Y).reshape(K, -1).max(axis=1), 1)
    multiplier, shift = quant.quantize_multiplier(96.0 / peak, cfg)
    bias = rng.integers(-(peak // 8) - 1, peak // 8 + 1)
    return {"x": x, "U": U, "bias": bias.astype(np.int64), "multiplier": multiplier,
            "shift": shift, "pad": PAD, "winograd_relu": False, "spatial_relu": False}


def case_layer(case, name: str) -> quant.QuantLayer:
    """The :class:`sw.quant.QuantLayer` of a case (a dict or an ``np.load`` of one)."""
    K = case["U"].shape[1]
    return quant.QuantLayer(
        name=name, U=np.asarray(case["U"], dtype=np.int64),
        bias=np.asarray(case["bias"], dtype=np.int64),
        multiplier=np.asarray(case["multiplier"], dtype=np.int64),
        shift=np.asarray(case["shift"], dtype=np.int64), pad=int(case["pad"]),
        winograd_relu=bool(case["winograd_relu"]), spatial_relu=bool(case["spatial_relu"]),
        in_scale=1.0, w_scale=np.ones(K), out_scale=1.0)


def pass_layers(layer: quant.QuantLayer, packed: formats.PackedLayer) -> list:
    """``layer`` cut to each pass's output channels: ``(k_base, QuantLayer)`` per pass.

    The golden model takes at most ``k_max`` output channels at a time, as the hardware does;
    a layer with more runs as passes, each an independent convolution of its channels.
    """
    out = []
    for im in packed.passes:
        ks = slice(im.k_base, im.k_base + im.k_count)
        out.append((im.k_base, dataclasses.replace(
            layer, U=layer.U[:, ks], bias=layer.bias[ks], multiplier=layer.multiplier[ks],
            shift=layer.shift[ks], w_scale=np.asarray(layer.w_scale)[ks])))
    return out


def golden_conv(x: np.ndarray, layer: quant.QuantLayer, packed: formats.PackedLayer,
                cfg: AccelConfig) -> np.ndarray:
    """:func:`sw.golden.conv_layer` of every pass of ``packed``, stacked: ``[K, out_h, out_w]``."""
    return np.concatenate([golden.conv_layer(x, sub, cfg)
                           for _, sub in pass_layers(layer, packed)])


def _simulate(cfg: AccelConfig, cases: dict[str, dict], work: Path, sim_case: str,
              sim: str | None) -> dict[str, dict]:
    """Run every case on the RTL in one cocotb simulation; ``name -> result`` of the bench."""
    from verif.runner import run_bench
    from verif.simulator import fast_simulator

    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for name, case in cases.items():
        np.savez(work / f"{name}.npz", **case)
        (work / f"{name}.rtl.json").unlink(missing_ok=True)
    (work / "cases.json").write_text(json.dumps(list(cases)))
    try:
        run_bench("accelerator", cfg, "verif.tb_bench_system", sim_case,
                  extra_env={"WINNOW_BENCH_DIR": str(work), "COCOTB_LOG_LEVEL": "WARNING"},
                  sim=sim or fast_simulator(), console=True)
    except AssertionError as err:
        done = [n for n in cases if (work / f"{n}.rtl.json").exists()]
        bad = [n for n in done if not json.loads((work / f"{n}.rtl.json").read_text())
               ["bit_exact"]]
        raise SystemExit(f"bench_system: the RTL simulation failed ({', '.join(bad) or 'no case'} "
                         f"not bit-exact; {len(done)} of {len(cases)} cases finished): "
                         f"{err}") from None
    return {name: json.loads((work / f"{name}.rtl.json").read_text()) for name in cases}


def _record(cfg: AccelConfig, spec: Spec, case: dict, rtl: dict, seed: int) -> dict:
    """One record of ``system.json`` from the stimulus, the RTL result and the model."""
    from hw.array import SparseArray

    layer = case_layer(case, spec.name)
    packed = formats.pack_layer(layer.U, cfg, name=spec.name)
    V = golden.conv_layer_trace(case["x"], pass_layers(layer, packed)[0][1], cfg).V
    rep = perf.model_layer(packed, V, cfg, perf.PerfParams(latency_cycles=SparseArray.LATENCY))
    passes = rtl["passes"]
    macs = sum(p["macs"] for p in passes)
    if macs != rep.macs:
        raise SystemExit(f"bench_system {spec.name}: PERF_MACS counted {macs} MACs, the "
                         f"model counts {rep.macs} non-zero pairs")
    load = sum(p["load_cycles"] for p in passes)
    stream = sum(max(-(-len(frame) // formats.WEIGHT_BEAT_BYTES)
                     for frame in formats.record_frames(0, image, cfg))
                 for image in packed.passes)
    hidden = sum(p.get("hidden_load_cycles", 0) for p in passes)
    compute = sum(p["cycles"] for p in passes)
    run = load - hidden + compute
    busy = sum(p["array_cycles"] for p in passes)
    w, a = float((layer.U != 0).mean()), float((V != 0).mean())
    C, H, W = case["x"].shape
    return {
        "layer": spec.layer, "pruning": spec.pruning, "w": w, "a": a,
        "w_target": spec.w, "a_target": spec.a,
        "C": C, "K": layer.K, "H": H, "W": W, "pad": layer.pad, "tiles": int(V.shape[2]),
        "passes": len(passes),
        "run_cycles": run, "load_cycles": load, "hidden_load_cycles": hidden,
        "compute_cycles": compute, "weight_stream_cycles": stream,
        "array_busy_cycles": busy, "ideal_cycles": rep.ideal_cycles,
        "dense_winograd_cycles": rep.dense_cycles, "model_array_cycles": rep.cycles,
        "macs": macs, "bit_exact": bool(rtl["bit_exact"]),
        "ideal_over_run": rep.ideal_cycles / run, "busy_over_run": busy / run,
        "speedup_vs_dense": rep.dense_cycles / run, "speedup_target": 0.8 / (w * a),
        "speedup_ceiling": rep.dense_cycles / max(rep.ideal_cycles, stream),
        "per_pass": passes, "host_cycles": rtl["host_cycles"],
        "wall_seconds": rtl["wall_seconds"], "seed": seed, "simulator": rtl["simulator"],
        "config": json.loads(cfg.to_json()),
    }


def run_system_bench(cfg: AccelConfig, specs: list[Spec], out: Path, seed: int = 1, *,
                     sim_case: str = "bench_system", sim: str | None = None) -> list[dict]:
    """Draw, simulate and model every case of ``specs``; the records of ``system.json``.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator to generate and run.
    specs : list of Spec
        The cases, run in this order in one simulation.
    out : Path
        Output directory: the stimulus goes to ``out/work/system``.
    seed : int
        Seed of the stimulus (one generator, drawn case after case in order).
    sim_case : str
        Build directory name under ``build/sim/`` (one per configuration keeps builds apart).
    sim : str, optional
        Simulator; default :func:`verif.simulator.fast_simulator`.

    Raises
    ------
    SystemExit
        A case cannot run on ``cfg`` (named), the simulation failed or an output was not
        bit-exact, or PERF_MACS disagrees with the model.
    """
    rng = np.random.default_rng(seed)
    cases = {}
    for spec in specs:
        t0 = time.perf_counter()
        try:
            case = make_system_case(cfg, spec, rng)
        except (formats.FormatError, ValueError) as err:
            raise SystemExit(f"bench_system {spec.name}: {err} (the driver splits a layer over "
                             "output channels only)") from None
        packed = formats.pack_layer(case["U"], cfg, name=spec.name)
        problem = regmap.shape_problem(cfg, *case["x"].shape[1:], spec.channels,
                                       packed.passes[0].k_count, PAD)
        if problem:
            raise SystemExit(f"bench_system {spec.name}: {problem}")
        cases[spec.name] = case
        print(f"bench_system: case {spec.name}: {spec.channels}->{spec.channels} at "
              f"{spec.size}x{spec.size}, {packed.num_passes} passes, stimulus "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    rtl = _simulate(cfg, cases, out / "work" / "system", sim_case, sim)
    records = []
    for spec in specs:
        rec = _record(cfg, spec, cases[spec.name], rtl[spec.name], seed)
        records.append(rec)
        print(f"bench_system: {spec.name}: run {rec['run_cycles']} (load {rec['load_cycles']}) "
              f"busy {rec['array_busy_cycles']} ideal {rec['ideal_cycles']:.0f} dense "
              f"{rec['dense_winograd_cycles']}; ideal/run {rec['ideal_over_run']:.3f} "
              f"busy/run {rec['busy_over_run']:.3f} speedup {rec['speedup_vs_dense']:.2f} "
              f"(target {rec['speedup_target']:.2f})", flush=True)
    return records


def markdown(records: list[dict]) -> str:
    """The records as the markdown table of docs/results.md, one row per case."""
    lines = ["| layer | pruning | w | a | passes | run | load | load hidden | weight stream "
             "| array busy | ideal | dense Winograd | ideal / run | busy / run "
             "| speedup vs dense | target 0.8/(w·a) | ceiling | bit-exact |",
             "|" + "---|" * 18]
    for r in records:
        lines.append(
            f"| {r['layer']} | {r['pruning']} | {r['w']:.2f} | {r['a']:.2f} | {r['passes']} "
            f"| {r['run_cycles']:,} | {r['load_cycles']:,} "
            f"| {r.get('hidden_load_cycles', 0):,} | {_opt(r, 'weight_stream_cycles', ',')} "
            f"| {r['array_busy_cycles']:,} "
            f"| {r['ideal_cycles']:,.0f} | {r['dense_winograd_cycles']:,} "
            f"| {r['ideal_over_run']:.3f} | {r['busy_over_run']:.3f} "
            f"| {r['speedup_vs_dense']:.2f} | {r['speedup_target']:.2f} "
            f"| {_opt(r, 'speedup_ceiling', '.2f')} "
            f"| {'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _opt(record: dict, key: str, spec: str) -> str:
    """``record[key]`` formatted, or "–" in a record written before the key existed."""
    return format(record[key], spec) if key in record else "–"


def summary(records: list[dict]) -> dict:
    """The issue's targets over the balanced cases: medians and the speedup shortfall."""
    bal = [r for r in records if r["pruning"] == "balanced"]
    if not bal:
        return {}
    return {
        "balanced_cases": len(bal),
        "median_ideal_over_run": float(np.median([r["ideal_over_run"] for r in bal])),
        "median_busy_over_run": float(np.median([r["busy_over_run"] for r in bal])),
        "speedup_target_met": sum(r["speedup_vs_dense"] >= r["speedup_target"] for r in bal),
        # points whose weight stream alone rules the target out
        "ceiling_below_target": sum(r["speedup_ceiling"] < r["speedup_target"]
                                    for r in bal if "speedup_ceiling" in r),
    }


def plot(records: list[dict], img: Path) -> Path:
    """``img/system_cycles.png``: per case, the cycles on a log scale (run split into the weight
    loads no run hides and START to DONE, array busy, ideal; dense Winograd a mark), and below
    them the three ratios against their targets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    fig, (ax, rx) = plt.subplots(2, 1, figsize=(max(8.0, 0.42 * len(records) + 2), 7.5),
                                 sharex=True)
    xs = np.arange(len(records))
    labels = [f"{r['layer']} {r['pruning']}\nw {r['w_target']} a {r['a_target']}"
              for r in records]
    width = 0.25
    load = [r["load_cycles"] - r.get("hidden_load_cycles", 0) for r in records]
    compute = [r["compute_cycles"] for r in records]
    ax.bar(xs - width, load, width, label="run: weight loads (not hidden)", color="tab:gray")
    ax.bar(xs - width, compute, width, bottom=load, label="run: START to DONE",
           color="tab:red")
    ax.bar(xs, [r["array_busy_cycles"] for r in records], width, label="array busy",
           color="tab:orange")
    ax.bar(xs + width, [r["ideal_cycles"] for r in records], width,
           label="ideal (pairs / multipliers)", color="tab:green")
    ax.scatter(xs, [r["dense_winograd_cycles"] for r in records], marker="_", s=120,
               color="tab:blue", label="dense Winograd, same multipliers")
    ax.set_yscale("log")
    low = min(min(r["ideal_cycles"], r["run_cycles"]) for r in records)
    ax.set_ylim(low / 4, max(r["dense_winograd_cycles"] for r in records) * 12)
    ax.set_ylabel("cycles")
    ax.set_title("whole accelerator (RTL), full-size VGG-nagadomi layers", fontsize=10)
    ax.legend(fontsize=7, ncols=5, loc="upper left")
    ratios = (("ideal_over_run", "ideal / run (target 0.80)", "tab:green", 0.8),
              ("busy_over_run", "busy / run (target 0.90)", "tab:orange", 0.9))
    for i, (key, label, color, target) in enumerate(ratios):
        rx.bar(xs + (i - 1) * width, [r[key] for r in records], width, label=label,
               color=color)
        rx.hlines(target, xs[0] - 0.5, xs[-1] + 0.5, colors=color, linestyles="--", lw=0.8)
    rx.bar(xs + width, [r["speedup_vs_dense"] / r["speedup_target"] for r in records], width,
           label="speedup vs dense / 0.8/(w·a) (target 1)", color="tab:blue")
    rx.hlines(1.0, xs[0] - 0.5, xs[-1] + 0.5, colors="tab:blue", linestyles="--", lw=0.8)
    rx.set_xticks(xs, labels, fontsize=7, rotation=90)
    rx.set_ylim(0, 1.35)
    rx.set_title("against the wide-stream targets (dashed)", fontsize=10)
    rx.legend(fontsize=7, ncols=3, loc="upper left")
    fig.tight_layout()
    path = img / "system_cycles.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _print_summary(records: list[dict]) -> None:
    stats = summary(records)
    if stats:
        print(f"bench_system: balanced cases: median ideal/run "
              f"{stats['median_ideal_over_run']:.3f} (target 0.80), median busy/run "
              f"{stats['median_busy_over_run']:.3f} (target 0.90), speedup over dense "
              f"Winograd >= 0.8/(w*a) at {stats['speedup_target_met']} of "
              f"{stats['balanced_cases']} (the weight stream's bytes rule it out at "
              f"{stats['ceiling_below_target']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verif.bench_system", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Default grid: layers {' '.join(DEFAULT_GRID['layers'])}, prunings "
               f"{' '.join(DEFAULT_GRID['prunings'])}, w {DEFAULT_GRID['w'][0]}, "
               f"a {DEFAULT_GRID['a'][0]}. --full: w {W_DENSITIES}, a {A_DENSITIES}.")
    parser.add_argument("--full", action="store_true",
                        help="every layer, pruning and density of verif.bench (54 cases; "
                             "hours at today's simulation speed)")
    parser.add_argument("--layers", nargs="+", choices=sorted(SYSTEM_LAYERS),
                        help="layer subset")
    parser.add_argument("--pruning", nargs="+", choices=PRUNINGS, help="pruning subset")
    parser.add_argument("--w", nargs="+", type=float, metavar="W", help="weight densities")
    parser.add_argument("--a", nargs="+", type=float, metavar="A", help="activation densities")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="accelerator configuration (default: SYSTEM_CONFIG, "
                             "verif.bench.BENCH_CONFIG with four weight-load ports)")
    parser.add_argument("--simulator", choices=("icarus", "verilator"),
                        help="simulator (default: Verilator when available)")
    parser.add_argument("--seed", type=int, default=1, help="stimulus seed (%(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench",
                        help="output directory for system.json and system.md "
                             "(default: %(default)s)")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="write the plot to DIR/system_cycles.png (default: OUT)")
    parser.add_argument("--sim", dest="simulate", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="run the RTL (default); --no-sim only re-renders system.md and "
                             "the plot from OUT/system.json")
    args = parser.parse_args(argv)
    plots = args.plots or args.out
    if not args.simulate:
        source = args.out / "system.json"
        if not source.is_file():
            parser.error(f"--no-sim: {source} does not exist (run the bench first)")
        records = json.loads(source.read_text())
        (args.out / "system.md").write_text(markdown(records))
        print(markdown(records))
        _print_summary(records)
        print(f"bench_system: wrote {args.out / 'system.md'} and {plot(records, plots)}")
        return 0
    try:
        cfg = AccelConfig.load(args.config) if args.config else SYSTEM_CONFIG
    except (ConfigError, OSError, ValueError) as err:
        parser.error(f"--config {args.config}: {err}")
    grid = {"layers": tuple(SYSTEM_LAYERS), "prunings": PRUNINGS, "w": W_DENSITIES,
            "a": A_DENSITIES} if args.full else DEFAULT_GRID
    layers = args.layers or grid["layers"]
    prunings = args.pruning or grid["prunings"]
    wds, ads = args.w or grid["w"], args.a or grid["a"]
    for flag, values in (("--w", wds), ("--a", ads)):
        if not all(0 < v <= 1 for v in values):
            parser.error(f"{flag} {' '.join(map(str, values))}: densities must be in (0, 1]")
    specs = [Spec(layer, *SYSTEM_LAYERS[layer], pruning, w, a)
             for layer in layers for pruning in prunings for w in wds for a in ads]
    print(f"bench_system: {len(specs)} cases (layers {list(layers)}, pruning {list(prunings)}, "
          f"w {list(wds)}, a {list(ads)}), seed {args.seed}, {cfg.multipliers} multipliers, "
          f"k_max {cfg.k_max}, c_max {cfg.c_max}", flush=True)
    t0 = time.perf_counter()
    records = run_system_bench(cfg, specs, args.out, args.seed, sim=args.simulator)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "system.json").write_text(json.dumps(records, indent=1) + "\n")
    (args.out / "system.md").write_text(markdown(records))
    print(markdown(records))
    _print_summary(records)
    print(f"bench_system: wrote {plot(records, plots)}")
    print(f"bench_system: wrote {args.out / 'system.json'} and system.md ({len(records)} "
          f"records, all bit-exact) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
