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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from sw.config import AccelConfig
from hw.gen import CONFIG_FILE, verilog_text
from verif.simulator import find_simulator
from verif.stalls import session_seed

__all__ = ["ROOT", "SIM_DIR", "run_bench", "bench_test"]

ROOT = Path(__file__).resolve().parent.parent
SIM_DIR = ROOT / "build" / "sim"

#: Verilator flags: Amaranth's Verilog trips width lint on purpose, so warnings are not fatal.
#: ``--output-split 0`` keeps one C++ unit: the PyPI wheel's verilated.mk has an empty
#: precompiled-header flag, so split (parallel) builds of larger designs fail to compile.
#: ``-CFLAGS -O0`` (it follows verilated.mk's ``-Os``, so it wins): that one unit is 10-30 MB of
#: C++ for the whole accelerator, and at ``-O0`` it compiles in about 80 s instead of many
#: minutes; the simulation is bound by the cocotb drivers in Python, not by the model.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "--output-split", "0", "-CFLAGS", "-O0")


def run_bench(component: str, cfg: AccelConfig, test_module: str, case: str,
              extra_env: dict[str, str] | None = None, *, sim: str | None = None,
              console: bool = False) -> Path:
    """Generate ``component`` for ``cfg``, build it and run every test in ``test_module``.

    ``sim`` overrides the simulator choice; ``console`` sends the simulation's output to the
    terminal (for progress lines) instead of ``sim.log``.

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
    _write_if_changed(source, verilog_text(component, cfg))
    config = case_dir / CONFIG_FILE
    _write_if_changed(config, cfg.to_json())
    # Builds for different simulators, or with and without wave tracing, never share a
    # directory, so switching SIM or WAVES cannot reuse a stale simulator build.
    sim_dir = case_dir / (f"{sim}-waves" if waves else sim)
    print(f"winnow verif: case {case} sim={sim} SEED={seed} waves={int(waves)} dir={case_dir}")

    runner = get_runner(sim)
    runner.build(
        sources=[source],
        hdl_toplevel=component,
        build_dir=sim_dir,
        build_args=list(VERILATOR_ARGS) if sim == "verilator" else [],
        timescale=("1ns", "1ps"),
        waves=waves,
        log_file=sim_dir / "build.log",
    )
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
