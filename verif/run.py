"""``python -m verif.run``: run your own model on the golden model or on the generated Verilog.

Usage::

    python -m verif.run MODEL.onnx|MODEL.pt|MODEL.npz --hw winnow.json --input IMAGES.npy \\
        --out DIR [--backend golden|rtl] [--calibrate IMAGES.npy] [--sim icarus|verilator] \\
        [--stalls none|stall25|stall75|bursts] [--seed N] [--force] [-q]

One command from a model to its outputs and a report:

1. read the model through :func:`sw.model_import.load_model` (the loading path of
   ``sw/pack.py``) and the images (one ``[C, H, W]`` image or a batch ``[N, C, H, W]``);
2. calibrate the activation scales when the model carries none (an ONNX or PyTorch import):
   :func:`sw.host_ops.calibrate` on ``--calibrate`` images, by default the input images, and
   keep the calibrated model as ``model.npz`` (:func:`sw.model_import.save_model`);
3. pack it with :func:`sw.pack.pack_model` for the hardware that ``--hw`` describes (the
   placement of every layer, accelerator or host, is the packer's);
4. run every image through the network on the golden model (:mod:`sw.driver`): accelerator
   layers bit-exact, host layers in NumPy (:mod:`sw.host_ops`); each accelerator layer's cycles
   are counted from the weights and activations: the ideal (non-zero pairs / multipliers), the
   cycle model of :mod:`sw.perf` and dense Winograd;
5. with ``--backend rtl``, build the generated accelerator and run the same images through it
   (:func:`verif.network.run_network_job`, the bench of :mod:`verif.tb_network` that
   ``make demo`` uses), every accelerator layer of every image checked against the golden model
   as it goes; the measured cycles per layer are those ``make demo`` prints
   (:func:`verif.demo.layer_table`);
6. write ``DIR``: ``outputs.npy`` (the network's outputs, ``[N, ...]``), ``report.json``,
   ``packed/`` (the packer's output) and, when calibrated here, ``model.npz`` with its
   ``.json`` and ``.host.npz``.

The command lives in ``verif`` because its RTL backend needs the simulator and the benches
(imports flow ``sw`` ← ``hw`` ← ``verif``); the golden backend needs neither.

Exit status: 0 when the run completed (and, on the RTL, agreed with golden); 1 when the RTL
disagrees with the golden model (the report names the layer, the image and the first differing
index, and no ``outputs.npy`` is written) or the simulation fails; 2 for bad input (model,
``--hw``, images, an output directory that cannot be written, no simulator): one line naming the
file or layer and the problem, and no output. Everything is written to a temporary directory
next to ``DIR`` and renamed into place at the end, as ``sw/pack.py`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from sw import driver, golden, host_ops, model_import, pack, perf, regmap
from sw.config import AccelConfig, ConfigError
from verif.demo import layer_table
from verif.network import run_network_job
from verif.runner import SIM_DIR
from verif.simulator import SimulatorMissing, fast_simulator
from verif.stalls import PATTERNS

__all__ = ["RunError", "RtlMismatch", "BACKENDS", "EXIT_MISMATCH", "REPORT_NAME",
           "OUTPUTS_NAME", "load_model", "load_images", "prepare_model", "golden_run", "rtl_run",
           "find_mismatch", "run", "main"]

BACKENDS = ("golden", "rtl")
#: Exit status when the RTL disagrees with the golden model or its simulation fails.
EXIT_MISMATCH = 1
REPORT_NAME = "report.json"
OUTPUTS_NAME = "outputs.npy"
PACKED_DIR = "packed"
CALIBRATED_MODEL = "model.npz"

#: A progress line of :mod:`verif.tb_network` (``  rtl  conv1 pass 0: image 3/10  (2 s)``).
_BENCH_PROGRESS = re.compile(r"rtl  (?P<layer>.+) pass (?P<pass>\d+): image (?P<done>\d+)/\d+")
#: The assertion of :class:`verif.tb_network.CheckedBackend` when RTL and golden differ.
_BENCH_MISMATCH = re.compile(
    r"layer (?P<layer>.+?) image (?P<image>\d+): (?P<count>\d+) values differ from golden, "
    r"first at (?P<index>\([\d, ]*\)): RTL (?P<rtl>-?\d+) golden (?P<golden>-?\d+)")


class RunError(Exception):
    """Bad input; the message names the file or layer and the problem."""


class RtlMismatch(Exception):
    """The RTL disagreed with the golden model, or its simulation failed.

    Attributes
    ----------
    detail : dict
        ``message`` and, when a layer's output differed, ``layer``, ``image``, ``index`` (the
        first differing ``[k, y, x]``), ``rtl``, ``golden`` and ``values`` (how many differ);
        ``log``, the simulator's log.
    """

    def __init__(self, detail: dict):
        super().__init__(detail["message"])
        self.detail = detail


# ------------------------------------------------------------------------------- the inputs
def _expected_shape(model: model_import.Model) -> tuple | None:
    """``(C, H, W)`` the model takes, ``H``/``W`` ``None`` when only the channels are known."""
    if model.input_shape:
        return tuple(int(d) for d in model.input_shape)
    first = model.layers[0] if model.layers else None
    if first is not None and first.kind == "accel":
        w = np.asarray(first.weight)
        return (int(w.shape[1] if w.ndim == 4 else w.shape[2]), None, None)
    return None


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def load_images(path: str | Path, model: model_import.Model, source: str = "model"
                ) -> np.ndarray:
    """Read ``path`` (``.npy``): one image ``[C, H, W]`` or a batch ``[N, C, H, W]`` of reals.

    Returns
    -------
    numpy.ndarray
        float64 ``[N, C, H, W]``.

    Raises
    ------
    RunError
        Naming ``path``: not a readable ``.npy`` array, not real numbers, NaN or infinity, no
        image, a rank other than 3 or 4, or an image shape the model (``source``) does not take.
    """
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as err:
        raise RunError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ValueError, EOFError) as err:
        raise RunError(f"{path}: not a NumPy .npy array ({err})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise RunError(f"{path}: an .npz archive; save the images with numpy.save as one .npy "
                       "array")
    if arr.dtype.kind not in "fiu":
        raise RunError(f"{path}: dtype {arr.dtype} is not supported; expected real numbers "
                       "(float or integer)")
    want = _expected_shape(model)
    want_text = f"; {source} takes {_shape_text(want)}" if want else ""
    if arr.ndim not in (3, 4):
        raise RunError(f"{path}: shape {list(arr.shape)} is neither one image [C, H, W] nor a "
                       f"batch [N, C, H, W]{want_text}")
    images = arr[None] if arr.ndim == 3 else arr
    if images.shape[0] == 0:
        raise RunError(f"{path}: the batch holds no image (shape {list(arr.shape)})")
    if want and any(w is not None and w != g for w, g in zip(want, images.shape[1:])):
        raise RunError(f"{path}: images of shape [C, H, W] = {list(images.shape[1:])}"
                       f"{want_text}")
    images = images.astype(np.float64)
    bad = ~np.isfinite(images)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise RunError(f"{path}: holds {int(bad.sum())} NaN/Inf value(s), the first at index "
                       f"{first}")
    return images


def load_model(path: str | Path) -> model_import.Model:
    """:func:`sw.model_import.load_model`, its errors as :class:`RunError`."""
    try:
        return model_import.load_model(path)
    except model_import.ModelError as err:
        raise RunError(str(err)) from None


def prepare_model(model: model_import.Model, path: str | Path, calibration: np.ndarray,
                  cfg: AccelConfig, workdir: Path) -> tuple[model_import.Model, Path, dict]:
    """The model to run, calibrated on ``calibration`` when it carries no activation scales.

    ``model`` was read from ``path``. A calibrated model is saved to ``workdir / model.npz``
    and read back, so the golden run, the packer and the RTL bench all read the same file.

    Returns
    -------
    model, model_file, calibration_info
        The model to run, the ``.npz`` file holding it, and ``{"calibrated": bool}`` (with
        ``layers``, the accelerator layers that had no scales, when calibrated).

    Raises
    ------
    RunError
        A host layer fails on the calibration images.
    """
    path = Path(path)
    needs = [layer.name for layer in model.accel_layers
             if layer.in_scale is None or layer.out_scale is None]
    if not needs and path.suffix.lower() == ".npz":
        return model, path, {"calibrated": False}
    try:
        host_ops.calibrate(model, calibration, cfg.act_bits, cfg.tile)
    except ValueError as err:
        raise RunError(f"{path}: calibration: {err}") from None
    saved = workdir / CALIBRATED_MODEL
    model_import.save_model(model, saved)
    return model_import.load_npz(saved), saved, {"calibrated": True, "layers": needs}


# --------------------------------------------------------------------------- golden backend
class _CheckedGolden(driver.GoldenBackend):
    """The golden backend, refusing any shape the accelerator would refuse at START (the golden
    model would compute it), keeping each layer's integer inputs and counting its cycles."""

    def __init__(self, cfg: AccelConfig, source: str):
        super().__init__(cfg)
        self.source = source
        self.inputs: dict[str, list[np.ndarray]] = {}
        self.counts: dict[str, dict[str, int]] = {}

    async def conv(self, layer: driver.DeviceLayer, xs):
        outs = []
        for x in xs:
            C, H, W = x.shape
            for image in layer.packed.passes:
                problem = regmap.shape_problem(self.cfg, H, W, C, image.k_count,
                                               layer.qlayer.pad)
                if problem:
                    raise RunError(f"{self.source}: layer {layer.name}: input [C, H, W] = "
                                   f"[{C}, {H}, {W}]: {problem}")
            trace = golden.conv_layer_trace(x, layer.qlayer, self.cfg)
            mults = golden.mult_counts(layer.qlayer, x, self.cfg)
            counts = self.counts.setdefault(layer.name, dict.fromkeys(
                ("sparse_winograd", "dense_winograd", "dense_direct", "model_cycles"), 0))
            for key, value in mults.items():
                counts[key] += value
            counts["model_cycles"] += perf.model_layer(layer.packed, trace.V, self.cfg).cycles
            self.inputs.setdefault(layer.name, []).append(x)
            outs.append(trace.out)
        return outs


