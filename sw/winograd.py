"""Winograd minimal-filtering matrices F(m, r), derived exactly by Cook-Toom.

This module is the single source of truth for every Winograd matrix in winnow. The
hardware transform units, the golden model, the packer and the trainer all read the
matrices from here; nothing else in the project writes one down.

Derivation
----------
For ``alpha = m + r - 1`` and ``alpha - 1`` finite interpolation points ``a_i`` plus the
point at infinity, Cook-Toom gives (Lavin & Gray, 2016; the construction of ``wincnn``)::

    f_i      = prod_{j != i} (a_i - a_j)                    (finite points; f = 1 at infinity)
    A[i, j]  = a_i ** j            (i < alpha - 1),  A[alpha-1] = e_{last}
    G        = diag(f)^-1 A_r      (alpha x r)
    B^T      = diag(f) L T         (alpha x alpha, integer for integer points)

with ``L`` the Lagrange numerator coefficients and ``T = [I | -a**(alpha-1)]``. Then, for a
1-D correlation ``y[i] = sum_k d[i + k] g[k]``::

    y = A^T [(G g) * (B^T d)]

and in 2-D ``Y = A^T [(G g G^T) * (B^T d B)] A``. Everything is computed in
:class:`fractions.Fraction`, so the matrices are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = [
    "INTERPOLATION_POINTS",
    "WinogradMatrices",
    "matrices",
    "integer_matrix",
    "filter_denominator",
    "input_transform",
    "filter_transform",
    "output_transform",
    "TileGrid",
    "tile_grid",
    "extract_tiles",
    "assemble_tiles",
    "winograd_conv2d",
]

#: Interpolation points per output tile size m (for r = 3). The point at infinity is implicit.
#: These are Lavin's choices: small integers first, so that B^T and A^T stay integer for m <= 4.
INTERPOLATION_POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2)),
    6: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2),
        Fraction(1, 2), Fraction(-1, 2)),
}

Matrix = tuple[tuple[Fraction, ...], ...]


def _poly_mul(p: list[Fraction], q: list[Fraction]) -> list[Fraction]:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, pi in enumerate(p):
        for j, qj in enumerate(q):
            out[i + j] += pi * qj
    return out


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return tuple(
        tuple(sum((a[i][k] * b[k][j] for k in range(len(b))), Fraction(0))
              for j in range(len(b[0])))
        for i in range(len(a))
    )


def _transpose(a: Matrix) -> Matrix:
    return tuple(zip(*a))


@dataclass(frozen=True)
class WinogradMatrices:
    """Exact Cook-Toom matrices for F(m×m, r×r).

    Parameters
    ----------
    m : int
        Output tile size.
    r : int
        Filter size.
    AT : tuple of tuple of Fraction
        Output transform, ``m × n``.
    G : tuple of tuple of Fraction
        Filter transform, ``n × r``.
    BT : tuple of tuple of Fraction
        Input transform, ``n × n``.

    Attributes
    ----------
    n : int
        Input tile size ``m + r - 1``.
    """

    m: int
    r: int
    AT: Matrix
    G: Matrix
    BT: Matrix

    @property
    def n(self) -> int:
        return self.m + self.r - 1

    def as_float(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(AT, G, BT)`` as float64 arrays."""
        return tuple(np.array([[float(x) for x in row] for row in mat])
                     for mat in (self.AT, self.G, self.BT))


@lru_cache(maxsize=None)
def matrices(m: int, r: int = 3) -> WinogradMatrices:
    """Derive F(m, r) by Cook-Toom from :data:`INTERPOLATION_POINTS`.

    Raises
    ------
    ValueError
        If no interpolation points are defined for ``m`` or the points are too few.
    """
    if r != 3:
        raise ValueError(f"F({m},{r}): only 3×3 filters are supported")
    if m not in INTERPOLATION_POINTS:
        raise ValueError(f"tile m={m} is not supported; choose one of "
                         f"{sorted(INTERPOLATION_POINTS)}")
    alpha = m + r - 1
    points = INTERPOLATION_POINTS[m][: alpha - 1]
    finite = len(points)

    lagrange_den = [Fraction(1)] * finite
    for i, ai in enumerate(points):
        for j, aj in enumerate(points):
            if j != i:
                lagrange_den[i] *= ai - aj
    f = lagrange_den + [Fraction(1)]
    if f[0] < 0:  # wincnn's convention: keep the first row of B^T positive
        f[0] = -f[0]

    def vandermonde(cols: int) -> Matrix:
        rows = [tuple(p ** j for j in range(cols)) for p in points]
        rows.append(tuple(Fraction(1 if j == cols - 1 else 0) for j in range(cols)))
        return tuple(rows)

    AT = _transpose(vandermonde(m))
    G = tuple(tuple(x / f[i] for x in row) for i, row in enumerate(vandermonde(r)))

    # Lagrange numerators over the finite points: L[j][i] = coeff_j(prod_{k!=i}(x - a_k)) / f_i
    lag = []
    for i in range(finite):
        poly = [Fraction(1)]
        for k, ak in enumerate(points):
            if k != i:
                poly = _poly_mul(poly, [-ak, Fraction(1)])
        lag.append(poly)
    L = tuple(tuple(lag[i][j] / lagrange_den[i] for i in range(finite)) for j in range(finite))
    T = tuple(tuple([Fraction(int(i == j)) for j in range(finite)] + [-(points[i] ** finite)])
              for i in range(finite))
    Bt_small = _matmul(L, T)  # finite × alpha
    B = list(Bt_small) + [tuple(Fraction(int(j == alpha - 1)) for j in range(alpha))]
    BT = tuple(tuple(f[i] * B[j][i] for j in range(alpha)) for i in range(alpha))
    return WinogradMatrices(m=m, r=r, AT=AT, G=G, BT=BT)


