"""``python -m fpga.sweep``: resources, Fmax and layer throughput over accelerator configurations.

Each point of the grid (``--tile`` × ``--lanes`` × every multi-valued ``--set FIELD=V1,V2``)
goes through the flow of :mod:`fpga.flow` (default steps: flattened ``synth_ecp5`` and
``nextpnr-ecp5``) and through the cycle model :func:`sw.perf.model_layer` on a VGG-nagadomi
layer (``conv64``: 64 → 64 channels on 32 × 32, 3 × 3, weights pruned to density ``--w`` with
:func:`sw.prune.prune_balanced`, activations of density ``--a``; the stimulus is
:func:`verif.bench.make_case`'s). The effective throughput is that of the dense direct
convolution the layer stands for::

    GOP/s = 2·H·W·C·K·9 / (cycles / Fmax)

Outputs: ``<outdir>/sweep.json`` (one record per point), ``<outdir>/sweep.md`` (table) and a
plot of GOP/s against LUT4 with the Pareto front (``--plot``). Points that do not fit the
device have no Fmax; the plot draws them hollow, at the median Fmax of the points that fit,
and says so.

Points run in parallel: ``--jobs`` local processes (:class:`concurrent.futures.
ProcessPoolExecutor`), or, with ``--scheduler tcp://host:port``, on a Dask distributed cluster
(``pip install -e '.[sweep]'``; every worker needs this repository installed the same way and
the ``fpga`` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from itertools import product
from pathlib import Path

from sw.config import AccelConfig, ConfigError

__all__ = ["LAYERS", "Point", "dense_ops", "layer_cycles", "evaluate", "pareto", "markdown",
           "plot", "build_parser", "main"]

#: Layers of the throughput figure: ``name -> (C = K, H = W)``; VGG-nagadomi's first block.
LAYERS = {"conv64": (64, 32), "conv128": (128, 16), "conv256": (256, 8)}


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration of the sweep and how to evaluate it (picklable, for Dask too)."""

    name: str
    swept: dict
    config: dict
    component: str
    outdir: str
    flow: dict
    layer: str
    w: float
    a: float
    seed: int
    reuse: bool = False


def dense_ops(layer: str) -> int:
    """Operations of the dense direct 3 × 3 convolution: ``2·H·W·C·K·9``."""
    channels, size = LAYERS[layer]
    return 2 * size * size * channels * channels * 9


