"""``python -m sw.experiments``: the pruning results of docs/results_pruning.md and its plots.

For each ReLU placement (Winograd-ReLU, Liu et al.; spatial ReLU), each target density and each
seed it trains and prunes a CNN with :mod:`sw.train` (``--dataset``, ``--channels``,
``--pool-after``: the same network options as ``sw/train.py``), then measures test accuracy in
float and through the bit-exact int8 golden model (:func:`sw.quant.quantize_layer` +
:func:`sw.golden.conv_layer`, host layers in NumPy), the multiplications against dense direct
convolution (:func:`sw.golden.mult_counts`), and the per-coordinate densities of one-threshold vs
balanced pruning (the balanced run is made for the first seed at the lowest density). Writes
``pruning_results.json`` and PNGs into ``--out`` (default docs/img) and prints the accuracy table
in Markdown.
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

__all__ = ["quantized_layers", "int8_predict", "MultCountingBackend", "accuracy_table", "main"]


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


class MultCountingBackend(driver.GoldenBackend):
    """The golden backend, summing :func:`sw.golden.mult_counts` over every layer and image.

    It sits under :func:`sw.driver.run_network`, so each layer is counted on its real input:
    after the host layers (pooling) between accelerator layers.
    """

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg)
        self.mults = {"dense_direct": 0, "dense_winograd": 0, "sparse_winograd": 0}

    async def conv(self, layer: driver.DeviceLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
        for x in xs:
            for key, value in golden.mult_counts(layer.qlayer, x, self.cfg).items():
                self.mults[key] += value
        return await super().conv(layer, xs)


def _train_config(args, relu: str, method: str, density: float, seed: int):
    from sw import train
    return train.TrainConfig(
        dataset=args.dataset, relu=relu, method=method, density=density, epochs=args.epochs,
        retrain_epochs=args.retrain_epochs, steps=args.steps, channels=tuple(args.channels),
        pool_after=None if args.pool_after is None else tuple(args.pool_after), lr=args.lr,
        seed=seed)


def _run(relu: str, method: str, density: float, seed: int, args, cfg: AccelConfig) -> dict:
    from sw import train
    tcfg = _train_config(args, relu, method, density, seed)
    t0 = time.perf_counter()
    net, data, history = train.train_and_prune(tcfg, log=lambda msg: None)
    train_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:   # reload through the file, as the packer would
        path = Path(tmp) / "model.npz"
        train.export(net, tcfg, data, history, path)
        model = model_import.load_npz(path)
    test_images = len(data[3]) if args.test_images is None else args.test_images
    xte, yte = data[2][:test_images], data[3][:test_images]
    layers = driver.device_layers(model, cfg)
    int8 = float((driver.golden_predict(model, xte, cfg, layers).argmax(1) == yte).mean())
    counting = MultCountingBackend(cfg)
    driver.run_sync(driver.run_network(model, layers, xte[:args.count_images], counting))
    last = model.accel_layers[-1].weight
    U = prune.to_winograd(last, cfg.tile) if last.ndim == 4 else last
    return {"relu": relu, "method": method, "density": density, "seed": seed,
            "float": history[-1][2], "int8": int8, "test_images": int(len(yte)),
            "mults": counting.mults, "count_images": int(min(args.count_images, len(xte))),
            "last_conv": model.accel_layers[-1].name,
            "coord_density": (U != 0).reshape(U.shape[0], -1).mean(axis=1).tolist(),
            "train_seconds": round(train_seconds, 1)}


def _curve(results: list, relu: str, key) -> tuple[list, list, list, list]:
    """Densities, and the mean, min and max of ``key(r)`` over seeds, for one ReLU placement."""
    rows = [r for r in results if r["relu"] == relu and r["method"] == "winograd"]
    densities = sorted({r["density"] for r in rows})
    values = [[key(r) for r in rows if r["density"] == d] for d in densities]
    return (densities, [float(np.mean(v)) for v in values], [min(v) for v in values],
            [max(v) for v in values])


def accuracy_table(results: list) -> str:
    """The Markdown table of docs/results_pruning.md: float and int8 accuracy per density and
    ReLU placement, the mean over seeds with the per-seed values in brackets when there are
    several."""
    seeds = sorted({r.get("seed", 0) for r in results})

    def cell(rows, key):
        if not rows:
            return ""
        values = [r[key] for r in sorted(rows, key=lambda r: r.get("seed", 0))]
        text = f"{np.mean(values):.4f}"
        if len(values) > 1:
            text += " (" + ", ".join(f"{v:.3f}" for v in values) + ")"
        return text

    lines = ["| Winograd density | Winograd-ReLU float | Winograd-ReLU int8 | spatial-ReLU float "
             "| spatial-ReLU int8 |", "|---|---|---|---|---|"]
    for density in sorted({r["density"] for r in results if r["method"] == "winograd"},
                          reverse=True):
        cells = []
        for relu in ("winograd", "spatial"):
            rows = [r for r in results if r["relu"] == relu and r["method"] == "winograd"
                    and r["density"] == density]
            cells += [cell(rows, "float"), cell(rows, "int8")]
        lines.append(f"| {density:.2f} | " + " | ".join(cells) + " |")
    for r in (r for r in results if r["method"] == "balanced"):
        lines.append(f"| {r['density']:.2f}, balanced per coordinate, seed {r.get('seed', 0)} "
                     f"| {r['float']:.4f} | {r['int8']:.4f} | | |")
    if len(seeds) > 1:
        lines.append("")
        lines.append(f"Mean over seeds {', '.join(map(str, seeds))}; each seed's value in "
                     "brackets.")
    return "\n".join(lines)


def _plots(results: list, out: Path, m: int, dataset: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    seeds = sorted({r.get("seed", 0) for r in results})
    fig, ax = plt.subplots(figsize=(6, 4))
    for relu, color in (("winograd", "C0"), ("spatial", "C1")):
        for key, style, label in (("float", "o-", "float"), ("int8", "s--", "int8 golden")):
            d, mean, low, high = _curve(results, relu, lambda r, key=key: r[key])
            ax.errorbar(d, mean, yerr=[np.subtract(mean, low), np.subtract(high, mean)],
                        fmt=style, color=color, capsize=3, label=f"{relu}-ReLU {label}")
    ax.set_xlabel("Winograd-domain weight density")
    ax.set_ylabel(f"test accuracy ({dataset})")
    if len(seeds) > 1:
        ax.set_title(f"mean and range over {len(seeds)} seeds", fontsize=9)
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    written.append(out / "pruning_accuracy.png")
    fig.tight_layout()
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for relu, color in (("winograd", "C0"), ("spatial", "C1")):
        d, mean, _, _ = _curve(results, relu, lambda r: r["mults"]["dense_direct"]
                               / max(r["mults"]["sparse_winograd"], 1))
        ax.plot(d, mean, "o-", color=color, label=f"{relu}-ReLU, sparse Winograd")
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

    heat = [r for r in results if r["relu"] == "winograd" and r["density"] != 1.0
            and r.get("seed", 0) == seeds[0]]
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
        ax.set_title(f"{r['method']} pruning, {r.get('last_conv', 'conv2')}, d={r['density']}",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="density per coordinate")
    written.append(out / "pruning_coord_density.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sw.experiments",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/img", help="directory for PNGs and results.json")
    p.add_argument("--dataset", default="digits", help="as sw/train.py --dataset")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32],
                   help="as sw/train.py --channels")
    p.add_argument("--pool-after", type=int, nargs="+", help="as sw/train.py --pool-after")
    p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.3, 0.2, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one training per seed at every point (default: 0)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--retrain-epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01, help="as sw/train.py --lr")
    p.add_argument("--test-images", type=int,
                   help="test images for the int8 golden run (default: the whole test split)")
    p.add_argument("--count-images", type=int, default=1,
                   help="test images the multiplication counts are summed over (default 1)")
    p.add_argument("--replot", action="store_true",
                   help="redraw the PNGs and reprint the table from OUT/pruning_results.json "
                        "without training")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for d in args.densities:
        try:
            prune.check_density(d, "--densities")
        except prune.PruneError as err:
            print(f"python -m sw.experiments: error: {err}", file=sys.stderr)
            return 2
    cfg = AccelConfig()
    out = Path(args.out)
    if args.replot:
        results = json.loads((out / "pruning_results.json").read_text())
    else:
        from sw import train
        try:   # refused before the first of many minutes-long trainings, not after
            for relu in ("winograd", "spatial"):
                train.check_config(_train_config(args, relu, "winograd", min(args.densities),
                                                 args.seeds[0]))
            train.load_dataset(args.dataset, args.seeds[0])
        except train.TrainError as err:
            print(f"python -m sw.experiments: error: {err}", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        # Seed by seed, the balanced run after the first seed's: a sweep stopped early has
        # whole seeds.
        runs = []
        for seed in args.seeds:
            runs += [(relu, "winograd", d, seed) for relu in ("winograd", "spatial")
                     for d in args.densities]
            if seed == args.seeds[0]:
                runs.append(("winograd", "balanced", min(args.densities), seed))
        results = []
        t0 = time.perf_counter()
        for relu, method, density, seed in runs:
            results.append(_run(relu, method, density, seed, args, cfg))
            r = results[-1]
            ratio = r["mults"]["dense_direct"] / max(1, r["mults"]["sparse_winograd"])
            print(f"seed {seed} {relu:8s} {method:8s} density {density:4.2f}: "
                  f"float {r['float']:.4f} int8 {r['int8']:.4f}  mults x{ratio:.2f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            # Written after every run: a long sweep that is stopped keeps what it measured.
            (out / "pruning_results.json").write_text(json.dumps(results, indent=1) + "\n")
    for path in _plots(results, out, cfg.tile, args.dataset):
        print(f"wrote {path}")
    print(accuracy_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
