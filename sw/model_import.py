"""Model import: ONNX graphs, PyTorch state dicts and winnow ``.npz`` models → one :class:`Model`.

A :class:`Model` is a list of layers in execution order. :class:`AccelLayer` is a 3×3 stride-1
convolution with padding 0 or 1 (what the accelerator runs); :class:`HostLayer` is everything the
host runs in NumPy (pooling, ReLU, flatten/reshape, fully connected, add, other convolutions).
Every error is a :class:`ModelError` naming the file, the node or layer, and the problem.

On disk (:func:`save_model` / :func:`load_npz`), a model ``NAME.npz`` is three files:

``NAME.npz``        the packer's schema (docs/formats.md): ``<layer>.weight`` (spatial
                    ``[K, C, 3, 3]`` or Winograd ``[n*n, K, C]`` float), ``<layer>.bias`` ``[K]``,
                    ``<layer>.in_scale``, ``<layer>.out_scale``, ``<layer>.pad`` — accelerator
                    layers only, so ``python sw/pack.py NAME.npz`` reads it unchanged.
``NAME.json``       the graph (:data:`GRAPH_FORMAT`): ``input`` (shape, scale), ``layers`` in order,
                    each ``{"name", "kind": "accel"|"host", "inputs", "output"}`` plus, for accel,
                    ``pad``, ``winograd_relu``, ``spatial_relu``; for host, ``op`` and ``attrs``;
                    and free-form ``meta`` (training command, accuracies, densities).
``NAME.host.npz``   host layers' arrays, ``<layer>.<array>`` (e.g. ``fc.weight`` ``[out, in]``,
                    ``fc.bias``). Absent when no host layer has arrays.

Without ``NAME.json`` every array of ``NAME.npz`` is an accelerator layer, in archive order.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ModelError", "AccelLayer", "HostLayer", "Model", "GRAPH_FORMAT", "HOST_OPS",
           "load_onnx", "load_torch_state_dict", "load_npz", "load_model", "save_model"]

GRAPH_FORMAT = "winnow-model/1"
#: Operators the host driver runs in NumPy; ONNX op name → host op name.
HOST_OPS = {"MaxPool": "maxpool", "AveragePool": "avgpool", "GlobalAveragePool": "global_avgpool",
            "Relu": "relu", "Flatten": "flatten", "Reshape": "reshape", "Gemm": "gemm",
            "MatMul": "matmul", "Add": "add", "Conv": "conv"}
#: ONNX ops that compute nothing at inference and are skipped (their output aliases their input).
PASS_THROUGH = ("Identity", "Dropout")


class ModelError(ValueError):
    """A model that cannot be imported; the message names the file, node/layer and problem."""


@dataclass(eq=False)
class AccelLayer:
    """A 3×3 stride-1 convolution for the accelerator (float weights, before quantisation)."""

    name: str
    weight: np.ndarray                      # spatial [K, C, 3, 3] or Winograd [n*n, K, C]
    bias: np.ndarray                        # [K]
    pad: int
    inputs: tuple[str, ...]
    output: str
    winograd_relu: bool = False
    spatial_relu: bool = False
    in_scale: float | None = None
    out_scale: float | None = None

    kind = "accel"


@dataclass(eq=False)
class HostLayer:
    """A layer the host runs: ``op`` is a value of :data:`HOST_OPS`."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    kind = "host"


@dataclass(eq=False)
class Model:
    """Layers in execution order, the input tensor's name, shape (C, H, W) and scale."""

    layers: list
    input_name: str = "input"
    input_shape: tuple[int, ...] | None = None
    input_scale: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def accel_layers(self) -> list[AccelLayer]:
        return [layer for layer in self.layers if layer.kind == "accel"]


