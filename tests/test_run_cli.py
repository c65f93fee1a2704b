"""``python -m verif.run`` on the golden backend: outputs and report, a model it never saw checked
against onnxruntime, and every bad input (exit 2, one line, nothing written).

The RTL backend is verif/test_run_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sw import driver, golden, model_import, quant
from sw.config import AccelConfig
from verif import run
from verif.tiny_cnn import save_tiny_cnn

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
SEED = 1404
#: What a quantised network's outputs may differ from the float model by, relative to their
#: peak: the tolerance of tests/test_driver.py's calibrated ONNX chain.
NETWORK_TOLERANCE = 0.05
#: Keys every report has (docs/run.md); ``rtl`` only with ``--backend rtl``, ``outputs`` only
#: when the run completed.
REPORT_KEYS = {"model", "hw", "input", "backend", "config", "images", "input_shape",
               "calibration", "graph", "pack_warnings", "float", "layers", "status",
               "outputs", "seconds"}
ROW_KEYS = {"layer", "C", "K", "passes", "macs", "ideal_cycles", "model_cycles",
            "dense_winograd_cycles", "dense_direct_cycles"}


def hw(path: Path, **fields) -> Path:
    path.write_text(AccelConfig(**{"c_max": 8, "k_max": 8, "w_max": 12, "wmem_depth": 64,
                                   **fields}).to_json())
    return path


def images(path: Path, shape=(3, 1, 8, 8), seed=SEED) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return path


def run_cli(*args) -> int:
    return run.main([str(a) for a in args])


def onnxruntime_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    """The model on onnxruntime, one image at a time (the graph's batch axis is 1)."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: xi[None].astype(np.float32)})[0] for xi in x])


def test_help():
    res = subprocess.run([sys.executable, "-m", "verif.run", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    for word in ("--hw", "--input", "--backend", "golden,rtl", "--out", "--calibrate", "--sim",
                 "Exit status"):
        assert word in res.stdout


def test_golden_run_writes_outputs_and_report(tmp_path, capsys):
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    x = images(tmp_path / "x.npy")
    out = tmp_path / "out"
    assert run_cli(model, "--hw", hw(tmp_path / "winnow.json"), "--input", x, "--out", out) == 0
    printed = capsys.readouterr().out
    for text in ("where each layer runs", "calibrated conv1, conv2 on 3 image(s)",
                 "cycles per image", "golden images", str(out / run.OUTPUTS_NAME)):
        assert text in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [run.OUTPUTS_NAME, run.REPORT_NAME, "packed", "model.npz", "model.json",
         "model.host.npz"])
    report = json.loads((out / run.REPORT_NAME).read_text())
    assert set(report) == REPORT_KEYS
    assert report["status"] == "ok" and report["backend"] == "golden"
    assert report["images"] == 3 and report["input_shape"] == [1, 8, 8]
    assert report["calibration"] == {"calibrated": True, "layers": ["conv1", "conv2"],
                                     "source": "input", "images": 3}
    assert [(g["name"], g["placement"]) for g in report["graph"]] == [
        ("conv1", "accelerator"), ("prelu1", "host"), ("conv2", "accelerator"),
        ("leaky2", "host"), ("pool", "host"), ("flat", "host"), ("fc", "host"),
        ("softmax", "host")]
    assert [r["layer"] for r in report["layers"]] == ["conv1", "conv2"]
    for row in report["layers"]:
        assert set(row) == ROW_KEYS
        assert 0 < row["ideal_cycles"] <= row["model_cycles"]
        assert row["macs"] <= row["dense_winograd_cycles"] * report["config"]["derived"][
            "multipliers"]
    # The outputs are the golden model's on the model the command calibrated and packed.
    outputs = np.load(out / run.OUTPUTS_NAME)
    saved = model_import.load_npz(out / "model.npz")
    cfg = AccelConfig.load(tmp_path / "winnow.json")
    np.testing.assert_array_equal(outputs, driver.golden_predict(saved, np.load(x), cfg))
    assert report["outputs"] == {"file": run.OUTPUTS_NAME, "shape": [3, 5],
                                 "argmax": outputs.argmax(1).tolist()}
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-9)        # the softmax


def test_one_image_and_a_calibrated_npz(tmp_path):
    """One [C, H, W] image is a batch of one; the saved calibrated model runs again unchanged."""
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    winnow = hw(tmp_path / "winnow.json")
    x = images(tmp_path / "x.npy")
    assert run_cli(model, "--hw", winnow, "--input", x, "--out", tmp_path / "a", "-q") == 0
    np.save(tmp_path / "one.npy", np.load(x)[1])
    assert run_cli(tmp_path / "a" / "model.npz", "--hw", winnow, "--input", tmp_path / "one.npy",
                   "--out", tmp_path / "b", "-q") == 0
    report = json.loads((tmp_path / "b" / run.REPORT_NAME).read_text())
    assert report["calibration"] == {"calibrated": False, "source": "model", "images": None}
    assert not (tmp_path / "b" / "model.npz").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "b" / run.OUTPUTS_NAME),
                                  np.load(tmp_path / "a" / run.OUTPUTS_NAME)[1:2])


