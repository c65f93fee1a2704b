"""sw/golden.py: the bit-exact layer model against independent references.

Exact integer mode: with integer spatial weights g, ``U = D² G g Gᵀ`` is an integer (D is the
lcm of G's denominators), and the golden ``Y`` must equal ``D²`` times the integer direct
correlation, bit for bit. References: scipy.signal.correlate2d, a plain NumPy loop, and
onnxruntime's ConvInteger (int8 × int8 → int32). The float path is checked against
onnxruntime's Conv within a stated float32 bound.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from scipy.signal import correlate2d
from sklearn.datasets import load_digits

from sw.config import AccelConfig
from sw import golden, winograd
from sw.quant import QuantLayer

def d_squared(m: int) -> int:
    return winograd.filter_denominator(m) ** 2


def exact_U(g: np.ndarray, m: int) -> np.ndarray:
    """``D² G g Gᵀ`` as int64 ``[n*n, K, C]`` (checked integral with Fractions)."""
    G = winograd.matrices(m).G
    n, D2 = m + 2, d_squared(m)
    K, C = g.shape[:2]
    U = np.zeros((n * n, K, C), dtype=np.int64)
    for k in range(K):
        for c in range(C):
            for i in range(n):
                for j in range(n):
                    v = D2 * sum(G[i][a] * int(g[k, c, a, b]) * G[j][b]
                                 for a in range(3) for b in range(3))
                    assert v.denominator == 1
                    U[i * n + j, k, c] = int(v)
    return U


def make_layer(U, *, bias=None, multiplier=1, shift=1, pad=1, winograd_relu=False,
               spatial_relu=False) -> QuantLayer:
    K = U.shape[1]
    full = lambda v: np.full(K, v, dtype=np.int64)   # noqa: E731
    return QuantLayer(name="t", U=np.asarray(U, dtype=np.int64),
                      bias=full(0) if bias is None else np.asarray(bias, dtype=np.int64),
                      multiplier=full(multiplier), shift=full(shift), pad=pad,
                      winograd_relu=winograd_relu, spatial_relu=spatial_relu,
                      in_scale=1.0, w_scale=np.ones(K), out_scale=1.0)


def assembled_Y(trace: golden.LayerTrace, K: int, m: int) -> np.ndarray:
    grid = trace.grid
    return winograd.assemble_tiles(trace.Y.reshape(K, grid.tiles_h, grid.tiles_w, m, m), grid)


def scipy_conv(x: np.ndarray, g: np.ndarray, pad: int) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    return np.stack([sum(correlate2d(xp[c], g[k, c], mode="valid") for c in range(x.shape[0]))
                     for k in range(g.shape[0])]).astype(np.int64)


def loop_conv(x: np.ndarray, g: np.ndarray, pad: int) -> np.ndarray:
    """The definition, with Python ints: ``y[k,r,s] = sum g[k,c,i,j] x[c, r+i-pad, s+j-pad]``."""
    C, H, W = x.shape
    out = np.zeros((g.shape[0], H + 2 * pad - 2, W + 2 * pad - 2), dtype=np.int64)
    for k, r, s in np.ndindex(out.shape):
        acc = 0
        for c in range(C):
            for i in range(3):
                for j in range(3):
                    rr, ss = r + i - pad, s + j - pad
                    if 0 <= rr < H and 0 <= ss < W:
                        acc += int(g[k, c, i, j]) * int(x[c, rr, ss])
        out[k, r, s] = acc
    return out


def requantize_reference(y: int, bias: int, multiplier: int, shift: int, relu: bool,
                         lo: int, hi: int) -> int:
    """Round half up of ``(y + bias) * multiplier / 2**shift`` with Fractions, then clamp."""
    q = floor(Fraction((y + bias) * multiplier, 1 << shift) + Fraction(1, 2))
    if relu:
        q = max(q, 0)
    return min(max(q, lo), hi)


# -- exact integer mode -------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("pad", [0, 1])
def test_exact_mode_identical_to_scipy_and_numpy(rng, m, pad):
    cfg = AccelConfig(tile=m, wgt_bits=8 if m == 2 else 16, acc_bits=48)
    x = rng.integers(-128, 128, size=(3, 9, 7))
    g = rng.integers(-14, 15, size=(5, 3, 3, 3))
    want = scipy_conv(x, g, pad)
    np.testing.assert_array_equal(loop_conv(x, g, pad), want)
    np.testing.assert_array_equal(golden.direct_conv2d(x, g, pad), want)
    U = exact_U(g, m)
    bias = rng.integers(-5000, 5000, size=5)
    layer = make_layer(U, bias=bias, multiplier=3, shift=12, pad=pad, spatial_relu=True)
    trace = golden.conv_layer_trace(x, layer, cfg)
    np.testing.assert_array_equal(assembled_Y(trace, 5, m), d_squared(m) * want)
    np.testing.assert_array_equal(
        trace.out, golden.requantize(d_squared(m) * want, bias, layer.multiplier, layer.shift,
                                     True, cfg))


def test_identity_requantisation_gives_clamped_direct_conv(rng):
    """F(2,3): D² = 4 = 2**2, so multiplier 1, shift 2 undoes it exactly."""
    cfg = AccelConfig(tile=2)
    x = rng.integers(-4, 5, size=(2, 10, 10))
    g = rng.integers(-3, 4, size=(3, 2, 3, 3))
    bias = np.array([0, 7, -20])
    layer = make_layer(exact_U(g, 2), bias=4 * bias, multiplier=1, shift=2, pad=1)
    want = np.clip(scipy_conv(x, g, 1) + bias[:, None, None], -128, 127)
    np.testing.assert_array_equal(golden.conv_layer(x, layer, cfg), want)


def _conv_integer(x: np.ndarray, g: np.ndarray, pad: int) -> np.ndarray:
    C, H, W = x.shape
    node = helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[pad] * 4)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, C, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(g.astype(np.int8), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x[None].astype(np.int8)})[0][0].astype(np.int64)


@pytest.mark.parametrize("m", [2, 4])
def test_exact_mode_against_onnxruntime_conv_integer_on_digits(rng, m):
    """A real input: sklearn digit images (0..16) scaled to int8, a layer of 8 filters."""
    digits = load_digits().images[:4]                              # 4 × 8 × 8
    x = (digits * 7).astype(np.int64)                              # 0..112, int8 range
    g = rng.integers(-14, 15, size=(8, 4, 3, 3))
    cfg = AccelConfig(tile=m, wgt_bits=8 if m == 2 else 16, acc_bits=48)
    for pad in (0, 1):
        want = _conv_integer(x, g, pad)
        trace = golden.conv_layer_trace(x, make_layer(exact_U(g, m), pad=pad), cfg)
        np.testing.assert_array_equal(assembled_Y(trace, 8, m), d_squared(m) * want)


def test_float_winograd_against_onnxruntime_conv(rng):
    """Float path vs onnxruntime's float32 Conv: bound 1e-5 relative to the output peak,
    which covers float32 rounding of 36-term sums (~36 * 2**-24 ≈ 2e-6)."""
    digits = load_digits().images[:3] / 16.0
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": digits[None].astype(np.float32)})[0][0]
    for m in (2, 4):
        U = winograd.filter_transform(w.astype(np.float64), m)
        U = U.reshape(6, 3, -1).transpose(2, 0, 1)
        got = golden.float_winograd_conv(digits, U, b, m, pad=1)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(golden.direct_conv2d(digits, w, 1) + b[:, None, None], want,
                               rtol=0, atol=1e-5 * np.abs(want).max())


# -- overflow ------------------------------------------------------------------------------

def test_wrap_and_saturate_exact_values():
    U = np.array([[[100, 100, -150]]])          # [xi=1, K=1, C=3]
    V = np.array([[[1, 1], [1, 1], [0, 1]]])    # [xi=1, C=3, T=2]: sums 200 and 50
    wrap = AccelConfig(acc_bits=8, overflow="wrap")
    sat = AccelConfig(acc_bits=8, overflow="saturate")
    assert golden.accumulate(U, V, wrap).tolist() == [[[200 - 256, 50]]]
    # the running sum passes 127 on the way to 50: saturate clamps only the exact total
    assert golden.accumulate(U, V, sat).tolist() == [[[127, 50]]]
    assert golden.accumulate(-U, V, wrap).tolist() == [[[-200 + 256, -50]]]
    assert golden.accumulate(-U, V, sat).tolist() == [[[-128, -50]]]
    # the largest magnitudes: -128 is representable, +128 wraps to -128
    assert golden.accumulate([[[64, 64]]], [[[1], [1]]], wrap).tolist() == [[[-128]]]
    assert golden.accumulate([[[-64, -64]]], [[[1], [1]]], sat).tolist() == [[[-128]]]


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_overflow_flag_is_an_exact_sum_outside_acc_range(overflow):
    cfg = AccelConfig(acc_bits=8, overflow=overflow)
    V = np.array([[[1], [1]]])                   # [xi=1, C=2, T=1]
    # the limits themselves are not an overflow; one past either is
    assert not golden.accumulator_overflow([[[64, 63]]], V, cfg)        # 127
    assert not golden.accumulator_overflow([[[-64, -64]]], V, cfg)      # -128
    assert golden.accumulator_overflow([[[64, 64]]], V, cfg)            # 128
    assert golden.accumulator_overflow([[[-64, -65]]], V, cfg)          # -129
    # a running sum past the limit is not an overflow when the total is back inside
    assert not golden.accumulator_overflow([[[100, 100, -150]]], [[[1], [1], [1]]], cfg)
    assert not golden.accumulator_overflow(np.zeros((1, 0, 2)), np.zeros((1, 2, 3)), cfg)


def test_trace_reports_the_overflow_of_its_accumulators():
    rng = np.random.default_rng(5)
    cfg = AccelConfig(acc_bits=12, overflow="wrap", c_max=8, k_max=4)
    x = rng.integers(-128, 128, size=(8, 6, 6))
    quiet = golden.conv_layer_trace(x, make_layer(np.zeros((16, 4, 8), dtype=np.int64)), cfg)
    assert not quiet.overflow
    loud = golden.conv_layer_trace(x, make_layer(np.full((16, 4, 8), 127)), cfg)
    assert loud.overflow
    V = loud.V
    assert loud.overflow == golden.accumulator_overflow(np.full((16, 4, 8), 127), V, cfg)


def test_accumulate_beyond_int64_uses_exact_integers():
    cfg = AccelConfig(acc_bits=48, overflow="wrap")
    big = 1 << 40
    U = np.array([[[big, big]]])
    V = np.array([[[big], [3]]])
    exact = big * big + 3 * big
    half = 1 << 47
    assert golden.accumulate(U, V, cfg).tolist() == [[[(exact + half) % (1 << 48) - half]]]
    sat = AccelConfig(acc_bits=48, overflow="saturate")
    assert golden.accumulate(U, V, sat).tolist() == [[[half - 1]]]


# -- requantisation -------------------------------------------------------------------------

@pytest.mark.parametrize("y, bias, mult, shift, relu, want", [
    (1, 0, 1, 1, False, 1),        # +0.5 rounds up
    (-1, 0, 1, 1, False, 0),       # -0.5 rounds up to 0 (half up, not half away from zero)
    (3, 0, 1, 1, False, 2),        # 1.5 -> 2
    (-3, 0, 1, 1, False, -1),      # -1.5 -> -1
    (-5, 0, 1, 1, False, -2),      # -2.5 -> -2
    (5, -6, 1, 1, False, 0),       # bias first: -1 -> -0.5 -> 0
    (255, 0, 1, 1, False, 127),    # 127.5 rounds to 128, clamps to 127
    (-257, 0, 1, 1, False, -128),  # -128.5 -> -128
    (-259, 0, 1, 1, False, -128),  # -129.5 -> -129, clamps to -128
    (-7, 0, 3, 2, True, 0),        # relu
    (7, 0, 3, 2, True, 5),         # 21/4 = 5.25 -> 5
    (1 << 40, 12345, (1 << 31) - 1, 63, False, 127),      # 256 - tiny: clamps
    ((1 << 38) + 12345, 0, (1 << 30) + 1, 63, False, 32),  # 32 + 2**-25 + ...: > 64-bit product
    (-(1 << 36), 0, (1 << 31) - 1, 63, False, -16),        # -16 + 2**-27
])
def test_requantize_edge_cases(y, bias, mult, shift, relu, want):
    cfg = AccelConfig()
    assert requantize_reference(y, bias, mult, shift, relu, -128, 127) == want
    got = golden.requantize(np.array([y]), np.array([bias]), np.array([mult]),
                            np.array([shift]), relu, cfg)
    assert got.tolist() == [want]


def test_requantize_per_channel_broadcast_and_bad_shift():
    cfg = AccelConfig(act_bits=4)
    y = np.array([[[10, -10]], [[10, -10]]])
    out = golden.requantize(y, np.array([0, 2]), np.array([1, 3]), np.array([1, 2]), False, cfg)
    assert out.tolist() == [[[5, -5]], [[7, -6]]]     # 36/4 = 9 clamps to 7; -24/4 = -6
    with pytest.raises(ValueError, match="shift must be >= 1"):
        golden.requantize(y, np.zeros(2), np.ones(2), np.array([0, 1]), False, cfg)


@settings(max_examples=60, deadline=None)
@given(y=st.integers(-(1 << 50), 1 << 50), bias=st.integers(-(1 << 31), (1 << 31) - 1),
       mult=st.integers(0, (1 << 31) - 1), shift=st.integers(1, 63), relu=st.booleans())
def test_requantize_matches_fraction_reference(y, bias, mult, shift, relu):
    cfg = AccelConfig()
    got = golden.requantize(np.array([y]), np.array([bias]), np.array([mult]),
                            np.array([shift]), relu, cfg)
    assert got.tolist() == [requantize_reference(y, bias, mult, shift, relu, -128, 127)]


# -- properties over shapes, pad, tile sizes and overflow modes ----------------------------

@settings(max_examples=40, deadline=None)
@given(data=st.data(), m=st.sampled_from([2, 4]), pad=st.sampled_from([0, 1]),
       overflow=st.sampled_from(["wrap", "saturate"]), acc_bits=st.integers(12, 40),
       C=st.integers(1, 4), K=st.integers(1, 3), H=st.integers(3, 11), W=st.integers(3, 11),
       seed=st.integers(0, 2**32 - 1))
def test_property_exact_pipeline(data, m, pad, overflow, acc_bits, C, K, H, W, seed):
    rng = np.random.default_rng(seed)
    cfg = AccelConfig(tile=m, wgt_bits=16, acc_bits=acc_bits, overflow=overflow)
    x = rng.integers(-128, 128, size=(C, H, W))
    g = rng.integers(-50, 51, size=(K, C, 3, 3))
    U = exact_U(g, m)
    layer = make_layer(U, bias=rng.integers(-1000, 1000, size=K), multiplier=1, shift=9,
                       pad=pad, spatial_relu=data.draw(st.booleans()))
    trace = golden.conv_layer_trace(x, layer, cfg)
    grid, n = trace.grid, m + 2
    assert grid.out_h == H + 2 * pad - 2 and grid.out_w == W + 2 * pad - 2
    # independent exact M with Python ints, from sw.winograd's own transform
    d = winograd.extract_tiles(x, grid).reshape(C, -1, n, n)
    V = winograd.input_transform(d, m).transpose(2, 3, 0, 1).reshape(n * n, C, -1)
    np.testing.assert_array_equal(trace.V, V)
    M_exact = np.matmul(U.astype(object), V.astype(object))
    lo, hi = cfg.acc_range
    if overflow == "saturate":
        np.testing.assert_array_equal(trace.M, np.clip(M_exact, lo, hi).astype(np.int64))
    else:
        assert trace.M.min() >= lo and trace.M.max() <= hi
        assert np.all((trace.M - M_exact) % (1 << acc_bits) == 0)
        # A^T is integer, so the wrapped Y agrees with D² × direct modulo 2**acc_bits
        Y = assembled_Y(trace, K, m)
        assert np.all((Y - d_squared(m) * golden.direct_conv2d(x, g, pad)).astype(object)
                      % (1 << acc_bits) == 0)
    if np.array_equal(trace.M, M_exact):      # no overflow: exact equality with direct conv
        np.testing.assert_array_equal(assembled_Y(trace, K, m),
                                      d_squared(m) * golden.direct_conv2d(x, g, pad))
    np.testing.assert_array_equal(
        trace.out, golden.requantize(assembled_Y(trace, K, m), layer.bias, layer.multiplier,
                                     layer.shift, layer.spatial_relu, cfg))


@settings(max_examples=25, deadline=None)
@given(m=st.sampled_from([2, 4]), pad=st.sampled_from([0, 1]), C=st.integers(1, 3),
       K=st.integers(1, 3), H=st.integers(3, 9), W=st.integers(3, 9),
       seed=st.integers(0, 2**32 - 1))
def test_property_winograd_relu(m, pad, C, K, H, W, seed):
    rng = np.random.default_rng(seed)
    cfg = AccelConfig(tile=m)
    x = rng.integers(-128, 128, size=(C, H, W))
    U = rng.integers(-128, 128, size=((m + 2) ** 2, K, C))
    plain = golden.conv_layer_trace(x, make_layer(U, pad=pad), cfg)
    relu = golden.conv_layer_trace(x, make_layer(U, pad=pad, winograd_relu=True), cfg)
    np.testing.assert_array_equal(relu.V, np.maximum(plain.V, 0))
    np.testing.assert_array_equal(relu.M, np.matmul(U, relu.V))
    counts = golden.mult_counts(make_layer(U, pad=pad, winograd_relu=True), x, cfg)
    assert counts["sparse_winograd"] == int(((U != 0)[:, :, :, None]
                                             & (relu.V != 0)[:, None, :, :]).sum())


# -- edge values ---------------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("fill", [-128, 127, 0])
def test_edge_values(m, fill):
    cfg = AccelConfig(tile=m, c_max=16)
    C, K = 16, 2
    x = np.full((C, 6, 6), fill)
    U = np.stack([np.full(((m + 2) ** 2, C), -128), np.full(((m + 2) ** 2, C), 127)], axis=1)
    bias = np.array([-(1 << 31), (1 << 31) - 1])
    layer = make_layer(U, bias=bias, multiplier=(1 << 31) - 1, shift=40)
    trace = golden.conv_layer_trace(x, layer, cfg)
    n = m + 2
    d = winograd.extract_tiles(x, trace.grid).reshape(C, -1, n, n)
    V = winograd.input_transform(d, m).transpose(2, 3, 0, 1).reshape(n * n, C, -1)
    M = np.matmul(U.astype(object), V.astype(object))
    assert int(np.abs(M).max()) < 1 << 31                         # no overflow at 32 bits
    np.testing.assert_array_equal(trace.M, M.astype(np.int64))
    AT = winograd.integer_matrix(winograd.matrices(m).AT).astype(object)
    Y = np.einsum("ij,jkab,lk->abil", AT, M.reshape(n, n, K, -1), AT)
    np.testing.assert_array_equal(trace.Y, Y.astype(np.int64))
    want = [[[requantize_reference(int(v), int(bias[k]), (1 << 31) - 1, 40, False, -128, 127)
              for v in row] for row in plane]
            for k, plane in enumerate(assembled_Y(trace, K, m))]
    assert trace.out.tolist() == want
    if fill == 0:
        assert not trace.V.any() and not trace.M.any()
        assert trace.out[0].tolist() == [[-128] * 6] * 6
        assert trace.out[1].tolist() == [[127] * 6] * 6
        assert golden.mult_counts(layer, x, cfg)["sparse_winograd"] == 0


# -- densities, counts, errors ------------------------------------------------------------

def test_coord_density_and_mult_counts_exact():
    cfg = AccelConfig(tile=2)
    U = np.zeros((16, 2, 1), dtype=np.int64)
    U[0, 0, 0] = 5
    U[0, 1, 0] = -3
    U[7, 1, 0] = 1
    assert golden.coord_density(U).tolist() == [1.0] + [0.0] * 6 + [0.5] + [0.0] * 8
    x = np.zeros((1, 4, 4), dtype=np.int64)
    x[0, 1, 1] = 1                                # pad 0: one tile (0,0), d[1,1] = 1
    layer = make_layer(U, pad=0)
    counts = golden.mult_counts(layer, x, cfg)
    V = golden.conv_layer_trace(x, layer, cfg).V[:, 0, :]        # [16, T=1]
    assert counts["dense_direct"] == 2 * 1 * 2 * 2 * 9
    assert counts["dense_winograd"] == 2 * 1 * 1 * 16
    assert counts["sparse_winograd"] == 2 * int(V[0, 0] != 0) + int(V[7, 0] != 0)


def test_bad_inputs_name_the_layer():
    cfg = AccelConfig(tile=2)
    layer = make_layer(np.ones((16, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"^layer t: input must be \[C=3, H, W\], got \(2, 5, 5\)"):
        golden.conv_layer(np.zeros((2, 5, 5), dtype=np.int64), layer, cfg)
    with pytest.raises(ValueError, match=r"^layer t: input holds values in \[300, 300\], "
                                         r"outside \[-128, 127\]"):
        golden.conv_layer(np.full((3, 5, 5), 300), layer, cfg)
    with pytest.raises(ValueError, match="U has 16 coordinates; F\\(4,3\\) needs 36"):
        golden.conv_layer(np.zeros((3, 5, 5), dtype=np.int64), layer, AccelConfig(tile=4))
    with pytest.raises(ValueError, match="input must be integer"):
        golden.conv_layer(np.zeros((3, 5, 5)), layer, cfg)
