"""``python -m fpga.synth``: one component from Verilog to an ECP5 bitstream, with a JSON report.

``make fpga`` runs this on the default accelerator. The steps are those of :mod:`fpga.flow`:
the component inside a pin shell (:mod:`fpga.shell`), Yosys ``synth_ecp5`` (flattened, JSON
netlist), ``synth_ecp5 -noflatten`` for the per-block table, ``synth_xilinx -family xc7`` for
7-series estimates, ``nextpnr-ecp5`` with a clock constraint, and ``ecppack``. Output:

- ``<outdir>/report.json``: ``device``, ``fits``, ``fmax_mhz``, ``lut``, ``ff``, ``dsp``,
  ``bram``, ``multipliers``, ``config``, ``blocks`` (per-block table), ``xc7``, ``pnr``
  (utilisation, overflow when the design does not fit), ``steps`` (seconds per step);
- ``<outdir>/blocks.md``: the per-block table in markdown;
- ``<outdir>/<component>/``: Verilog, Yosys scripts, logs and statistics, netlist, nextpnr
  log and report, ``top.bit``.

A design too big for the device is reported (``"fits": false`` and the over-used bels), with
exit status 0. Exit status 1 means a tool failed for another reason (the message names the tool
and its log); 2 means a bad option.

:func:`synthesize` (a bare component, flattened ``synth_ecp5`` only) is the quick check the
test suite runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hw.gen import COMPONENTS, add_config_arguments, config_from_args, verilog_text
from sw.config import AccelConfig, ConfigError

from fpga import report as rpt
from fpga.flow import STEPS, FlowOptions, ToolError, run_flow, run_yosys, yosys_script

__all__ = ["SynthError", "DEVICES", "synthesize_verilog", "synthesize", "build_parser", "main"]

#: nextpnr-ecp5 device options (without the dashes).
DEVICES = ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k",
           "um5g-85k")

#: Yosys failed, including ``check -assert`` finding a problem in the netlist.
SynthError = ToolError


def synthesize_verilog(source: Path, top: str, outdir: Path) -> dict:
    """Run flattened ``synth_ecp5`` on ``source`` (module ``top``) in ``outdir``; cell counts.

    Raises :class:`SynthError` naming the log file when Yosys fails.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    rel = source.resolve().relative_to(outdir.resolve())
    try:
        seconds, _cpu = run_yosys(yosys_script(str(rel), top, f"synth_ecp5 -top {top}"),
                                  outdir, "synth")
    except ToolError as err:
        raise SynthError(f"{top}: {err}") from None
    stat = rpt.load_json(outdir / "stat.json")
    counts = rpt.ecp5_counts(stat)
    cells = {k.lstrip("\\"): v for k, v in stat["design"].get("num_cells_by_type", {}).items()}
    return {"top": top, "cells": cells, **counts, "seconds": round(seconds, 1)}


def synthesize(component: str, cfg: AccelConfig, outdir: Path) -> dict:
    """Generate bare ``component`` for ``cfg`` and synthesise it into ``outdir/component/``.

    No pin shell and no place and route: the quick check of the test suite. Writes and returns
    ``report.json``'s content.
    """
    case_dir = outdir / component
    case_dir.mkdir(parents=True, exist_ok=True)
    source = case_dir / f"{component}.v"
    source.write_text(verilog_text(component, cfg))
    report = {"component": component, "family": "ecp5", "tile": cfg.tile,
              **synthesize_verilog(source, component, case_dir), "config": cfg.to_dict()}
    (case_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    return parse


def _steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown step(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(STEPS)}")
    return steps


def add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, clock, shell and tool options of the flow (shared with :mod:`fpga.sweep`)."""
    flow = parser.add_argument_group("flow")
    flow.add_argument("--device", default="85k", choices=DEVICES,
                      help="ECP5 device for nextpnr-ecp5 (default: %(default)s, LFE5U-85F)")
    flow.add_argument("--package", default="CABGA381",
                      help="package for nextpnr-ecp5 (default: %(default)s)")
    flow.add_argument("--freq", type=_positive(float), default=150.0, metavar="MHZ",
                      help="clock constraint on clk (default: %(default)s)")
    flow.add_argument("--pins", type=int, default=4, choices=range(1, 65), metavar="N",
                      help="serial data pins of the pin shell per direction, 1..64 "
                           "(default: %(default)s)")
    flow.add_argument("--seed", type=int, default=1, help="nextpnr seed (default: %(default)s)")
    flow.add_argument("--placer", default="static", choices=("static", "heap", "sa"),
                      help="nextpnr placer (default: %(default)s; the electrostatic placer gave "
                           "shorter wiring and a higher Fmax than heap, docs/fpga.md)")
    flow.add_argument("--router", default="router2", choices=("router1", "router2"),
                      help="nextpnr router (default: %(default)s; router1 is timing-driven but "
                           "took hours on the congested default accelerator)")
    flow.add_argument("--timeout", type=_positive(float), default=3600.0, metavar="S",
                      help="limit per tool run in seconds (default: %(default)s)")
    flow.add_argument("--fresh", action="store_true",
                      help="run Yosys even when top.v and the script are those of the last run "
                           "in the output directory (default: reuse its netlist)")


def flow_options(args: argparse.Namespace, steps: tuple[str, ...], jobs: int) -> FlowOptions:
    """:class:`FlowOptions` from :func:`add_flow_arguments`' options."""
    return FlowOptions(device=args.device, package=args.package, freq_mhz=args.freq,
                       pins=args.pins, steps=steps, jobs=jobs, seed=args.seed,
                       placer=args.placer, router=args.router, timeout_s=args.timeout, reuse=not args.fresh)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m fpga.synth``."""
    parser = argparse.ArgumentParser(
        prog="python -m fpga.synth",
        description="One winnow component through Yosys, nextpnr-ecp5 and ecppack inside a "
                    "pin shell; writes <outdir>/report.json (Fmax, utilisation, per-block "
                    "table, xc7 estimates) and <outdir>/blocks.md. A design that does not fit "
                    "is reported with \"fits\": false and exit status 0; exit 1 means a tool "
                    "failed, 2 a bad option.")
    parser.add_argument("--component", default="accelerator", choices=list(COMPONENTS),
                        help="component to implement (default: %(default)s)")
    parser.add_argument("-o", "--outdir", type=Path, default=Path("build/fpga"),
                        help="output directory (default: %(default)s)")
    parser.add_argument("--steps", type=_steps, default=STEPS, metavar="S[,S...]",
                        help=f"steps to run, from {', '.join(STEPS)} (default: all; pnr "
                             "implies ecp5, bitstream implies pnr)")
    parser.add_argument("-j", "--jobs", type=int, default=2, choices=range(1, 17), metavar="N",
                        help="Yosys runs at the same time, 1..16 (default: %(default)s)")
    add_flow_arguments(parser)
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as err:
        parser.error(str(err))
    opts = flow_options(args, args.steps, args.jobs)
    start = time.monotonic()
    try:
        report = run_flow(args.component, cfg, args.outdir, opts)
    except ToolError as err:
        print(f"fpga.synth: tool error after {time.monotonic() - start:.0f} s: {err}",
              file=sys.stderr)
        return 1
    if report["fits"] is False:
        over = ", ".join(f"{bel} {u['used']:,}/{u['available']:,}"
                         for bel, u in report["pnr"]["overflow"].items())
        print(f"fpga.synth: {args.component} does not fit {report['device']} ({over}); "
              f"see {args.outdir / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
