"""Build one generated component into Verilog and run a cocotb bench on it.

Every parameter case gets its own directory ``build/sim/<case>/`` (Verilog, ``winnow.json``,
and per simulator ``<sim>/`` the build, logs, ``results.xml`` and waveforms), so
``pytest -n auto`` never shares files between workers. Environment knobs, all optional:

``SIM``            ``icarus`` (default when installed) or ``verilator``.
``SEED``           the run's seed (:mod:`verif.stalls`): ``SEED=<n>``, ``SEED=random``, or the
                   fixed default; printed once, so any run can be repeated. The simulation gets
                   it as ``SEED`` (and cocotb's ``RANDOM_SEED`` is set from it).
``WAVES=1``        write waveforms (Icarus: FST, Verilator: FST) into the case directory.
``WINNOW_SAMPLES`` random items per test (each bench documents its default).

Verilator builds take their options from :data:`VERILATOR` (see :class:`VerilatorOptions`;
``python -m verif.sim_speed`` measures the alternatives on the whole accelerator).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Callable

import pytest
from cocotb_tools.check_results import get_results
from cocotb_tools import runner as cocotb_runner
from cocotb_tools.runner import get_runner

from sw.config import AccelConfig
from hw.gen import CONFIG_FILE, verilog_text
from verif.simulator import find_simulator
from verif.stalls import session_seed

__all__ = ["ROOT", "SIM_DIR", "VerilatorOptions", "VERILATOR", "BUILD_SECONDS",
           "get_sim_runner", "sim_build_args", "run_bench", "bench_test"]

ROOT = Path(__file__).resolve().parent.parent
SIM_DIR = ROOT / "build" / "sim"

@dataclasses.dataclass(frozen=True)
class VerilatorOptions:
    """How Verilator builds a design (the measurements: docs/verification.md, "Simulation speed").

    ``opt``     the C++ optimisation of the model (``OPT_FAST`` and ``OPT_GLOBAL`` of
                ``verilated.mk``; constructors and initial code, ``OPT_SLOW``, stay at ``-O0``).
    ``split``   ``--output-split``: statements per C++ file, ``0`` for one file. Split files
                compile in parallel; the PyPI wheel's ``verilated.mk`` leaves the
                precompiled-header flag empty (``CFG_CXXFLAGS_PCH_I``), so split builds failed
                with ``Vtop__pch.h.fast: linker input file not found`` until the make command
                set it to ``-include``, as it does here.
    ``jobs``    ``make -j`` of the C++ build (cocotb's own default is every core).
    ``x_fast``  ``--x-assign fast --x-initial fast`` (X is whatever is cheapest, not the
                ``unique`` randomised value of Verilator's default).
    ``public``  ``"all"``: every signal readable and writable over VPI (``--public-flat-rw``,
                what cocotb's runner passes); ``"top"``: only the top module's signals
                (``--public-depth 1``), which is all the benches touch (its ports).
    """

    opt: str = "-O2"
    split: int = 20000
    jobs: int = 2
    x_fast: bool = True
    public: str = "top"

    def verilator_args(self) -> list[str]:
        """Options of the ``verilator`` command (besides cocotb's own)."""
        # Amaranth's Verilog trips width lint on purpose, so warnings are not fatal.
        args = ["-Wno-fatal", "-Wno-WIDTH", "--output-split", str(self.split)]
        if self.x_fast:
            args += ["--x-assign", "fast", "--x-initial", "fast"]
        if self.public == "top":
            args += ["--public-depth", "1"]
        elif self.public != "all":
            raise ValueError(f"public={self.public!r}: expected 'all' or 'top'")
        return args

    def make_args(self) -> list[str]:
        """Variables of the C++ build's ``make`` command."""
        return [f"OPT_FAST={self.opt}", f"OPT_GLOBAL={self.opt}", "OPT_SLOW=-O0",
                "CFG_CXXFLAGS_PCH_I=-include"]

    def describe(self) -> str:
        """The options as a short line, for logs and result files."""
        return (f"{self.opt} --output-split {self.split} make -j{self.jobs}"
                f"{' --x-assign/--x-initial fast' if self.x_fast else ''} public={self.public}")


#: The options every cocotb Verilator build uses (``python -m verif.sim_speed`` for the choice):
#: ``-O2`` of split C++ compiled two files at a time, fast X, only the top's signals public.
#: On the whole accelerator about 19x the cycles/s of the former ``-O0``, one C++ file, every
#: signal public, for about 1.5x its build time.
VERILATOR = VerilatorOptions()

#: ``case -> seconds`` of the last simulator build :func:`run_bench` ran for each case
#: (Verilator: verilating and the C++ compile; close to 0 when nothing changed).
BUILD_SECONDS: dict[str, float] = {}


class _Verilator(cocotb_runner.Verilator):
    """cocotb's Verilator runner with :class:`VerilatorOptions` applied to its two commands."""

    def __init__(self, options: VerilatorOptions) -> None:
        super().__init__()
        self.options = options

    def _build_command(self):
        verilate, make = super()._build_command()
        if self.options.public != "all":
            verilate = [arg for arg in verilate if arg != "--public-flat-rw"]
        jobs = make.index("-j")
        make = make[:jobs + 1] + [str(self.options.jobs)] + make[jobs + 2:]
        return [verilate, make + self.options.make_args()]


def get_sim_runner(sim: str, verilator: VerilatorOptions | None = None):
    """cocotb's runner for ``sim``; for Verilator one that applies ``verilator`` (default
    :data:`VERILATOR`). Pass ``sim_build_args(sim, ...)`` as the build's ``build_args``."""
    if sim == "verilator":
        return _Verilator(verilator or VERILATOR)
    return get_runner(sim)


def sim_build_args(sim: str, verilator: VerilatorOptions | None = None) -> list[str]:
    """The ``build_args`` of a build for ``sim`` (Verilator: :data:`VERILATOR`'s options)."""
    return (verilator or VERILATOR).verilator_args() if sim == "verilator" else []


def run_bench(component: str, cfg: AccelConfig, test_module: str, case: str,
              extra_env: dict[str, str] | None = None, *, sim: str | None = None,
              console: bool = False, verilator: VerilatorOptions | None = None) -> Path:
    """Generate ``component`` for ``cfg``, build it and run every test in ``test_module``.

    ``sim`` overrides the simulator choice; ``console`` sends the simulation's output to the
    terminal (for progress lines) instead of ``sim.log``; ``verilator`` overrides
    :data:`VERILATOR` (give each set of options its own ``case``: the build is reused).
    The build's duration goes to ``BUILD_SECONDS[case]``.

    The bench reads the configuration from ``$WINNOW_CONFIG`` (the case's ``winnow.json``) and
    the component name from ``$WINNOW_COMPONENT``.
    Raises ``AssertionError`` naming the seed and the results file when any cocotb test fails.
    Returns the results XML path.
    """
    sim = sim or find_simulator()
    seed = session_seed()
    waves = os.environ.get("WAVES", "0") not in ("", "0")
    case_dir = SIM_DIR / case
    case_dir.mkdir(parents=True, exist_ok=True)
    source = case_dir / f"{component}.v"
    text = verilog_text(component, cfg)
    _write_if_changed(source, icarus_time_zero_trigger(text) if sim == "icarus" else text)
    config = case_dir / CONFIG_FILE
    _write_if_changed(config, cfg.to_json())
    # Builds for different simulators, or with and without wave tracing, never share a
    # directory, so switching SIM or WAVES cannot reuse a stale simulator build.
    sim_dir = case_dir / (f"{sim}-waves" if waves else sim)
    print(f"winnow verif: case {case} sim={sim} SEED={seed} waves={int(waves)} dir={case_dir}")

    runner = get_sim_runner(sim, verilator)
    t0 = time.perf_counter()
    runner.build(
        sources=[source],
        hdl_toplevel=component,
        build_dir=sim_dir,
        build_args=sim_build_args(sim, verilator),
        timescale=("1ns", "1ps"),
        waves=waves,
        log_file=sim_dir / "build.log",
    )
    BUILD_SECONDS[case] = time.perf_counter() - t0
    results_xml = sim_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=component,
            build_dir=sim_dir,
            test_dir=sim_dir,
            seed=seed,
            waves=waves,
            extra_env={"WINNOW_CONFIG": str(config), "WINNOW_COMPONENT": component,
                       "WINNOW_SIM": sim, "SEED": str(seed), **(extra_env or {})},
            results_xml=str(results_xml),
            timescale=("1ns", "1ps"),
            log_file=None if console else sim_dir / "sim.log",
        )
    except SystemExit:
        # Under pytest the runner exits on a failed cocotb test; the results file says which.
        pass
    log = sim_dir / "sim.log"
    if not results_xml.exists():
        raise AssertionError(f"case {case}: the simulation wrote no results; see {log}")
    total, failed = get_results(results_xml)
    if total == 0 or failed:
        raise AssertionError(
            f"case {case}: {failed} of {total} cocotb tests failed; reproduce with SEED={seed} "
            f"SIM={sim}; log {log}\n{_first_failure(log)}")
    return results_xml


def bench_test(component: str, test_module: str,
               cases: dict[str, AccelConfig]) -> Callable[[str], None]:
    """A pytest test, one parameter per case of ``cases``, that runs the cocotb ``test_module``
    on ``component`` built for the case (assign it to a ``test_*`` name of the runner module)."""

    @pytest.mark.cocotb
    @pytest.mark.parametrize("case", sorted(cases))
    def test(case: str) -> None:
        run_bench(component, cases[case], test_module, case)

    return test


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$",
                      re.MULTILINE)


def icarus_time_zero_trigger(verilog: str) -> str:
    """Make each ``always @*`` block of Yosys's Verilog run once at time 0 under Icarus.

    Yosys puts a dummy register, initialised to 0, in every combinational block's sensitivity so
    that the block is evaluated at time 0. Icarus applies a declaration's initial value before
    the blocks wait on it, so no event reaches them: a block whose inputs never change keeps its
    outputs at X (the time-0 race of amaranth-lang/amaranth#594). A ``#0`` write of the dummy
    lands after every block waits, and triggers each one once.
    """
    return _TRIGGER.sub(lambda m: f"{m[0]}\n{m[1]}initial #0 {m[2]} = 1;", verilog)


def _write_if_changed(path: Path, text: str) -> None:
    """Keep the timestamp of unchanged sources, so the simulator build is not redone."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _first_failure(log: Path, lines: int = 30) -> str:
    """The first failing test's traceback from the simulator log, for the pytest report."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    for k, line in enumerate(text):
        if " failed" in line and "cocotb.regression" in line:
            return "\n".join(text[k:k + lines])
    return ""
