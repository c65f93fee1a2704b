"""Every host op against onnxruntime: small ONNX graphs built with onnx.helper, imported by
sw.model_import and run in float by sw.host_ops, compared with onnxruntime's outputs; and every
op or attribute form the host does not compute exactly refused with its exact error text."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sw import host_ops, model_import
from sw.model_import import ModelError

ort = pytest.importorskip("onnxruntime")

SEED = 1414
#: float64 host ops against onnxruntime's float32: relative to the output's magnitude.
RTOL = 1e-5


def _rng(case: str) -> np.random.Generator:
    return np.random.default_rng([SEED, sum(map(ord, case))])


def _init(name: str, arr) -> onnx.TensorProto:
    arr = np.asarray(arr)
    return numpy_helper.from_array(arr.astype(np.float32 if arr.dtype.kind == "f" else arr.dtype),
                                   name)


def save_graph(path, nodes, inits, in_shape, outputs=("y",), opset=17):
    """An ONNX model with one input ``x`` of ``in_shape`` and the named outputs."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def against_onnxruntime(path, x: np.ndarray) -> model_import.Model:
    """Import ``path``, run it with sw.host_ops and onnxruntime, and compare every output."""
    model = model_import.load_onnx(path, require_accel=False)
    ours = host_ops.run_float(model, x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    refs = sess.run(None, {"x": x.astype(np.float32)})
    if not isinstance(ours, dict):
        ours = {names[0]: ours}
    assert sorted(ours) == sorted(names)
    for name, ref in zip(names, refs):
        got = ours[name]
        assert got.shape == ref.shape, f"{name}: shape {got.shape}, onnxruntime {ref.shape}"
        scale = max(float(np.abs(ref).max()), 1.0)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * scale, err_msg=name)
    return model


# ------------------------------------------------------------------------ the op matrix
def _gemm(trans_b=0, alpha=1.0, beta=1.0, c_shape=(5,), n=2):
    def build(rng):
        B = rng.standard_normal((5, 6) if trans_b else (6, 5))
        ins, inits = ["x", "B"], [_init("B", B)]
        if c_shape is not None:
            ins.append("C")
            inits.append(_init("C", rng.standard_normal(c_shape)))
        attrs = {"transB": trans_b}
        if alpha != 1.0:
            attrs["alpha"] = alpha
        if beta != 1.0:
            attrs["beta"] = beta
        return [helper.make_node("Gemm", ins, ["y"], name="fc", **attrs)], inits, (n, 6)
    return build


def _single(op, in_shape, inits=(), **attrs):
    def build(rng):
        made = [_init(name, value(rng) if callable(value) else value) for name, value in inits]
        return ([helper.make_node(op, ["x", *[name for name, _ in inits]], ["y"], name="n",
                                  **attrs)], made, in_shape)
    return build


def _pool(op, kernel, strides=None, pads=None, ceil_mode=None, shape=(1, 3, 7, 7), **extra):
    attrs = {"kernel_shape": list(kernel), **extra}
    for key, value in (("strides", strides), ("pads", pads), ("ceil_mode", ceil_mode)):
        if value is not None:
            attrs[key] = value
    return _single(op, shape, **attrs)