def golden_run(model: model_import.Model, layers: dict[str, driver.DeviceLayer],
               images: np.ndarray, cfg: AccelConfig, source: str = "model",
               progress=None) -> tuple[np.ndarray, dict[str, list[np.ndarray]], list[dict]]:
    """Every image through the network on the golden model, one image at a time.

    Parameters
    ----------
    progress : callable, optional
        ``progress()`` after each image.

    Returns
    -------
    outputs, inputs, rows
        The final outputs ``[N, ...]``; per accelerator layer its integer inputs (one per
        image); per accelerator layer a dict summed over the images: ``layer``, ``C``, ``K``,
        ``passes``, ``macs`` (non-zero pairs), ``ideal_cycles`` (``macs`` / multipliers),
        ``model_cycles`` (array cycles of :func:`sw.perf.model_layer`),
        ``dense_winograd_cycles`` and ``dense_direct_cycles`` (their multiplications on the same
        multipliers).

    Raises
    ------
    RunError
        A shape the accelerator cannot run, or a host layer that fails on these images.
    """
    backend = _CheckedGolden(cfg, source)
    outputs = []
    for image in images:
        try:
            outputs.append(driver.run_sync(driver.run_network(model, layers, image[None],
                                                              backend))[0])
        except ValueError as err:           # host ops and the golden model name the layer
            raise RunError(f"{source}: {err}") from None
        if progress is not None:
            progress()
    rows = []
    for name, dev in layers.items():
        counts = backend.counts[name]
        rows.append({"layer": name, "C": dev.qlayer.C, "K": dev.qlayer.K,
                     "passes": dev.packed.num_passes, "macs": counts["sparse_winograd"],
                     "ideal_cycles": counts["sparse_winograd"] / cfg.multipliers,
                     "model_cycles": counts["model_cycles"],
                     "dense_winograd_cycles": counts["dense_winograd"] / cfg.multipliers,
                     "dense_direct_cycles": counts["dense_direct"] / cfg.multipliers})
    return np.stack(outputs), backend.inputs, rows


