"""Malformed inputs to the packer (``sw/pack.py``), the model importers and ``python -m hw.gen``.

Hypothesis builds the inputs: truncated and corrupted ``.npz``, ``.onnx`` and ``winnow.json``
files, binary content, JSON of the wrong shape, wrong dtypes, NaN and Inf, mismatched shapes,
kernels and strides the accelerator does not run, layers too large for any pass split,
hardware descriptions that are incomplete or of another schema version, and output paths that
cannot be written. Every refused input must give exactly one ``pack: error:`` line naming the
file (and the layer where there is one), exit status 2, no traceback, and leave the output's
directory exactly as it was; an accepted input must pack.

The runs are deterministic (``derandomize=True``, no example database), so CI sees the same
cases every time; the ``FUZZ_EXAMPLES`` environment variable scales every test's example count
for a longer local run (``FUZZ_EXAMPLES=10 pytest tests/test_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sw import model_import, pack
from sw.config import SCHEMA_VERSION, AccelConfig

ROOT = Path(__file__).resolve().parent.parent
CFG = AccelConfig(lanes=4, wmem_depth=40, k_max=32, c_max=64)
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))

settings.register_profile("fuzz", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])


def fuzz(examples: int):
    """The fuzz profile with ``examples`` cases (times ``FUZZ_EXAMPLES``)."""
    return settings(settings.get_profile("fuzz"), max_examples=max(1, round(examples * SCALE)))


# --------------------------------------------------------------------------------- harness
def listing(directory: Path) -> list[tuple[str, int]]:
    """Every path under ``directory`` with its size: what "unchanged" is compared on."""
    return sorted((str(p.relative_to(directory)), p.stat().st_size if p.is_file() else -1)
                  for p in directory.rglob("*"))


def run_main(args) -> tuple[int, str, str]:
    """``pack.main`` in-process: exit status, stderr, stdout. Raises whatever main raises."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = pack.main([str(a) for a in args])
        except SystemExit as exc:          # argparse
            code = exc.code
    return code, err.getvalue(), out.getvalue()


def pack_case(work: Path, model: Path, *extra, hw: Path | None = None,
              outdir: Path | None = None) -> tuple[int, str]:
    """Pack ``model`` into ``work/out``; checks the contract of a refusal. Returns (code, error).

    A refusal is exit status 2, exactly one stderr line ``pack: error: ...`` (warnings aside),
    no traceback, and ``work`` exactly as it was before.
    """
    if hw is None:
        hw = work / "winnow.json"
        if not hw.exists():
            hw.write_text(CFG.to_json())
    outdir = outdir if outdir is not None else work / "out"
    before = listing(work)
    code, err, _ = run_main([model, "-o", outdir, "--hw", hw, "-q", *extra])
    lines = [line for line in err.splitlines() if not line.startswith("pack: warning: ")]
    assert "Traceback" not in err
    if code == 0:
        assert outdir.is_dir() and (outdir / "manifest.json").is_file()
        return 0, ""
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("pack: error: "), err
    assert listing(work) == before, "a refused input left files behind"
    return code, lines[0]


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="winnow-fuzz-") as name:
        yield Path(name)


def good_arrays() -> dict:
    rng = np.random.default_rng(7)
    return {"conv1.weight": rng.normal(size=(8, 3, 3, 3)),
            "conv1.bias": rng.normal(size=8),
            "conv1.in_scale": np.float64(0.02), "conv1.out_scale": np.float64(0.05),
            "conv2.weight": rng.normal(size=(16, 4, 8)), "conv2.pad": np.int64(0)}


def good_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **good_arrays())
    return buf.getvalue()


