"""sw/winograd.py: exact Cook-Toom matrices, tiling, and Winograd == direct convolution."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import wincnn

from sw import winograd
from sw.golden import direct_conv2d

def _exact_filter_transform(g: np.ndarray, m: int) -> np.ndarray:
    """``D² G g Gᵀ`` with Python ints (via Fractions), for g[..., 3, 3] integer."""
    mats = winograd.matrices(m)
    D = winograd.filter_denominator(m)
    DG = [[int(x * D) for x in row] for row in mats.G]
    out = np.zeros(g.shape[:-2] + (mats.n, mats.n), dtype=np.int64)
    for idx in np.ndindex(g.shape[:-2]):
        gg = g[idx]
        for i in range(mats.n):
            for j in range(mats.n):
                out[idx + (i, j)] = sum(DG[i][a] * int(gg[a, b]) * DG[j][b]
                                        for a in range(3) for b in range(3))
    return out


def _exact_winograd_conv(x: np.ndarray, g: np.ndarray, m: int, pad: int) -> np.ndarray:
    """Integer Winograd: returns ``D² *`` the correlation, computed only with integer matrices."""
    grid = winograd.tile_grid(x.shape[-2], x.shape[-1], m, pad)
    V = winograd.input_transform(winograd.extract_tiles(x, grid), m)       # C, th, tw, n, n
    U = _exact_filter_transform(g, m)                                     # K, C, n, n
    M = np.einsum("kcij,cyxij->kyxij", U, V)
    return winograd.assemble_tiles(winograd.output_transform(M, m), grid)


def test_matrix_shapes_and_integer_forms():
    for m in (2, 4, 6):
        mats = winograd.matrices(m)
        assert (len(mats.AT), len(mats.AT[0])) == (m, m + 2)
        assert (len(mats.G), len(mats.G[0])) == (m + 2, 3)
        assert (len(mats.BT), len(mats.BT[0])) == (m + 2, m + 2)
    assert winograd.integer_matrix(winograd.matrices(2).BT).tolist() == [
        [1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    assert winograd.integer_matrix(winograd.matrices(2).AT).tolist() == [
        [1, 1, 1, 0], [0, 1, -1, 1]]
    with pytest.raises(ValueError, match="B\\^T has non-integer entries"):
        winograd.integer_matrix(winograd.matrices(6).BT, "B^T")


def test_unsupported_tile_is_named():
    with pytest.raises(ValueError, match="tile m=5 is not supported; choose one of \\[2, 4, 6\\]"):
        winograd.matrices(5)
    with pytest.raises(ValueError, match="only 3×3 filters"):
        winograd.matrices(2, r=5)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("pad", [0, 1])
def test_integer_winograd_equals_direct_exactly(rng, m, pad):
    D = winograd.filter_denominator(m)
    assert D == {2: 2, 4: 24}[m]
    for H, W in [(3, 3), (5, 7), (8, 8), (11, 6)]:
        x = rng.integers(-128, 128, size=(3, H, W))
        g = rng.integers(-128, 128, size=(4, 3, 3, 3))
        got = _exact_winograd_conv(x, g, m, pad)
        want = direct_conv2d(x, g, pad)
        assert got.shape == want.shape == (4, H + 2 * pad - 2, W + 2 * pad - 2)
        np.testing.assert_array_equal(got, D * D * want)


def test_float_f63_matches_direct(rng):
    x = rng.normal(size=(3, 13, 9))
    w = rng.normal(size=(2, 3, 3, 3))
    for pad in (0, 1):
        got = winograd.winograd_conv2d(x, w, 6, pad)
        want = direct_conv2d(x, w, pad)
        # F(6,3) has entries up to 2^5 and 1/90-sized G rows; 1e-10 is ~10^6 ulps of headroom
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


def _wincnn_matrices(m: int):
    points = list(winograd.INTERPOLATION_POINTS[m][: m + 1])
    AT, G, BT, _ = wincnn.cookToomFilter(points, m, 3)
    return [np.array(mat.evalf(), dtype=np.float64) for mat in (AT, G, BT)]


@pytest.mark.parametrize("m", [2, 4, 6])
def test_cross_check_against_wincnn_by_result(rng, m):
    """Both derivations must compute the same correlation; their matrices may differ in sign."""
    AT_w, G_w, BT_w = _wincnn_matrices(m)
    AT, G, BT = winograd.matrices(m).as_float()
    for _ in range(20):
        d = rng.normal(size=(m + 2, m + 2))
        g = rng.normal(size=(3, 3))
        ours = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
        theirs = AT_w @ ((G_w @ g @ G_w.T) * (BT_w @ d @ BT_w.T)) @ AT_w.T
        direct = np.array([[np.sum(d[r:r + 3, s:s + 3] * g) for s in range(m)]
                           for r in range(m)])
        np.testing.assert_allclose(ours, direct, atol=1e-9)
        np.testing.assert_allclose(theirs, ours, atol=1e-9)


def test_tile_grid_geometry():
    grid = winograd.tile_grid(7, 10, 4, 1)
    assert (grid.out_h, grid.out_w, grid.tiles_h, grid.tiles_w, grid.tiles) == (7, 10, 2, 3, 6)
    grid = winograd.tile_grid(3, 3, 2, 0)
    assert (grid.out_h, grid.out_w, grid.tiles_h, grid.tiles_w) == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="pad=2 is not supported"):
        winograd.tile_grid(8, 8, 2, 2)
    with pytest.raises(ValueError, match="input 2×5 with pad 0 is smaller than the 3×3 kernel"):
        winograd.tile_grid(2, 5, 2, 0)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("pad", [0, 1])
def test_extract_tiles_offsets_and_zero_overhang(m, pad):
    H, W = 7, 9        # neither output size is a multiple of 2 or 4: partial edge tiles
    x = np.arange(1, H * W + 1).reshape(H, W)
    grid = winograd.tile_grid(H, W, m, pad)
    tiles = winograd.extract_tiles(x, grid)
    assert tiles.shape == (grid.tiles_h, grid.tiles_w, m + 2, m + 2)
    for ty in range(grid.tiles_h):
        for tx in range(grid.tiles_w):
            for i in range(m + 2):
                for j in range(m + 2):
                    r, c = ty * m - pad + i, tx * m - pad + j
                    want = x[r, c] if 0 <= r < H and 0 <= c < W else 0
                    assert tiles[ty, tx, i, j] == want, (ty, tx, i, j)


@pytest.mark.parametrize("m", [2, 4])
def test_assemble_tiles_crops_partial_tiles(m):
    grid = winograd.tile_grid(6, 9, m, 0)      # out 4×7
    y = np.arange(grid.tiles * m * m).reshape(grid.tiles_h, grid.tiles_w, m, m)
    out = winograd.assemble_tiles(y, grid)
    assert out.shape == (4, 7)
    for r in range(4):
        for c in range(7):
            assert out[r, c] == y[r // m, c // m, r % m, c % m]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("pad", [0, 1])
def test_float_winograd_conv_tiling(rng, m, pad):
    for H, W in [(3, 4), (6, 6), (9, 5), (10, 13)]:
        x = rng.normal(size=(2, H, W))
        w = rng.normal(size=(3, 2, 3, 3))
        np.testing.assert_allclose(winograd.winograd_conv2d(x, w, m, pad),
                                   direct_conv2d(x, w, pad), rtol=0, atol=1e-11)


def test_filter_transform_matches_fractions():
    g = np.array([[1, -2, 3], [0, 5, -1], [2, 2, -7]])
    for m in (2, 4):
        D = winograd.filter_denominator(m)
        exact = _exact_filter_transform(g, m)
        np.testing.assert_allclose(winograd.filter_transform(g, m) * D * D, exact, atol=1e-9)
        G = winograd.matrices(m).G
        assert exact[0, 0] == Fraction(G[0][0] * D) ** 2 * g[0, 0]