def _finite(arr: np.ndarray, where: str, what: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise ModelError(f"{where}: {what} has dtype {arr.dtype}; expected real numbers")
    out = np.asarray(arr, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise ModelError(f"{where}: {what} holds {bad} NaN/Inf value(s)")
    return out


# ----------------------------------------------------------------------------------------- ONNX
def _onnx_attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_is_accel(w: np.ndarray, attrs: dict) -> tuple[bool, int, str]:
    """Whether an ONNX Conv fits the accelerator, its padding, and why not otherwise."""
    kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False, 0, f"auto_pad {attrs['auto_pad']!r}"
    if kernel != (3, 3):
        return False, 0, f"kernel {'x'.join(map(str, kernel))}"
    if strides != (1, 1):
        return False, 0, f"stride {'x'.join(map(str, strides))}"
    if dilations != (1, 1):
        return False, 0, f"dilation {'x'.join(map(str, dilations))}"
    if attrs.get("group", 1) != 1:
        return False, 0, f"group {attrs['group']}"
    if len(set(pads)) != 1 or pads[0] not in (0, 1):
        return False, 0, f"pads {list(pads)}"
    return True, pads[0], ""


def load_onnx(path: str | Path) -> Model:
    """Import an ONNX model: 3×3 stride-1 pad 0/1 Conv → accelerator, :data:`HOST_OPS` → host.

    A Relu whose input is an accelerator Conv's only use is fused into it (``spatial_relu``).
    Other convolutions (strided, 1×1, 7×7, grouped) are host layers. Any other op is refused.
    """
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"{path}: not a readable ONNX model "
                         f"({type(err).__name__}: {err})") from None
    graph = proto.graph
    if not graph.node:
        raise ModelError(f"{path}: the graph has no nodes (truncated or empty file?)")
    inits = {t.name: t for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{path}: the graph has {len(inputs)} non-constant inputs; expected 1")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    input_shape = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    alias: dict[str, str] = {}
    layers: list = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type.lower()}{index}"
        where = f"{path}: node {name!r} ({node.op_type})"
        ins = tuple(alias.get(i, i) for i in node.input if i)
        if node.op_type in PASS_THROUGH:
            alias[node.output[0]] = ins[0]
            continue
        if node.op_type not in HOST_OPS:
            raise ModelError(f"{where}: operator {node.op_type} is not supported (accelerator: "
                             f"Conv 3x3 stride 1 pad 0/1; host: {', '.join(HOST_OPS)})")

        def constant(tensor_name: str, what: str) -> np.ndarray:
            if tensor_name not in inits:
                raise ModelError(f"{where}: {what} {tensor_name!r} is not an initializer "
                                 "(weights computed at run time are not supported)")
            return numpy_helper.to_array(inits[tensor_name])

        attrs = _onnx_attrs(node)
        out = node.output[0]
        if node.op_type == "Conv":
            w = _finite(constant(node.input[1], "weight"), where, "weight")
            if w.ndim != 4:
                raise ModelError(f"{where}: weight has shape {w.shape}; expected [K, C, kh, kw]")
            b = (_finite(constant(node.input[2], "bias"), where, "bias")
                 if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0]))
            accel, pad, _why = _conv_is_accel(w, attrs)
            if accel:
                layers.append(AccelLayer(name, w, b, pad, ins[:1], out))
            else:
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
                layers.append(HostLayer(name, "conv", ins[:1], out, attrs,
                                        {"weight": w, "bias": b}))
            continue
        if (node.op_type == "Relu" and layers and layers[-1].kind == "accel"
                and layers[-1].output == ins[0] and uses.get(node.input[0], 0) == 1
                and not layers[-1].spatial_relu):
            layers[-1].spatial_relu = True
            alias[out] = ins[0]
            continue
        arrays, data_ins = {}, []
        for slot, tensor in zip(("a", "b", "c"), ins):
            if tensor in inits:
                key = {"Gemm": {"b": "weight", "c": "bias"}, "MatMul": {"b": "weight"},
                       "Reshape": {"b": "shape"}, "Add": {"a": "a", "b": "b"}
                       }.get(node.op_type, {}).get(slot)
                if key is None:
                    raise ModelError(f"{where}: input {slot} {tensor!r} is a constant, which the "
                                     "host does not support there")
                what = "shape" if key == "shape" else key
                arrays[key] = (numpy_helper.to_array(inits[tensor]) if key == "shape"
                               else _finite(numpy_helper.to_array(inits[tensor]), where, what))
            else:
                data_ins.append(tensor)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        layers.append(HostLayer(name, HOST_OPS[node.op_type], tuple(data_ins), out, attrs, arrays))
    if not any(layer.kind == "accel" for layer in layers):
        raise ModelError(f"{path}: no 3x3 stride-1 convolution for the accelerator")
    return Model(layers, inputs[0].name, input_shape)


