"""Host operators: what the host computes in NumPy, with ONNX semantics, in float.

Every operator here takes and returns **batched** arrays (axis 0 is the batch), exactly as the
ONNX operator of the same name does, so a graph imported by :mod:`sw.model_import` can be
checked against onnxruntime operator by operator (tests/test_host_ops.py). The driver runs one
sample at a time and adds a batch axis of 1 around each call (:func:`sw.driver.host_op`).

Host op names (:data:`sw.model_import.HOST_OPS` maps ONNX names to them) and the attributes
they honour (ONNX names and defaults):

=================  =======================================================================
``conv``           any 2-D convolution: ``strides``, ``pads``, ``dilations``, ``group``
``maxpool``        ``kernel_shape``, ``strides`` (default 1), ``pads``, ``ceil_mode``
``avgpool``        as ``maxpool`` plus ``count_include_pad``
``global_avgpool`` mean over H, W; ``global_maxpool`` max over H, W
``relu``           max(x, 0)
``leakyrelu``      ``alpha`` (default 0.01)
``prelu``          ``slope`` array, broadcast as ONNX does (per channel ``[C, 1, 1]`` or scalar)
``batchnorm``      ``epsilon``; arrays ``scale``, ``bias``, ``mean``, ``var`` (a BatchNorm that
                   could not be folded into the convolution before it)
``flatten``        ``axis`` 1 only (the batch axis is kept)
``reshape``        the ``shape`` array (``0`` copies a dimension, ``-1`` is inferred)
``gemm``           ``alpha``, ``beta``, ``transB``; ``transA`` 0 only (the batch is A's rows)
``matmul``         ``x @ weight`` with a constant 2-D ``weight``
``softmax``        ``axis``; ``opset`` (below 13 the input is coerced to 2-D at ``axis``)
``add``            two tensors, or a tensor and a constant ``a``/``b`` (NumPy broadcasting)
``concat``         ``axis`` (not 0)
=================  =======================================================================

Anything else is refused by :mod:`sw.model_import` when the model is read; an input that breaks
an operator's contract at run time (for example a Reshape that would move samples across the
batch axis) raises :class:`HostOpError` naming the layer and the op.

:func:`run_float` runs a whole :class:`~sw.model_import.Model` in float, branches included (a
tensor read by several layers, Add and Concat of two branches): the reference the quantised
accelerator path is measured against. :func:`chain_problem` says why a model is not a single
chain, which :mod:`sw.driver` requires.
"""

from __future__ import annotations

import math

import numpy as np

from sw import golden, quant

__all__ = ["HostOpError", "HOST_OP_NAMES", "evaluate", "conv2d", "pool2d", "pool_output_size",
           "softmax", "accel_float", "run_float", "chain_problem", "calibrate"]

#: Every host op :func:`evaluate` runs.
HOST_OP_NAMES = ("conv", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "relu",
                 "leakyrelu", "prelu", "batchnorm", "flatten", "reshape", "gemm", "matmul",
                 "softmax", "add", "concat")


class HostOpError(ValueError):
    """A host layer cannot be computed; the message names the layer and the op."""


def _pair(value, default) -> tuple[int, int]:
    if value is None:
        return default
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{list(value)} has {len(value)} entries, expected 2 (2-D only)")
    return value


