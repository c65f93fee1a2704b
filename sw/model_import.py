"""Model import: ONNX graphs, PyTorch state dicts and winnow ``.npz`` models → one :class:`Model`.

A :class:`Model` is a list of layers in execution order. :class:`AccelLayer` is a 3×3 stride-1
convolution with padding 0 or 1 (what the accelerator runs); :class:`HostLayer` is everything the
host runs in NumPy with ONNX semantics (:mod:`sw.host_ops`: pooling, ReLU, LeakyReLU, PReLU,
BatchNorm, flatten/reshape, Gemm, MatMul, Softmax, Add, Concat, other convolutions). Each layer
carries ``reason``, why it runs where it runs. Every error is a :class:`ModelError` naming the
file, the node or layer, and the problem; docs/import.md lists what is supported and refused.

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
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sw.config import SUPPORTED_TILES

__all__ = ["ModelError", "AccelLayer", "HostLayer", "Model", "GRAPH_FORMAT", "HOST_OPS",
           "ONNX_ATTRS", "NPZ_FIELDS",
           "load_onnx", "load_torch_state_dict", "load_npz", "load_model", "save_model"]

GRAPH_FORMAT = "winnow-model/1"
#: Operators the host driver runs in NumPy; ONNX op name → host op name.
HOST_OPS = {"MaxPool": "maxpool", "AveragePool": "avgpool", "GlobalAveragePool": "global_avgpool",
            "GlobalMaxPool": "global_maxpool", "Relu": "relu", "LeakyRelu": "leakyrelu",
            "PRelu": "prelu", "BatchNormalization": "batchnorm", "Flatten": "flatten",
            "Reshape": "reshape", "Gemm": "gemm", "MatMul": "matmul", "Softmax": "softmax",
            "Add": "add", "Concat": "concat", "Conv": "conv"}
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
    reason: str = ""                        # why it runs on the accelerator (for reports)

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
    reason: str = ""                        # why it runs on the host (for reports)

    kind = "host"


@dataclass(eq=False)
class Model:
    """Layers in execution order, the input tensor's name, shape (C, H, W) and scale.

    ``outputs`` names the model's output tensors (empty: the last layer's output).
    """

    layers: list
    input_name: str = "input"
    input_shape: tuple[int, ...] | None = None
    input_scale: float | None = None
    meta: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()

    @property
    def accel_layers(self) -> list[AccelLayer]:
        """The accelerator layers, in order."""
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
#: Attributes each supported ONNX op may carry; any other attribute is refused by name.
ONNX_ATTRS = {
    "Conv": ("kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"),
    "MaxPool": ("kernel_shape", "strides", "pads", "ceil_mode", "dilations", "auto_pad",
                "storage_order"),
    "AveragePool": ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad",
                    "dilations", "auto_pad"),
    "GlobalAveragePool": (), "GlobalMaxPool": (), "Relu": (), "LeakyRelu": ("alpha",),
    "PRelu": (), "BatchNormalization": ("epsilon", "momentum", "training_mode", "spatial"),
    "Flatten": ("axis",), "Reshape": ("allowzero",), "Gemm": ("alpha", "beta", "transA", "transB"),
    "MatMul": (), "Softmax": ("axis",), "Add": (), "Concat": ("axis",),
    "Identity": (), "Dropout": ("seed", "ratio"), "Constant": ("value",),
}
#: ONNX ops whose result is a constant folded at import (``Constant``).
CONSTANT_OPS = ("Constant",)


def _onnx_attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, (list, tuple)):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _conv_is_accel(w: np.ndarray, attrs: dict) -> tuple[bool, int, str]:
    """Whether an ONNX Conv fits the accelerator, its padding, and why not otherwise."""
    kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
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


#: Why a layer that is not a convolution runs on the host.
_HOST_WHY = "the accelerator runs only 3x3 stride-1 convolutions with pad 0 or 1"
ACCEL_CONV = "3x3 stride-1 convolution, pad {pad}"


def load_onnx(path: str | Path, *, require_accel: bool = True) -> Model:
    """Import an ONNX model: 3×3 stride-1 pad 0/1 Conv → accelerator, :data:`HOST_OPS` → host.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    require_accel : bool
        Refuse a model with no convolution for the accelerator (what the packer needs).

    Returns
    -------
    Model
        Layers in graph order; each carries ``reason``, why it runs where it runs.

    Notes
    -----
    A Relu whose input is an accelerator Conv's only use is fused into it (``spatial_relu``); a
    BatchNormalization whose input is a Conv's only use is folded into that Conv's weights and
    bias. Other convolutions (strided, 1×1, 5×5, dilated, grouped, asymmetric or wider padding)
    are host layers. ``Constant`` nodes become constants; ``Identity`` and ``Dropout`` alias
    their input. Every other op, and every attribute or form of a supported op that the host
    does not compute exactly (:data:`ONNX_ATTRS`), is refused with one :class:`ModelError`
    naming the file, the node, the op and the attribute.
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
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                default=1)
    try:
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ModelError(f"{path}: an initializer is malformed "
                         f"({type(err).__name__}: {err})") from None
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise ModelError(f"{path}: the graph has {len(inputs)} non-constant inputs; expected 1")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    input_shape = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    alias: dict[str, str] = {}
    layers: list = []
    produced = {inputs[0].name}
    where = str(path)
    try:
        for index, node in enumerate(graph.node):
            # protobuf hands back bytes for a string field that is not valid UTF-8
            for field in ("name", "op_type", "domain"):
                if not isinstance(getattr(node, field), str):
                    raise ModelError(f"{path}: node {index}: its {field} is not UTF-8 text "
                                     "(a corrupted file?)")
            for tensor in list(node.input) + list(node.output):
                if not isinstance(tensor, str):
                    raise ModelError(f"{path}: node {index} ({node.op_type}): a tensor name "
                                     "is not UTF-8 text (a corrupted file?)")
            name = node.name or f"{node.op_type.lower()}{index}"
            op = node.op_type
            where = f"{path}: node {name!r} ({op})"
            if node.domain not in ("", "ai.onnx"):
                raise ModelError(f"{where}: operator domain {node.domain!r} is not supported "
                                 "(only the default ONNX domain)")
            if op not in ONNX_ATTRS:
                raise ModelError(f"{where}: operator {op} is not supported (accelerator: "
                                 f"Conv 3x3 stride 1 pad 0/1; host: {', '.join(HOST_OPS)}, "
                                 f"BatchNormalization folded into a Conv)")
            attrs = _onnx_attrs(node)
            for key in attrs:
                if key not in ONNX_ATTRS[op]:
                    raise ModelError(f"{where}: attribute {key} is not supported")

            def refuse(what: str) -> ModelError:
                return ModelError(f"{where}: {what}")

            def refuse_attr(key: str, why: str) -> ModelError:
                return ModelError(f"{where}: attribute {key}={attrs[key]!r} is not supported "
                                  f"({why})")

            def explicit_pads() -> None:
                # auto_pad VALID is pads 0; SAME_* would depend on the input size
                auto = attrs.pop("auto_pad", "NOTSET")
                if auto == "VALID":
                    attrs["pads"] = [0, 0, 0, 0]
                elif auto != "NOTSET":
                    attrs["auto_pad"] = auto
                    raise refuse_attr("auto_pad", "give explicit pads")

            used = [(i, o) for i, o in enumerate(node.output) if i and o and uses.get(o)]
            if used:
                raise refuse(f"output {used[0][1]!r} (output {used[0][0]}) is used; only the first "
                             f"output of {op} is supported")
            out = node.output[0]
            if op in CONSTANT_OPS:
                if "value" not in attrs:
                    raise refuse("a Constant without a tensor 'value' is not supported")
                consts[out] = numpy_helper.to_array(attrs["value"])
                continue
            ins = tuple(alias.get(i, i) for i in node.input if i)
            if op in PASS_THROUGH:
                if ins[0] in consts:
                    consts[out] = consts[ins[0]]
                alias[out] = ins[0]
                continue

            def constant(slot: int, what: str) -> np.ndarray:
                raw = node.input[slot] if slot < len(node.input) else ""
                tensor = alias.get(raw, raw)
                if tensor not in consts:
                    raise refuse(f"{what} {raw!r} is not an initializer "
                                 "(weights computed at run time are not supported)")
                return _finite(consts[tensor], where, what)

            def data(slots: tuple[int, ...]) -> tuple[str, ...]:
                got = []
                for slot in slots:
                    tensor = ins[slot]
                    if tensor in consts:
                        raise refuse(f"input {slot} {tensor!r} is a constant; the host takes a "
                                     "computed tensor there")
                    if tensor not in produced:
                        raise refuse(f"input {tensor!r} is computed by no earlier node")
                    got.append(tensor)
                return tuple(got)

            def host(op_name: str, inputs: tuple[str, ...], host_attrs: dict,
                     arrays: dict | None = None, reason: str = _HOST_WHY) -> None:
                layers.append(HostLayer(name, op_name, inputs, out, host_attrs, arrays or {},
                                        reason))
                produced.add(out)

            if op == "Conv":
                w = constant(1, "weight")
                if w.ndim != 4:
                    raise refuse(f"weight has shape {w.shape}; expected [K, C, kh, kw] (2-D "
                                 "convolutions only)")
                b = constant(2, "bias") if len(node.input) > 2 and node.input[2] else \
                    np.zeros(w.shape[0])
                if b.shape != (w.shape[0],):
                    raise refuse(f"bias has shape {b.shape}, expected ({w.shape[0]},)")
                if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != w.shape[2:]:
                    raise refuse_attr("kernel_shape", f"the weight is {w.shape[2]}x{w.shape[3]}")
                explicit_pads()
                for key, size in (("strides", 2), ("dilations", 2), ("pads", 4)):
                    if key in attrs and len(attrs[key]) != size:
                        raise refuse_attr(key, "2-D convolutions only")
                group = int(attrs.get("group", 1))
                if w.shape[0] % group:
                    raise refuse_attr("group", f"{w.shape[0]} output channels")
                accel, pad, why = _conv_is_accel(w, attrs)
                (x,) = data((0,))
                if accel:
                    layers.append(AccelLayer(name, w, b, pad, (x,), out,
                                             reason=ACCEL_CONV.format(pad=pad)))
                    produced.add(out)
                else:
                    host("conv", (x,), attrs, {"weight": w, "bias": b},
                         f"{why}: {_HOST_WHY}")
                continue
            if op == "BatchNormalization":
                if int(attrs.get("training_mode", 0)):
                    raise refuse_attr("training_mode", "inference only")
                if int(attrs.get("spatial", 1)) != 1:
                    raise refuse_attr("spatial", "per-channel statistics only")
                scale, bias = constant(1, "scale"), constant(2, "B")
                mean, var = constant(3, "input_mean"), constant(4, "input_var")
                eps = float(attrs.get("epsilon", 1e-5))
                if not (scale.ndim == bias.ndim == mean.ndim == var.ndim == 1):
                    raise refuse("scale, B, mean and var must be 1-D (one value per channel)")
                prev = layers[-1] if layers else None
                conv = (prev is not None and prev.output == ins[0] and uses.get(node.input[0]) == 1
                        and (prev.kind == "accel" and not prev.spatial_relu
                             and prev.weight.ndim == 4 or getattr(prev, "op", "") == "conv"))
                if conv:
                    w = prev.weight if prev.kind == "accel" else prev.arrays["weight"]
                    b = prev.bias if prev.kind == "accel" else prev.arrays["bias"]
                    if scale.shape[0] != w.shape[0]:
                        raise refuse(f"{scale.shape[0]} channels after a Conv of {w.shape[0]}")
                    inv = scale / np.sqrt(var + eps)
                    w, b = w * inv[:, None, None, None], (b - mean) * inv + bias
                    if prev.kind == "accel":
                        prev.weight, prev.bias = w, b
                    else:
                        prev.arrays = {"weight": w, "bias": b}
                    prev.output = out
                    prev.reason += f"; BatchNorm {name!r} folded in"
                    produced.add(out)
                else:
                    host("batchnorm", data((0,)), {"epsilon": eps},
                         {"scale": scale, "bias": bias, "mean": mean, "var": var},
                         "BatchNorm not after a Conv whose only reader it is: runs on the host")
                continue
            if (op == "Relu" and layers and layers[-1].kind == "accel"
                    and layers[-1].output == ins[0] and uses.get(node.input[0], 0) == 1
                    and not layers[-1].spatial_relu):
                layers[-1].spatial_relu = True
                layers[-1].reason += "; ReLU fused"
                alias[out] = ins[0]
                continue
            if op in ("MaxPool", "AveragePool"):
                kernel = attrs.get("kernel_shape")
                if kernel is None or len(kernel) != 2:
                    raise refuse(f"kernel_shape {kernel} is not supported (2-D pooling only)")
                explicit_pads()
                if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
                    raise refuse_attr("dilations", "dilated pooling")
                if len(attrs.get("strides", [1, 1])) != 2 or len(attrs.get("pads", [0] * 4)) != 4:
                    raise refuse("strides and pads must be 2-D")
                pads = attrs.get("pads", [0, 0, 0, 0])
                if pads[0] >= kernel[0] or pads[2] >= kernel[0] or pads[1] >= kernel[1] \
                        or pads[3] >= kernel[1]:
                    raise refuse_attr("pads", f"a pad must be smaller than the kernel {kernel}")
                if int(attrs.get("ceil_mode", 0)) not in (0, 1):
                    raise refuse_attr("ceil_mode", "0 or 1")
                attrs.pop("storage_order", None)            # only orders the Indices output
                host(HOST_OPS[op], data((0,)), attrs, reason="pooling runs on the host")
                continue
            if op == "PRelu":
                slope = constant(1, "slope")
                host("prelu", data((0,)), {}, {"slope": slope}, "activation runs on the host")
                continue
            if op == "Flatten":
                if int(attrs.get("axis", 1)) != 1:
                    raise refuse_attr("axis", "only 1: the batch axis is kept")
                host("flatten", data((0,)), {"axis": 1}, reason="reshaping runs on the host")
                continue
            if op == "Reshape":
                shape = consts.get(ins[1]) if len(ins) > 1 else None
                if shape is None:
                    raise refuse(f"shape {ins[1] if len(ins) > 1 else ''!r} is not a constant")
                host("reshape", data((0,)), attrs, {"shape": np.asarray(shape, dtype=np.int64)},
                     "reshaping runs on the host")
                continue
            if op == "Gemm":
                if int(attrs.get("transA", 0)):
                    raise refuse_attr("transA", "A's rows are the batch")
                B = constant(1, "B")
                if B.ndim != 2:
                    raise refuse(f"B has shape {B.shape}; expected 2-D")
                arrays = {"weight": B}
                if len(node.input) > 2 and node.input[2]:
                    C = constant(2, "C")
                    M = B.shape[0] if int(attrs.get("transB", 0)) else B.shape[1]
                    if C.ndim > 2 or (C.ndim == 2 and C.shape[0] != 1) or \
                            (C.ndim >= 1 and C.shape[-1] not in (1, M)):
                        raise refuse(f"C of shape {list(C.shape)} is not supported (one value or "
                                     f"one per output, [{M}] or [1, {M}])")
                    arrays["bias"] = C
                host("gemm", data((0,)), attrs, arrays, "fully connected runs on the host")
                continue
            if op == "MatMul":
                B = constant(1, "B")
                if B.ndim not in (1, 2):
                    raise refuse(f"B has shape {list(B.shape)}; a constant 1-D or 2-D B only")
                host("matmul", data((0,)), {}, {"weight": B}, "fully connected runs on the host")
                continue
            if op == "Softmax":
                axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
                if axis == 0:
                    raise refuse_attr("axis", "axis 0 is the batch")
                host("softmax", data((0,)), {"axis": axis, "opset": opset},
                     reason="softmax runs on the host")
                continue
            if op in ("Add", "Concat"):
                arrays = {}
                data_ins = []
                for slot, tensor in enumerate(ins):
                    if tensor in consts and op == "Add":
                        arrays["ab"[slot]] = _finite(consts[tensor], where, f"input {slot}")
                    else:
                        data_ins.append(slot)
                if op == "Concat" and int(attrs.get("axis", 0)) == 0:
                    raise refuse_attr("axis", "axis 0 is the batch") if "axis" in attrs else \
                        refuse("axis is required")
                if not data_ins:
                    raise refuse("every input is a constant")
                host(HOST_OPS[op], data(tuple(data_ins)), attrs, arrays,
                     "elementwise ops run on the host")
                continue
            # GlobalAveragePool, GlobalMaxPool, Relu, LeakyRelu
            host(HOST_OPS[op], data((0,)), attrs, reason="runs on the host")
    except ModelError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError) as err:
        # A node or attribute of the wrong form or type (a corrupt or hand-made file).
        raise ModelError(f"{where}: malformed ({type(err).__name__}: {err})") from None
    if require_accel and not any(layer.kind == "accel" for layer in layers):
        raise ModelError(f"{path}: no 3x3 stride-1 convolution for the accelerator")
    outputs = tuple(alias.get(o.name, o.name) for o in graph.output)
    for o in outputs:
        if o not in produced:
            raise ModelError(f"{path}: graph output {o!r} is computed by no supported node")
    return Model(layers, inputs[0].name, input_shape, outputs=outputs)


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
            layers.append(AccelLayer(prefix, w, b, pad, (previous,), prefix,
                                     reason=ACCEL_CONV.format(pad=pad) + " (assumed: a state "
                                     "dict has no stride or padding)"))
        elif w.ndim == 2:
            layers.append(HostLayer(prefix, "gemm", (previous,), prefix, {"transB": 1},
                                    {"weight": w, "bias": b},
                                    "fully connected runs on the host"))
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


