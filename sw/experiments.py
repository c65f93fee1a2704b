"""``python -m sw.experiments``: the pruning results of docs/results_pruning.md and its plots.

For each ReLU placement (Winograd-ReLU, Liu et al.; spatial ReLU) and each target density it trains
and prunes the digits CNN with :mod:`sw.train`, then measures test accuracy in float and through
the bit-exact int8 golden model (:func:`sw.quant.quantize_layer` + :func:`sw.golden.conv_layer`,
host layers in NumPy), the multiplications against dense direct convolution
(:func:`sw.golden.mult_counts`), and the per-coordinate densities of one-threshold vs balanced
pruning. Writes ``results.json`` and PNGs into ``--out`` (default docs/img).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sw.config import AccelConfig
from sw import driver, golden, model_import, prune, quant

__all__ = ["quantized_layers", "int8_predict", "main"]


def quantized_layers(model: model_import.Model, cfg: AccelConfig) -> dict:
    """``{name: QuantLayer}`` for every accelerator layer, with the model's exported scales."""
    return {layer.name: quant.quantize_layer(
        layer.weight, layer.bias, layer.in_scale, layer.out_scale, cfg, name=layer.name,
        pad=layer.pad, winograd_relu=layer.winograd_relu, spatial_relu=layer.spatial_relu)
        for layer in model.accel_layers}


def int8_predict(model: model_import.Model, images: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Class predictions with every accelerator layer run bit-exactly in int8
    (:func:`sw.driver.golden_predict`)."""
    return driver.golden_predict(model, images, cfg).argmax(axis=1)


def _run(relu: str, method: str, density: float, args, cfg: AccelConfig) -> dict:
    from sw import train
    tcfg = train.TrainConfig(relu=relu, method=method, density=density, epochs=args.epochs,
                             retrain_epochs=args.retrain_epochs, steps=args.steps,
                             seed=args.seed)
    net, data, history = train.train_and_prune(tcfg, log=lambda msg: None)
    with tempfile.TemporaryDirectory() as tmp:   # reload through the file, as the packer would
        path = Path(tmp) / "model.npz"
        train.export(net, tcfg, data, history, path)
        model = model_import.load_npz(path)
    xte, yte = data[2][:args.test_images], data[3][:args.test_images]
    qlayers = quantized_layers(model, cfg)
    int8 = float((int8_predict(model, xte, cfg) == yte).mean())
    mults = {"dense_direct": 0, "dense_winograd": 0, "sparse_winograd": 0}
    x = np.clip(np.rint(xte[0] / model.input_scale), *cfg.act_range).astype(np.int64)
    for layer in model.accel_layers:
        counts = golden.mult_counts(qlayers[layer.name], x, cfg)
        mults = {k: mults[k] + counts[k] for k in mults}
        x = golden.conv_layer(x, qlayers[layer.name], cfg)
    conv2 = model.accel_layers[-1].weight
    U = prune.to_winograd(conv2, cfg.tile) if conv2.ndim == 4 else conv2
    return {"relu": relu, "method": method, "density": density,
            "float": history[-1][2], "int8": int8, "mults": mults,
            "coord_density": (U != 0).reshape(U.shape[0], -1).mean(axis=1).tolist()}


def _plots(results: list, out: Path, m: int) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for relu, color in (("winograd", "C0"), ("spatial", "C1")):
        rows = sorted((r for r in results if r["relu"] == relu and r["method"] == "winograd"),
                      key=lambda r: r["density"])
        d = [r["density"] for r in rows]
        ax.plot(d, [r["float"] for r in rows], "o-", color=color, label=f"{relu}-ReLU float")
        ax.plot(d, [r["int8"] for r in rows], "s--", color=color, label=f"{relu}-ReLU int8 golden")
    ax.set_xlabel("Winograd-domain weight density")
    ax.set_ylabel("test accuracy (digits)")
    ax.set_xscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(out / "pruning_accuracy.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for relu, color in (("winograd", "C0"), ("spatial", "C1")):
        rows = sorted((r for r in results if r["relu"] == relu and r["method"] == "winograd"),
                      key=lambda r: r["density"])
        ax.plot([r["density"] for r in rows],
                [r["mults"]["dense_direct"] / max(r["mults"]["sparse_winograd"], 1) for r in rows],
                "o-", color=color, label=f"{relu}-ReLU, sparse Winograd")
    rows = [r for r in results if r["method"] == "winograd"]
    ax.axhline(rows[0]["mults"]["dense_direct"] / rows[0]["mults"]["dense_winograd"],
               color="gray", ls=":", label="dense Winograd")
    ax.set_xlabel("Winograd-domain weight density")
    ax.set_ylabel("multiplication reduction vs dense direct")
    ax.set_xscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(out / "pruning_mult_reduction.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    heat = [r for r in results if r["relu"] == "winograd" and r["density"] != 1.0]
    target = min(r["density"] for r in heat)
    pair = [r for r in heat if r["density"] == target]
    fig, axes = plt.subplots(1, len(pair), figsize=(3.2 * len(pair), 3))
    n = m + 2
    top = max(max(r["coord_density"]) for r in pair)     # the scale of the data, not [0, 1]
    for ax, r in zip(np.atleast_1d(axes), pair):
        im = ax.imshow(np.array(r["coord_density"]).reshape(n, n), vmin=0, vmax=top,
                       cmap="viridis")
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{r['coord_density'][i * n + j]:.2f}", ha="center",
                        va="center", color="w", fontsize=8)
        ax.set_title(f"{r['method']} pruning, conv2, d={r['density']}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="density per coordinate")
    written.append(out / "pruning_coord_density.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sw.experiments", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/img", help="directory for PNGs and results.json")
    p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.3, 0.2, 0.1])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--retrain-epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--test-images", type=int, default=200, help="images for the int8 golden run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replot", action="store_true",
                   help="redraw the PNGs from OUT/pruning_results.json without training")
    args = p.parse_args(argv)
    for d in args.densities:
        try:
            prune.check_density(d, "--densities")
        except prune.PruneError as err:
            print(f"python -m sw.experiments: error: {err}", file=sys.stderr)
            return 2
    cfg = AccelConfig()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads((out / "pruning_results.json").read_text())
        for path in _plots(results, out, cfg.tile):
            print(f"wrote {path}")
        return 0
    runs = [(relu, "winograd", d) for relu in ("winograd", "spatial") for d in args.densities]
    runs.append(("winograd", "balanced", min(args.densities)))
    results = []
    t0 = time.perf_counter()
    for relu, method, density in runs:
        results.append(_run(relu, method, density, args, cfg))
        r = results[-1]
        ratio = r["mults"]["dense_direct"] / max(1, r["mults"]["sparse_winograd"])
        print(f"{relu:8s} {method:8s} density {density:4.2f}: float {r['float']:.4f} "
              f"int8 {r['int8']:.4f}  mults x{ratio:.2f}  ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    (out / "pruning_results.json").write_text(json.dumps(results, indent=1) + "\n")
    for path in _plots(results, out, cfg.tile):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