def _pads(value) -> tuple[int, int, int, int]:
    """ONNX ``pads`` ``[top, left, bottom, right]``."""
    if value is None:
        return (0, 0, 0, 0)
    value = tuple(int(v) for v in value)
    if len(value) != 4:
        raise ValueError(f"pads {list(value)} has {len(value)} entries, expected 4 (2-D only)")
    return value


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group: int = 1) -> np.ndarray:
    """ONNX Conv on ``x`` ``[N, C, H, W]`` with ``weight`` ``[K, C/group, kh, kw]``, in float64.

    Parameters
    ----------
    x : ndarray
        Input, batch first.
    weight, bias : ndarray
        Kernel and optional per-output-channel bias ``[K]``.
    strides, pads, dilations, group
        As the ONNX attributes (``pads`` is ``[top, left, bottom, right]``).

    Returns
    -------
    ndarray
        ``[N, K, out_h, out_w]``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    if C != Cg * group or K % group:
        raise ValueError(f"input has {C} channels; weight {list(w.shape)} with group {group} "
                         f"needs {Cg * group}")
    t, left, b, r = pads
    sh, sw = strides
    dh, dw = dilations
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if xp.shape[2] < eh or xp.shape[3] < ew:
        raise ValueError(f"padded input {xp.shape[2]}x{xp.shape[3]} is smaller than the "
                         f"{eh}x{ew} kernel")
    win = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]                    # [N, C, oh, ow, kh, kw]
    oh, ow = win.shape[2:4]
    win = win.reshape(N, group, Cg, oh, ow, kh, kw)
    wg = w.reshape(group, K // group, Cg, kh, kw)
    y = np.einsum("ngchwij,gkcij->ngkhw", win, wg, optimize=True).reshape(N, K, oh, ow)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y


def pool_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                     ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis (ONNX, as PyTorch).

    With ``ceil_mode`` the division rounds up, but a window that would start in the end
    padding (past ``size + pad_begin``) is dropped.
    """
    span = size + pad_begin + pad_end - kernel
    if span < 0:
        raise ValueError(f"input {size} with pads {pad_begin}+{pad_end} is smaller than the "
                         f"kernel {kernel}")
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def pool2d(x: np.ndarray, mode: str, kernel_shape, strides=None, pads=None,
           ceil_mode: int = 0, count_include_pad: int = 0) -> np.ndarray:
    """ONNX MaxPool (``mode="max"``) or AveragePool (``"avg"``) on ``[N, C, H, W]``.

    Windows are clipped to the input (max, and average without ``count_include_pad``) or to the
    padded input (average with ``count_include_pad``: the divisor counts the explicit padding but
    not the part of a ``ceil_mode`` window that hangs past it).
    """
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    kh, kw = _pair(kernel_shape, None)
    sh, sw = _pair(strides, (1, 1))
    t, left, b, r = _pads(pads)
    if max(t, b) >= kh or max(left, r) >= kw:
        raise ValueError(f"pads {[t, left, b, r]} must be smaller than the kernel {[kh, kw]}")
    oh = pool_output_size(H, kh, sh, t, b, bool(ceil_mode))
    ow = pool_output_size(W, kw, sw, left, r, bool(ceil_mode))
    y = np.empty((N, C, oh, ow))
    for i in range(oh):
        h0 = i * sh - t
        h1 = min(h0 + kh, H + b)
        for j in range(ow):
            w0 = j * sw - left
            w1 = min(w0 + kw, W + r)
            block = x[:, :, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
            if mode == "max":
                y[:, :, i, j] = block.max(axis=(2, 3))
            else:
                count = ((h1 - h0) * (w1 - w0) if count_include_pad
                         else block.shape[2] * block.shape[3])
                y[:, :, i, j] = block.sum(axis=(2, 3)) / count
    return y


def softmax(x: np.ndarray, axis: int, opset: int = 13) -> np.ndarray:
    """ONNX Softmax: along ``axis`` (opset 13+), or over all axes from ``axis`` on (before)."""
    x = np.asarray(x, dtype=np.float64)
    axis = axis + x.ndim if axis < 0 else axis
    if opset >= 13:
        axes = (axis,)
    else:
        axes = tuple(range(axis, x.ndim))
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def _reshape(x: np.ndarray, shape, allowzero: int) -> np.ndarray:
    target = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return x.reshape(target)


def evaluate(layer, inputs: list[np.ndarray]) -> np.ndarray:
    """Run host ``layer`` (a :class:`sw.model_import.HostLayer`) on batched ``inputs``.

    Parameters
    ----------
    layer : HostLayer
        The op, its ONNX attributes and constant arrays.
    inputs : list of ndarray
        One array per name in ``layer.inputs``, batch axis first.

    Returns
    -------
    ndarray
        The output, batch axis first, float64.

    Raises
    ------
    HostOpError
        The op is unknown or its inputs break its contract; names the layer and the op.
    """
    try:
        return _evaluate(layer, [np.asarray(v, dtype=np.float64) for v in inputs])
    except HostOpError:
        raise
    except (ValueError, IndexError, KeyError) as err:
        raise HostOpError(f"layer {layer.name} ({layer.op}): {err}") from None


def _evaluate(layer, xs: list[np.ndarray]) -> np.ndarray:
    op, attrs, arrays = layer.op, layer.attrs, layer.arrays
    x = xs[0] if xs else None
    if op == "conv":
        return conv2d(x, arrays["weight"], arrays.get("bias"),
                      _pair(attrs.get("strides"), (1, 1)), _pads(attrs.get("pads")),
                      _pair(attrs.get("dilations"), (1, 1)), int(attrs.get("group", 1)))
    if op in ("maxpool", "avgpool"):
        return pool2d(x, op[:3], attrs.get("kernel_shape"), attrs.get("strides"),
                      attrs.get("pads"), int(attrs.get("ceil_mode", 0)),
                      int(attrs.get("count_include_pad", 0)))
    if op == "global_avgpool":
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    if op == "global_maxpool":
        return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
    if op == "relu":
        return np.maximum(x, 0)
    if op == "leakyrelu":
        return np.where(x < 0, float(attrs.get("alpha", 0.01)) * x, x)
    if op == "prelu":
        slope = np.asarray(arrays["slope"], dtype=np.float64)
        if slope.ndim > x.ndim - 1 and slope.shape[0] != 1:
            raise ValueError(f"slope of shape {list(slope.shape)} would broadcast over the "
                             "batch axis")
        return np.where(x < 0, slope * x, x)
    if op == "batchnorm":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = arrays["scale"] / np.sqrt(arrays["var"] + float(attrs.get("epsilon", 1e-5)))
        return (x - arrays["mean"].reshape(shape)) * inv.reshape(shape) \
            + arrays["bias"].reshape(shape)
    if op == "flatten":
        if int(attrs.get("axis", 1)) != 1:
            raise ValueError(f"axis {attrs['axis']} is not supported (only 1)")
        return x.reshape(x.shape[0], -1)
    if op == "reshape":
        y = _reshape(x, arrays["shape"], int(attrs.get("allowzero", 0)))
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"shape {np.asarray(arrays['shape']).tolist()} turns the batch "
                             f"axis of {list(x.shape)} into {list(y.shape)}; the host keeps "
                             "axis 0 as the batch")
        return y
    if op == "gemm":
        if int(attrs.get("transA", 0)):
            raise ValueError("transA 1 is not supported (the batch is A's rows)")
        if x.ndim != 2:
            raise ValueError(f"A has shape {list(x.shape)}; Gemm takes a 2-D A")
        B = np.asarray(arrays["weight"], dtype=np.float64)
        B = B.T if int(attrs.get("transB", 0)) else B
        y = float(attrs.get("alpha", 1.0)) * (x @ B)
        if "bias" in arrays:
            y = y + float(attrs.get("beta", 1.0)) * np.asarray(arrays["bias"], dtype=np.float64)
        return y
    if op == "matmul":
        return np.matmul(x, np.asarray(arrays["weight"], dtype=np.float64))
    if op == "softmax":
        opset = int(attrs.get("opset", 13))
        axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
        if (axis + x.ndim if axis < 0 else axis) == 0:
            raise ValueError(f"axis {axis} is the batch axis")
        return softmax(x, axis, opset)
    if op == "add":
        operands = list(xs)
        if "a" in arrays:
            operands.insert(0, arrays["a"])
        if "b" in arrays:
            operands.append(arrays["b"])
        if len(operands) != 2:
            raise ValueError(f"takes 2 operands, got {len(operands)}")
        y = np.asarray(operands[0], dtype=np.float64) + np.asarray(operands[1], dtype=np.float64)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"operands {[list(np.shape(o)) for o in operands]} broadcast over "
                             "the batch axis")
        return y
    if op == "concat":
        axis = int(attrs["axis"])
        if (axis + x.ndim if axis < 0 else axis) == 0:
            raise ValueError(f"axis {axis} is the batch axis")
        return np.concatenate(xs, axis=axis)
    raise HostOpError(f"layer {layer.name}: host op {op!r} is not supported "
                      f"(one of {', '.join(HOST_OP_NAMES)})")