def _conv(kernel, strides=(1, 1), pads=(0, 0, 0, 0), group=1, dilations=(1, 1), K=4, C=3,
          shape=(1, 3, 9, 9), bias=True):
    def build(rng):
        w = rng.standard_normal((K, C // group, *kernel))
        inits = [_init("w", w)]
        ins = ["x", "w"]
        if bias:
            inits.append(_init("b", rng.standard_normal(K)))
            ins.append("b")
        node = helper.make_node("Conv", ins, ["y"], name="conv", kernel_shape=list(kernel),
                                strides=list(strides), pads=list(pads), group=group,
                                dilations=list(dilations))
        return [node], inits, shape
    return build


def _bn_inits(rng, C, prefix="bn"):
    return [_init(f"{prefix}.s", rng.uniform(0.5, 1.5, C)), _init(f"{prefix}.b",
                                                                    rng.standard_normal(C)),
            _init(f"{prefix}.m", rng.standard_normal(C)), _init(f"{prefix}.v",
                                                                rng.uniform(0.5, 2, C))]


def _conv_bn(kernel, pads, relu=False):
    def build(rng):
        nodes, inits, shape = _conv(kernel, pads=pads, K=5, shape=(1, 3, 8, 8))(rng)
        nodes[0].output[0] = "c"
        nodes.append(helper.make_node("BatchNormalization", ["c", "bn.s", "bn.b", "bn.m", "bn.v"],
                                      ["r" if relu else "y"], name="bn", epsilon=1e-3))
        if relu:
            nodes.append(helper.make_node("Relu", ["r"], ["y"], name="relu"))
        return nodes, inits + _bn_inits(rng, 5), shape
    return build


def _bn_alone(rng):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("BatchNormalization", ["r", "bn.s", "bn.b", "bn.m", "bn.v"], ["y"],
                              name="bn")]
    return nodes, _bn_inits(rng, 3), (2, 3, 4, 4)


def _flatten_then(op):
    def build(rng):
        nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=1)]
        if op == "MatMul":
            nodes.append(helper.make_node("MatMul", ["f", "W"], ["y"], name="mm"))
            return nodes, [_init("W", rng.standard_normal((48, 7)))], (2, 3, 4, 4)
        nodes.append(helper.make_node("Gemm", ["f", "W", "c"], ["y"], name="fc", transB=1,
                                      alpha=0.5, beta=2.0))
        return nodes, [_init("W", rng.standard_normal((7, 48))),
                       _init("c", rng.standard_normal((1, 7)))], (2, 3, 4, 4)
    return build


def _reshape(shape):
    def build(rng):
        node = helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")
        return [node], [numpy_helper.from_array(np.array(shape, np.int64), "s")], (1, 3, 4, 4)
    return build


def _trunk(rng, K=4):
    """A 3x3 pad-1 conv (the accelerator's) with a fused Relu: the trunk of the branch graphs."""
    return ([helper.make_node("Conv", ["x", "tw", "tb"], ["t"], name="trunk", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["t"], ["tr"], name="trunk_relu")],
            [_init("tw", rng.standard_normal((K, 2, 3, 3))), _init("tb", rng.standard_normal(K))])


def _two_heads(rng):
    nodes, inits = _trunk(rng)
    nodes += [helper.make_node("Flatten", ["tr"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "h1w"], ["y1"], name="head1", transB=1),
              helper.make_node("Gemm", ["f", "h2w", "h2b"], ["y2"], name="head2")]
    inits += [_init("h1w", rng.standard_normal((3, 64))),
              _init("h2w", rng.standard_normal((64, 5))),
              _init("h2b", rng.standard_normal(5))]
    return nodes, inits, (1, 2, 4, 4), ("y1", "y2")