def test_calibrate_option(tmp_path):
    """--calibrate sets the scales from other images than the ones run."""
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    winnow = hw(tmp_path / "winnow.json")
    cal = images(tmp_path / "cal.npy", (5, 1, 8, 8), seed=SEED + 1)
    assert run_cli(model, "--hw", winnow, "--input", images(tmp_path / "x.npy"), "--calibrate",
                   cal, "--out", tmp_path / "out", "-q") == 0
    report = json.loads((tmp_path / "out" / run.REPORT_NAME).read_text())
    assert report["calibration"]["source"] == str(cal)
    assert report["calibration"]["images"] == 5


# ------------------------------------------------------- a model the project never saw
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_onnx_model_agrees_with_onnxruntime(tmp_path, seed):
    """conv, PReLU, LeakyReLU, pooling, flatten, Gemm and softmax, F(2,3): the golden run of the
    whole network is within the quantisation tolerance of onnxruntime."""
    model = save_tiny_cnn(tmp_path / "cnn.onnx", channels=(2, 8, 8), size=12, seed=seed)
    x = images(tmp_path / "x.npy", (6, 2, 12, 12), seed=seed)
    assert run_cli(model, "--hw", hw(tmp_path / "winnow.json"), "--input", x, "--out",
                   tmp_path / "out", "-q") == 0
    got = np.load(tmp_path / "out" / run.OUTPUTS_NAME)
    want = onnxruntime_outputs(model, np.load(x))
    assert got.shape == want.shape == (6, 5)
    assert np.abs(got - want).max() < NETWORK_TOLERANCE * np.abs(want).max()


@pytest.mark.parametrize("tile", [2, 4])
def test_fresh_onnx_first_layer_within_error_bound(tmp_path, tile):
    """The first accelerator layer of the command's run against onnxruntime's tensor there: within
    sw.golden.error_bound everywhere, for F(2,3) and F(4,3). The images lie on the activation
    grid, so the layer's input is exact and the bound covers the whole difference."""
    model = save_tiny_cnn(tmp_path / "cnn.onnx", channels=(2, 8, 8), size=12)
    rng = np.random.default_rng(SEED)
    q = rng.integers(-127, 128, (4, 2, 12, 12))
    q[0, 0, 0, 0] = 127                          # calibration then gives the grid's own step
    np.save(tmp_path / "x.npy", q * 0.01)
    winnow = hw(tmp_path / "winnow.json", tile=tile)
    assert run_cli(model, "--hw", winnow, "--input", tmp_path / "x.npy", "--out",
                   tmp_path / "out", "-q") == 0
    cfg = AccelConfig.load(winnow)
    saved = model_import.load_npz(tmp_path / "out" / "model.npz")
    conv1 = driver.device_layers(saved, cfg)["conv1"].qlayer
    reference = onnxruntime_outputs(save_tiny_cnn(tmp_path / "c1.onnx", channels=(2, 8, 8),
                                                  size=12, output="c1"), q * 0.01)
    for grid, ref in zip(q, reference):
        xq = driver.quantize_input(grid * 0.01, conv1.in_scale, cfg)
        np.testing.assert_array_equal(xq, grid)         # the layer's input is exact
        out = golden.conv_layer(xq, conv1, cfg)
        want = np.clip(ref / conv1.out_scale, *cfg.act_range)
        bound = golden.error_bound(xq, conv1, cfg)
        assert np.all(np.abs(out - want) <= bound + 1e-3), float((np.abs(out - want)
                                                                   - bound).max())