def integer_matrix(mat: Matrix, name: str = "matrix") -> np.ndarray:
    """Return an exact matrix as int64, or raise if any entry is not an integer.

    The hardware uses the integer forms of ``BT`` and ``AT`` (shift-and-add only).
    """
    if any(x.denominator != 1 for row in mat for x in row):
        raise ValueError(f"{name} has non-integer entries; this tile size has no integer form")
    return np.array([[int(x) for x in row] for row in mat], dtype=np.int64)


def filter_denominator(m: int) -> int:
    """Smallest D with ``D·G`` integer, so ``D² G g Gᵀ`` is integer for integer ``g``.

    The exact-integer tests compare Winograd convolution against ``D²`` times direct convolution.
    """
    return math.lcm(*(x.denominator for row in matrices(m).G for x in row))


def input_transform(d: np.ndarray, m: int) -> np.ndarray:
    """Exact integer ``V = B^T d B`` over the last two axes (each of size n)."""
    BT = integer_matrix(matrices(m).BT, "B^T")
    d = np.asarray(d, dtype=np.int64)
    return np.einsum("ij,...jk,lk->...il", BT, d, BT)


def output_transform(M: np.ndarray, m: int) -> np.ndarray:
    """Exact integer ``Y = A^T M A`` over the last two axes (n×n → m×m)."""
    AT = integer_matrix(matrices(m).AT, "A^T")
    M = np.asarray(M, dtype=np.int64)
    return np.einsum("ij,...jk,lk->...il", AT, M, AT)


def filter_transform(g: np.ndarray, m: int) -> np.ndarray:
    """Float ``U = G g G^T`` over the last two axes (3×3 → n×n)."""
    _, G, _ = matrices(m).as_float()
    return np.einsum("ij,...jk,lk->...il", G, np.asarray(g, dtype=np.float64), G)


@dataclass(frozen=True)
class TileGrid:
    """How a feature map is cut into overlapping Winograd tiles.

    Attributes
    ----------
    m, n : int
        Output and input tile sizes.
    pad : int
        Zero padding on every border.
    out_h, out_w : int
        Output feature-map size ``H + 2 pad - 2``.
    tiles_h, tiles_w : int
        Tile counts, ``ceil(out / m)``; the last row/column of tiles may be partial.
    """

    m: int
    n: int
    pad: int
    out_h: int
    out_w: int
    tiles_h: int
    tiles_w: int

    @property
    def tiles(self) -> int:
        return self.tiles_h * self.tiles_w


def tile_grid(height: int, width: int, m: int, pad: int, r: int = 3) -> TileGrid:
    """Tile geometry for an ``height × width`` input, 3×3 stride-1 convolution."""
    if pad not in (0, 1):
        raise ValueError(f"pad={pad} is not supported (0 or 1)")
    out_h, out_w = height + 2 * pad - r + 1, width + 2 * pad - r + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {height}×{width} with pad {pad} is smaller than the 3×3 kernel")
    return TileGrid(m=m, n=m + r - 1, pad=pad, out_h=out_h, out_w=out_w,
                    tiles_h=-(-out_h // m), tiles_w=-(-out_w // m))


def extract_tiles(x: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Cut ``x[..., H, W]`` into patches ``[..., tiles_h, tiles_w, n, n]``.

    Patch ``(ty, tx)`` starts at input row ``ty*m - pad`` and column ``tx*m - pad``; samples
    outside the input are zero (padding, and the overhang of partial edge tiles).
    """
    *lead, height, width = x.shape
    rows = (grid.tiles_h - 1) * grid.m + grid.n
    cols = (grid.tiles_w - 1) * grid.m + grid.n
    padded = np.zeros((*lead, rows, cols), dtype=x.dtype)
    h = min(height, rows - grid.pad)
    w = min(width, cols - grid.pad)
    padded[..., grid.pad:grid.pad + h, grid.pad:grid.pad + w] = x[..., :h, :w]
    out = np.empty((*lead, grid.tiles_h, grid.tiles_w, grid.n, grid.n), dtype=x.dtype)
    for ty in range(grid.tiles_h):
        for tx in range(grid.tiles_w):
            out[..., ty, tx, :, :] = padded[..., ty * grid.m:ty * grid.m + grid.n,
                                            tx * grid.m:tx * grid.m + grid.n]
    return out


def assemble_tiles(y: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Inverse of tiling for outputs: ``[..., tiles_h, tiles_w, m, m]`` → ``[..., out_h, out_w]``."""
    *lead, th, tw, m, _ = y.shape
    full = y.swapaxes(-3, -2).reshape(*lead, th * m, tw * m)
    return full[..., :grid.out_h, :grid.out_w]


def winograd_conv2d(x: np.ndarray, w: np.ndarray, m: int, pad: int) -> np.ndarray:
    """Float Winograd correlation, ``x[C,H,W]`` with ``w[K,C,3,3]`` → ``[K, out_h, out_w]``.

    A plain reference for tests and for the float path; no quantisation.
    """
    grid = tile_grid(x.shape[-2], x.shape[-1], m, pad)
    AT, G, BT = matrices(m).as_float()
    d = extract_tiles(np.asarray(x, dtype=np.float64), grid)           # C,th,tw,n,n
    V = np.einsum("ij,...jk,lk->...il", BT, d, BT)
    U = np.einsum("ij,...jk,lk->...il", G, np.asarray(w, dtype=np.float64), G)  # K,C,n,n
    M = np.einsum("kcij,cyxij->kyxij", U, V)
    Y = np.einsum("ij,...jk,lk->...il", AT, M, AT)
    return assemble_tiles(Y, grid)
