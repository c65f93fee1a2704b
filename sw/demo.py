"""``python -m sw.demo``: a real 3×3 layer on real digits through the bit-exact golden model.

1. Train, in NumPy, a one-layer Winograd-domain CNN on scikit-learn's 8×8 digits: 8 filters
   parametrised directly by their Winograd weights U (Liu et al.), with or without ReLU on the
   transformed input V, then spatial ReLU, 2×2 average pooling and a softmax readout.
2. Prune U by magnitude to a few densities and retrain the surviving weights briefly.
3. Quantise each layer (int8 activations, int8 Winograd weights, int32 bias, multiplier+shift)
   and run the held-out digits through :func:`sw.golden.conv_layer`.
4. Print multiplication counts (dense direct / dense Winograd / sparse Winograd), the error of
   the golden output against the float layer, and the classifier's accuracy on both.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sklearn.datasets import load_digits

from hw.config import AccelConfig
from sw import golden, prune, quant, winograd

#: Output channels of the demo layer.
FILTERS = 8
#: Real value of one int8 input step: pixels are scaled to [0, 1].
IN_SCALE = 1 / 127


@dataclass
class FloatModel:
    """Winograd-domain conv layer plus a linear readout, all float64."""

    U: np.ndarray          # [n*n, K, C]
    bias: np.ndarray       # [K]
    W: np.ndarray          # [K*pooled, 10]
    b: np.ndarray          # [10]


class WinogradLayer:
    """Float forward and backward of ``Y = A^T [sum_c U ⊙ V] A`` for a fixed input batch.

    Per coordinate x the channel sum is one matrix product, and the output transform is one
    product with ``kron(A^T, A^T)``, so training is a handful of BLAS calls per step.
    """

    def __init__(self, images: np.ndarray, m: int, winograd_relu: bool):
        self.m, self.n = m, m + 2
        AT, _, BT = winograd.matrices(m).as_float()
        self.kron = np.kron(AT, AT)                                      # [m*m, n*n]
        self.grid = winograd.tile_grid(images.shape[-2], images.shape[-1], m, pad=1)
        d = winograd.extract_tiles(images[:, None], self.grid)          # N, C, th, tw, n, n
        self.N, C = d.shape[:2]
        V = np.einsum("ij,...jk,lk->...il", BT, d, BT)
        if winograd_relu:
            V = np.maximum(V, 0)
        V = V.reshape(self.N, C, self.grid.tiles, self.n * self.n)
        self.V = np.ascontiguousarray(V.transpose(3, 0, 2, 1).reshape(self.n ** 2, -1, C))

    def forward(self, U: np.ndarray, bias: np.ndarray) -> np.ndarray:
        M = self.V @ U.transpose(0, 2, 1)                                # [X, N*T, K]
        K, g, m = U.shape[1], self.grid, self.m
        Y = (self.kron @ M.reshape(self.n ** 2, -1)).reshape(m, m, self.N, g.tiles_h, g.tiles_w, K)
        Y = Y.transpose(2, 5, 3, 4, 0, 1)                                # N, K, th, tw, m, m
        return winograd.assemble_tiles(Y, g) + bias[None, :, None, None]

    def backward(self, d_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradients for U and bias; the output map is an exact multiple of m here."""
        N, K = d_out.shape[:2]
        g, m = self.grid, self.m
        dY = d_out.reshape(N, K, g.tiles_h, m, g.tiles_w, m).transpose(3, 5, 0, 2, 4, 1)
        dM = (self.kron.T @ dY.reshape(m * m, -1)).reshape(self.n ** 2, -1, K)
        dU = self.V.transpose(0, 2, 1) @ dM                              # [X, C, K]
        return dU.transpose(0, 2, 1), d_out.sum(axis=(0, 2, 3))