def layer_cycles(cfg: AccelConfig, layer: str, w: float, a: float, seed: int = 0) -> dict:
    """Modelled cycles of ``layer`` on ``cfg`` (:func:`sw.perf.model_layer`), with its passes."""
    import numpy as np

    from sw import formats, perf
    from verif.bench import make_case

    channels, size = LAYERS[layer]
    tiles = (size // cfg.tile) ** 2
    U, V = make_case(cfg, channels, w, a, "balanced", tiles, np.random.default_rng(seed))
    packed = formats.pack_layer(U, cfg, name=layer)
    rep = perf.model_layer(packed, V, cfg)
    return {"cycles": rep.cycles, "dense_cycles": rep.dense_cycles, "ideal_cycles":
            round(rep.ideal_cycles, 1), "passes": packed.num_passes, "tiles": tiles}


def evaluate(point: Point) -> dict:
    """Flow and cycle model of one point; a record for ``sweep.json``.

    Tool errors (``error``) and a layer the configuration cannot hold (``cycle_error``) are
    recorded rather than raised, so one bad point does not lose the others.
    """
    from fpga.flow import FlowOptions, ToolError, run_flow

    cfg = AccelConfig.from_dict(point.config)
    record = {"name": point.name, "swept": point.swept, "config": point.config,
              "multipliers": cfg.multipliers, "layer": point.layer, "w": point.w,
              "a": point.a, "dense_ops": dense_ops(point.layer), "error": None,
              "cycle_error": None}
    start = time.monotonic()
    try:
        record.update(layer_cycles(cfg, point.layer, point.w, point.a, point.seed))
    except ValueError as err:  # sw.formats.FormatError: the layer does not fit the memories
        record["cycle_error"] = str(err)
    rep = _reusable(point) if point.reuse else None
    record["reused"] = rep is not None
    if rep is not None:
        print(f"{point.name}: reusing {Path(point.outdir) / 'report.json'}", flush=True)
    else:
        try:
            rep = run_flow(point.component, cfg, Path(point.outdir), FlowOptions(**point.flow),
                           label=point.name)
        except ToolError as err:
            record["error"] = str(err)
            rep = {}
    for key in ("fits", "fmax_mhz", "lut", "ff", "dsp", "bram", "lutram", "carry", "device",
                "steps"):
        record[key] = rep.get(key)
    if rep.get("pnr"):
        record["overflow"] = rep["pnr"].get("overflow")
        record["lut_available"] = rep["pnr"]["utilisation"].get(
            "TRELLIS_COMB", {}).get("available")
    if rep.get("xc7"):
        record["xc7"] = rep["xc7"]
    fmax, cycles = record.get("fmax_mhz"), record.get("cycles")
    record["gops"] = round(record["dense_ops"] * fmax / cycles / 1e3, 2) \
        if fmax and cycles else None
    record["seconds"] = round(time.monotonic() - start, 1)
    return record


def _reusable(point: Point) -> dict | None:
    """The point's earlier ``report.json`` if it is of the same component, configuration,
    device, clock, shell and seed, and ran at least the steps asked for; else None."""
    path = Path(point.outdir) / "report.json"
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    flow = point.flow
    want = set(flow["steps"])
    same = (rep.get("component") == point.component and rep.get("config") == point.config
            and rep.get("freq_constraint_mhz") == flow["freq_mhz"]
            and rep.get("shell", {}).get("pins") == flow["pins"]
            and rep.get("seed") == flow["seed"]
            and rep.get("placer", "heap") == flow["placer"]
            and rep.get("router") == flow["router"]
            and rep.get("device", "").split()[-1:] == [flow["package"]]
            and want <= set(rep.get("steps", {})))
    return rep if same else None


def pareto(records: list[dict]) -> list[str]:
    """Names of the points no other point beats on both fewer LUT4 and more GOP/s."""
    pts = [r for r in records if r.get("gops") and r.get("lut")]
    front = []
    for r in pts:
        if not any(o is not r and o["lut"] <= r["lut"] and o["gops"] >= r["gops"]
                   and (o["lut"] < r["lut"] or o["gops"] > r["gops"]) for o in pts):
            front.append(r["name"])
    return sorted(front, key=lambda n: next(r["lut"] for r in pts if r["name"] == n))


def _num(value, fmt="{:,}"):
    return "—" if value is None else fmt.format(value)


def markdown(records: list[dict]) -> str:
    """The sweep as a markdown table (one row per point, Pareto points marked)."""
    front = set(pareto(records))
    lines = ["| point | mult | LUT4 | FF | DP16KD | MULT18X18D | fits | Fmax MHz | cycles "
             "| GOP/s | Pareto |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in records:
        fits = {True: "yes", False: "no", None: "—"}[r.get("fits")]
        if r.get("error"):
            fits = "error"
        lines.append(f"| {r['name']} | {r['multipliers']} | {_num(r.get('lut'))} | "
                     f"{_num(r.get('ff'))} | {_num(r.get('bram'))} | {_num(r.get('dsp'))} | "
                     f"{fits} | {_num(r.get('fmax_mhz'), '{:.1f}')} | "
                     f"{_num(r.get('cycles'))} | {_num(r.get('gops'), '{:.1f}')} | "
                     f"{'*' if r['name'] in front else ''} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path, title: str, lut_capacity: int | None = None) -> None:
    """Effective GOP/s against LUT4, Pareto front joined; non-fitting points hollow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = [r for r in records if r.get("gops") and r.get("lut")]
    fmaxes = sorted(r["fmax_mhz"] for r in fits)
    median = fmaxes[len(fmaxes) // 2] if fmaxes else None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in fits:
        ax.plot(r["lut"], r["gops"], "o", color="C0")
        ax.annotate(r["name"], (r["lut"], r["gops"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    front = [next(r for r in fits if r["name"] == n) for n in pareto(records)]
    if front:
        ax.plot([r["lut"] for r in front], [r["gops"] for r in front], "-", color="C0",
                label="fits: measured Fmax (Pareto front joined)")
    misfits = [r for r in records if r.get("fits") is False and r.get("lut") and r.get("cycles")]
    if misfits and median:
        for r in misfits:
            g = r["dense_ops"] * median / r["cycles"] / 1e3
            ax.plot(r["lut"], g, "o", mfc="none", color="C3")
            ax.annotate(r["name"], (r["lut"], g), textcoords="offset points", xytext=(4, 4),
                        fontsize=8, color="C3")
        ax.plot([], [], "o", mfc="none", color="C3",
                label=f"does not fit: at the median Fmax of the others ({median:.0f} MHz)")
    if lut_capacity:
        ax.axvline(lut_capacity, ls="--", color="grey", lw=1)
        ax.text(lut_capacity, ax.get_ylim()[1], " device LUT4", va="top", fontsize=8,
                color="grey")
    ax.set_xlabel("LUT4 (Yosys synth_ecp5, core + pin shell)")
    ax.set_ylabel("effective GOP/s (dense-equivalent)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "integers") from None
    return values


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set_option(text: str) -> tuple[str, list]:
    names = [f.name for f in dataclasses.fields(AccelConfig)]
    field, sep, values = text.partition("=")
    field = field.strip().replace("-", "_")
    if not sep or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=V1[,V2...]")
    if field not in names:
        raise argparse.ArgumentTypeError(f"{text!r}: {field!r} is not an AccelConfig field "
                                         f"(fields: {', '.join(names)})")
    if field in ("tile", "lanes"):
        raise argparse.ArgumentTypeError(f"{text!r}: use --{field} for {field}")
    return field, [_value(v) for v in values.split(",")]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m fpga.sweep``."""
    from fpga.synth import add_flow_arguments
    from fpga.flow import STEPS

    parser = argparse.ArgumentParser(
        prog="python -m fpga.sweep",
        description="Sweep accelerator configurations through the FPGA flow (resources, "
                    "Fmax) and the cycle model (conv layer cycles); write sweep.json, "
                    "sweep.md and a Pareto plot of effective GOP/s against LUT4.")
    parser.add_argument("--tile", type=_ints, default=[2, 4], metavar="M[,M...]",
                        help="output tile sizes (default: 2,4)")
    parser.add_argument("--lanes", type=_ints, default=[2, 4, 8], metavar="L[,L...]",
                        help="lanes per PE (default: 2,4,8)")
    parser.add_argument("--set", dest="sets", type=_set_option, action="append", default=[],
                        metavar="FIELD=V1[,V2...]",
                        help="AccelConfig field: one value changes every point, several "
                             "are swept (repeatable), e.g. --set c_max=64 --set act_width=1,4")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="base winnow.json (default: AccelConfig())")
    parser.add_argument("--component", default="accelerator",
                        help="component through the flow (default: %(default)s)")
    parser.add_argument("--layer", default="conv64", choices=sorted(LAYERS),
                        help="layer of the cycle model (default: %(default)s)")
    parser.add_argument("--w", type=float, default=0.2,
                        help="weight density, balanced pruning (default: %(default)s)")
    parser.add_argument("--a", type=float, default=0.5,
                        help="activation density (default: %(default)s)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the layer's weights and activations (default: 0)")
    parser.add_argument("--steps", default="ecp5,pnr", metavar="S[,S...]",
                        help=f"flow steps per point, from {', '.join(STEPS)} "
                             "(default: %(default)s)")
    parser.add_argument("-j", "--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        metavar="N", help="points at the same time on this machine "
                                          "(default: %(default)s)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run the points on this Dask distributed scheduler instead "
                             "(needs pip install -e '.[sweep]')")
    parser.add_argument("-o", "--outdir", type=Path, default=Path("build/fpga"),
                        help="writes sweep.json, sweep.md and sweep/<point>/ here "
                             "(default: %(default)s)")
    parser.add_argument("--plot", type=Path, default=Path("docs/img/fpga_pareto.png"),
                        help="Pareto plot (default: %(default)s)")
    parser.add_argument("--reuse", action="store_true",
                        help="take a point's earlier report.json when it was made with the same "
                             "configuration and flow options instead of running the flow")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the points and exit")
    add_flow_arguments(parser)
    return parser


def _points(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Point]:
    from fpga.synth import _steps

    try:
        steps = _steps(args.steps)
    except argparse.ArgumentTypeError as err:
        parser.error(f"--steps {err}")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be >= 1")
    if not 0 < args.w <= 1 or not 0 < args.a <= 1:
        parser.error(f"--w {args.w} --a {args.a}: densities must be in (0, 1]")
    try:
        base = AccelConfig.load(args.config) if args.config else AccelConfig()
    except ConfigError as err:
        parser.error(str(err))
    fixed = {f: v[0] for f, v in args.sets if len(v) == 1}
    swept = [("tile", args.tile), ("lanes", args.lanes)] + \
        [(f, v) for f, v in args.sets if len(v) > 1]
    names = [f for f, _ in swept]
    if len(set(names)) != len(names) or set(names) & set(fixed):
        parser.error("--set: each field may be given once")
    flow = dict(device=args.device, package=args.package, freq_mhz=args.freq, pins=args.pins,
                steps=steps, jobs=1, seed=args.seed, placer=args.placer, router=args.router,
                timeout_s=args.timeout, reuse=not args.fresh)
    points = []
    for combo in product(*(values for _, values in swept)):
        fields = dict(zip(names, combo))
        try:
            cfg = dataclasses.replace(base, **fixed, **fields)
        except (ConfigError, TypeError) as err:
            parser.error(f"point {fields}: {err}")
        short = {"tile": "t", "lanes": "l"}
        name = "_".join(f"{short.get(k, k)}{v}" for k, v in fields.items())
        name = re.sub(r"[^A-Za-z0-9_.-]", "", name)
        points.append(Point(name=name, swept=fields, config=cfg.to_dict(),
                            component=args.component, outdir=str(args.outdir / "sweep" / name),
                            flow=flow, layer=args.layer, w=args.w, a=args.a,
                            seed=args.data_seed, reuse=args.reuse))
    return points


def _dask_client(parser: argparse.ArgumentParser, address: str):
    try:
        from dask.distributed import Client
    except ImportError:
        parser.error("--scheduler needs the Dask 'distributed' package, which is not "
                     "installed; run pip install -e '.[sweep]'")
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as err:
        parser.error(f"--scheduler {address}: cannot connect ({err})")


def _run(points: list[Point], jobs: int, client, save) -> list[dict]:
    """Evaluate ``points``; ``save(records)`` after each one (partial results survive)."""
    records: dict[str, dict] = {}
    start = time.monotonic()

    def done(record: dict):
        records[record["name"]] = record
        save([records[p.name] for p in points if p.name in records])
        state = ("tool error" if record["error"] else
                 "fits" if record.get("fits") else
                 "does not fit" if record.get("fits") is False else "no P&R")
        print(f"sweep: [{time.monotonic() - start:7.1f} s] {len(records)}/{len(points)} "
              f"{record['name']}: {state}, LUT4 {_num(record.get('lut'))}, Fmax "
              f"{_num(record.get('fmax_mhz'), '{:.1f}')} MHz, {_num(record.get('cycles'))} "
              f"cycles, {_num(record.get('gops'), '{:.1f}')} GOP/s "
              f"({record['seconds']} s)", flush=True)

    if client is not None:
        from dask.distributed import as_completed as dask_completed
        futures = client.map(evaluate, points, pure=False)
        for future in dask_completed(futures):
            done(future.result())
    elif jobs == 1:
        for point in points:
            done(evaluate(point))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for future in as_completed([pool.submit(evaluate, p) for p in points]):
                done(future.result())
    return [records[p.name] for p in points]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scheduler and not re.match(r"^[a-z+]+://[^/]+$", args.scheduler):
        parser.error(f"--scheduler {args.scheduler!r}: expected an address like "
                     "tcp://host:8786")
    points = _points(parser, args)
    client = _dask_client(parser, args.scheduler) if args.scheduler and not args.dry_run \
        else None
    where = f"Dask scheduler {args.scheduler}" if args.scheduler else f"{args.jobs} local jobs"
    print(f"sweep: {len(points)} points on {where}: {', '.join(p.name for p in points)}",
          flush=True)
    if args.dry_run:
        return 0
    args.outdir.mkdir(parents=True, exist_ok=True)

    def save(records: list[dict]):
        summary = {"layer": args.layer, "dense_ops": dense_ops(args.layer), "w": args.w,
                   "a": args.a, "pruning": "balanced", "device": args.device,
                   "package": args.package, "freq_constraint_mhz": args.freq,
                   "component": args.component, "complete": len(records) == len(points),
                   "pareto": pareto(records), "points": records}
        (args.outdir / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
        (args.outdir / "sweep.md").write_text(markdown(records))

    try:
        records = _run(points, args.jobs, client, save)
    finally:
        if client is not None:
            client.close()
    print(markdown(records), end="")
    capacity = next((r["lut_available"] for r in records if r.get("lut_available")), None)
    plot(records, args.plot, f"{args.layer} (w={args.w}, a={args.a}, balanced) on ECP5 "
                             f"{args.device}, {args.component}", capacity)
    print(f"sweep: {args.outdir / 'sweep.json'}, {args.outdir / 'sweep.md'}, {args.plot}")
    for r in records:
        if r["cycle_error"]:
            print(f"sweep: {r['name']}: no cycle count: {r['cycle_error']}")
    errors = [r for r in records if r["error"]]
    for r in errors:
        print(f"sweep: {r['name']}: tool error: {r['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