# ------------------------------------------------------------------------------ RTL backend
def find_mismatch(text: str) -> dict | None:
    """The first RTL/golden difference reported by :mod:`verif.tb_network` in ``text``.

    Returns
    -------
    dict or None
        ``layer``, ``image``, ``index`` (list), ``rtl``, ``golden``, ``values``; ``None`` when
        ``text`` reports none.
    """
    # NumPy 2 writes the index's scalars as np.int64(3).
    match = _BENCH_MISMATCH.search(re.sub(r"np\.\w+\(([^()]*)\)", r"\1", text))
    if match is None:
        return None
    index = [int(v) for v in re.findall(r"-?\d+", match["index"])]
    return {"layer": match["layer"], "image": int(match["image"]), "index": index,
            "rtl": int(match["rtl"]), "golden": int(match["golden"]),
            "values": int(match["count"])}


def _failure_reason(log_text: str) -> str | None:
    """The exception that failed the first cocotb test in a simulator log (``ValueError: ...``)."""
    failed = re.search(r"^.*cocotb\.regression.* failed$", log_text, re.MULTILINE)
    if failed is None:
        return None
    found = re.search(r"^\s*((?:\w+\.)*\w*(?:Error|Exception|Failure)\b.*)$",
                      log_text[failed.end():], re.MULTILINE)
    return found[1].strip() if found else None


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _case(cfg: AccelConfig) -> str:
    """One simulator build directory per configuration, reused by later runs."""
    return "run_" + hashlib.sha1(cfg.to_json().encode()).hexdigest()[:10]