#: Array names an accelerator layer may have in the model ``.npz``, ``<layer>.<field>``.
NPZ_FIELDS = ("weight", "bias", "in_scale", "out_scale", "pad")


def _scalar(arr: np.ndarray, where: str, what: str) -> float:
    arr = np.asarray(arr)
    if arr.shape not in ((), (1,)):
        raise ModelError(f"{where}: {what} must be a scalar, got shape {arr.shape}")
    return float(_finite(arr.reshape(()), where, what))


def _check_graph(graph, graph_file: Path) -> None:
    """Refuse a ``NAME.json`` that is not a :data:`GRAPH_FORMAT` graph of the right types."""
    def bad(what: str) -> ModelError:
        return ModelError(f"{graph_file}: {what}")

    def strings(value) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    if not isinstance(graph, dict):
        raise bad(f"not a {GRAPH_FORMAT} graph (a JSON {type(graph).__name__}, not an object)")
    if graph.get("format") != GRAPH_FORMAT or not isinstance(graph.get("layers"), list):
        raise bad(f"not a {GRAPH_FORMAT} graph (format {graph.get('format')!r})")
    inp = graph.get("input", {})
    if not isinstance(inp, dict):
        raise bad("'input' is not an object")
    shape = inp.get("shape")
    if shape is not None and not (isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise bad(f"input shape {shape!r} is not a list of positive integers")
    scale = inp.get("scale")
    if scale is not None and not (isinstance(scale, (int, float)) and not isinstance(scale, bool)
                                  and math.isfinite(scale) and scale > 0):
        raise bad(f"input scale {scale!r} is not a positive number")
    if not isinstance(inp.get("name", "input"), str):
        raise bad("input name is not a string")
    if not isinstance(graph.get("meta", {}), dict):
        raise bad("'meta' is not an object")
    if not strings(graph.get("outputs", [])):
        raise bad("'outputs' is not a list of tensor names")
    seen = set()
    for index, spec in enumerate(graph["layers"]):
        if not isinstance(spec, dict):
            raise bad(f"layer {index} is a JSON {type(spec).__name__}, not an object")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"layer {index}: name {name!r} is not a non-empty string")
        if name in seen:
            raise bad(f"layer {name!r}: two layers have this name")
        seen.add(name)
        if "inputs" in spec and not strings(spec["inputs"]):
            raise bad(f"layer {name!r}: inputs {spec['inputs']!r} is not a list of tensor names")
        if not isinstance(spec.get("output", name), str):
            raise bad(f"layer {name!r}: output {spec['output']!r} is not a tensor name")
        if not isinstance(spec.get("attrs", {}), dict):
            raise bad(f"layer {name!r}: attrs is not an object")
        for key in ("winograd_relu", "spatial_relu"):
            if not isinstance(spec.get(key, False), bool):
                raise bad(f"layer {name!r}: {key} {spec[key]!r} is not true or false")


