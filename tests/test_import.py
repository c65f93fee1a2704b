"""sw/model_import.py: real ONNX (torch.onnx.export and onnx.helper) and state-dict models, the
npz round trip, and malformed models with their exact error texts."""

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sw import model_import
from sw.model_import import ModelError

SEED = 7


def _conv_graph(path, w, *, strides=(1, 1), pads=(1, 1, 1, 1), extra=(), init_w=True, op=None):
    """Conv → Relu → MaxPool → Flatten → Gemm, built with onnx.helper."""
    rng = np.random.default_rng(SEED)
    K = w.shape[0]
    inits = [numpy_helper.from_array(rng.standard_normal(K).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((10, K * 4 * 4)).astype(np.float32),
                                     "fw"),
             numpy_helper.from_array(np.zeros(10, np.float32), "fb")]
    if init_w:
        inits.append(numpy_helper.from_array(w.astype(np.float32), "w"))
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1",
                              kernel_shape=list(w.shape[2:]), strides=list(strides),
                              pads=list(pads)),
             helper.make_node(op or "Relu", ["c"], ["r"], name="act1"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              inits)
    onnx.save(helper.make_model(graph), path)
    return path


def test_onnx_helper_model(tmp_path):
    w = np.random.default_rng(SEED).standard_normal((4, 1, 3, 3))
    model = model_import.load_onnx(_conv_graph(tmp_path / "m.onnx", w))
    kinds = [(layer.name, layer.kind, getattr(layer, "op", "")) for layer in model.layers]
    assert kinds == [("conv1", "accel", ""), ("pool", "host", "maxpool"),
                     ("flat", "host", "flatten"), ("fc", "host", "gemm")]
    conv = model.layers[0]
    assert conv.spatial_relu and conv.pad == 1
    np.testing.assert_array_equal(conv.weight, w.astype(np.float32))
    assert model.layers[1].inputs == ("c",)          # the fused Relu's output aliases the conv's
    assert model.layers[3].arrays["weight"].shape == (10, 64)
    assert model.input_shape == (1, 8, 8)


def test_torch_onnx_export_and_state_dict(tmp_path):
    torch = pytest.importorskip("torch", reason="torch (train extra) not installed")
    torch.manual_seed(SEED)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 6, 3, padding=0), torch.nn.ReLU(),
                              torch.nn.Conv2d(6, 8, 3, stride=2), torch.nn.Flatten(),
                              torch.nn.Linear(32, 10))
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():                  # the TorchScript exporter is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), str(path), dynamo=False,
                          input_names=["x"])
    model = model_import.load_onnx(path)
    accel = model.accel_layers
    assert [(a.weight.shape, a.pad, a.spatial_relu) for a in accel] == [
        ((4, 1, 3, 3), 1, True), ((6, 4, 3, 3), 0, True)]
    np.testing.assert_array_equal(accel[1].weight, net[2].weight.detach().numpy())
    host = [(h.op, h.attrs.get("strides")) for h in model.layers if h.kind == "host"]
    assert host[0] == ("conv", [2, 2])               # stride 2 goes to the host
    assert [h[0] for h in host[1:]] == ["flatten", "gemm"]

    sd = tmp_path / "net.pt"
    torch.save(net.state_dict(), sd)
    model = model_import.load_torch_state_dict(sd)
    # A state dict has no strides: every 3x3 weight is taken as a stride-1 accelerator conv.
    assert [(layer.name, layer.kind) for layer in model.layers] == [
        ("0", "accel"), ("2", "accel"), ("4", "accel"), ("6", "host")]
    bad = tmp_path / "bad.pt"
    torch.save({"0.weight": torch.zeros(4, 1, 5, 5)}, bad)
    with pytest.raises(ModelError, match=r"bad\.pt: layer '0': kernel 5x5 is not supported"):
        model_import.load_torch_state_dict(bad)
    bn = tmp_path / "bn.pt"
    torch.save(torch.nn.BatchNorm2d(3).state_dict(), bn)
    with pytest.raises(ModelError, match=r"layer '': normalisation layers are not supported"):
        model_import.load_torch_state_dict(bn)