@pytest.mark.parametrize("tile, wgt_bits", [(2, 8), (4, 12)])
def test_fresh_torch_export_agrees_with_onnxruntime(tmp_path, capsys, tile, wgt_bits):
    """The same kind of network written in PyTorch and exported to ONNX, as a user would; for
    F(2,3) and for F(4,3) at the weight width quant.RECOMMENDED_WGT_BITS gives it (no warning)."""
    assert quant.RECOMMENDED_WGT_BITS[tile] == wgt_bits
    torch = pytest.importorskip("torch", reason="torch (train extra) not installed")
    torch.manual_seed(SEED)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.PReLU(8),
        torch.nn.Conv2d(8, 8, 3), torch.nn.LeakyReLU(0.1), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 10), torch.nn.Softmax(dim=1)).eval()
    model = tmp_path / "net.onnx"
    with warnings.catch_warnings():                  # the TorchScript exporter is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 1, 12, 12), str(model), dynamo=False,
                          input_names=["x"])
    x = images(tmp_path / "x.npy", (6, 1, 12, 12))
    winnow = hw(tmp_path / "winnow.json", tile=tile, wgt_bits=wgt_bits)
    assert run_cli(model, "--hw", winnow, "--input", x, "--out", tmp_path / "out", "-q") == 0
    report = json.loads((tmp_path / "out" / run.REPORT_NAME).read_text())
    assert report["pack_warnings"] == [] and "warning" not in capsys.readouterr().err
    assert [g["op"] for g in report["graph"]] == ["conv3x3", "prelu", "conv3x3", "leakyrelu",
                                                   "maxpool", "flatten", "gemm", "softmax"]
    got = np.load(tmp_path / "out" / run.OUTPUTS_NAME)
    want = onnxruntime_outputs(model, np.load(x))
    assert np.abs(got - want).max() < NETWORK_TOLERANCE * np.abs(want).max()


# ------------------------------------------------------------------------- bad input
def _write(path: Path, what):
    if isinstance(what, bytes):
        path.write_bytes(what)
    elif isinstance(what, dict):
        np.savez(path, **what)
    else:
        np.save(path, what)
    return path


