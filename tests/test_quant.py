"""sw/quant.py: scales, multipliers, layer quantisation, and the quantised path's error bound."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from sw.config import AccelConfig
from sw import golden, quant, winograd

SEED = 1234


@pytest.fixture
def rng():
    print(f"seed {SEED}")
    return np.random.default_rng(SEED)


def test_choose_scale():
    assert quant.choose_scale(np.array([0.5, -2.54, 1.0]), 8) == pytest.approx(2.54 / 127)
    assert quant.choose_scale(np.array([3.5]), 4) == pytest.approx(0.5)
    assert quant.choose_scale(np.zeros(4), 8) == 1.0


@settings(max_examples=60, deadline=None)
@given(real=st.floats(0, 1e4, allow_nan=False), mult_bits=st.integers(8, 32),
       shift_bits=st.integers(4, 6))
def test_quantize_multiplier_is_closest_with_largest_shift(real, mult_bits, shift_bits):
    cfg = AccelConfig(mult_bits=mult_bits, shift_bits=shift_bits)
    mult_max, shift_max = (1 << (mult_bits - 1)) - 1, (1 << shift_bits) - 1
    if real * 2 > mult_max + 0.5:
        with pytest.raises(ValueError, match="does not fit a"):
            quant.quantize_multiplier(real, cfg)
        return
    mult, shift = (int(v) for v in quant.quantize_multiplier(real, cfg))
    assert 0 <= mult <= mult_max and 1 <= shift <= shift_max
    if mult == 0:
        assert shift == 1 and real * (1 << shift_max) <= 0.5
        return
    # nearest representable value at this shift ...
    assert abs(Fraction(mult, 1 << shift) - Fraction(real)) <= Fraction(1, 1 << (shift + 1))
    # ... and no larger shift would still fit the multiplier
    if shift < shift_max:
        assert round(real * 2.0 ** (shift + 1)) > mult_max


def test_quantize_multiplier_exact_values_and_errors():
    cfg = AccelConfig()
    mult, shift = quant.quantize_multiplier([0.5, 0.25, 0.0, 1e-4], cfg)
    assert mult.tolist() == [1 << 30, 1 << 30, 0, round(1e-4 * 2.0 ** 44)]
    assert shift.tolist() == [31, 32, 1, 44]
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        quant.quantize_multiplier(-1.0, cfg)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        quant.quantize_multiplier(float("inf"), cfg)


@pytest.mark.parametrize("m", [2, 4])
def test_quantize_layer_spatial_and_winograd_inputs_agree(rng, m):
    cfg = AccelConfig(tile=m)
    w = rng.normal(size=(4, 3, 3, 3))
    b = rng.normal(size=4)
    a = quant.quantize_layer(w, b, 0.02, 0.1, cfg, name="c1", pad=0, spatial_relu=True)
    U = quant.winograd_weights(w, m)
    assert U.shape == ((m + 2) ** 2, 4, 3)
    np.testing.assert_allclose(U[:, 1, 2], winograd.filter_transform(w[1, 2], m).ravel())
    z = quant.quantize_layer(U, b, 0.02, 0.1, cfg, name="c1", pad=0, spatial_relu=True)
    np.testing.assert_array_equal(a.U, z.U)
    np.testing.assert_array_equal(a.bias, z.bias)
    assert (a.K, a.C, a.pad, a.spatial_relu, a.winograd_relu) == (4, 3, 0, True, False)
    # per-channel max-abs scale: every channel reaches +-127 exactly
    assert a.U.dtype == np.int64
    assert np.abs(a.U).max(axis=(0, 2)).tolist() == [127] * 4
    np.testing.assert_allclose(a.U * a.w_scale[None, :, None], U, rtol=0,
                               atol=a.w_scale.max() / 2 + 1e-12)
    np.testing.assert_array_equal(a.bias, np.rint(b / (0.02 * a.w_scale)).astype(np.int64))
    np.testing.assert_allclose(a.multiplier / 2.0 ** a.shift, 0.02 * a.w_scale / 0.1,
                               rtol=2.0 ** -29)


def test_quantize_layer_errors_name_the_layer():
    cfg = AccelConfig(tile=2)
    with pytest.raises(ValueError, match=r"^layer conv7: weights of shape \(4, 3, 5, 5\) are "
                                         r"neither spatial \[K, C, 3, 3\] nor Winograd-domain "
                                         r"\[16, K, C\] for F\(2,3\)"):
        quant.quantize_layer(np.zeros((4, 3, 5, 5)), None, 1.0, 1.0, cfg, name="conv7")
    with pytest.raises(ValueError, match=r"^layer c: bias must have shape \(4,\), got \(3,\)"):
        quant.quantize_layer(np.ones((4, 3, 3, 3)), np.zeros(3), 1.0, 1.0, cfg, name="c")
    with pytest.raises(ValueError, match=r"^layer c: scales must be > 0"):
        quant.quantize_layer(np.ones((4, 3, 3, 3)), None, 0.0, 1.0, cfg, name="c")
    with pytest.raises(ValueError, match=r"^layer c: pad=2 is not supported"):
        quant.quantize_layer(np.ones((4, 3, 3, 3)), None, 1.0, 1.0, cfg, name="c", pad=2)


def test_zero_channel_gets_unit_scale_and_zero_weights():
    w = np.zeros((2, 1, 3, 3))
    w[1, 0, 1, 1] = 1.0
    layer = quant.quantize_layer(w, None, 1.0, 1.0, AccelConfig(), name="z")
    assert layer.w_scale[0] == 1.0 and not layer.U[:, 0].any()
    assert layer.bias.tolist() == [0, 0]


def _digit_layer(m: int, winograd_relu: bool, rng):
    """A 1→8 channel layer on real digits; the output scale covers the float range."""
    images = load_digits().images[:24] / 16.0
    w = rng.normal(size=(8, 1, 3, 3)) * 0.5
    b = rng.normal(size=8) * 0.1
    in_scale = 1 / 127
    xq = np.rint(images / in_scale).astype(np.int64)[:, None]           # N, 1, 8, 8
    U = quant.winograd_weights(w, m)
    ref = np.stack([golden.float_winograd_conv(x * in_scale, U, b, m, 1, winograd_relu)
                    for x in xq])
    out_scale = quant.choose_scale(ref, 8)
    cfg = AccelConfig(tile=m)
    layer = quant.quantize_layer(w, b, in_scale, out_scale, cfg, name="digits", pad=1,
                                 winograd_relu=winograd_relu, spatial_relu=True)
    return cfg, layer, xq, np.clip(np.maximum(ref, 0) / out_scale, -128, 127)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("winograd_relu", [False, True])
def test_quantised_path_within_documented_bound(rng, m, winograd_relu):
    """|golden - float| <= golden.error_bound (docs/golden.md), element by element."""
    cfg, layer, xq, want = _digit_layer(m, winograd_relu, rng)
    worst = 0.0
    for x, z in zip(xq, want):
        out = golden.conv_layer(x, layer, cfg)
        err = np.abs(out - z)
        bound = golden.error_bound(x, layer, cfg)
        assert np.all(err <= bound + 1e-9), float((err - bound).max())
        worst = max(worst, float((err / bound).max()))
    # the bound is not vacuous: some element uses a good part of it
    assert worst > 0.25
    print(f"m={m} winograd_relu={winograd_relu}: worst error / bound = {worst:.2f}")


def test_f23_error_is_small_on_digits(rng):
    """F(2,3) on digits: at most 2 output steps from float (measured 1.3)."""
    cfg, layer, xq, want = _digit_layer(2, False, rng)
    err = np.stack([np.abs(golden.conv_layer(x, layer, cfg) - z) for x, z in zip(xq, want)])
    assert err.max() <= 2.0
    assert err.mean() <= 0.5