# ------------------------------------------------------------------------- byte corruption
def corrupted(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, byte flips, spliced garbage and random bytes of a valid file ``data``."""
    truncated = st.integers(0, len(data) - 1).map(lambda n: data[:n])
    flipped = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)),
                       min_size=1, max_size=8).map(
        lambda flips: bytes(b ^ dict(flips).get(i, 0) for i, b in enumerate(data)))
    spliced = st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=64)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0]:])
    return st.one_of(truncated, flipped, spliced, st.binary(max_size=512))


# ------------------------------------------------------------------------ hardware config
def hw_dict() -> dict:
    return CFG.to_dict()


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8)
FIELDS = [f.name for f in dataclasses.fields(AccelConfig)]


def _dump(value) -> bytes:
    return json.dumps(value).encode()


def _without(keys: list[str]) -> bytes:
    return _dump({k: v for k, v in hw_dict().items() if k not in keys})


def _with(key: str, value) -> bytes:
    return _dump({**hw_dict(), key: value})


def _hw_refused(text: bytes) -> bool:
    """Whether ``AccelConfig.from_json`` refuses ``text`` (a flip in whitespace may not)."""
    try:
        AccelConfig.from_json(text.decode("utf-8"), "x")
    except Exception:            # noqa: BLE001 -- the property under test is checked elsewhere
        return True
    return False


#: A winnow.json that must be refused, whatever the packer is given with it.
BAD_HW = st.one_of(
    corrupted(CFG.to_json().encode()).filter(_hw_refused),
    JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(_dump),       # array, number...
    st.lists(st.sampled_from(FIELDS + ["schema"]), min_size=1, unique=True).map(_without),
    st.one_of(st.integers(), st.text(max_size=4), st.floats(), st.none()).filter(
        lambda v: v != SCHEMA_VERSION).map(lambda v: _with("schema", v)),
    st.tuples(st.sampled_from(FIELDS), JSON_VALUES).map(lambda t: _with(*t)).filter(_hw_refused),
    st.text(min_size=1, max_size=8).filter(lambda k: k not in FIELDS + ["schema", "derived"])
    .map(lambda k: _with(k, 1)),
    st.integers(1, 64).map(lambda depth: b"[" * (depth * 2000)),             # nesting
)


@fuzz(120)
@given(text=BAD_HW)
def test_malformed_hw_json_is_refused(text):
    """winnow.json malformed, incomplete (no default is filled in), or of another schema."""
    with workdir() as work:
        model = work / "m.npz"
        np.savez(model, **good_arrays())
        hw = work / "winnow.json"
        hw.write_bytes(text)
        code, error = pack_case(work, model, hw=hw)
        assert code == 2
        assert f"pack: error: --hw {hw}: " in error


@fuzz(20)
@given(missing=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
def test_missing_field_is_named(missing):
    with pytest.raises(Exception, match="missing field") as info:
        AccelConfig.from_json(_without(missing).decode(), "hw.json")
    assert all(name in str(info.value) for name in missing)


# ------------------------------------------------------------------------------ npz models
DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int64", "uint8", "bool",
                          "complex64", "<U2", "V8"])
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-320, 0.0, 3e38])


@st.composite
def arrays(draw, shape=None):
    shape = draw(st.lists(st.integers(0, 6), max_size=5).map(tuple)) if shape is None else shape
    dtype = np.dtype(draw(DTYPES)) if draw(st.booleans()) else np.dtype("float64")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype=dtype)
    if dtype.kind == "V":
        return np.zeros(shape, dtype=dtype)
    arr = rng.normal(size=shape) * draw(st.sampled_from([1.0, 100.0, 1e-3]))
    if draw(st.booleans()) and arr.size:
        flat = arr.reshape(-1)
        flat[draw(st.integers(0, arr.size - 1))] = draw(SPECIAL)
    with np.errstate(all="ignore"):
        return arr.astype(dtype)


#: An accelerator layer's fields, each sometimes wrong.
@st.composite
def npz_model(draw) -> dict:
    out = {}
    for index in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["conv", "block.conv", "x y", "x_y", "a" * 40]))
        name = f"{name}{index}" if draw(st.booleans()) else name
        K, C = draw(st.integers(0, 40)), draw(st.integers(0, 70))
        kind = draw(st.sampled_from(["spatial", "winograd", "kernel", "other"]))
        if kind == "spatial":
            shape = (K, C, 3, 3)
        elif kind == "winograd":
            shape = (draw(st.sampled_from([16, 36, 9, 25])), K, C)
        elif kind == "kernel":                     # non-3x3 kernels: refused in an .npz
            shape = (K, C, *draw(st.sampled_from([(1, 1), (5, 5), (3, 1), (7, 3)])))
        else:
            shape = None
        out[f"{name}.weight"] = draw(arrays(shape))
        if draw(st.booleans()):
            out[f"{name}.bias"] = draw(arrays(draw(st.sampled_from([(K,), (K + 1,), (), (K, 1)]))))
        for key in ("in_scale", "out_scale", "pad"):
            if draw(st.booleans()):
                out[f"{name}.{key}"] = np.asarray(draw(st.sampled_from(
                    [0.02, 1.0, 0.0, -1.0, np.nan, np.inf, 1e-300, 1e300, 2, 0, 1, 0.5])))
        if draw(st.integers(0, 9)) == 0:
            out[f"{name}.{draw(st.sampled_from(['gamma', 'weights', '']))}"] = np.zeros(2)
    return out


def _expect_refused(arrays_: dict) -> str | None:
    """A reason the packer must refuse ``arrays_`` regardless of the configuration, or None."""
    for key, arr in arrays_.items():
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            return "NaN/Inf"
        if arr.dtype.kind not in "fiu":
            return "dtype"
        if key.endswith(".weight") and arr.ndim == 4 and arr.shape[2:] != (3, 3):
            return "kernel"
    return None


@fuzz(120)
@given(model=npz_model())
def test_npz_models(model):
    """Wrong dtypes, NaN/Inf, mismatched shapes, non-3x3 kernels, bad scales and pads."""
    with workdir() as work:
        path = work / "m.npz"
        np.savez(path, **model)
        code, error = pack_case(work, path)
        if _expect_refused(model):
            assert code == 2, f"accepted a model with {_expect_refused(model)}"
        if code:
            assert f"pack: error: {path}: " in error


def pack_corrupted(data: bytes, name: str) -> None:
    """Pack ``data`` saved as ``name``: it packs, or it is refused naming the file."""
    with workdir() as work:
        path = work / name
        path.write_bytes(data)
        code, error = pack_case(work, path)
        if code:
            assert f"pack: error: {path}: " in error


@fuzz(60)
@given(data=corrupted(good_npz_bytes()))
def test_corrupted_npz(data):
    pack_corrupted(data, "m.npz")


GRAPH = {"format": model_import.GRAPH_FORMAT,
         "input": {"name": "x", "shape": [3, 8, 8], "scale": 0.02},
         "layers": [{"name": "conv1", "kind": "accel", "inputs": ["x"], "output": "c1",
                     "pad": 1, "winograd_relu": False, "spatial_relu": True},
                    {"name": "pool", "kind": "host", "op": "maxpool", "inputs": ["c1"],
                     "output": "p", "attrs": {"kernel_shape": [2, 2], "strides": [2, 2]}},
                    {"name": "conv2", "kind": "accel", "inputs": ["p"], "output": "c2",
                     "pad": 0}],
         "meta": {}}


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _paths(inner, (*prefix, key))


GRAPH_PATHS = [p for p, _ in _paths(GRAPH) if p]


def _replace(value, path, new):
    if not path:
        return new
    value = json.loads(json.dumps(value))
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return value


GRAPH_TEXT = json.dumps(GRAPH).encode()


@fuzz(80)
@given(text=st.one_of(
    st.tuples(st.sampled_from(GRAPH_PATHS), JSON_VALUES).map(
        lambda t: _dump(_replace(GRAPH, *t))),
    corrupted(GRAPH_TEXT), JSON_VALUES.map(_dump)))
def test_malformed_graph_json(text):
    """The model's companion NAME.json: wrong types anywhere, truncated, binary, arrays."""
    with workdir() as work:
        path = work / "m.npz"
        arrays_ = good_arrays()
        np.savez(path, **{k: v for k, v in arrays_.items()})
        path.with_suffix(".json").write_bytes(text)
        code, error = pack_case(work, path)
        if code:
            assert f"pack: error: {path.with_suffix('')}" in error


# ----------------------------------------------------------------------------- ONNX models
def onnx_model(conv: dict | None = None, w_shape=(6, 8, 3, 3), dtype=np.float32):
    """A small ONNX CNN: an accelerator conv, then a second conv with attributes ``conv``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    conv = {"kernel_shape": [3, 3]} if conv is None else conv
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="fuzzed", **conv)]
    inits = [numpy_helper.from_array(rng.normal(size=(8, 2, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(size=w_shape).astype(dtype), "w2")]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@fuzz(60)
@given(data=st.builds(lambda: None).flatmap(
    lambda _: corrupted(onnx_model().SerializeToString())))
def test_corrupted_onnx(data):
    pack_corrupted(data, "m.onnx")


def test_onnx_name_not_utf8():
    """Regression: a node name that is not UTF-8 (protobuf then gives bytes) crashed the
    packer's file naming with a TypeError."""
    data = onnx_model().SerializeToString()
    name = onnx_model().graph.node[0].name.encode()
    assert name and name in data
    with workdir() as work:
        path = work / "m.onnx"
        path.write_bytes(data.replace(name, bytes([name[0] ^ 0x80]) + name[1:], 1))
        code, error = pack_case(work, path)
        assert code == 2
        assert "is not UTF-8 text" in error


@fuzz(60)
@given(kernel=st.sampled_from([(3, 3), (1, 1), (5, 5), (3, 1), (2, 2)]),
       strides=st.sampled_from([None, (1, 1), (2, 2), (1, 2), (3, 3), (1,)]),
       pads=st.sampled_from([None, (0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (0, 1, 0, 1),
                             (1, 1)]),
       dilations=st.sampled_from([None, (1, 1), (2, 2)]),
       group=st.sampled_from([None, 1, 2, 3]),
       dtype=st.sampled_from([np.float32, np.float64, np.int8, np.float16]))
def test_onnx_conv_kernels_and_strides(kernel, strides, pads, dilations, group, dtype):
    """A non-3x3 kernel, a stride, dilation or group: placed on the host or refused."""
    attrs = {"kernel_shape": list(kernel)}
    for key, value in (("strides", strides), ("pads", pads), ("dilations", dilations),
                       ("group", group)):
        if value is not None:
            attrs[key] = list(value) if isinstance(value, tuple) else value
    channels = 8 // (group or 1) if 8 % (group or 1) == 0 else 3
    model = onnx_model(attrs, (6, channels, *kernel), dtype)
    with workdir() as work:
        path = work / "m.onnx"
        path.write_bytes(model.SerializeToString())
        code, error = pack_case(work, path)
        accel = (kernel == (3, 3) and strides in (None, (1, 1)) and dilations in (None, (1, 1))
                 and group in (None, 1) and pads in (None, (0, 0, 0, 0), (1, 1, 1, 1)))
        if code:
            assert f"pack: error: {path}: node 'fuzzed' (Conv): " in error
            assert not accel or channels != 8, error
            return
        man = json.loads((work / "out" / "manifest.json").read_text())
        row = {g["name"]: g for g in man["graph"]}["fuzzed"]
        assert row["placement"] == ("accelerator" if accel else "host"), row


ATTR_VALUES = st.one_of(st.integers(-3, 5), st.floats(-2, 2), st.text(max_size=3),
                       st.lists(st.integers(-1, 4), min_size=1, max_size=5),
                       st.lists(st.floats(0, 1), min_size=1,
                                max_size=3))


@fuzz(60)
@given(op=st.sampled_from(["Conv", "MaxPool", "AveragePool", "Relu", "Identity", "Gemm",
                           "Reshape", "Concat", "Flatten", "Softmax", "BatchNormalization",
                           "PRelu", "MatMul", "Add", "Dropout", "Sigmoid"]),
       inputs=st.lists(st.sampled_from(["r1", "w2", "", "nope", "x"]), max_size=5),
       attrs=st.dictionaries(st.sampled_from(["kernel_shape", "strides", "pads", "group",
                                              "axis", "transB", "alpha", "ceil_mode",
                                              "auto_pad", "dilations", "epsilon", "perm"]),
                             ATTR_VALUES, max_size=4))
def test_onnx_malformed_nodes(op, inputs, attrs):
    """A node with missing or wrong inputs and attributes of the wrong type or length."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    model = onnx_model()
    node = helper.make_node(op, inputs, ["y"], name="fuzzed", **attrs)
    model.graph.node[2].CopyFrom(node)
    with workdir() as work:
        path = work / "m.onnx"
        path.write_bytes(model.SerializeToString())
        code, error = pack_case(work, path)
        if code:
            assert f"pack: error: {path}: " in error


@fuzz(50)
@given(exponent=st.integers(-330, 308), in_exp=st.integers(-310, 308),
       out_exp=st.integers(-310, 308), winograd=st.booleans(), bias_exp=st.integers(-10, 308))
def test_extreme_magnitudes(exponent, in_exp, out_exp, winograd, bias_exp):
    """Finite weights, biases and scales near the ends of float64: packed or one error, never
    NaN in the packed integers or a floating-point warning."""
    rng = np.random.default_rng(exponent & 0xFFFF)
    shape = (16, 4, 3) if winograd else (4, 3, 3, 3)
    with np.errstate(all="ignore"):
        weight = rng.normal(size=shape) * 10.0 ** exponent
    model = {"c.weight": weight, "c.bias": rng.normal(size=4) * 10.0 ** bias_exp,
             "c.in_scale": np.float64(10.0 ** in_exp), "c.out_scale": np.float64(10.0 ** out_exp)}
    if not all(np.all(np.isfinite(v)) for v in model.values()) or not (
            model["c.in_scale"] > 0 and model["c.out_scale"] > 0):
        return
    with workdir() as work:
        path = work / "m.npz"
        np.savez(path, **model)
        code, error = pack_case(work, path)
        if code:
            assert f"pack: error: {path}: layer 'c': " in error
            return
        layer = json.loads((work / "out" / "manifest.json").read_text())["layers"][0]
        assert all(isinstance(m, int) for m in layer["quant"]["multiplier"])


# ------------------------------------------------------------------------- layers too large
@fuzz(30)
@given(K=st.integers(1, 80), C=st.integers(1, 80), wmem=st.integers(1, 12),
       lanes=st.integers(1, 4))
def test_layer_too_large(K, C, wmem, lanes):
    """A layer no pass split fits (C > c_max, a column longer than the memory): one error."""
    cfg = AccelConfig(lanes=lanes, wmem_depth=wmem, k_max=16, c_max=48)
    with workdir() as work:
        hw = work / "winnow.json"
        hw.write_text(cfg.to_json())
        path = work / "m.npz"
        np.savez(path, **{"big.weight": np.ones((16, K, C))})
        code, error = pack_case(work, path, hw=hw)
        if C > cfg.c_max:
            assert "layer 'big': C = " in error and "exceeds c_max" in error
        elif C > wmem:               # one output channel per pass: a word per input channel
            assert f"layer 'big': one output channel per pass needs {C} words" in error
        else:
            assert code == 0, error


# ------------------------------------------------------------------------ output paths
OUT_PATHS = st.one_of(
    st.lists(st.sampled_from(["a", "b", "file", "file"]), min_size=1, max_size=4).map(
        lambda parts: ("file-parent", parts)),
    st.integers(256, 400).map(lambda n: ("too-long", ["x" * n])),
    st.just(("exists", ["full"])),
)


@fuzz(25)
@given(case=OUT_PATHS)
def test_unwritable_output_path(case):
    """The output's parent is a file, its name is too long, or it exists and is not empty."""
    kind, parts = case
    with workdir() as work:
        (work / "file").write_text("not a directory\n")
        (work / "full").mkdir()
        (work / "full" / "keep.txt").write_text("x")
        model = work / "m.npz"
        np.savez(model, **good_arrays())
        outdir = work.joinpath(*parts)
        code, error = pack_case(work, model, outdir=outdir)
        if kind == "file-parent" and "file" not in parts[:-1]:
            return                                      # a writable path: packed
        assert code == 2
        assert f"pack: error: {outdir}: " in error


# ------------------------------------------------------------------ fault injection, CLI
def test_read_only_directory(monkeypatch):
    """A parent the packer may not write: refused before any work (as root, simulated)."""
    with workdir() as work:
        model = work / "m.npz"
        np.savez(model, **good_arrays())
        ro = work / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if os.geteuid() == 0:
            real = os.access
            monkeypatch.setattr(pack.os, "access",
                                lambda p, mode: False if Path(p) == ro else real(p, mode))
        try:
            code, error = pack_case(work, model, outdir=ro / "sub" / "out")
        finally:
            ro.chmod(0o755)
        assert code == 2 and f"directory {ro} is not writable" in error


@pytest.mark.parametrize("fail", ["mkdtemp", "write", "rename"])
def test_write_failure_leaves_nothing(monkeypatch, fail):
    """A disk that fills up (or a directory that refuses) half way: no partial output, no
    parent directory made for it, and an existing OUTDIR (replaced with --force) kept."""
    armed = []

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with workdir() as work:
        model = work / "m.npz"
        np.savez(model, **good_arrays())
        old = work / "deep" / "out"
        old.mkdir(parents=True)
        (old / "old.txt").write_text("previous pack\n")
        if fail == "mkdtemp":
            monkeypatch.setattr(pack.tempfile, "mkdtemp", boom)
        elif fail == "write":
            monkeypatch.setattr(pack.formats, "write_hex", boom)
        else:                       # the final rename into place fails, once per pack
            real = Path.rename

            def rename(self, target):
                if Path(target).name == "out" and armed:
                    armed.clear()
                    boom()
                return real(self, target)
            monkeypatch.setattr(Path, "rename", rename)
        armed.append(1)
        code, error = pack_case(work, model, "--force", outdir=old)
        assert code == 2 and "No space left on device" in error
        assert (old / "old.txt").read_text() == "previous pack\n"
        armed.append(1)
        code, error = pack_case(work, model, outdir=work / "new" / "deeper" / "out")
        assert code == 2 and not (work / "new").exists()
        monkeypatch.undo()


@pytest.mark.parametrize("case", ["binary", "array", "parent is a file", "missing field"])
def test_cli_exit_2_one_line(tmp_path, case):
    """The same through the command line: exit 2, one line, no traceback."""
    model = tmp_path / "m.npz"
    np.savez(model, **good_arrays())
    hw = tmp_path / "winnow.json"
    hw.write_text(CFG.to_json())
    out = tmp_path / "out"
    if case == "binary":
        hw.write_bytes(bytes(range(256)))
    elif case == "array":
        hw.write_text("[1, 2, 3]\n")
    elif case == "missing field":
        hw.write_bytes(_without(["acc_bits"]))
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    res = subprocess.run([sys.executable, str(ROOT / "sw" / "pack.py"), str(model), "-o",
                          str(out), "--hw", str(hw)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("pack: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.npz", "winnow.json"] + (["file"] if case == "parent is a file" else []))


# ----------------------------------------------------------------------------- hw.gen
@fuzz(40)
@given(text=BAD_HW)
def test_gen_malformed_config(text):
    """``python -m hw.gen --config FILE``: one error line naming the file, exit 2, no files."""
    gen = pytest.importorskip("hw.gen")
    with workdir() as work:
        cfg = work / "in.json"
        cfg.write_bytes(text)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = gen.main(["--component", "input_transform", "--config", str(cfg),
                             "-o", str(work / "out")])
        assert code == 2
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"python -m hw.gen: error: {cfg}: ")
        assert not (work / "out").exists()


def test_gen_cli_binary_config(tmp_path):
    cfg = tmp_path / "in.json"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    res = subprocess.run([sys.executable, "-m", "hw.gen", "--config", str(cfg), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert res.stderr == f"python -m hw.gen: error: {cfg}: not a winnow.json: not UTF-8 " \
                         "text (byte 0 is b'\\x89')\n"
    assert not (tmp_path / "out").exists()