INPUT_CASES = {
    "wrong image shape": (np.zeros((2, 1, 7, 8)), "images of shape [C, H, W] = [1, 7, 8]; "
                                                  "{model} takes [1, 8, 8]"),
    "wrong channels": (np.zeros((2, 3, 8, 8)), "images of shape [C, H, W] = [3, 8, 8]"),
    "wrong rank": (np.zeros((8, 8)), "shape [8, 8] is neither one image [C, H, W] nor a batch "
                                     "[N, C, H, W]; {model} takes [1, 8, 8]"),
    "complex": (np.zeros((1, 1, 8, 8), complex), "dtype complex128 is not supported; expected "
                                                 "real numbers (float or integer)"),
    "strings": (np.array([["a"]]), "dtype <U1 is not supported"),
    "no image": (np.zeros((0, 1, 8, 8)), "the batch holds no image"),
    "nan": (np.full((2, 1, 8, 8), np.nan), "holds 128 NaN/Inf value(s), the first at index "
                                           "(0, 0, 0, 0)"),
    "npz": ({"x": np.zeros((1, 1, 8, 8))}, "an .npz archive; save the images with numpy.save"),
    "not npy": (b"not an array\n", "not a NumPy .npy array"),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_bad_input_file(tmp_path, capsys, case):
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    what, text = INPUT_CASES[case]
    bad = _write(tmp_path / ("x.npz" if case == "npz" else "x.npy"), what)
    _refused(tmp_path, capsys, [model, "--hw", hw(tmp_path / "winnow.json"), "--input", bad],
             f"{bad}: " + text.format(model=model))


@pytest.mark.parametrize("case", ["missing input", "bad calibration", "missing model",
                                  "unsupported op", "bad hw", "image too wide", "not empty"])
def test_bad_input(tmp_path, capsys, case):
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    winnow = hw(tmp_path / "winnow.json")
    x = images(tmp_path / "x.npy")
    args = [model, "--hw", winnow, "--input", x]
    if case == "missing input":
        args[4], text = tmp_path / "nope.npy", f"{tmp_path / 'nope.npy'}: cannot read"
    elif case == "bad calibration":
        cal = _write(tmp_path / "cal.npy", np.zeros((2, 2, 8, 8)))
        args += ["--calibrate", cal]
        text = f"{cal}: images of shape [C, H, W] = [2, 8, 8]; {model} takes [1, 8, 8]"
    elif case == "missing model":
        args[0], text = tmp_path / "nope.onnx", f"{tmp_path / 'nope.onnx'}: no such file"
    elif case == "unsupported op":
        args[0] = _sigmoid_model(tmp_path / "sig.onnx")
        text = f"{args[0]}: node 'act' (Sigmoid): operator Sigmoid is not supported"
    elif case == "bad hw":
        winnow.write_text("{}")
        text = f"--hw {winnow}: "
    elif case == "image too wide":
        hw(winnow, w_max=6)
        text = (f"{model}: layer conv1: input [C, H, W] = [1, 8, 8]: WIDTH=8 is out of range; "
                "this accelerator takes 1..6")
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
        text = f"{tmp_path / 'out'}: already exists and is not empty; pass --force"
    _refused(tmp_path, capsys, args, text, keep_out=case == "not empty")
    if case == "not empty":
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def _refused(tmp_path, capsys, args, text, keep_out=False):
    """Exit 2, one error line holding ``text``, and nothing written."""
    assert run_cli(*args, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("run: error: ") and err.count("\n") == 1, err
    assert text in err, err
    assert keep_out or not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*")), "a temporary directory was left behind"


def _sigmoid_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                          pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["c"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# ----------------------------------------------------------- an RTL that disagrees
def _bench_assertion() -> str:
    """The message verif.tb_network's CheckedBackend raises when RTL and golden differ."""
    from verif.tb_network import CheckedBackend

    class Fixed:
        def __init__(self, value):
            self.value, self.cfg = value, AccelConfig()

        async def conv(self, layer, xs):
            return [np.full((2, 3, 3), self.value) for _ in xs]

    class Layer:
        name = "conv2"

    backend = CheckedBackend(Fixed(5), Fixed(5))
    backend.gold = Fixed(4)
    with pytest.raises(AssertionError) as caught:
        driver.run_sync(backend.conv(Layer(), [None, None]))
    return str(caught.value)


def test_find_mismatch_reads_the_bench_assertion():
    assert run.find_mismatch(_bench_assertion()) == {
        "layer": "conv2", "image": 0, "index": [0, 0, 0], "rtl": 5, "golden": 4, "values": 18}
    assert run.find_mismatch("case x: 1 of 1 cocotb tests failed") is None


def test_rtl_mismatch_names_layer_and_index(tmp_path, capsys, monkeypatch):
    """A run whose bench fails on a difference: exit 1, the layer, image and first index in
    the error line and the report, and no outputs."""
    monkeypatch.setattr(run, "SIM_DIR", tmp_path / "sim")

    def failing_bench(cfg, model, stream, images, labels, case, **kwargs):
        log = tmp_path / "sim" / case / "verilator" / "sim.log"
        log.parent.mkdir(parents=True)
        log.write_text("  rtl  conv1 pass 0: image 3/3  (0 s)\n"
                       "  ERROR cocotb.regression verif.tb_network.test_network failed\n"
                       f"AssertionError: {_bench_assertion()}\n")
        raise AssertionError(f"case {case}: 1 of 1 cocotb tests failed; log {log}")

    monkeypatch.setattr(run, "run_network_job", failing_bench)
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    out = tmp_path / "out"
    assert run_cli(model, "--hw", hw(tmp_path / "winnow.json"), "--input",
                   images(tmp_path / "x.npy"), "--out", out, "--backend", "rtl", "--sim",
                   "verilator", "-q") == run.EXIT_MISMATCH
    err = capsys.readouterr().err
    assert err.startswith("run: error: layer conv2: image 0: RTL differs from golden at index "
                          "(0, 0, 0) (RTL 5, golden 4; 18 value(s) differ)")
    report = json.loads((out / run.REPORT_NAME).read_text())
    assert report["status"] == "mismatch" and "outputs" not in report
    mismatch = report["rtl"]["mismatch"]
    assert (mismatch["layer"], mismatch["image"], mismatch["index"]) == ("conv2", 0, [0, 0, 0])
    assert report["rtl"]["matches_golden"] is False
    assert [set(row) for row in report["layers"]] == [ROW_KEYS, ROW_KEYS]     # golden's
    assert not (out / run.OUTPUTS_NAME).exists()