def _join(op):
    def build(rng):
        nodes, inits = _trunk(rng)
        nodes += [helper.make_node("Conv", ["tr", "aw"], ["a"], name="branch_a",
                                   kernel_shape=[1, 1]),
                  helper.make_node("Conv", ["tr", "bw"], ["b"], name="branch_b",
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node(op, ["a", "b"], ["y"], name="join",
                                   **({"axis": 1} if op == "Concat" else {}))]
        inits += [_init("aw", rng.standard_normal((4, 4, 1, 1))),
                  _init("bw", rng.standard_normal((4, 4, 3, 3)))]
        return nodes, inits, (2, 2, 6, 6)
    return build


def _residual(rng):
    """x -> conv -> relu -> conv, + the relu's output (a tensor read by two nodes)."""
    nodes, inits = _trunk(rng)
    nodes += [helper.make_node("Conv", ["tr", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                               pads=[1, 1, 1, 1]),
              helper.make_node("Add", ["c2", "tr"], ["s"], name="add"),
              helper.make_node("Add", ["s", "k"], ["y"], name="add_const")]
    inits += [_init("w2", rng.standard_normal((4, 4, 3, 3))),
              _init("k", rng.standard_normal((4, 1, 1)))]
    return nodes, inits, (1, 2, 5, 5)


OPS = {
    "Gemm transB=0": _gemm(0),
    "Gemm transB=1": _gemm(1),
    "Gemm alpha beta transB=0": _gemm(0, alpha=0.7, beta=-1.5),
    "Gemm alpha beta transB=1": _gemm(1, alpha=2.5, beta=0.25),
    "Gemm C [1, M]": _gemm(1, c_shape=(1, 5)),
    "Gemm C scalar": _gemm(0, beta=3.0, c_shape=(1,)),
    "Gemm no C": _gemm(1, alpha=0.5, c_shape=None),
    "Flatten + Gemm": _flatten_then("Gemm"),
    "Flatten + MatMul": _flatten_then("MatMul"),
    "MatMul 2-D": _single("MatMul", (3, 6), [("W", lambda r: r.standard_normal((6, 4)))]),
    "MatMul 4-D": _single("MatMul", (1, 2, 3, 6), [("W", lambda r: r.standard_normal((6, 4)))]),
    "MaxPool 2x2 s2": _pool("MaxPool", (2, 2), [2, 2], shape=(2, 3, 8, 8)),
    "MaxPool 2x2 s2 odd floor": _pool("MaxPool", (2, 2), [2, 2]),
    "MaxPool 2x2 s2 ceil": _pool("MaxPool", (2, 2), [2, 2], ceil_mode=1),
    "MaxPool 3x3 s2 ceil": _pool("MaxPool", (3, 3), [2, 2], ceil_mode=1, shape=(1, 2, 8, 8)),
    "MaxPool 3x3 s2 pads ceil": _pool("MaxPool", (3, 3), [2, 2], [1, 1, 1, 1], 1,
                                      shape=(1, 2, 8, 8)),
    "MaxPool 2x2 s2 pads ceil, last window dropped": _pool("MaxPool", (2, 2), [2, 2],
                                                           [1, 1, 1, 1], 1, shape=(1, 2, 5, 5)),
    "MaxPool 3x3 s1 pads": _pool("MaxPool", (3, 3), None, [1, 1, 1, 1]),
    "MaxPool 3x2 s(2,1) asym pads": _pool("MaxPool", (3, 2), [2, 1], [0, 1, 2, 0]),
    "MaxPool default strides": _pool("MaxPool", (2, 2)),
    "MaxPool auto_pad VALID": _pool("MaxPool", (2, 2), [2, 2], auto_pad="VALID"),
    "AveragePool 2x2 s2": _pool("AveragePool", (2, 2), [2, 2], shape=(2, 3, 8, 8)),
    "AveragePool 2x2 s2 ceil": _pool("AveragePool", (2, 2), [2, 2], ceil_mode=1),
    "AveragePool 3x3 s2 pads": _pool("AveragePool", (3, 3), [2, 2], [1, 1, 1, 1]),
    "AveragePool 3x3 s2 pads ceil": _pool("AveragePool", (3, 3), [2, 2], [1, 1, 1, 1], 1,
                                          shape=(1, 2, 8, 8)),
    "AveragePool count_include_pad": _pool("AveragePool", (3, 3), [2, 2], [1, 1, 1, 1],
                                           count_include_pad=1),
    "AveragePool count_include_pad ceil": _pool("AveragePool", (3, 3), [2, 2], [1, 1, 1, 1], 1,
                                                shape=(1, 2, 8, 8), count_include_pad=1),
    "AveragePool 2x2 s2 pads ceil, last window dropped": _pool(
        "AveragePool", (2, 2), [2, 2], [1, 1, 1, 1], 1, shape=(1, 2, 5, 5)),
    "AveragePool count_include_pad ceil, last window dropped": _pool(
        "AveragePool", (2, 2), [2, 2], [1, 1, 1, 1], 1, shape=(1, 2, 5, 5), count_include_pad=1),
    "AveragePool count_include_pad ceil, window past the pad": _pool(
        "AveragePool", (3, 3), [2, 2], [1, 1, 1, 1], 1, shape=(1, 2, 6, 6), count_include_pad=1),
    "AveragePool asym pads": _pool("AveragePool", (2, 3), [1, 2], [1, 0, 0, 2]),
    "GlobalAveragePool": _single("GlobalAveragePool", (2, 3, 5, 4)),
    "GlobalMaxPool": _single("GlobalMaxPool", (2, 3, 5, 4)),
    "Relu": _single("Relu", (2, 3, 4, 4)),
    "LeakyRelu default": _single("LeakyRelu", (2, 3, 4, 4)),
    "LeakyRelu alpha": _single("LeakyRelu", (2, 3, 4, 4), alpha=0.2),
    "PRelu per channel": _single("PRelu", (2, 3, 4, 4),
                                 [("slope", lambda r: r.uniform(0, 0.5, (3, 1, 1)))]),
    "PRelu scalar": _single("PRelu", (2, 3, 4, 4), [("slope", np.array([0.25]))]),
    "PRelu 2-D": _single("PRelu", (2, 6), [("slope", lambda r: r.uniform(0, 0.5, 6))]),
    "Flatten": _single("Flatten", (2, 3, 4, 4), axis=1),
    "Flatten default axis": _single("Flatten", (2, 3, 4, 4)),
    "Reshape [1, -1]": _reshape([1, -1]),
    "Reshape [0, 3, 16]": _reshape([0, 3, 16]),
    "Softmax 2-D": _single("Softmax", (2, 7), axis=1),
    "Softmax default axis": _single("Softmax", (2, 7)),
    "Softmax 4-D axis 1": _single("Softmax", (2, 3, 4, 4), axis=1),
    "Softmax 4-D axis -1": _single("Softmax", (2, 3, 4, 4), axis=-1),
    "Conv 1x1": _conv((1, 1)),
    "Conv 1x1 no bias": _conv((1, 1), bias=False),
    "Conv 3x3 stride 2 pad 1": _conv((3, 3), (2, 2), (1, 1, 1, 1)),
    "Conv 3x3 stride 2 pad 0": _conv((3, 3), (2, 2)),
    "Conv 3x3 pad 0 (accelerator)": _conv((3, 3)),
    "Conv 3x3 pad 1 (accelerator)": _conv((3, 3), pads=(1, 1, 1, 1)),
    "Conv 3x3 pad 2": _conv((3, 3), pads=(2, 2, 2, 2)),
    "Conv 3x3 asymmetric pads": _conv((3, 3), pads=(1, 0, 1, 0)),
    "Conv 5x5 stride (1, 2)": _conv((5, 5), (1, 2), (2, 1, 2, 1)),
    "Conv grouped": _conv((3, 3), pads=(1, 1, 1, 1), group=2, K=4, C=4, shape=(1, 4, 6, 6)),
    "Conv depthwise": _conv((3, 3), group=3, K=3, C=3),
    "Conv dilated": _conv((3, 3), dilations=(2, 2), pads=(2, 2, 2, 2)),
    "Conv 3x3 + BatchNorm (folded, accelerator)": _conv_bn((3, 3), (1, 1, 1, 1)),
    "Conv 3x3 + BatchNorm + Relu": _conv_bn((3, 3), (0, 0, 0, 0), relu=True),
    "Conv 1x1 + BatchNorm (folded, host)": _conv_bn((1, 1), (0, 0, 0, 0)),
    "BatchNorm alone": _bn_alone,
    "branch: two heads": _two_heads,
    "branch: Add": _join("Add"),
    "branch: Concat": _join("Concat"),
    "branch: residual Add": _residual,
}


@pytest.mark.parametrize("case", list(OPS))
def test_op_against_onnxruntime(tmp_path, case):
    rng = _rng(case)
    built = OPS[case](rng)
    nodes, inits, shape = built[:3]
    outputs = built[3] if len(built) > 3 else ("y",)
    path = save_graph(tmp_path / "m.onnx", nodes, inits, shape, outputs)
    x = rng.standard_normal(shape)
    model = against_onnxruntime(path, x)
    if "BatchNorm" in case and "alone" not in case:
        assert [layer.name for layer in model.layers] == ["conv"]          # folded
        assert "BatchNorm 'bn' folded in" in model.layers[0].reason
    if "(accelerator)" in case:
        assert model.layers[0].kind == "accel"


def test_pool_output_size_ceil_mode():
    # ceil_mode rounds up, but a window starting in the end padding is dropped (ONNX, PyTorch).
    assert host_ops.pool_output_size(7, 2, 2, 0, 0, False) == 3
    assert host_ops.pool_output_size(7, 2, 2, 0, 0, True) == 4
    assert host_ops.pool_output_size(5, 2, 2, 1, 1, True) == 3      # not 4: dropped
    assert host_ops.pool_output_size(6, 3, 2, 1, 1, True) == 4      # last window past the pad


def test_softmax_before_opset_13_coerces_to_2d(tmp_path):
    rng = _rng("softmax11")
    path = save_graph(tmp_path / "m.onnx", [helper.make_node("Softmax", ["x"], ["y"], name="sm")],
                      [], (2, 3, 4, 4), opset=11)
    model = against_onnxruntime(path, rng.standard_normal((2, 3, 4, 4)))
    assert model.layers[0].attrs == {"axis": 1, "opset": 11}


def test_placement_reasons(tmp_path):
    rng = _rng("placement")
    nodes, inits = _trunk(rng)
    nodes += [helper.make_node("Conv", ["tr", "w2"], ["c2"], name="down", kernel_shape=[3, 3],
                               strides=[2, 2], pads=[1, 1, 1, 1]),
              helper.make_node("MaxPool", ["c2"], ["y"], name="pool", kernel_shape=[2, 2],
                               strides=[2, 2])]
    inits.append(_init("w2", rng.standard_normal((4, 4, 3, 3))))
    model = model_import.load_onnx(save_graph(tmp_path / "m.onnx", nodes, inits, (1, 2, 8, 8)))
    got = [(layer.name, layer.kind, layer.reason) for layer in model.layers]
    assert got == [
        ("trunk", "accel", "3x3 stride-1 convolution, pad 1; ReLU fused"),
        ("down", "host", "stride 2x2: the accelerator runs only 3x3 stride-1 convolutions "
                         "with pad 0 or 1"),
        ("pool", "host", "pooling runs on the host")]


def test_driver_runs_host_ops_per_sample(tmp_path):
    """sw.driver.host_op (one sample, no batch axis) is the batched op on a batch of one."""
    from sw import driver
    rng = _rng("driver")
    path = save_graph(tmp_path / "m.onnx", *_flatten_then("Gemm")(rng))
    model = model_import.load_onnx(path, require_accel=False)
    x = rng.standard_normal((2, 3, 4, 4))
    want = host_ops.run_float(model, x)
    for sample, row in zip(x, want):
        y = sample
        for layer in model.layers:
            y = driver.host_op(layer, y)
        np.testing.assert_allclose(y, row, rtol=1e-12)


def test_calibrate_sets_scales(tmp_path):
    rng = _rng("calibrate")
    nodes, inits = _trunk(rng)
    model = model_import.load_onnx(save_graph(tmp_path / "m.onnx", nodes, inits, (1, 2, 6, 6),
                                              ("tr",)))
    x = rng.standard_normal((3, 2, 6, 6))
    host_ops.calibrate(model, x)
    conv = model.accel_layers[0]
    assert conv.in_scale == pytest.approx(np.abs(x).max() / 127)
    assert conv.out_scale == pytest.approx(host_ops.run_float(model, x).max() / 127)


# ------------------------------------------------------------------------------ refusals
def _graph_with(node, inits=(), in_shape=(1, 3, 4, 4), outputs=("y",), extra_nodes=()):
    return [*extra_nodes, node], list(inits), in_shape, outputs


W = np.ones((4, 3, 1, 1))
REFUSED = {
    "Gemm transA": (_graph_with(helper.make_node("Gemm", ["x", "B"], ["y"], name="fc", transA=1),
                                [_init("B", np.ones((2, 5)))], (2, 3)),
                    "node 'fc' (Gemm): attribute transA=1 is not supported (A's rows are the "
                    "batch)"),
    "Gemm C per row": (_graph_with(helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc"),
                                   [_init("B", np.ones((3, 5))), _init("C", np.ones((2, 5)))],
                                   (2, 3)),
                       "node 'fc' (Gemm): C of shape [2, 5] is not supported (one value or one "
                       "per output, [5] or [1, 5])"),
    "Gemm B computed": (_graph_with(helper.make_node("Gemm", ["x", "r"], ["y"], name="fc"), (),
                                    (3, 3), extra_nodes=[helper.make_node("Relu", ["x"], ["r"],
                                                                          name="r")]),
                        "node 'fc' (Gemm): B 'r' is not an initializer (weights computed at run "
                        "time are not supported)"),
    "Gemm unknown attribute": (_graph_with(helper.make_node("Gemm", ["x", "B"], ["y"], name="fc",
                                                            banana=1),
                                           [_init("B", np.ones((3, 5)))], (2, 3)),
                               "node 'fc' (Gemm): attribute banana is not supported"),
    "MatMul 3-D B": (_graph_with(helper.make_node("MatMul", ["x", "B"], ["y"], name="mm"),
                                 [_init("B", np.ones((2, 4, 4)))], (2, 4)),
                     "node 'mm' (MatMul): B has shape [2, 4, 4]; a constant 1-D or 2-D B only"),
    "MatMul constant A": (_graph_with(helper.make_node("MatMul", ["A", "x"], ["y"], name="mm"),
                                      [_init("A", np.ones((2, 4)))], (4, 2)),
                          "node 'mm' (MatMul): B 'x' is not an initializer (weights computed "
                          "at run time are not supported)"),
    "MaxPool dilations": (_graph_with(helper.make_node("MaxPool", ["x"], ["y"], name="pool",
                                                       kernel_shape=[2, 2], dilations=[2, 2])),
                          "node 'pool' (MaxPool): attribute dilations=[2, 2] is not supported "
                          "(dilated pooling)"),
    "MaxPool SAME_UPPER": (_graph_with(helper.make_node("MaxPool", ["x"], ["y"], name="pool",
                                                        kernel_shape=[2, 2],
                                                        auto_pad="SAME_UPPER")),
                           "node 'pool' (MaxPool): attribute auto_pad='SAME_UPPER' is not "
                           "supported (give explicit pads)"),
    "MaxPool Indices": (_graph_with(helper.make_node("MaxPool", ["x"], ["y", "idx"], name="pool",
                                                     kernel_shape=[2, 2]),
                                    outputs=("y", "idx")),
                        "node 'pool' (MaxPool): output 'idx' (output 1) is used; only the first "
                        "output of MaxPool is supported"),
    "MaxPool 3-D": (_graph_with(helper.make_node("MaxPool", ["x"], ["y"], name="pool",
                                                 kernel_shape=[2, 2, 2]), (), (1, 1, 4, 4, 4)),
                    "node 'pool' (MaxPool): kernel_shape [2, 2, 2] is not supported (2-D "
                    "pooling only)"),
    "AveragePool pad >= kernel": (_graph_with(helper.make_node(
        "AveragePool", ["x"], ["y"], name="avg", kernel_shape=[2, 2], pads=[2, 0, 0, 0])),
        "node 'avg' (AveragePool): attribute pads=[2, 0, 0, 0] is not supported (a pad must be "
        "smaller than the kernel [2, 2])"),
    "Flatten axis 0": (_graph_with(helper.make_node("Flatten", ["x"], ["y"], name="flat",
                                                    axis=0)),
                       "node 'flat' (Flatten): attribute axis=0 is not supported (only 1: the "
                       "batch axis is kept)"),
    "Flatten axis 2": (_graph_with(helper.make_node("Flatten", ["x"], ["y"], name="flat",
                                                    axis=2)),
                       "node 'flat' (Flatten): attribute axis=2 is not supported (only 1: the "
                       "batch axis is kept)"),
    "Softmax axis 0": (_graph_with(helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=0)),
                       "node 'sm' (Softmax): attribute axis=0 is not supported (axis 0 is the "
                       "batch)"),
    "Concat axis 0": (_graph_with(helper.make_node("Concat", ["x", "r"], ["y"], name="cat",
                                                   axis=0),
                                  extra_nodes=[helper.make_node("Relu", ["x"], ["r"], name="r")]),
                      "node 'cat' (Concat): attribute axis=0 is not supported (axis 0 is the "
                      "batch)"),
    "Concat constant": (_graph_with(helper.make_node("Concat", ["x", "k"], ["y"], name="cat",
                                                     axis=1), [_init("k", np.ones((1, 1, 4, 4)))]),
                        "node 'cat' (Concat): input 1 'k' is a constant; the host takes a "
                        "computed tensor there"),
    "BatchNorm training": (_graph_with(helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1),
        [_init(k, np.ones(3)) for k in "sbmv"]),
        "node 'bn' (BatchNormalization): attribute training_mode=1 is not supported "
        "(inference only)"),
    "Conv SAME_UPPER": (_graph_with(helper.make_node("Conv", ["x", "w"], ["y"], name="conv",
                                                     auto_pad="SAME_UPPER"), [_init("w", W)]),
                        "node 'conv' (Conv): attribute auto_pad='SAME_UPPER' is not supported "
                        "(give explicit pads)"),
    "Conv 1-D": (_graph_with(helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
                             [_init("w", np.ones((4, 3, 3)))], (1, 3, 8)),
                 "node 'conv' (Conv): weight has shape (4, 3, 3); expected [K, C, kh, kw] (2-D "
                 "convolutions only)"),
    "Reshape computed shape": (_graph_with(helper.make_node("Reshape", ["x", "r"], ["y"],
                                                            name="rs"),
                                           extra_nodes=[helper.make_node("Relu", ["x"], ["r"],
                                                                         name="r")]),
                               "node 'rs' (Reshape): shape 'r' is not a constant"),
    "PRelu computed slope": (_graph_with(helper.make_node("PRelu", ["x", "r"], ["y"], name="pr"),
                                         extra_nodes=[helper.make_node("Relu", ["x"], ["r"],
                                                                       name="r")]),
                             "node 'pr' (PRelu): slope 'r' is not an initializer (weights "
                             "computed at run time are not supported)"),
    "Dropout mask": (_graph_with(helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
                                 outputs=("y", "mask")),
                     "node 'drop' (Dropout): output 'mask' (output 1) is used; only the first "
                     "output of Dropout is supported"),
    "Sigmoid": (_graph_with(helper.make_node("Sigmoid", ["x"], ["y"], name="sig")),
                "node 'sig' (Sigmoid): operator Sigmoid is not supported (accelerator: Conv 3x3 "
                "stride 1 pad 0/1; host: "),
    "custom domain": (_graph_with(helper.make_node("Relu", ["x"], ["y"], name="cr",
                                                   domain="com.example")),
                      "node 'cr' (Relu): operator domain 'com.example' is not supported (only "
                      "the default ONNX domain)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused(tmp_path, case):
    (nodes, inits, shape, outputs), text = REFUSED[case]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError) as err:
        model_import.load_onnx(path, require_accel=False)
    message = str(err.value)
    assert "\n" not in message
    if text.endswith(": "):
        assert message.startswith(f"{path}: {text}")
    else:
        assert message == f"{path}: {text}"


@pytest.mark.parametrize("shape, text", [
    ([-1], "layer rs (reshape): shape [-1] turns the batch axis of [2, 3, 4, 4] into [96]; the "
           "host keeps axis 0 as the batch"),
    ([-1, 16], "layer rs (reshape): shape [-1, 16] turns the batch axis of [2, 3, 4, 4] into "
               "[6, 16]; the host keeps axis 0 as the batch"),
])
def test_reshape_across_the_batch_is_refused_at_run_time(tmp_path, shape, text):
    path = save_graph(tmp_path / "m.onnx", *_reshape(shape)(None))
    model = model_import.load_onnx(path, require_accel=False)
    with pytest.raises(host_ops.HostOpError) as err:
        host_ops.run_float(model, np.zeros((2, 3, 4, 4)))
    assert str(err.value) == text


def test_branched_model_is_refused_by_the_chain_check(tmp_path):
    rng = _rng("chain")
    nodes, inits, shape, outputs = _two_heads(rng)
    model = model_import.load_onnx(save_graph(tmp_path / "m.onnx", nodes, inits, shape, outputs))
    assert host_ops.chain_problem(model) == (
        "layer head2: reads 'f', not only the previous layer's output 'y1' (a branch: the "
        "driver runs a chain of layers, each reading the one before)")
    nodes, inits, shape = _join("Add")(rng)
    model = model_import.load_onnx(save_graph(tmp_path / "j.onnx", nodes, inits, shape))
    assert host_ops.chain_problem(model).startswith("layer branch_b: reads 't', not only")
