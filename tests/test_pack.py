"""sw/pack.py end to end through a subprocess, and every bad-input case (exit 2, no output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.config import SCHEMA_VERSION, AccelConfig
from sw import formats, golden, model_import, pack, quant

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "sw" / "pack.py"
SEED = 4242


def run_pack(*args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture
def hw_json(tmp_path) -> Path:
    path = tmp_path / "winnow.json"
    path.write_text(AccelConfig(lanes=4, wmem_depth=40, k_max=32, c_max=64).to_json())
    return path


def model_arrays(seed=SEED) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": rng.normal(size=(24, 3, 3, 3)).astype(np.float32),
        "conv1.bias": rng.normal(size=24).astype(np.float32),
        "conv1.in_scale": np.float64(0.02),
        "conv1.out_scale": np.float64(0.05),
        "block.conv2.weight": rng.normal(size=(16, 40, 24)),
        "block.conv2.bias": np.zeros(40),
        "block.conv2.pad": np.int64(0),
    }


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def test_help_as_script_and_module():
    res = run_pack("--help")
    assert res.returncode == 0
    for word in ("--prune", "--density", "--relu", "--hw", "OUTDIR", "spatial-winograd"):
        assert word in res.stdout
    mod = subprocess.run([sys.executable, "-m", "sw.pack", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert mod.returncode == 0 and "--prune" in mod.stdout


def test_end_to_end(tmp_path, hw_json):
    model = write_npz(tmp_path / "model.npz", model_arrays())
    out = tmp_path / "out"
    res = run_pack(model, "-o", out, "--hw", hw_json, "--prune", "winograd", "--density", "0.25",
                   "--relu", "spatial")
    assert res.returncode == 0, res.stderr
    assert "[1/2] conv1: K=24 C=3 (spatial)" in res.stderr
    assert "[2/2] block.conv2: K=40 C=24 (winograd)" in res.stderr
    assert "block.conv2" in res.stdout and "bits/nnz" in res.stdout
    cfg = AccelConfig.load(hw_json)
    man = json.loads((out / "manifest.json").read_text())
    assert [layer["name"] for layer in man["layers"]] == ["conv1", "block.conv2"]
    assert man["prune"] == "winograd" and man["relu"] == "spatial"
    # Every file is listed with its checksum, and nothing else is in OUTDIR.
    assert sorted(p.name for p in out.iterdir()) == sorted([*man["checksums"], "manifest.json"])
    for name, digest in man["checksums"].items():
        assert formats.sha256_file(out / name) == digest
    assert not list(tmp_path.glob(".out.tmp-*"))

    # Rebuild the expected layers with the same prune + quantise path, then compare the files.
    src = model_arrays()
    placed, layers = pack.place_layers(model_import.load_model(model), cfg)
    assert [(r.name, r.placement) for r in placed] == [("conv1", "accelerator"),
                                                       ("block.conv2", "accelerator")]
    assert man["graph"] == [r.to_json() for r in placed]
    records = formats.decode_stream((out / "weights.bin").read_bytes(), cfg)
    for li, (layer, entry) in enumerate(zip(layers, man["layers"])):
        w = pack.prune_magnitude(layer, "winograd", 0.25, cfg)
        q = quant.quantize_layer(w, layer.bias, layer.in_scale, layer.out_scale, cfg,
                                 name=layer.name, pad=layer.pad, spatial_relu=True)
        assert entry["quant"]["shift"] == q.shift.tolist()
        assert entry["quant"]["pad"] == (1 if li == 0 else 0)
        assert entry["quant"]["spatial_relu"] is True and entry["quant"]["winograd_relu"] is False
        assert entry["source_shape"] == list(src[f"{layer.name}.weight"].shape)
        assert entry["coord_density"] == [float(x) for x in golden.coord_density(q.U)]
        # Reassemble U from the hex files alone.
        passes = []
        for p, (k_base, k_count) in enumerate(entry["pass_k"]):
            words, dirs = [], []
            for xi in range(cfg.coords):
                lay, dlay = formats.slot_layout(cfg, xi), formats.directory_layout(cfg, xi)
                words.append(tuple(formats.read_hex(out / entry["files"][f"p{p}.pe{xi}"],
                                                    lay.word_bits)))
                dirs.append(formats.directory_entries(
                    formats.read_hex(out / entry["files"][f"p{p}.pe{xi}.dir"], dlay.entry_bits),
                    cfg, xi))
            passes.append(formats.PassImage(p, k_base, k_count, tuple(words), tuple(dirs)))
        from_hex = formats.PackedLayer(layer.name, entry["K"], entry["C"], entry["Kp"],
                                       tuple(passes), None)
        np.testing.assert_array_equal(formats.unpack_layer(from_hex, cfg), q.U)
        assert [r.image for r in records if r.layer == li] == passes
    # block.conv2: 40 output channels > k_max 32 forces at least 2 passes; memory depth 40 too.
    conv2 = man["layers"][1]
    assert conv2["passes"] >= 2 and conv2["Kp"] <= 32
    assert max(max(w) for w in conv2["words_per_pe"]) <= 40
    assert abs(conv2["density"] - 0.25) < 0.01


def test_spatial_winograd_prune_and_force(tmp_path, hw_json):
    arrays = {k: v for k, v in model_arrays().items() if k.startswith("conv1")}
    model = write_npz(tmp_path / "m.npz", arrays)
    out = tmp_path / "o"
    assert run_pack(model, "-o", out, "--hw", hw_json, "--prune", "spatial-winograd",
                    "--density", "0.5", "-q").returncode == 0
    first = (out / "manifest.json").read_text()
    res = run_pack(model, "-o", out, "--hw", hw_json, "-q")
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (out / "manifest.json").read_text() == first
    assert run_pack(model, "-o", out, "--hw", hw_json, "-q", "--force").returncode == 0
    assert json.loads((out / "manifest.json").read_text())["prune"] == "none"


def test_prune_magnitude_keeps_exact_count():
    cfg = AccelConfig()
    rng = np.random.default_rng(SEED)
    w = rng.normal(size=(4, 5, 3, 3))
    layer = pack.ModelLayer("l", w, np.zeros(4), 1.0, 1.0, 1)
    U = pack.prune_magnitude(layer, "winograd", 0.3, cfg)
    assert U.shape == (16, 4, 5)
    assert np.count_nonzero(U) == round(0.3 * U.size)
    full = quant.winograd_weights(w, 2)
    kept = np.abs(full[U != 0])
    assert kept.min() >= np.abs(full[U == 0]).max()
    sw = pack.prune_magnitude(layer, "spatial-winograd", 0.3, cfg)
    assert np.count_nonzero(sw) == round(0.3 * sw.size)
    assert pack.prune_magnitude(layer, "none", 0.3, cfg) is w


def test_prune_balanced_for_the_configuration():
    # --prune balanced: equal counts per coordinate and per lane (k mod lanes) of every
    # column, in each pass's block of k_max output channels of the given configuration.
    cfg = AccelConfig(lanes=2, k_max=4)
    rng = np.random.default_rng(SEED)
    layer = pack.ModelLayer("l", rng.normal(size=(6, 5, 3, 3)), np.zeros(6), 1.0, 1.0, 1)
    U = pack.prune_magnitude(layer, "balanced", 0.5, cfg)
    kept = U != 0
    for block, kb in ((slice(0, 4), 4), (slice(4, 6), 2)):
        sub = kept[:, block]
        assert sub.reshape(16, -1).sum(axis=1).tolist() == [round(0.5 * kb * 5)] * 16
        uneven = (sub[:, 0::2].sum(axis=1) != sub[:, 1::2].sum(axis=1)).sum(axis=1)
        assert uneven.max() <= 1
    full = quant.winograd_weights(layer.weight, 2)
    np.testing.assert_array_equal(U[kept], full[kept])


def _bad(arrays_change):
    def build(tmp_path):
        arrays = model_arrays()
        arrays_change(arrays)
        return write_npz(tmp_path / "bad.npz", arrays)
    return build


def _set(key, value):
    return _bad(lambda a: a.__setitem__(key, value))


def _nan(a):
    w = a["block.conv2.weight"].copy()
    w[3, 1, 2] = np.nan
    a["block.conv2.weight"] = w


BAD_CASES = {
    "missing file": (lambda tmp: tmp / "nope.npz", [], "nope.npz", None, "no such file"),
    "not an npz": (lambda tmp: (tmp / "bad.npz").write_text("hello") and tmp / "bad.npz", [],
                   "bad.npz", None, "not a readable .npz archive"),
    "kernel 5x5": (_set("conv1.weight", np.zeros((24, 3, 5, 5))), [], "bad.npz", "conv1",
                   "kernel 5x5 is not supported"),
    "wrong shape": (_set("conv1.weight", np.zeros((24, 3, 9))), [], "bad.npz", "conv1",
                    "neither spatial [K, C, 3, 3] nor Winograd-domain [n*n, K, C] with n*n in "
                    "16, 36"),
    "F(4,3) weights": (_bad(lambda a: a.update({"conv1.weight": np.zeros((36, 4, 3)),
                                                "conv1.bias": np.zeros(4)})), [], "bad.npz",
                       "conv1",
                       "Winograd-domain weights are for F(4,3) (36 coordinates) but the config "
                       "is F(2,3)"),
    "int dtype bool": (_set("conv1.weight", np.ones((24, 3, 3, 3), dtype=bool)), [], "bad.npz",
                       "conv1", "weight has dtype bool"),
    "complex dtype": (_set("conv1.bias", np.ones(24, dtype=complex)), [], "bad.npz", "conv1",
                      "bias has dtype complex128"),
    "NaN": (_bad(_nan), [], "bad.npz", "block.conv2", "weight holds 1 NaN/Inf value(s)"),
    "Inf bias": (_set("conv1.bias", np.full(24, np.inf)), [], "bad.npz", "conv1",
                 "bias holds 24 NaN/Inf value(s)"),
    "bias shape": (_set("conv1.bias", np.zeros(23)), [], "bad.npz", "conv1",
                   "bias has shape (23,), expected (24,)"),
    "C > c_max": (_bad(lambda a: a.update({"block.conv2.weight": np.zeros((16, 4, 65)),
                                           "block.conv2.bias": np.zeros(4)})), [], "bad.npz",
                  "block.conv2", "C = 65 input channels exceeds c_max = 64"),
    "unknown field": (_set("conv1.gamma", np.zeros(3)), [], "bad.npz", None,
                      "array 'conv1.gamma' is not <layer>.<field>"),
    "file name clash": (_bad(lambda a: a.update({"x y.weight": np.ones((4, 3, 3, 3)),
                                                 "x_y.weight": np.ones((4, 3, 3, 3))})),
                        [], "bad.npz", "x_y", "file names would collide with those of layer 'x y'"),
    "no weight": (_set("conv9.bias", np.zeros(3)), [], "bad.npz", "conv9", "no weight array"),
    "bad pad": (_set("conv1.pad", np.int64(2)), [], "bad.npz", "conv1", "pad = 2.0 is not"),
    "bad scale": (_set("conv1.in_scale", np.float64(-1)), [], "bad.npz", "conv1",
                  "in_scale = -1.0 must be > 0"),
    "density too big": (_set("conv1.pad", np.int64(1)), ["--prune", "winograd", "--density",
                                                         "1.5"], "bad.npz", None,
                        "--density 1.5 is not in (0, 1]"),
    "density NaN": (_set("conv1.pad", np.int64(1)), ["--prune", "winograd", "--density", "nan"],
                    "bad.npz", None, "--density nan is not in (0, 1]"),
    "density without prune": (_set("conv1.pad", np.int64(1)), ["--density", "0.5"], "bad.npz",
                              None, "--density needs --prune"),
    "prune without density": (_set("conv1.pad", np.int64(1)), ["--prune", "winograd"],
                               "bad.npz", None, "needs --density D"),
    "spatial-winograd on U": (_set("conv1.pad", np.int64(1)),
                              ["--prune", "spatial-winograd", "--density", "0.5"], "bad.npz",
                              "block.conv2", "needs spatial [K, C, 3, 3] weights"),
}


def run_main(capsys, *args):
    """``pack.main`` in-process (a subprocess per case would dominate the unit tier's time)."""
    code = pack.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, *capsys.readouterr())


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input(tmp_path, hw_json, capsys, case):
    build, extra, fname, layer, problem = BAD_CASES[case]
    model = build(tmp_path)
    out = tmp_path / "out"
    res = run_main(capsys, model, "-o", out, "--hw", hw_json, *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    error = [line for line in lines if line.startswith("pack: error: ")]
    assert len(error) == 1, res.stderr
    assert fname in error[0]
    if layer is not None:
        assert f"layer {layer!r}:" in error[0]
    assert problem in error[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out*"))
    assert "Traceback" not in res.stderr


def _hw_text(**change) -> str:
    data = {**AccelConfig().to_dict(), **change}
    return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize("text,problem", [
    ("{", "not valid JSON"),
    (_hw_text(tile=3, derived=None), "AccelConfig.tile: 3 is not allowed"),
    (_hw_text(banana=1), "unknown field(s) banana"),
    # A winnow.json that does not name every field is refused, not completed with defaults.
    (json.dumps({"schema": SCHEMA_VERSION, "tile": 2}), "missing field(s) act_bits, wgt_bits"),
    (_hw_text(schema=None), "no 'schema' field"),
    (_hw_text(schema=1), "schema 1 is not supported"),
    ("[1, 2]", "expected a JSON object, got list"),
])
def test_bad_config(tmp_path, capsys, text, problem):
    model = write_npz(tmp_path / "m.npz", model_arrays())
    cfg = tmp_path / "hw.json"
    cfg.write_text(text)
    res = run_main(capsys, model, "-o", tmp_path / "out", "--hw", cfg)
    assert res.returncode == 2
    assert "hw.json" in res.stderr and problem in res.stderr
    assert not (tmp_path / "out").exists()


def test_memory_too_small_is_reported(tmp_path):
    cfg = tmp_path / "hw.json"
    cfg.write_text(AccelConfig(lanes=1, wmem_depth=4, c_max=64).to_json())
    model = write_npz(tmp_path / "m.npz", {"big.weight": np.ones((16, 4, 8))})
    res = run_pack(model, "-o", tmp_path / "out", "--hw", cfg)
    assert res.returncode == 2
    assert "m.npz: layer 'big': one output channel per pass needs 8 words" in res.stderr
    assert not (tmp_path / "out").exists()


def _onnx_cnn(path: Path, *, extra_node=None, branch=False) -> Path:
    """A small CNN as an exporter writes it: Conv+BatchNorm+Relu, an unpadded 3x3 Conv, a 1x1
    Conv, PRelu, MaxPool (ceil_mode), Flatten, Gemm, Softmax."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(SEED)

    def init(name, shape, low=None):
        arr = rng.uniform(low, 1.5, shape) if low is not None else rng.standard_normal(shape)
        return numpy_helper.from_array(arr.astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "o", "m", "v"], ["n1"],
                              name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3]),
             helper.make_node("Conv", ["c2", "w3"], ["c3"], name="proj", kernel_shape=[1, 1]),
             helper.make_node("PRelu", ["c3", "slope"], ["p3"], name="prelu"),
             helper.make_node("MaxPool", ["p3"], ["q"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2], ceil_mode=1),
             helper.make_node("Flatten", ["q"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc", transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1)]
    inits = [init("w1", (8, 1, 3, 3)), init("b1", (8,)), init("s", (8,), 0.5),
             init("o", (8,)), init("m", (8,)), init("v", (8,), 0.5), init("w2", (6, 8, 3, 3)),
             init("w3", (4, 6, 1, 1)), init("slope", (4, 1, 1), 0.0), init("fw", (10, 36)),
             init("fb", (10,))]
    outputs = ["y"]
    if extra_node is not None:
        nodes.insert(5, extra_node)
        nodes[6].input[0] = extra_node.output[0]
    if branch:
        nodes.append(helper.make_node("Gemm", ["f", "fw", "fb"], ["aux"], name="aux_head",
                                      transB=1))
        outputs.append("aux")
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 12, 12])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_end_to_end(tmp_path, hw_json):
    model = _onnx_cnn(tmp_path / "cnn.onnx")
    out = tmp_path / "out"
    res = run_pack(model, "-o", out, "--hw", hw_json)
    assert res.returncode == 0, res.stderr
    assert "where each layer runs" in res.stdout
    man = json.loads((out / "manifest.json").read_text())
    assert [(g["name"], g["op"], g["placement"]) for g in man["graph"]] == [
        ("conv1", "conv3x3", "accelerator"), ("conv2", "conv3x3", "accelerator"),
        ("proj", "conv", "host"), ("prelu", "prelu", "host"), ("pool", "maxpool", "host"),
        ("flat", "flatten", "host"), ("fc", "gemm", "host"), ("softmax", "softmax", "host")]
    reasons = {g["name"]: g["reason"] for g in man["graph"]}
    assert reasons["conv1"] == ("3x3 stride-1 convolution, pad 1; BatchNorm 'bn1' folded in; "
                                "ReLU fused; no calibration: default scale 1/127")
    assert reasons["conv2"].startswith("3x3 stride-1 convolution, pad 0;")
    assert reasons["proj"].startswith("kernel 1x1: the accelerator runs only 3x3 stride-1")
    assert [layer["name"] for layer in man["layers"]] == ["conv1", "conv2"]
    # --relu model (the default): each layer's own ReLU, none where the graph has none.
    assert man["relu"] == "model"
    assert [(layer["quant"]["winograd_relu"], layer["quant"]["spatial_relu"], layer["quant"]["pad"])
            for layer in man["layers"]] == [(False, True, 1), (False, False, 0)]


@pytest.mark.parametrize("case, text", [
    ("sigmoid", "node 'act' (Sigmoid): operator Sigmoid is not supported"),
    ("flatten axis", "node 'act' (Flatten): attribute axis=2 is not supported (only 1: the "
                     "batch axis is kept)"),
    ("branch", "layer aux_head: reads 'f', not only the previous layer's output 'y' (a branch: "
               "the driver runs a chain of layers, each reading the one before)"),
])
def test_onnx_refused(tmp_path, hw_json, capsys, case, text):
    pytest.importorskip("onnx")
    from onnx import helper
    extra = {"sigmoid": helper.make_node("Sigmoid", ["c2"], ["a"], name="act"),
             "flatten axis": helper.make_node("Flatten", ["c2"], ["a"], name="act", axis=2),
             "branch": None}[case]
    model = _onnx_cnn(tmp_path / "cnn.onnx", extra_node=extra, branch=case == "branch")
    out = tmp_path / "out"
    res = run_main(capsys, model, "-o", out, "--hw", hw_json)
    assert res.returncode == 2
    error = [line for line in res.stderr.splitlines() if line.startswith("pack: error: ")]
    assert error == [f"pack: error: {model}: {text}"] or (
        case == "sigmoid" and len(error) == 1 and error[0].startswith(f"pack: error: {model}: "
                                                                      f"{text}"))
    assert not out.exists() and not list(tmp_path.glob(".out*"))


# ------------------------------------------------------------------- accumulator overflow
@pytest.mark.parametrize("act_bits, winograd_relu", [(2, False), (3, False), (2, True)])
def test_accumulator_bound_brute_force(act_bits, winograd_relu):
    """Every activation tile of two input channels, F(2,3): the bound is the exact extreme."""
    import itertools
    cfg = AccelConfig(tile=2, act_bits=act_bits, wgt_bits=4)
    rng = np.random.default_rng(SEED)
    U = rng.integers(*cfg.wgt_range, endpoint=True, size=(cfg.coords, 3, 2))
    lo, hi = pack.accumulator_bound(U, cfg, winograd_relu)
    a_lo, a_hi = cfg.act_range
    for xi in range(cfg.coords):
        i, j = divmod(xi, cfg.n)
        coef = np.outer(cfg.BT[i], cfg.BT[j])           # V[xi] = sum coef * d
        support = np.flatnonzero(coef)
        values = set()
        for d in itertools.product(range(a_lo, a_hi + 1), repeat=len(support)):
            v = int(np.dot(coef.reshape(-1)[support], d))
            values.add(max(v, 0) if winograd_relu else v)
        sums = [int(U[xi, k] @ np.array(pair)) for k in range(U.shape[1])
                for pair in itertools.product(values, repeat=U.shape[2])]
        assert (lo[xi], hi[xi]) == (min(sums), max(sums))


def _overflow_model(tmp_path):
    model = write_npz(tmp_path / "m.npz", {"big.weight": np.ones((16, 8, 64)),
                                            "small.weight": np.ones((16, 8, 1))})
    hw = tmp_path / "hw.json"
    hw.write_text(AccelConfig(lanes=4, c_max=64, acc_bits=18).to_json())
    return model, hw


def test_overflow_check_warn_refuse_off(tmp_path, capsys):
    model, hw = _overflow_model(tmp_path)
    # Every U is +127 (all ones, one scale per channel), 64 channels. F(2,3) int8: V of
    # coordinate (1, 1) sums four activations, [-512, 508]; of (1, 2) two minus two, +-510.
    lo, hi = -64 * 127 * 512, 64 * 127 * 510
    res = run_main(capsys, model, "-o", tmp_path / "w", "--hw", hw, "-q")
    assert res.returncode == 0
    assert res.stderr.splitlines() == [
        f"pack: warning: {model}: layer 'big': worst-case accumulator sum [{lo}, {hi}] "
        "(coordinate 5, 64 input channels) needs 23 bits, more than acc_bits = 18: the "
        "accumulators can wrap around"]
    res = run_main(capsys, model, "-o", tmp_path / "r", "--hw", hw, "-q",
                   "--overflow-check", "refuse")
    assert res.returncode == 2 and not (tmp_path / "r").exists()
    assert res.stderr.startswith(f"pack: error: {model}: layer 'big': worst-case")
    assert res.stderr.rstrip().endswith("(--overflow-check refuse)")
    assert res.stderr.count("\n") == 1
    res = run_main(capsys, model, "-o", tmp_path / "o", "--hw", hw, "-q",
                   "--overflow-check", "off")
    assert res.returncode == 0 and res.stderr == ""


def test_overflow_check_default_config_is_quiet(tmp_path, hw_json, capsys):
    """The default 32-bit accumulators hold any layer of c_max = 64 int8 channels."""
    model = write_npz(tmp_path / "m.npz", model_arrays())
    res = run_main(capsys, model, "-o", tmp_path / "out", "--hw", hw_json, "-q")
    assert res.returncode == 0 and res.stderr == ""


@pytest.mark.parametrize("tile, wgt_bits, warned", [(4, 8, True), (4, 11, True), (4, 12, False),
                                                    (2, 8, False)])
def test_precision_warning_for_spatial_weights_at_f4(tmp_path, capsys, tile, wgt_bits, warned):
    """Spatial weights at F(4,3) below quant.RECOMMENDED_WGT_BITS: one warning line naming the
    file, the layer and the fix; the output is still written (exit 0). F(2,3) and 12 bits are
    quiet."""
    rng = np.random.default_rng(SEED)
    model = write_npz(tmp_path / "m.npz", {"conv1.weight": rng.normal(size=(8, 3, 3, 3)),
                                            "conv1.bias": np.zeros(8)})
    hw = tmp_path / "hw.json"
    hw.write_text(AccelConfig(tile=tile, wgt_bits=wgt_bits).to_json())
    res = run_main(capsys, model, "-o", tmp_path / "out", "--hw", hw, "-q")
    assert res.returncode == 0 and (tmp_path / "out" / pack.BIN_NAME).exists()
    if not warned:
        assert res.stderr == ""
        return
    need = quant.RECOMMENDED_WGT_BITS[tile]
    assert res.stderr.splitlines() == [
        f"pack: warning: {model}: layer 'conv1': spatial weights at F(4,3) with {wgt_bits}-bit "
        "Winograd-domain weights lose accuracy (G scales coordinates down to 1/24 and one scale "
        "per output channel leaves the small ones a few levels); generate the accelerator with "
        f"wgt_bits >= {need} (python -m hw.gen --tile 4 --wgt-bits {need})"]


def test_duplicate_layer_names_are_refused(tmp_path, hw_json, capsys):
    """Found by tests/test_fuzz.py: two ONNX nodes of one name wrote the same files."""
    onnx = pytest.importorskip("onnx")
    path = _onnx_cnn(tmp_path / "cnn.onnx")
    proto = onnx.load(str(path))
    proto.graph.node[3].name = "conv1"
    onnx.save(proto, str(path))
    res = run_main(capsys, path, "-o", tmp_path / "out", "--hw", hw_json, "-q")
    assert res.returncode == 2 and not (tmp_path / "out").exists()
    assert res.stderr == (f"pack: error: {path}: layer 'conv1': another layer has the same "
                          "name; rename one of them\n")