def accel_float(layer, x: np.ndarray, tile: int = 2) -> np.ndarray:
    """An accelerator layer in float on batched ``x`` ``[N, C, H, W]``: no quantisation.

    Spatial weights without Winograd ReLU are an exact convolution; Winograd-domain weights, or
    Winograd ReLU (which only exists in that domain), run the float Winograd layer of F(tile, 3).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(layer.weight, dtype=np.float64)
    if w.ndim == 4 and not layer.winograd_relu:
        y = conv2d(x, w, layer.bias, pads=(layer.pad,) * 4)
        return np.maximum(y, 0) if layer.spatial_relu else y
    U = w if w.ndim == 3 else quant.winograd_weights(w, tile)
    m = int(round(math.sqrt(U.shape[0]))) - 2
    return np.stack([golden.float_winograd_conv(s, U, layer.bias, m, layer.pad,
                                                layer.winograd_relu, layer.spatial_relu)
                     for s in x])


def run_float(model, x: np.ndarray, tile: int = 2, *, all_tensors: bool = False):
    """Run ``model`` in float on batched input ``x``; branches are computed as the graph says.

    Parameters
    ----------
    model : sw.model_import.Model
        Layers in execution order; each reads the tensors its ``inputs`` name.
    x : ndarray
        ``[N, C, H, W]``, the model's input.
    tile : int
        Winograd output tile for layers whose weights are spatial but use Winograd ReLU.
    all_tensors : bool
        Return every tensor by name instead of the outputs.

    Returns
    -------
    ndarray or dict
        The model's output (its only output, or the last layer's), or ``{name: array}`` for
        several outputs or with ``all_tensors``.
    """
    env = {model.input_name: np.asarray(x, dtype=np.float64)}
    for layer in model.layers:
        missing = [name for name in layer.inputs if name not in env]
        if missing:
            raise HostOpError(f"layer {layer.name}: input {missing[0]!r} is computed by no "
                              "earlier layer")
        ins = [env[name] for name in layer.inputs]
        if layer.kind == "accel":
            env[layer.output] = accel_float(layer, ins[0], tile)
        else:
            env[layer.output] = evaluate(layer, ins)
    if all_tensors:
        return env
    outputs = list(getattr(model, "outputs", ()) or [model.layers[-1].output])
    if len(outputs) == 1:
        return env[outputs[0]]
    return {name: env[name] for name in outputs}


def chain_problem(model) -> str | None:
    """Why ``model`` is not one chain (each layer reading only the previous layer's output, the
    last layer's output the only model output), or ``None`` when it is.

    The driver runs a chain: it keeps one tensor per image between layers.
    """
    previous = model.input_name
    for layer in model.layers:
        if tuple(layer.inputs) != (previous,):
            others = [name for name in layer.inputs if name != previous]
            what = (f"reads {others[0]!r}, not only the previous layer's output {previous!r}"
                    if others else f"reads {len(layer.inputs)} tensors")
            return (f"layer {layer.name}: {what} (a branch: the driver runs a chain of layers, "
                    "each reading the one before)")
        previous = layer.output
    outputs = [name for name in (getattr(model, "outputs", ()) or ()) if name != previous]
    if outputs:
        return (f"model output {outputs[0]!r} is not the last layer's output {previous!r} "
                "(the driver returns one output, the last layer's)")
    return None


def calibrate(model, images: np.ndarray, act_bits: int = 8, tile: int = 2,
              headroom: float = 1.0) -> None:
    """Set ``in_scale`` and ``out_scale`` of every accelerator layer from float activations.

    Each scale is the largest magnitude ``images`` reach at that tensor, times ``headroom``,
    over ``2**(act_bits-1) - 1`` (as :func:`sw.train.export` does), so an import without
    calibration (ONNX, PyTorch) can be quantised. Changes ``model`` in place.
    """
    env = run_float(model, images, tile, all_tensors=True)
    top = (1 << (act_bits - 1)) - 1

    def scale(name: str) -> float:
        return max(float(np.abs(env[name]).max()) * headroom, 1e-6) / top

    for layer in model.accel_layers:
        layer.in_scale = scale(layer.inputs[0])
        layer.out_scale = scale(layer.output)
    if model.input_scale is None:
        model.input_scale = scale(model.input_name)