_MTIME_SLACK_S = 0.5


def _sim_logs(case: str, since: float) -> list[Path]:
    """The bench logs of ``case`` written since ``since`` (one per simulator build).

    File times come from the kernel's coarse clock, which may lag :func:`time.time` by a
    tick, so a log written right after ``since`` can carry an earlier time: allow for it.
    """
    return [log for log in (SIM_DIR / case).glob("*/sim.log")
            if log.stat().st_mtime >= since - _MTIME_SLACK_S]


def rtl_run(cfg: AccelConfig, model_file: Path, stream_file: Path, images: np.ndarray,
            layers: dict[str, driver.DeviceLayer], *, sim: str, stalls: str = "none",
            seed: int = 0, on_built=None, on_progress=None) -> dict:
    """Run ``images`` through the model on the generated accelerator; the bench's results.

    The bench (:mod:`verif.tb_network`) checks every accelerator layer of every image against
    the golden model. While it runs, its log is followed: ``on_built()`` once the simulator
    build is done, ``on_progress(layer, done)`` with the (layer, pass, image) runs done so far.

    Raises
    ------
    RtlMismatch
        The RTL disagreed with the golden model (naming the layer, the image and the first
        differing index), or the build or the simulation failed.
    """
    case, start = _case(cfg), time.time()
    order = [(name, p) for name, dev in layers.items() for p in range(dev.packed.num_passes)]
    finished = threading.Event()

    def follow() -> None:
        built = False
        while not finished.wait(0.5):
            logs = _sim_logs(case, start)
            if not logs:
                continue
            if not built and on_built is not None:
                on_built()
            built = True
            last = None
            for line in logs[0].read_text(errors="replace").splitlines():
                last = _BENCH_PROGRESS.search(line) or last
            key = (last["layer"], int(last["pass"])) if last is not None else None
            if key in order and on_progress is not None:
                on_progress(last["layer"], order.index(key) * len(images) + int(last["done"]))

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        return run_network_job(cfg, model_file, stream_file, images,
                               np.zeros(len(images), dtype=np.int64), case, sim=sim,
                               stalls=stalls, seed=seed)
    except (AssertionError, RuntimeError) as err:
        logs = _sim_logs(case, start)
        log = logs[0] if logs else None
        text = log.read_text(errors="replace") if log else ""
        detail = find_mismatch(text) or find_mismatch(str(err)) or {}
        if detail:
            message = (f"layer {detail['layer']}: image {detail['image']}: RTL differs from "
                       f"golden at index {tuple(detail['index'])} (RTL {detail['rtl']}, golden "
                       f"{detail['golden']}; {detail['values']} value(s) differ)")
        else:
            message = f"the RTL run failed: {_failure_reason(text) or _first_line(err)}"
        raise RtlMismatch({"message": message, **detail,
                           "log": str(log) if log else None}) from None
    finally:
        finished.set()
        watcher.join()