def load_npz(path: str | Path) -> Model:
    """Read a model written by :func:`save_model` (or a bare packer ``.npz``).

    Raises
    ------
    ModelError
        Naming the file, the layer and the problem: an array not named ``<layer>.<field>``
        with a field of :data:`NPZ_FIELDS`, a layer without weight, a kernel other than 3×3,
        NaN/Inf, a bias of the wrong shape, a scale that is not a positive scalar, a pad other
        than 0 or 1.
    """
    path = Path(path)
    arrays = _read_npz(path)
    if not arrays:
        raise ModelError(f"{path}: the archive holds no arrays")
    fields: dict[str, dict] = {}
    for key, arr in arrays.items():
        name, dot, leaf = key.rpartition(".")
        if not dot or not name or leaf not in NPZ_FIELDS:
            raise ModelError(f"{path}: array {key!r} is not <layer>.<field> with field one of "
                             f"{', '.join(NPZ_FIELDS)}")
        fields.setdefault(name, {})[leaf] = arr
    graph_file = _graph_path(path)
    if not graph_file.is_file():
        specs = [{"name": name, "kind": "accel"} for name in fields]
        graph = {"layers": specs}
    else:
        try:
            graph = json.loads(graph_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:   # ValueError: JSON or UTF-8 decoding
            raise ModelError(f"{graph_file}: not readable JSON ({err})") from None
        except RecursionError:
            raise ModelError(f"{graph_file}: not readable JSON (nested too deeply)") from None
        _check_graph(graph, graph_file)
    host_file = _host_path(path)
    host_arrays = _read_npz(host_file) if host_file.is_file() else {}
    layers: list = []
    previous = "input"
    for spec in graph["layers"]:
        name = spec["name"]
        ins = tuple(spec.get("inputs", (previous,)))
        out = spec.get("output", name)
        if spec.get("kind") == "accel":
            where = f"{path}: layer {name!r}"
            got = fields.get(name)
            if got is None or "weight" not in got:
                have = f"has {', '.join(sorted(got))} but" if got else "the graph names it but"
                raise ModelError(f"{where}: {have} no weight array ({name}.weight)")
            w = _finite(got["weight"], where, "weight")
            K = w.shape[0] if w.ndim == 4 else w.shape[1] if w.ndim == 3 else -1
            if w.ndim == 4 and w.shape[2:] != (3, 3):
                raise ModelError(f"{where}: kernel {w.shape[2]}x{w.shape[3]} is not supported "
                                 "(the accelerator runs 3x3, stride 1; export to ONNX for "
                                 "host convolutions)")
            coords = [(t + 2) ** 2 for t in SUPPORTED_TILES]
            if w.ndim not in (3, 4) or (w.ndim == 3 and w.shape[0] not in coords):
                raise ModelError(f"{where}: weight shape {w.shape} is neither spatial "
                                 "[K, C, 3, 3] nor Winograd-domain [n*n, K, C] with n*n in "
                                 f"{', '.join(map(str, coords))}")
            b = _finite(got["bias"], where, "bias") if "bias" in got else np.zeros(K)
            if b.shape != (K,):
                raise ModelError(f"{where}: bias has shape {b.shape}, expected ({K},)")
            scale = {k: _scalar(got[k], where, k) for k in ("in_scale", "out_scale") if k in got}
            for k, value in scale.items():
                if not value > 0:
                    raise ModelError(f"{where}: {k} = {value} must be > 0")
            pad = _scalar(got["pad"], where, "pad") if "pad" in got else spec.get("pad", 1)
            if pad not in (0, 1):
                raise ModelError(f"{where}: pad = {pad} is not supported (0 or 1)")
            pad = int(pad)
            layers.append(AccelLayer(name, w, b, pad, ins, out,
                                     bool(spec.get("winograd_relu", False)),
                                     bool(spec.get("spatial_relu", False)),
                                     scale.get("in_scale"), scale.get("out_scale"),
                                     ACCEL_CONV.format(pad=pad)))
        elif spec.get("kind") == "host":
            if spec.get("op") not in HOST_OPS.values():
                raise ModelError(f"{graph_file}: layer {name!r}: host op {spec.get('op')!r} is "
                                 f"not one of {', '.join(HOST_OPS.values())}")
            own = {k.rpartition(".")[2]: v for k, v in host_arrays.items()
                   if k.rpartition(".")[0] == name}
            layers.append(HostLayer(name, spec["op"], ins, out, dict(spec.get("attrs", {})),
                                    own, spec.get("reason", "runs on the host")))
        else:
            raise ModelError(f"{graph_file}: layer {name!r}: kind {spec.get('kind')!r} is not "
                             "accel or host")
        previous = out
    inp = graph.get("input", {})
    shape = inp.get("shape")
    return Model(layers, inp.get("name", "input"), tuple(shape) if shape else None,
                 inp.get("scale"), graph.get("meta", {}), tuple(graph.get("outputs", ())))


def load_model(path: str | Path) -> Model:
    """Import by extension: ``.onnx``, ``.pt``/``.pth`` (state dict) or ``.npz``.

    The one loading path of the packer and the driver.

    Raises
    ------
    ModelError
        Naming the file, the node or layer and the problem.
    """
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
            if layer.reason:
                spec["reason"] = layer.reason
            for key, arr in layer.arrays.items():
                host[f"{layer.name}.{key}"] = np.asarray(arr, dtype=np.float32)
        specs.append(spec)
    graph = {"format": GRAPH_FORMAT,
             "input": {"name": model.input_name,
                       "shape": list(model.input_shape) if model.input_shape else None,
                       "scale": model.input_scale},
             "layers": specs, "meta": model.meta}
    if model.outputs:
        graph["outputs"] = list(model.outputs)
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