def test_state_dict_layers(tmp_path):
    torch = pytest.importorskip("torch", reason="torch (train extra) not installed")
    sd = {"c1.weight": torch.ones(4, 1, 3, 3), "c1.bias": torch.zeros(4),
          "fc.weight": torch.ones(10, 64), "fc.bias": torch.zeros(10)}
    torch.save(sd, tmp_path / "s.pt")
    model = model_import.load_model(tmp_path / "s.pt")
    assert [(layer.name, layer.kind) for layer in model.layers] == [("c1", "accel"),
                                                                    ("fc", "host")]
    sd["c1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match=r"nan\.pt: layer 'c1': weight holds 1 NaN/Inf value"):
        model_import.load_torch_state_dict(tmp_path / "nan.pt")


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(SEED)
    layers = [model_import.AccelLayer("c1", rng.standard_normal((16, 4, 1)), np.ones(4), 1,
                                      ("input",), "c1", True, False, 0.01, 0.02),
              model_import.HostLayer("fc", "gemm", ("c1",), "fc", {"transB": 1},
                                     {"weight": np.ones((10, 4)), "bias": np.zeros(10)})]
    written = model_import.save_model(model_import.Model(layers, input_scale=0.01,
                                                         input_shape=(1, 8, 8)),
                                      tmp_path / "m.npz")
    assert [p.name for p in written] == ["m.npz", "m.host.npz", "m.json"]
    with np.load(tmp_path / "m.npz") as npz:   # the packer's schema, accelerator layers only
        assert sorted(npz.files) == ["c1.bias", "c1.in_scale", "c1.out_scale", "c1.pad",
                                     "c1.weight"]
    back = model_import.load_model(tmp_path / "m.npz")
    assert back.layers[0].winograd_relu and back.layers[0].out_scale == 0.02
    np.testing.assert_allclose(back.layers[0].weight, layers[0].weight.astype(np.float32))
    assert back.layers[1].arrays["weight"].shape == (10, 4)
    assert back.input_shape == (1, 8, 8) and back.input_scale == 0.01


@pytest.mark.parametrize("case, text", [
    ("kernel5", None),
    ("stride2", None),
    ("no_init", "node 'conv1' (Conv): weight 'w' is not an initializer"),
    ("nan", "node 'conv1' (Conv): weight holds 2 NaN/Inf value(s)"),
    ("sigmoid", "node 'act1' (Sigmoid): operator Sigmoid is not supported"),
])
def test_onnx_malformed(tmp_path, case, text):
    w = np.ones((4, 1, 5, 5) if case == "kernel5" else (4, 1, 3, 3))
    if case == "nan":
        w[0, 0, 1, 1] = w[1, 0, 0, 0] = np.nan
    path = _conv_graph(tmp_path / f"{case}.onnx", w, strides=(2, 2) if case == "stride2" else
                       (1, 1), pads=(2,) * 4 if case == "kernel5" else (1,) * 4,
                       init_w=case != "no_init", op="Sigmoid" if case == "sigmoid" else None)
    if case == "no_init":
        model = onnx.load(str(path))
        model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT,
                                                               [4, 1, 3, 3]))
        onnx.save(model, path)
        text = "the graph has 2 non-constant inputs; expected 1"
    if text is None:
        # A 5x5 or a stride-2 conv is a host layer; with no 3x3 stride-1 conv left, refused.
        with pytest.raises(ModelError) as err:
            model_import.load_onnx(path)
        assert str(err.value) == f"{path}: no 3x3 stride-1 convolution for the accelerator"
        return
    with pytest.raises(ModelError) as err:
        model_import.load_onnx(path)
    assert str(err.value).startswith(f"{path}: {text}")


def test_onnx_missing_initializer_named(tmp_path):
    path = _conv_graph(tmp_path / "m.onnx", np.ones((4, 1, 3, 3)), init_w=False)
    # The weight is produced by a node, not an initializer: an op on it is refused by name.
    model = onnx.load(str(path))
    model.graph.node.insert(0, helper.make_node("Identity", ["x"], ["w"], name="id"))
    onnx.save(model, path)
    with pytest.raises(ModelError) as err:
        model_import.load_onnx(path)
    assert str(err.value) == (f"{path}: node 'conv1' (Conv): weight 'w' is not an initializer "
                              "(weights computed at run time are not supported)")


def test_truncated_and_missing_files(tmp_path):
    path = _conv_graph(tmp_path / "m.onnx", np.ones((4, 1, 3, 3)))
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut\.onnx: not a readable ONNX model|cut\.onnx: the "
                       r"graph has no nodes"):
        model_import.load_onnx(cut)
    with pytest.raises(ModelError, match=r"nope\.onnx: no such file"):
        model_import.load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ModelError, match=r"bad\.npz: not a readable \.npz archive"):
        model_import.load_npz(bad)
    with pytest.raises(ModelError, match=r"m\.txt: unknown model type '\.txt'"):
        model_import.load_model(tmp_path / "m.txt")


def test_example_model_int8_golden():
    # The committed example: packer schema + graph, and 59 of the first 60 test digits right when
    # every conv runs bit-exactly in int8 (sw.quant + sw.golden), as README's table says.
    from sw.config import AccelConfig
    from sw import experiments, train
    root = Path(__file__).resolve().parent.parent
    model = model_import.load_npz(root / "examples" / "digits" / "digits.npz")
    assert [layer.name for layer in model.layers] == ["conv1", "conv2", "pool", "flatten", "fc"]
    assert all(layer.winograd_relu for layer in model.accel_layers)
    _, _, xte, yte = train.load_dataset("digits", 0)
    pred = experiments.int8_predict(model, xte[:60], AccelConfig())
    assert int((pred == yte[:60]).sum()) == 59