# ------------------------------------------------------------------------------- the command
def _float_agreement(model: model_import.Model, images: np.ndarray, outputs: np.ndarray,
                     cfg: AccelConfig) -> dict:
    """How far the quantised run is from the float model (:func:`sw.host_ops.run_float`)."""
    reference = np.asarray(host_ops.run_float(model, images, cfg.tile))
    out = {"max_abs_difference": float(np.abs(outputs - reference).max()),
           "float_peak": float(np.abs(reference).max())}
    if outputs.ndim == 2:
        out["argmax_agreement"] = float((outputs.argmax(1) == reference.argmax(1)).mean())
    return out


def _cycle_table(rows: list[dict], images: int, cfg: AccelConfig, rtl: bool):
    """Per accelerator layer and image: the RTL's run and array-busy cycles (with ``rtl``), the
    cycle model's array cycles, the ideal and dense Winograd, and the speedup over dense
    Winograd of the run (RTL) or of the modelled array."""
    from rich.table import Table

    what = ("run = START to DONE with the streams, busy = the array's ARRAY_CYCLES; "
            if rtl else "")
    table = Table(title=f"cycles per image ({cfg.multipliers} multipliers; {what}model = "
                        "sw.perf's array cycles; ideal = non-zero pairs / multipliers)")
    cols = (["layer", "C→K", "passes"] + (["run", "busy"] if rtl else []) + ["model", "ideal"]
            + (["busy / run", "ideal / run"] if rtl else ["ideal / model"])
            + ["dense Winograd", "vs dense Winograd"])
    for col in cols:
        table.add_column(col, justify="left" if col == "layer" else "right")

    def ratio(num, den, unit=""):
        return f"{num / den:.2f}{unit}" if den else "-"

    for r in rows:
        spent = r["rtl_cycles"] if rtl else r["model_cycles"]
        cells = [r["layer"], f"{r['C']}→{r['K']}", str(r["passes"])]
        if rtl:
            cells += [f"{r['rtl_cycles'] / images:.0f}", f"{r['array_cycles'] / images:.0f}"]
        cells += [f"{r['model_cycles'] / images:.0f}", f"{r['ideal_cycles'] / images:.0f}"]
        if rtl:
            cells += [ratio(r["array_cycles"], spent), ratio(r["ideal_cycles"], spent)]
        else:
            cells += [ratio(r["ideal_cycles"], spent)]
        cells += [f"{r['dense_winograd_cycles'] / images:.0f}",
                  ratio(r["dense_winograd_cycles"], spent, "×")]
        table.add_row(*cells)
    return table