def pool_features(conv: np.ndarray) -> np.ndarray:
    """Spatial ReLU, 2×2 average pooling, flatten: [N, K, 8, 8] → [N, K*16]."""
    N, K, H, W = conv.shape
    act = np.maximum(conv, 0)
    return act.reshape(N, K, H // 2, 2, W // 2, 2).mean(axis=(3, 5)).reshape(N, -1)


def train(layer: WinogradLayer, labels: np.ndarray, model: FloatModel, mask: np.ndarray,
          steps: int, lr: float) -> FloatModel:
    """Full-batch Adam on cross-entropy; weights outside ``mask`` stay zero."""
    params = [model.U * mask, model.bias.copy(), model.W.copy(), model.b.copy()]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    onehot = np.eye(10)[labels]
    for step in range(1, steps + 1):
        U, bias, W, b = params
        conv = layer.forward(U, bias)
        feats = pool_features(conv)
        logits = feats @ W + b
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        d_logits = (prob - onehot) / len(labels)
        d_feats = d_logits @ W.T
        N, K, H, Wd = conv.shape
        d_pool = d_feats.reshape(N, K, H // 2, 1, Wd // 2, 1) / 4
        d_conv = np.broadcast_to(d_pool, (N, K, H // 2, 2, Wd // 2, 2)).reshape(conv.shape)
        d_conv = d_conv * (conv > 0)
        dU, dbias = layer.backward(d_conv)
        grads = [dU * mask, dbias, feats.T @ d_logits, d_logits.sum(axis=0)]
        for p, g, mo, ve in zip(params, grads, mom, vel):
            mo *= 0.9
            mo += 0.1 * g
            ve *= 0.999
            ve += 0.001 * g * g
            p -= lr * (mo / (1 - 0.9 ** step)) / (np.sqrt(ve / (1 - 0.999 ** step)) + 1e-8)
        params[0] *= mask
    return FloatModel(*params)


def accuracy(model: FloatModel, conv: np.ndarray, labels: np.ndarray) -> float:
    return float(((pool_features(conv) @ model.W + model.b).argmax(axis=1) == labels).mean())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sw.demo",
        description="Train a 3×3 conv layer on sklearn's digits, prune it in the Winograd domain, "
                    "run it through the bit-exact golden model, and print multiplication counts, "
                    "error against float and accuracy.")
    parser.add_argument("--tile", type=int, nargs="+", default=[2, 4], choices=[2, 4],
                        help="output tile sizes m of F(m×m,3×3) to run (default: 2 4)")
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.4, 0.15],
                        help="fractions of Winograd weights kept (default: 1.0 0.4 0.15)")
    parser.add_argument("--steps", type=int, default=150,
                        help="training steps for the dense model (default: 150)")
    parser.add_argument("--test", type=int, default=100,
                        help="held-out digits run through the golden model (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if not all(0 < d <= 1 for d in args.densities):
        parser.error(f"--densities {args.densities}: each must be in (0, 1]")
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: must be at least 1")
    if not 1 <= args.test <= 797:
        parser.error(f"--test {args.test}: must be in [1, 797] (the digits set has 1797 images, "
                     "1000 are used for training)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 180)  # logs keep the whole table
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    images = digits.images[order] / 16.0
    labels = digits.target[order]
    train_x, train_y = images[:1000], labels[:1000]
    test_x, test_y = images[1000:1000 + args.test], labels[1000:1000 + args.test]
    test_q = np.rint(test_x / IN_SCALE).astype(np.int64)        # int8 activations, 0..127
    console.print(f"[bold]winnow demo[/]: sklearn digits, {len(train_y)} train / {len(test_y)} "
                  f"test images (8×8), {FILTERS} filters 3×3 pad 1, seed {args.seed}")

    table = Table(title="Sparse Winograd layer on digits: golden model (int8) vs float",
                  caption="mults per image; err in int8 output steps vs the float layer on the "
                          "same int8 input; bound = mean of golden.error_bound")
    for column in ("F(m,3)", "W-ReLU", "density", "dense direct", "dense Winograd",
                   "sparse Winograd", "vs direct", "err mean", "err max", "bound",
                   "acc float", "acc golden"):
        table.add_column(column, justify="right")

    jobs = [(m, wr, d) for m in args.tile for wr in (False, True) for d in args.densities]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training and running the golden model", total=len(jobs))
        for m in args.tile:
            cfg = AccelConfig(tile=m, c_max=1, k_max=FILTERS, w_max=8)
            for wr in (False, True):
                progress.update(task, description=f"F({m},3) W-ReLU={wr}: training dense")
                fit_layer = WinogradLayer(train_x, m, wr)
                test_layer = WinogradLayer(test_q * IN_SCALE, m, wr)
                g = rng.normal(size=(FILTERS, 1, 3, 3)) * 0.5
                init = FloatModel(quant.winograd_weights(g, m), np.zeros(FILTERS),
                                  rng.normal(size=(FILTERS * 16, 10)) * 0.05, np.zeros(10))
                dense = train(fit_layer, train_y, init, np.ones_like(init.U), args.steps, 0.03)
                for density in args.densities:
                    progress.update(task, description=f"F({m},3) W-ReLU={wr} density {density}")
                    mask = prune.prune_winograd(dense.U, density)
                    model = dense if density == 1 else train(
                        fit_layer, train_y, dense, mask, max(1, args.steps // 3), 0.01)
                    table.add_row(*evaluate(model, cfg, wr, test_layer, test_q, test_y))
                    progress.advance(task)
            table.add_section()
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def evaluate(model: FloatModel, cfg: AccelConfig, wr: bool, test_layer: WinogradLayer,
             test_q: np.ndarray, test_y: np.ndarray) -> list[str]:
    """Quantise ``model``'s layer, run every test image through the golden model, one table row."""
    float_conv = test_layer.forward(model.U, model.bias)                  # N, K, 8, 8
    out_scale = quant.choose_scale(np.maximum(float_conv, 0), cfg.act_bits)
    layer = quant.quantize_layer(model.U, model.bias, IN_SCALE, out_scale, cfg, name="digits",
                                 pad=1, winograd_relu=wr, spatial_relu=True)
    outs, counts, bounds = [], np.zeros(3), []
    for x in test_q:
        trace_in = x[None]
        outs.append(golden.conv_layer(trace_in, layer, cfg))
        c = golden.mult_counts(layer, trace_in, cfg)
        counts += (c["dense_direct"], c["dense_winograd"], c["sparse_winograd"])
        bounds.append(golden.error_bound(trace_in, layer, cfg).mean())
    outs = np.stack(outs)
    want = np.clip(np.maximum(float_conv, 0) / out_scale, *cfg.act_range)
    err = np.abs(outs - want)
    direct, dense_w, sparse_w = counts / len(test_q)
    return [f"F({cfg.tile},3)", "yes" if wr else "no",
            f"{golden.coord_density(layer.U).mean():.2f}",
            f"{direct:.0f}", f"{dense_w:.0f}", f"{sparse_w:.0f}", f"{direct / sparse_w:.1f}×",
            f"{err.mean():.2f}", f"{err.max():.1f}", f"{np.mean(bounds):.1f}",
            f"{accuracy(model, float_conv, test_y):.1%}",
            f"{accuracy(model, outs * out_scale, test_y):.1%}"]


if __name__ == "__main__":
    sys.exit(main())
