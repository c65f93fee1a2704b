"""``make bench``: RTL cycle counts of SparseArray on VGG-nagadomi layer shapes.

For every layer (VGG-nagadomi's 64->64, 128->128 and 256->256 channels; their 32x32, 16x16 and
8x8 output maps shrunk to 16x16, 8x8 and 8x4; ``--tiles`` overrides),
pruning (``balanced``: :func:`sw.prune.prune_balanced`, equal density per Winograd coordinate
and, with the configuration's lanes, per lane of every column;
``per-layer``: :func:`sw.prune.prune_winograd`, one magnitude threshold for the layer), weight
density {0.1, 0.2, 0.35} and activation density {0.3, 0.5, 1.0}:

- weights: spatial N(0, 1) 3x3 kernels (seeded) -> ``U = G g G^T`` -> pruning mask -> int8 by
  the max-abs scale (a kept weight that rounds to 0 becomes +-1, so the density is exact);
- activations: ``V`` drawn directly in the Winograd domain, uniform over ``cfg.v_range`` with a
  fraction ``1 - a_density`` zeroed (i.i.d. per coordinate, channel and tile), i.e. the
  density after the PE zero filters;
- ``rtl_cycles`` comes from the ``cycles`` counter of the generated Verilog in a cocotb run
  (:mod:`verif.tb_bench`, which also checks every ``M`` bit-exact against
  :func:`sw.golden.accumulate` and fails otherwise); the Verilog is built once per config and
  every case is passed as stimulus files;
- ``ideal_cycles``, ``dense_cycles``, ``model_cycles`` and the loss breakdown come from
  :func:`sw.perf.model_layer`.

Arrays: ``uniform`` is :data:`BENCH_CONFIG` (4 lanes per coordinate, ``drain_width`` 4);
``matched`` (``--matched``) shares the same multipliers out by per-coordinate weight density
(:func:`matched_config`, lanes 3 to 5). Output channel ``k`` belongs to lane ``k mod L`` and a
lane drains one channel per cycle, so ``drain_width`` must be at most the fewest lanes of a
coordinate (:class:`sw.config.AccelConfig` raises ``ConfigError`` otherwise): the matched array
drains 2 channels per cycle, and ``--set lanes=...`` needs a ``--set drain_width=...`` to match.

Writes ``<out>/results.json`` and ``<out>/results.md`` (one record or row per case), prints a
table, and with ``--plots DIR`` writes ``DIR/bench_<layer>.png``.

Run time: measured at the former Verilator flags (``-O0``: about 600 cycles/s, cocotb driving
every beat; each array's Verilator build 3 to 5 minutes on a loaded 2-core machine; the
current flags are in docs/verification.md, "Simulation speed"). The
full grid is about 2.4 million simulated cycles, two thirds of them weight loads (not counted
in ``rtl_cycles``), so over an hour; the grid of docs/results.md (``--layers conv64 --tiles 32
--w 0.1 0.35 --a 0.3 1.0 --no-sim-speed``, 12 cases) takes about 14 minutes.

Simulation speed: unless ``--no-sim-speed``, the whole accelerator (:class:`hw.top.Accelerator`)
runs the example digits network on ``--speed-images`` real digits on the fastest simulator
(:func:`verif.simulator.fast_simulator`: Verilator when installed; Icarus fails this run at
the first cycles today, ``tready`` X in cocotbext-axi's sink), and ``<out>/sim_speed.json`` records the build time (``build_seconds``),
the build-and-startup time, simulated cycles, wall time and cycles/s of each (the cocotb bench,
AXI drivers and golden checks included), and Verilator's options (``flags``:
:data:`verif.runner.VERILATOR`; ``python -m verif.sim_speed`` compares the alternatives).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from hw.array import SparseArray
from sw.config import AccelConfig
from sw import formats, perf, prune

__all__ = ["BENCH_CONFIG", "LAYERS", "W_DENSITIES", "A_DENSITIES", "PRUNINGS",
           "make_weights", "make_case",
           "matched_config", "markdown", "main"]

ROOT = Path(__file__).resolve().parent.parent

#: The array under test: F(2x2, 3x3), 4 lanes per coordinate (64 multipliers), words of 8
#: slots, 4 input channels per beat, 4 output channels drained per cycle, 3 tiles in flight;
#: k_max 64 so the 128- and 256-channel layers run as 2 and 4 passes. In the whole
#: accelerator (verif.bench_system) two channels a cycle through the line buffer, the
#: transforms and the reorder buffer (transform_channels): as fast as the 8-value beats of
#: the AXI streams bring and take them at F(2,3).
BENCH_CONFIG = AccelConfig(tile=2, lanes=4, k_max=64, c_max=256, wmem_depth=2048,
                           fifo_depth=32, tiles_in_flight=3, act_width=4, slots_per_lane=2,
                           drain_width=4, transform_channels=2)
#: VGG-nagadomi layer shapes: channels (C = K) and F(2x2, 3x3) tiles of the output map, each
#: shrunk 4x in area from the real 32x32, 16x16 and 8x8 (to 16x16, 8x8 and 8x4).
LAYERS = {"conv64": (64, 64), "conv128": (128, 16), "conv256": (256, 8)}
W_DENSITIES = (0.1, 0.2, 0.35)
A_DENSITIES = (0.3, 0.5, 1.0)
PRUNINGS = ("balanced", "per-layer")


def matched_config(cfg: AccelConfig = None, w_density: float = 0.2) -> AccelConfig:
    """``cfg`` with its multipliers shared out by per-coordinate weight density.

    The densities come from a calibration layer that is not in the grid: seeded N(0, 1) 3x3
    kernels, 64 -> 64 channels, pruned with one threshold per layer to ``w_density``
    (:func:`sw.prune.prune_winograd`); :func:`sw.perf.allocate_lanes` turns them into lanes.
    Output channel ``k`` drains from lane ``k mod L``, so ``drain_width`` may not exceed the
    fewest lanes of a coordinate: it becomes the largest power of two that is at most both
    ``cfg.drain_width`` and that (2 for the bench's matched lanes, whose centre has 3).
    """
    cfg = cfg or BENCH_CONFIG
    g = np.random.default_rng(12345).standard_normal((64, 64, 3, 3))
    density = prune.prune_winograd(prune.to_winograd(g, cfg.tile), w_density).mean(axis=(1, 2))
    lanes = perf.allocate_lanes(density, cfg.multipliers)
    drain = 1 << (min(cfg.drain_width, min(lanes)).bit_length() - 1)
    return dataclasses.replace(cfg, lanes=lanes, drain_width=drain)


def make_weights(cfg: AccelConfig, channels: int, w_density: float, pruning: str,
                 rng: np.random.Generator) -> np.ndarray:
    """Quantised pruned Winograd-domain weights ``U [n*n, K, C]`` (``K = C = channels``).

    Seeded N(0, 1) spatial 3x3 kernels -> ``U = G g G^T`` -> the ``pruning`` mask
    (``"balanced"``: :func:`sw.prune.prune_balanced` with the configuration's lanes and
    ``k_max``, equal counts per coordinate and per lane of every column, in every pass's
    block of output channels; else :func:`sw.prune.prune_winograd`) at
    ``w_density`` -> int8 by the max-abs scale; a kept weight that rounds to 0 becomes +-1, so
    the density is exact. Also the weights of :mod:`verif.bench_system`.
    """
    g = rng.standard_normal((channels, channels, 3, 3))
    U = prune.to_winograd(g, cfg.tile)
    keep = prune.prune_balanced(U, w_density, **prune.balance_for(cfg)) \
        if pruning == "balanced" else prune.prune_winograd(U, w_density)
    q = np.rint(U / np.abs(U).max() * cfg.wgt_range[1]).astype(np.int64)
    q[keep & (q == 0)] = np.where(U[keep & (q == 0)] >= 0, 1, -1)
    q[~keep] = 0
    return q


def make_case(cfg: AccelConfig, channels: int, w_density: float, a_density: float,
              pruning: str, tiles: int, rng: np.random.Generator):
    """Quantised pruned ``U [n*n, K, C]`` and sparse ``V [n*n, C, T]`` for one bench point."""
    q = make_weights(cfg, channels, w_density, pruning, rng)
    lo, hi = cfg.v_range
    V = rng.integers(lo, hi + 1, size=(cfg.coords, channels, tiles))
    V[rng.random(V.shape) >= a_density] = 0
    return q, V


def _reusable(cases: dict, work: Path) -> dict:
    """``name -> rtl json`` of the cases whose stimulus in ``work`` equals ``cases``' and whose
    RTL result is there (the caller checks that the Verilog is the same)."""
    kept = {}
    for name, (U, V) in cases.items():
        stim, done = work / f"{name}.npz", work / f"{name}.rtl.json"
        if done.exists() and stim.exists():
            old = np.load(stim)
            if np.array_equal(old["U"], U) and np.array_equal(old["V"], V):
                kept[name] = json.loads(done.read_text())
    return kept


def _simulate(cfg: AccelConfig, cases: dict, work: Path, verilog_file: Path | None,
              reuse: bool = False, simulate: bool = True) -> dict:
    """Run every case through the RTL in one cocotb simulation; ``name -> rtl json``.

    With ``reuse``, a case whose ``<name>.rtl.json`` a run of the same Verilog and the same
    stimulus left behind is not simulated again; with ``simulate=False`` as well, nothing is
    simulated and only those results come back.
    """
    from cocotb_tools.check_results import get_results

    from hw.gen import verilog_text
    from verif.runner import get_sim_runner, sim_build_args
    from verif.simulator import fast_simulator

    # the grid is millions of cycles of a large design: Icarus runs it at tens of cycles/s
    sim = fast_simulator()
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source = work / "sparse_array.v"
    text = verilog_file.read_text() if verilog_file else verilog_text("sparse_array", cfg)
    same_rtl = source.exists() and source.read_text() == text
    if not same_rtl:
        source.write_text(text)
    kept = _reusable(cases, work) if reuse and same_rtl else {}
    if simulate is False:
        return kept
    todo = []
    for name, (U, V) in cases.items():
        stim, done = work / f"{name}.npz", work / f"{name}.rtl.json"
        if name in kept:
            continue
        np.savez(stim, U=U, V=V)
        done.unlink(missing_ok=True)
        todo.append(name)
    (work / "cases.json").write_text(json.dumps(todo))
    if not todo:
        print(f"bench: every case of {work.name} reused", flush=True)
        return {name: json.loads((work / f"{name}.rtl.json").read_text()) for name in cases}
    config = work / "winnow.json"
    config.write_text(cfg.to_json())
    build = work / sim
    runner = get_sim_runner(sim)
    t0 = time.monotonic()
    runner.build(sources=[source], hdl_toplevel="sparse_array", build_dir=build,
                 build_args=sim_build_args(sim),
                 timescale=("1ns", "1ps"), log_file=build / "build.log")
    print(f"bench: {sim} build {time.monotonic() - t0:.0f} s; simulating {len(todo)} cases "
          f"({len(cases) - len(todo)} reused)",
          flush=True)
    results = build / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(test_module="verif.tb_bench", hdl_toplevel="sparse_array", build_dir=build,
                    test_dir=build, seed=0, results_xml=str(results),
                    extra_env={"WINNOW_CONFIG": str(config), "WINNOW_BENCH_DIR": str(work)},
                    timescale=("1ns", "1ps"), log_file=build / "sim.log")
    except SystemExit:
        pass
    log = build / "sim.log"
    if not results.exists() or get_results(results)[1] or get_results(results)[0] == 0:
        raise SystemExit(f"bench: the RTL simulation failed (M not bit-exact or hung); see {log}")
    return {name: json.loads((work / f"{name}.rtl.json").read_text()) for name in cases}


def _table(records: list[dict]):
    from rich.table import Table
    table = Table(title="SparseArray bench (rtl_cycles from the RTL counter)")
    for col in ("layer", "array", "pruning", "w", "a", "rtl", "model", "err %", "ideal",
                "dense", "util", "speedup"):
        table.add_column(col, justify="right")
    for r in records:
        rtl = r["rtl_cycles"]
        table.add_row(r["layer"], r["array"], r["pruning"], f"{r['w_density']:.2f}",
                      f"{r['a_density']:.1f}",
                      str(rtl), str(r["model_cycles"]),
                      f"{100 * r['model_error']:+.1f}" if rtl else "—",
                      f"{r['ideal_cycles']:.0f}", str(r["dense_cycles"]),
                      f"{r['utilisation']:.3f}" if rtl else "—",
                      f"{r['dense_cycles'] / rtl:.2f}" if rtl else "—")
    return table


def markdown(records: list[dict]) -> str:
    """The results as a markdown table (what docs/results.md shows), one row per case."""
    lines = ["| layer | array | pruning | w | a | tiles | rtl | model | err % | ideal | dense "
             "| util | speedup vs dense | imbalance | lane padding | transform | tile sync |",
             "|" + "---|" * 17]
    for r in records:
        loss = r["losses"]
        util = f"{r['utilisation']:.3f}" if r["rtl_cycles"] else "—"
        err = f"{100 * r['model_error']:+.1f}" if r["rtl_cycles"] else "—"
        speed = f"{r['dense_cycles'] / r['rtl_cycles']:.2f}" if r["rtl_cycles"] else "—"
        lines.append(
            f"| {r['layer']} | {r['array']} | {r['pruning']} | {r['w_target']} | "
            f"{r['a_target']} | {r['tiles']} | {r['rtl_cycles']} | {r['model_cycles']} | {err} | "
            f"{r['ideal_cycles']:.0f} | {r['dense_cycles']} | {util} | {speed} | "
            f"{loss['imbalance']:.3f} | {loss['lane_padding']:.3f} | {loss['transform']:.3f} | "
            f"{loss['tile_sync']:.3f} |")
    return "\n".join(lines) + "\n"


def _plots(records: list[dict], img: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    img.mkdir(parents=True, exist_ok=True)
    paths = []
    for layer in sorted({r["layer"] for r in records}):
        fig, ax = plt.subplots(figsize=(6, 4))
        series = (("uniform", "balanced", "-o"), ("uniform", "per-layer", "--s"),
                  ("matched", "per-layer", ":^"))
        for array, pruning, style in series:
            for a in A_DENSITIES:
                pts = sorted((r["w_density"], r["utilisation"]) for r in records
                             if r["layer"] == layer and r["pruning"] == pruning
                             and r["array"] == array and r["a_target"] == a
                             and r["utilisation"] is not None)
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{pruning}, {array} lanes, a={a}")
        ax.axhline(0.9, color="grey", lw=0.8)
        ax.set(xlabel="weight density", ylabel="utilisation (ideal / RTL cycles)",
               title=f"{layer}: utilisation vs density", ylim=(0, 1.05))
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = img / f"bench_{layer}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verif.bench", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="only conv64, w in {0.1, 0.35}, a in {0.3, 1.0}")
    parser.add_argument("--sim", action=argparse.BooleanOptionalAction, default=True,
                        help="run the RTL (default); --no-sim writes model-only records "
                             "with rtl_cycles null")
    parser.add_argument("--matched", nargs="*", choices=sorted(LAYERS), default=["conv64"],
                        metavar="LAYER",
                        help="layers whose per-layer-pruned cases also run on an array whose "
                             "lanes follow the per-coordinate weight density, with drain_width "
                             "cut to at most its fewest lanes (2 for lanes 3..5; default: "
                             "conv64; none: --matched with no layer)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one AccelConfig field of the array under test, e.g. "
                             "--set drain_width=1 (repeatable; for ablations); drain_width "
                             "must stay at most the fewest lanes of a coordinate")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the RTL results of cases a previous run of the same Verilog "
                             "and stimulus left in OUT/work; with --no-sim, report only those "
                             "(the other records have rtl_cycles null)")
    parser.add_argument("--tiles", type=int,
                        help="tiles per layer for every layer (default: conv64 64, conv128 16, "
                             "conv256 8, see LAYERS)")
    parser.add_argument("--layers", nargs="+", choices=sorted(LAYERS), help="layer subset")
    parser.add_argument("--w", nargs="+", type=float, metavar="W",
                        help=f"weight densities (default: {' '.join(map(str, W_DENSITIES))})")
    parser.add_argument("--a", nargs="+", type=float, metavar="A",
                        help=f"activation densities (default: "
                             f"{' '.join(map(str, A_DENSITIES))})")
    parser.add_argument("--seed", type=int, default=1, help="stimulus seed (%(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench",
                        help="output directory (default: %(default)s)")
    parser.add_argument("--verilog", type=Path,
                        help="simulate this sparse_array Verilog instead of generating it from "
                             "hw/ (e.g. one built from another commit)")
    parser.add_argument("--latency", type=int, default=SparseArray.LATENCY,
                        help="array latency the model adds per pass (default: "
                             "SparseArray.LATENCY = %(default)s)")
    parser.add_argument("--plots", type=Path, help="write bench_<layer>.png plots here")
    parser.add_argument("--sim-speed", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the fastest simulator (Verilator) on the whole "
                             "accelerator (default)")
    parser.add_argument("--speed-images", type=int, default=20,
                        help="digits per simulator for --sim-speed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.tiles is not None and args.tiles < 1:
        parser.error(f"--tiles {args.tiles}: expected >= 1")

    # every --set at once, so e.g. lanes=2 and drain_width=2 are checked together
    changes = {}
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in {f.name for f in dataclasses.fields(AccelConfig)} or not value:
            parser.error(f"--set {item}: expected FIELD=VALUE with an AccelConfig field")
        try:
            changes[field] = json.loads(value)
        except ValueError as err:
            parser.error(f"--set {item}: {err}")
    try:
        cfg = dataclasses.replace(BENCH_CONFIG, **changes)
    except (ValueError, TypeError) as err:
        parser.error(f"--set {' '.join(args.set)}: {err}")
    layers = args.layers or (["conv64"] if args.quick else list(LAYERS))
    wds = args.w or ((0.1, 0.35) if args.quick else W_DENSITIES)
    ads = args.a or ((0.3, 1.0) if args.quick else A_DENSITIES)
    for name, values in (("--w", wds), ("--a", ads)):
        if not all(0 < x <= 1 for x in values):
            parser.error(f"{name} {' '.join(map(str, values))}: densities must be in (0, 1]")
    print(f"bench: layers {layers}, w {wds}, a {ads}, tiles {args.tiles or 'per layer'}, "
          f"seed {args.seed}",
          flush=True)
    rng = np.random.default_rng(args.seed)
    arrays = {"uniform": cfg}
    args.matched = [layer for layer in args.matched if layer in layers]
    if args.matched:
        arrays["matched"] = matched_config(cfg)
        print(f"bench: density-matched lanes {arrays['matched'].lanes}", flush=True)
    points, cases = [], {}
    for layer in layers:
        for pruning in PRUNINGS:
            for w in wds:
                for a in ads:
                    name = f"{layer}_{pruning}_w{w}_a{a}"
                    channels, tiles = LAYERS[layer]
                    cases[name] = make_case(cfg, channels, w, a, pruning, args.tiles or tiles,
                                            rng)
                    points.append((name, "uniform", layer, pruning, w, a))
                    if pruning == "per-layer" and layer in args.matched:
                        points.append((name, "matched", layer, pruning, w, a))
    if args.verilog and not args.verilog.is_file():
        parser.error(f"--verilog {args.verilog}: no such file")
    rtl = {}
    for array, acfg in arrays.items():
        names = [p[0] for p in points if p[1] == array]
        if args.sim or args.reuse:
            rtl[array] = _simulate(acfg, {n: cases[n] for n in names}, args.out / "work" / array,
                                   args.verilog if array == "uniform" else None, args.reuse,
                                   simulate=args.sim)

    records = []
    for name, array, layer, pruning, w, a in points:
        acfg = arrays[array]
        U, V = cases[name]
        packed = formats.pack_layer(U, acfg, name=name)
        rep = perf.model_layer(packed, V, acfg, perf.PerfParams(latency_cycles=args.latency))
        got = rtl.get(array, {}).get(name)
        if got is not None and got["rtl_macs"] != rep.macs:
            raise SystemExit(f"bench {name} ({array}): RTL macs {got['rtl_macs']} != pairs "
                             f"{rep.macs}")
        cyc = got["rtl_cycles"] if got else None
        rec = {"layer": layer, "array": array, "config": json.loads(acfg.to_json()),
               "pruning": pruning,
               "w_density": float((U != 0).mean()), "a_density": float((V != 0).mean()),
               "w_target": w, "a_target": a, "tiles": int(V.shape[2]),
               "passes": packed.num_passes, "rtl_cycles": cyc,
               "verilog": str(args.verilog or "hw/ working tree"),
               "ideal_cycles": rep.ideal_cycles, "dense_cycles": rep.dense_cycles,
               "model_cycles": rep.cycles, "macs": rep.macs,
               "utilisation": rep.ideal_cycles / cyc if cyc else None,
               "model_utilisation": rep.utilisation,
               "model_error": (rep.cycles - cyc) / cyc if cyc else None,
               "losses": rep.loss_fractions()}
        records.append(rec)
        print(f"bench: {name} ({array}): rtl {cyc} model {rep.cycles} "
              f"ideal {rep.ideal_cycles:.0f} dense {rep.dense_cycles}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(records, indent=1))
    (args.out / "results.md").write_text(markdown(records))
    measured = any(r["rtl_cycles"] for r in records)
    if measured:
        from rich.console import Console
        Console(width=120).print(_table(records))
    if args.plots and measured:
        for p in _plots(records, args.plots):
            print(f"bench: wrote {p}")
    print(f"bench: wrote {args.out / 'results.json'} and results.md ({len(records)} records)")
    if args.sim_speed:
        speeds = sim_speed(args.out, args.speed_images)
        (args.out / "sim_speed.json").write_text(json.dumps(speeds, indent=1) + "\n")
        for rec in speeds:
            print(f"bench: {rec['simulator']}: build {rec['build_seconds']:.0f} s, build+startup "
                  f"{rec['build_and_startup_seconds']:.0f} s, "
                  f"{rec['sim_cycles']:.0f} cycles in {rec['wall_seconds']:.1f} s = "
                  f"{rec['cycles_per_second']:.0f} cycles/s")
        print(f"bench: wrote {args.out / 'sim_speed.json'}")
    return 0


def sim_speed(out: Path, images: int) -> list[dict]:
    """Cycles per second of the fastest simulator at hand on the whole accelerator.

    Runs the example digits network (packed for the default :class:`AccelConfig`) on
    ``images`` real test digits; the run checks every layer against the golden model.
    ``build_seconds`` is the simulator build of this run (close to 0 when an unchanged build
    was reused); ``verif.sim_speed`` compares Verilator's options.
    """
    from sw import pack, train
    from verif.network import run_network_job
    from verif.runner import BUILD_SECONDS, VERILATOR
    from verif.simulator import fast_simulator

    cfg = AccelConfig()
    model = ROOT / "examples" / "digits" / "digits.npz"
    packed = out / "speed_packed"
    pack.pack_model(model, packed, cfg, force=True)
    _, _, x, y = train.load_dataset("digits", seed=0)
    # Icarus stops at 60 ns on an X tready of m_axis_out (cocotbext-axi's sink), so Verilator only
    sims = [fast_simulator()]
    records = []
    for sim in sims:
        t0 = time.perf_counter()
        res = run_network_job(cfg, model, packed / pack.BIN_NAME, x[:images], y[:images],
                              f"speed_{sim}", sim=sim)
        total = time.perf_counter() - t0
        records.append({"simulator": sim, "design": "accelerator", "config":
                        json.loads(cfg.to_json()), "images": images,
                        "flags": VERILATOR.describe() if sim == "verilator" else "",
                        "build_seconds": BUILD_SECONDS[f"speed_{sim}"],
                        "sim_cycles": res["sim_cycles"], "wall_seconds": res["wall_seconds"],
                        "cycles_per_second": res["cycles_per_second"],
                        "build_and_startup_seconds": total - res["wall_seconds"]})
    return records


if __name__ == "__main__":
    sys.exit(main())