# ---------------------------------------------------------------------------------- PyTorch
def load_torch_state_dict(path: str | Path, pad: int = 1) -> Model:
    """Import a PyTorch state dict (``torch.save(model.state_dict())``) by its weight layers.

    A state dict holds no graph, so each ``<layer>.weight`` becomes a layer in dict order: 4-D
    3×3 → accelerator conv with ``pad`` (stride 1 assumed), 2-D → host ``gemm``. Pooling and
    activations between them are not recorded; export to ONNX to keep them. Kernels other than
    3×3 and normalisation layers are refused (fold BatchNorm into the conv first).
    """
    try:
        import torch
    except ImportError:
        raise ModelError(f"{path}: reading a PyTorch state dict needs torch "
                         "(pip install -e '.[train]')") from None
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; name it, keep the text
        raise ModelError(f"{path}: not a readable PyTorch state dict "
                         f"({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    if pad not in (0, 1):
        raise ModelError(f"{path}: pad {pad} is not supported (0 or 1)")
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    layers: list = []
    previous = "input"
    for key, value in arrays.items():
        prefix, dot, leaf = key.rpartition(".")
        bias_key, mean_key = prefix + dot + "bias", prefix + dot + "running_mean"
        if leaf in ("running_mean", "running_var", "num_batches_tracked") or mean_key in arrays:
            raise ModelError(f"{path}: layer {prefix!r}: normalisation layers are not supported "
                             "(fold BatchNorm into the preceding conv before export)")
        if leaf != "weight":
            if leaf != "bias" or prefix + dot + "weight" not in arrays:
                raise ModelError(f"{path}: tensor {key!r} belongs to no conv or linear layer")
            continue
        where = f"{path}: layer {prefix!r}"
        w = _finite(value, where, "weight")
        b = (_finite(arrays[bias_key], where, "bias") if bias_key in arrays
             else np.zeros(w.shape[0]))
        if b.shape != (w.shape[0],):
            raise ModelError(f"{where}: bias has shape {b.shape}, expected ({w.shape[0]},)")
        if w.ndim == 4:
            if w.shape[2:] != (3, 3):
                raise ModelError(f"{where}: kernel {w.shape[2]}x{w.shape[3]} is not supported "
                                 "(only 3x3, stride 1; a state dict has no stride or padding, "
                                 "export to ONNX for host convolutions)")
            layers.append(AccelLayer(prefix, w, b, pad, (previous,), prefix))
        elif w.ndim == 2:
            layers.append(HostLayer(prefix, "gemm", (previous,), prefix, {"transB": 1},
                                    {"weight": w, "bias": b}))
        else:
            raise ModelError(f"{where}: weight of shape {w.shape} is neither a conv [K, C, 3, 3] "
                             "nor a linear [out, in] layer")
        previous = prefix
    if not layers:
        raise ModelError(f"{path}: the state dict holds no weight tensors")
    return Model(layers)


# -------------------------------------------------------------------------------------- npz
def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        # Open the file ourselves: np.load leaks its handle when the archive is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except AttributeError:
        raise ModelError(f"{path}: is a single .npy array, not an .npz archive") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ModelError(f"{path}: not a readable .npz archive ({err})") from None


def _graph_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _host_path(path: Path) -> Path:
    return path.with_suffix(".host.npz")


def load_npz(path: str | Path) -> Model:
    """Read a model written by :func:`save_model` (or a bare packer ``.npz``)."""
    path = Path(path)
    arrays = _read_npz(path)
    fields: dict[str, dict] = {}
    for key, arr in arrays.items():
        name, dot, leaf = key.rpartition(".")
        if not dot or not name:
            raise ModelError(f"{path}: array {key!r} is not named <layer>.<field>")
        fields.setdefault(name, {})[leaf] = arr
    graph_file = _graph_path(path)
    if not graph_file.is_file():
        specs = [{"name": name, "kind": "accel"} for name in fields]
        graph = {"layers": specs}
    else:
        try:
            graph = json.loads(graph_file.read_text())
        except (OSError, ValueError) as err:
            raise ModelError(f"{graph_file}: not readable JSON ({err})") from None
        if graph.get("format") != GRAPH_FORMAT or not isinstance(graph.get("layers"), list):
            raise ModelError(f"{graph_file}: not a {GRAPH_FORMAT} graph (format "
                             f"{graph.get('format')!r})")
    host_file = _host_path(path)
    host_arrays = _read_npz(host_file) if host_file.is_file() else {}
    layers: list = []
    previous = "input"
    for spec in graph["layers"]:
        name = spec.get("name")
        ins = tuple(spec.get("inputs", (previous,)))
        out = spec.get("output", name)
        if spec.get("kind") == "accel":
            where = f"{path}: layer {name!r}"
            got = fields.get(name)
            if got is None or "weight" not in got:
                raise ModelError(f"{where}: the graph names it but the archive has no "
                                 f"{name}.weight")
            w = _finite(got["weight"], where, "weight")
            K = w.shape[0] if w.ndim == 4 else w.shape[1] if w.ndim == 3 else -1
            if not ((w.ndim == 4 and w.shape[2:] == (3, 3)) or w.ndim == 3):
                raise ModelError(f"{where}: weight shape {w.shape} is neither spatial "
                                 "[K, C, 3, 3] nor Winograd-domain [n*n, K, C]")
            b = _finite(got["bias"], where, "bias") if "bias" in got else np.zeros(K)
            if b.shape != (K,):
                raise ModelError(f"{where}: bias has shape {b.shape}, expected ({K},)")
            scale = {k: float(got[k]) for k in ("in_scale", "out_scale") if k in got}
            pad = int(got["pad"]) if "pad" in got else int(spec.get("pad", 1))
            if pad not in (0, 1):
                raise ModelError(f"{where}: pad {pad} is not supported (0 or 1)")
            layers.append(AccelLayer(name, w, b, pad, ins, out,
                                     bool(spec.get("winograd_relu", False)),
                                     bool(spec.get("spatial_relu", False)),
                                     scale.get("in_scale"), scale.get("out_scale")))
        elif spec.get("kind") == "host":
            if spec.get("op") not in HOST_OPS.values():
                raise ModelError(f"{graph_file}: layer {name!r}: host op {spec.get('op')!r} is "
                                 f"not one of {', '.join(HOST_OPS.values())}")
            own = {k.rpartition(".")[2]: v for k, v in host_arrays.items()
                   if k.rpartition(".")[0] == name}
            layers.append(HostLayer(name, spec["op"], ins, out, dict(spec.get("attrs", {})),
                                    own))
        else:
            raise ModelError(f"{graph_file}: layer {name!r}: kind {spec.get('kind')!r} is not "
                             "accel or host")
        previous = out
    inp = graph.get("input", {})
    shape = inp.get("shape")
    return Model(layers, inp.get("name", "input"), tuple(shape) if shape else None,
                 inp.get("scale"), graph.get("meta", {}))


def load_model(path: str | Path) -> Model:
    """Import by extension: ``.onnx``, ``.pt``/``.pth`` (state dict) or ``.npz``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return load_onnx(path)
    if suffix in (".pt", ".pth"):
        return load_torch_state_dict(path)
    if suffix == ".npz":
        return load_npz(path)
    raise ModelError(f"{path}: unknown model type {suffix!r} (expected .onnx, .pt, .pth, .npz)")


def _atomic_savez(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.chmod(tmp, 0o644)                    # mkstemp makes 0600; a model file is for sharing
    os.replace(tmp, path)


def save_model(model: Model, path: str | Path) -> list[Path]:
    """Write ``model`` as ``NAME.npz`` + ``NAME.json`` (+ ``NAME.host.npz``); returns the paths."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ModelError(f"{path}: a model is saved as .npz")
    accel, host, specs = {}, {}, []
    for layer in model.layers:
        spec = {"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs),
                "output": layer.output}
        if layer.kind == "accel":
            accel[f"{layer.name}.weight"] = np.asarray(layer.weight, dtype=np.float32)
            accel[f"{layer.name}.bias"] = np.asarray(layer.bias, dtype=np.float32)
            accel[f"{layer.name}.pad"] = np.array(layer.pad)
            for key in ("in_scale", "out_scale"):
                if getattr(layer, key) is not None:
                    accel[f"{layer.name}.{key}"] = np.array(getattr(layer, key))
            spec.update(pad=layer.pad, winograd_relu=layer.winograd_relu,
                        spatial_relu=layer.spatial_relu)
        else:
            spec.update(op=layer.op, attrs=layer.attrs)
            for key, arr in layer.arrays.items():
                host[f"{layer.name}.{key}"] = np.asarray(arr, dtype=np.float32)
        specs.append(spec)
    graph = {"format": GRAPH_FORMAT,
             "input": {"name": model.input_name,
                       "shape": list(model.input_shape) if model.input_shape else None,
                       "scale": model.input_scale},
             "layers": specs, "meta": model.meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_savez(path, accel)
    written = [path]
    if host:
        _atomic_savez(_host_path(path), host)
        written.append(_host_path(path))
    elif _host_path(path).exists():
        _host_path(path).unlink()
    _graph_path(path).write_text(json.dumps(graph, indent=1) + "\n")
    written.append(_graph_path(path))
    return written