def run(args: argparse.Namespace, workdir: Path, console, progress
        ) -> tuple[dict, int, AccelConfig]:
    """The whole command into ``workdir``: the report, the exit status (0 or 1), the config.

    ``console`` prints the tables (``None``: quiet); ``progress`` is a
    :class:`rich.progress.Progress` (started by the caller) or ``None``.

    Raises
    ------
    RunError
        Bad input.
    """
    t0 = time.perf_counter()
    try:
        cfg = AccelConfig.load(args.hw)
    except ConfigError as err:
        raise RunError(f"--hw {err}") from None
    imported = load_model(args.model)
    images = load_images(args.input, imported, str(args.model))
    calibration = (load_images(args.calibrate, imported, str(args.model)) if args.calibrate
                   else images)
    model, model_file, cal = prepare_model(imported, args.model, calibration, cfg, workdir)
    cal["source"] = (str(args.calibrate) if args.calibrate else
                     "input" if cal["calibrated"] else "model")
    cal["images"] = len(calibration) if cal["calibrated"] else None
    warnings: list[str] = []
    try:
        manifest, _ = pack.pack_model(model_file, workdir / PACKED_DIR, cfg,
                                      warn=warnings.append)
    except pack.PackError as err:
        raise RunError(str(err).replace(str(model_file), str(args.model))) from None
    stream = workdir / PACKED_DIR / pack.BIN_NAME
    try:
        layers = driver.device_layers(model, cfg, stream.read_bytes(), source=str(stream))
    except driver.DriverError as err:
        raise RunError(f"{args.model}: {err}") from None
    graph = manifest["graph"]
    if console is not None:
        placed = {"accelerator": 0, "host": 0}
        for row in graph:
            placed[row["placement"]] = placed.get(row["placement"], 0) + 1
        console.print(f"[bold]{args.model}[/]: {len(graph)} layers ({placed['accelerator']} on "
                      f"the accelerator, {placed['host']} on the host); {len(images)} image(s) "
                      f"{list(images.shape[1:])}")
        console.print(f"hardware {args.hw}: F({cfg.tile},3), {cfg.multipliers} multipliers; "
                      f"backend {args.backend}")
        if cal["calibrated"]:
            console.print(f"calibrated {', '.join(cal['layers'])} on {cal['images']} image(s) "
                          f"({cal['source']}): the model carries no activation scales")
        for line in warnings:
            console.print(f"[yellow]warning:[/] {pack.one_line(line)}")
        console.print(pack.placement_table(graph))

    task = progress.add_task("golden images", total=len(images)) if progress else None
    outputs, inputs, rows = golden_run(
        model, layers, images, cfg, str(args.model),
        (lambda: progress.advance(task)) if progress else None)
    report = {
        "model": str(args.model), "hw": str(args.hw), "input": str(args.input),
        "backend": args.backend, "config": json.loads(cfg.to_json()),
        "images": len(images), "input_shape": list(images.shape[1:]),
        "calibration": cal, "graph": graph, "pack_warnings": warnings,
        "float": _float_agreement(model, images, outputs, cfg),
    }
    status = 0
    if args.backend == "rtl":
        report["rtl"], rows, outputs, status = _rtl(args, cfg, model_file, stream, images,
                                                    layers, inputs, rows, outputs, progress)
    report["layers"] = rows
    report["status"] = "ok" if status == 0 else "mismatch"
    if status == 0:
        np.save(workdir / OUTPUTS_NAME, outputs)
        report["outputs"] = {"file": OUTPUTS_NAME, "shape": list(outputs.shape)}
        if outputs.ndim == 2:
            report["outputs"]["argmax"] = outputs.argmax(1).tolist()
    report["seconds"] = time.perf_counter() - t0
    (workdir / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")
    return report, status, cfg


def _rtl(args, cfg, model_file, stream, images, layers, inputs, golden_rows, golden_out,
         progress):
    """The RTL run: its report entry, cycle rows (the golden rows' ``model_cycles`` added; the
    golden rows themselves when the run failed), outputs and exit status."""
    try:
        sim = args.sim or fast_simulator()
    except SimulatorMissing as err:
        raise RunError(f"--backend rtl: {pack.one_line(str(err))}") from None
    build = progress.add_task(f"build accelerator ({sim})", total=None) if progress else None
    runs = sum(dev.packed.num_passes for dev in layers.values()) * len(images)
    task = progress.add_task("RTL images", total=runs, visible=False) if progress else None

    def built():
        if progress:
            progress.update(build, total=1, completed=1)
            progress.update(task, visible=True)

    def advanced(layer, done):
        if progress:
            progress.update(task, completed=done, description=f"RTL images ({layer})")

    entry = {"simulator": sim, "stalls": args.stalls, "seed": args.seed}
    try:
        results = rtl_run(cfg, model_file, stream, images, layers, sim=sim, stalls=args.stalls,
                          seed=args.seed, on_built=built, on_progress=advanced)
    except RtlMismatch as err:
        return {**entry, "matches_golden": False, "mismatch": err.detail}, golden_rows, \
            golden_out, EXIT_MISMATCH
    if progress:
        progress.update(task, completed=runs)
    entry.update({key: results[key] for key in ("sim_cycles", "wall_seconds",
                                                "cycles_per_second")})
    try:
        rows = layer_table(results, layers, inputs, cfg)
    except AssertionError as err:           # PERF_MACS disagrees with the golden count
        layer = re.match(r"layer (.+?): ", str(err))
        return {**entry, "matches_golden": False,
                "mismatch": {"message": str(err), "layer": layer[1] if layer else None}}, \
            golden_rows, golden_out, EXIT_MISMATCH
    modelled = {r["layer"]: r["model_cycles"] for r in golden_rows}
    rows = [{**r, "model_cycles": modelled[r["layer"]]} for r in rows]
    outputs = np.array(results["outputs"], dtype=np.float64).reshape(golden_out.shape)
    if not np.array_equal(outputs, golden_out):
        bad = tuple(int(i) for i in np.argwhere(outputs != golden_out)[0])
        return {**entry, "matches_golden": False, "mismatch": {
            "message": f"network output: RTL differs from golden at index {bad}",
            "layer": "output", "image": bad[0], "index": list(bad[1:])}}, rows, golden_out, \
            EXIT_MISMATCH
    return {**entry, "matches_golden": True, "mismatch": None}, rows, outputs, 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m verif.run",
        description="Run a CNN (.onnx, PyTorch state dict .pt/.pth, or winnow .npz) on the "
                    "winnow accelerator that --hw describes: pack it, run the images through "
                    "the network (accelerator layers on the golden model or the generated "
                    "Verilog, the rest on the host), check RTL against golden layer by layer, "
                    "print cycles per layer and write outputs.npy and report.json.",
        epilog="Exit status: 0 done, 1 RTL differs from golden (or the simulation failed), "
               "2 bad input (nothing written). docs/run.md describes the report.")
    ap.add_argument("model", metavar="MODEL", help="model .onnx, .pt/.pth or .npz")
    ap.add_argument("--hw", required=True, metavar="winnow.json",
                    help="accelerator config written by python -m hw.gen")
    ap.add_argument("--input", required=True, metavar="FILE.npy",
                    help="images: one [C, H, W] or a batch [N, C, H, W] of real numbers")
    ap.add_argument("--out", required=True, metavar="DIR",
                    help="output directory (created atomically): outputs.npy, report.json, "
                         "packed/")
    ap.add_argument("--backend", choices=BACKENDS, default="golden",
                    help="golden: the bit-exact NumPy model; rtl: the generated Verilog in a "
                         "simulator, checked against golden (default %(default)s)")
    ap.add_argument("--calibrate", metavar="FILE.npy",
                    help="images to set the activation scales from when the model has none "
                         "(ONNX, PyTorch); default: the --input images")
    ap.add_argument("--sim", choices=("icarus", "verilator"),
                    help="simulator for --backend rtl (default: Verilator when available)")
    ap.add_argument("--stalls", choices=PATTERNS, default="none",
                    help="stall pattern on every AXI stream of the RTL run (default "
                         "%(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the stall pattern")
    ap.add_argument("--force", action="store_true", help="replace a non-empty DIR")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars or tables")
    return ap


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    args = _parser().parse_args(argv)
    # Wide enough for the tables when stdout is a pipe or a log file.
    out = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    outdir = Path(args.out)
    progress = None if args.quiet else Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=out)
    try:
        try:
            pack.check_outdir(outdir, args.force)
        except pack.PackError as perr:
            raise RunError(str(perr)) from None
        if progress:
            progress.start()
        try:
            report, status, cfg = pack.write_atomically(
                outdir, lambda tmp: run(args, tmp, None if args.quiet else out, progress))
        finally:
            if progress:
                progress.stop()
    except RunError as rerr:
        print(f"run: error: {pack.one_line(str(rerr))}", file=sys.stderr)
        return pack.EXIT_BAD_INPUT
    except OSError as oerr:
        print(f"run: error: {outdir}: cannot write the output ({oerr})", file=sys.stderr)
        return pack.EXIT_BAD_INPUT
    if not args.quiet and not status:
        out.print(_cycle_table(report["layers"], report["images"], cfg,
                               args.backend == "rtl"))
    if status:
        mismatch = report["rtl"]["mismatch"]
        print(f"run: error: {pack.one_line(mismatch['message'])}"
              + (f" (log {mismatch['log']})" if mismatch.get("log") else ""), file=sys.stderr)
        print(f"report: {outdir / REPORT_NAME}", file=sys.stderr)
        return status
    if not args.quiet:
        verdict = (" RTL identical to golden on every accelerator layer of every image;"
                   if args.backend == "rtl" else "")
        out.print(f"{verdict} outputs {outdir / OUTPUTS_NAME} "
                  f"{report['outputs']['shape']}, report {outdir / REPORT_NAME}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
