"""Bit-exact reference of the accelerator's arithmetic for one 3×3 stride-1 layer.

Pure NumPy, int64 inside (Python ints where a product can pass 63 bits). The pipeline, per
tile ``t`` and Winograd coordinate ``xi = i*n + j`` (docs/golden.md has the equations)::

    d  = n×n input patch (zero outside the map)          int act_bits
    V  = B^T d B            (optionally ReLU(V))          exact, cfg.v_bits
    M  = sum_c U[xi,k,c] * V[xi,c,t]                      exact, then wrap or saturate to acc_bits
    Y  = A^T M A                                          exact, cfg.y_bits
    out = clamp(relu?(((Y + bias) * multiplier + 2**(shift-1)) >> shift))   int act_bits

Nothing here depends on summation order: wrap is arithmetic modulo ``2**acc_bits`` and
saturate clamps the exact sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.config import AccelConfig
from sw import winograd
from sw.quant import QuantLayer

__all__ = [
    "act_beats", "drain_beats",
    "LayerTrace", "transform_input", "winograd_relu", "accumulate", "accumulator_overflow",
    "transform_output",
    "requantize", "conv_layer", "conv_layer_trace", "coord_density", "mult_counts",
    "direct_conv2d", "float_winograd_conv", "error_bound",
]

#: Magnitude below which an int64 result of a sum or product is certainly exact.
_INT64_SAFE = 1 << 62


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def transform_input(d: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Exact ``V = B^T d B`` over the last two axes (``[..., n, n]``), int64."""
    d = np.asarray(d, dtype=np.int64)
    return np.einsum("ij,...jk,lk->...il", cfg.BT, d, cfg.BT)


def winograd_relu(V: np.ndarray) -> np.ndarray:
    """ReLU in the Winograd domain: ``max(V, 0)`` element-wise."""
    return np.maximum(V, 0)


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


def _exact_sums(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``U [n*n, K, C] @ V [n*n, C, T]`` exactly (Python integers past int64's safe range)."""
    U = np.asarray(U, dtype=np.int64)
    V = np.asarray(V, dtype=np.int64)
    bound = (int(np.abs(U).max(initial=0)) * int(np.abs(V).max(initial=0))
             * max(1, U.shape[-1]))
    if bound < _INT64_SAFE:
        return np.matmul(U, V)
    return np.matmul(U.astype(object), V.astype(object))


def accumulator_overflow(U: np.ndarray, V: np.ndarray, cfg: AccelConfig) -> bool:
    """Whether any exact sum of :func:`accumulate` lies outside ``cfg.acc_range``.

    This is the hardware's sticky STATUS.OVERFLOW flag for one run, in both overflow modes:
    the accumulators hold the exact sum (``cfg.acc_internal_bits``) and the drain flags a
    channel whose sum ``wrap`` or ``saturate`` changes.
    """
    return _outside(_exact_sums(U, V), cfg)


def _outside(exact: np.ndarray, cfg: AccelConfig) -> bool:
    lo, hi = cfg.acc_range
    return bool(exact.size) and bool(exact.min() < lo or exact.max() > hi)


def _reduce(exact: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Exact sums reduced to ``cfg.acc_bits`` by the overflow mode."""
    if cfg.overflow == "wrap":
        return _wrap(exact, cfg.acc_bits).astype(np.int64)
    lo, hi = cfg.acc_range
    return np.clip(exact, lo, hi).astype(np.int64)


def accumulate(U: np.ndarray, V: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Per-coordinate accumulation ``M[xi, k, t] = sum_c U[xi, k, c] * V[xi, c, t]``.

    The sum is exact, then reduced to ``cfg.acc_bits``: ``wrap`` takes it modulo ``2**acc_bits``
    (two's complement), ``saturate`` clamps it to ``cfg.acc_range``.

    Parameters
    ----------
    U : numpy.ndarray
        int ``[n*n, K, C]``.
    V : numpy.ndarray
        int ``[n*n, C, T]``.

    Returns
    -------
    numpy.ndarray
        int64 ``[n*n, K, T]``.
    """
    return _reduce(_exact_sums(U, V), cfg)


def _channel_groups(x: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """``x [..., channels, T]`` zero-padded to whole groups of ``width`` channels, and the count."""
    x = np.asarray(x, dtype=np.int64)
    groups = -(-x.shape[-2] // width)
    pad = np.zeros(x.shape[:-2] + (groups * width - x.shape[-2], x.shape[-1]), dtype=np.int64)
    return np.concatenate([x, pad], axis=-2), groups


def act_beats(V: np.ndarray, act_width: int, order=None) -> list[dict]:
    """The activation beats of the sparse array for ``V [..., C, T]``, tile by tile.

    Per tile ``t``, ``ceil(C / act_width)`` beats; beat ``g`` carries channels
    ``c = g * act_width`` to ``c + n - 1`` (``n = min(act_width, C - c)``), ``v[i] =
    V[..., c + i, t]`` (0 for ``i >= n``), and ``last`` on the tile's final beat. ``order``,
    a function from the group count to a permutation of the groups, reorders the beats within
    a tile (the hardware accepts any order). ``v[i]`` is an int for one coordinate
    ``V [C, T]``, or the list over coordinates for ``V [n*n, C, T]``.
    """
    full, groups = _channel_groups(V, act_width)
    C, T = np.shape(V)[-2], np.shape(V)[-1]
    beats = []
    for t in range(T):
        seq = list(range(groups)) if order is None else list(order(groups))
        for i, g in enumerate(seq):
            c = g * act_width
            beats.append({"c": c, "n": min(act_width, C - c),
                          "v": [full[..., c + j, t].tolist() for j in range(act_width)],
                          "last": int(i == groups - 1)})
    return beats


def drain_beats(M: np.ndarray, drain_width: int) -> list[dict]:
    """The order in which the sparse array hands ``M [..., K, T]`` to the output transform.

    Per tile ``t``, ``ceil(K / drain_width)`` beats; beat ``r`` carries ``k = r * drain_width``,
    ``m[j] = M[..., k + j, t]`` for ``j < drain_width`` (0 past ``K``, where the array drains
    accumulators nothing was added to), and ``last`` on the tile's final beat. ``m[j]`` is a
    plain int for one coordinate ``M [K, T]``, or the list over coordinates for ``M [n*n, K, T]``.
    """
    full, rows = _channel_groups(M, drain_width)
    T = full.shape[-1]
    beats = []
    for t in range(T):
        for r in range(rows):
            ks = range(r * drain_width, (r + 1) * drain_width)
            m = [full[..., k, t].tolist() for k in ks]
            beats.append({"m": m, "k": r * drain_width, "last": int(r == rows - 1)})
    return beats


def transform_output(M: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Exact ``Y = A^T M A`` over the last two axes (``[..., n, n]`` → ``[..., m, m]``), int64."""
    M = np.asarray(M, dtype=np.int64)
    return np.einsum("ij,...jk,lk->...il", cfg.AT, M, cfg.AT)


def requantize(y: np.ndarray, bias: np.ndarray, multiplier: np.ndarray, shift: np.ndarray,
               relu: bool, cfg: AccelConfig) -> np.ndarray:
    """Requantise accumulator-scale values to activations.

    ``out = clamp(relu?(((y + bias) * multiplier + (1 << (shift - 1))) >> shift))``, with ``>>``
    the arithmetic (flooring) shift, so ties round half up (towards +inf). The clamp is to
    ``cfg.act_range``. Per-channel parameters broadcast along axis 0 of ``y``.

    Parameters
    ----------
    y : numpy.ndarray
        int ``[K, ...]``.
    bias, multiplier, shift : numpy.ndarray
        int ``[K]``; every ``shift >= 1``.

    Returns
    -------
    numpy.ndarray
        int64, same shape as ``y``.
    """
    y = np.asarray(y, dtype=np.int64)
    expand = (slice(None),) + (None,) * (y.ndim - 1)
    bias = np.asarray(bias, dtype=np.int64)[expand]
    multiplier = np.asarray(multiplier, dtype=np.int64)[expand]
    shift = np.asarray(shift, dtype=np.int64)[expand]
    if np.any(shift < 1):
        raise ValueError(f"requantisation shift must be >= 1, got {np.asarray(shift).ravel()}")
    acc_max = int(np.abs(y).max(initial=0)) + int(np.abs(bias).max(initial=0))
    if acc_max * int(np.abs(multiplier).max(initial=0)) + (1 << int(shift.max())) < _INT64_SAFE:
        acc = y + bias
        scaled = (acc * multiplier + (np.int64(1) << (shift - 1))) >> shift
    else:
        acc = y.astype(object) + bias.astype(object)
        one = np.ones_like(shift, dtype=object)
        scaled = (acc * multiplier.astype(object) + (one << (shift.astype(object) - 1))) \
            >> shift.astype(object)
    if relu:
        scaled = np.maximum(scaled, 0)
    lo, hi = cfg.act_range
    return np.clip(scaled, lo, hi).astype(np.int64)


@dataclass(frozen=True)
class LayerTrace:
    """Every intermediate of :func:`conv_layer_trace`; tiles ``t`` in raster order.

    Attributes
    ----------
    grid : sw.winograd.TileGrid
        Tile geometry.
    d : numpy.ndarray
        ``[C, T, n, n]`` input patches.
    V : numpy.ndarray
        ``[n*n, C, T]`` transformed inputs (after the Winograd ReLU when enabled).
    M : numpy.ndarray
        ``[n*n, K, T]`` accumulators after wrap/saturate.
    Y : numpy.ndarray
        ``[K, T, m, m]`` output transform, before bias.
    out : numpy.ndarray
        ``[K, out_h, out_w]`` requantised output.
    overflow : bool
        Some exact accumulator sum lay outside ``acc_range`` (what STATUS.OVERFLOW reports,
        :func:`accumulator_overflow`).
    """

    grid: winograd.TileGrid
    d: np.ndarray
    V: np.ndarray
    M: np.ndarray
    Y: np.ndarray
    out: np.ndarray
    overflow: bool


def _check(x: np.ndarray, layer: QuantLayer, cfg: AccelConfig) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] != layer.C:
        raise ValueError(f"layer {layer.name}: input must be [C={layer.C}, H, W], got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"layer {layer.name}: input must be integer, got {x.dtype}")
    if layer.U.shape[0] != cfg.coords:
        raise ValueError(f"layer {layer.name}: U has {layer.U.shape[0]} coordinates; "
                         f"F({cfg.tile},3) needs {cfg.coords}")
    if layer.C > cfg.c_max or layer.K > cfg.k_max:
        raise ValueError(f"layer {layer.name}: C={layer.C}, K={layer.K} exceed "
                         f"c_max={cfg.c_max}, k_max={cfg.k_max}")
    for what, arr, (lo, hi) in (("input", x, cfg.act_range), ("U", layer.U, cfg.wgt_range),
                                ("bias", layer.bias, _signed_range(cfg.bias_bits)),
                                ("multiplier", layer.multiplier, _signed_range(cfg.mult_bits)),
                                ("shift", layer.shift, (1, (1 << cfg.shift_bits) - 1))):
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise ValueError(f"layer {layer.name}: {what} holds values in "
                             f"[{arr.min()}, {arr.max()}], outside [{lo}, {hi}]")
    return x.astype(np.int64)


def conv_layer_trace(x: np.ndarray, layer: QuantLayer, cfg: AccelConfig) -> LayerTrace:
    """Run one layer and keep every intermediate. ``x`` is int ``[C, H, W]``."""
    x = _check(x, layer, cfg)
    C, H, W = x.shape
    n, m, K = cfg.n, cfg.tile, layer.K
    grid = winograd.tile_grid(H, W, m, layer.pad)
    T = grid.tiles
    d = winograd.extract_tiles(x, grid).reshape(C, T, n, n)
    Vt = transform_input(d, cfg)
    if layer.winograd_relu:
        Vt = winograd_relu(Vt)
    V = Vt.transpose(2, 3, 0, 1).reshape(n * n, C, T)
    exact = _exact_sums(layer.U, V)
    M = _reduce(exact, cfg)
    Y = transform_output(M.reshape(n, n, K, T).transpose(2, 3, 0, 1), cfg)     # K, T, m, m
    y = winograd.assemble_tiles(Y.reshape(K, grid.tiles_h, grid.tiles_w, m, m), grid)
    out = requantize(y, layer.bias, layer.multiplier, layer.shift, layer.spatial_relu, cfg)
    return LayerTrace(grid=grid, d=d, V=V, M=M, Y=Y, out=out, overflow=_outside(exact, cfg))


def conv_layer(x: np.ndarray, layer: QuantLayer, cfg: AccelConfig) -> np.ndarray:
    """Run one layer: int ``[C, H, W]`` → int64 ``[K, out_h, out_w]``."""
    return conv_layer_trace(x, layer, cfg).out


def coord_density(U: np.ndarray) -> np.ndarray:
    """Fraction of non-zero weights per Winograd coordinate, ``[n*n]``."""
    U = np.asarray(U)
    return (U != 0).reshape(U.shape[0], -1).mean(axis=1)


def mult_counts(layer: QuantLayer, x: np.ndarray, cfg: AccelConfig) -> dict[str, int]:
    """Multiplications one layer needs on input ``x``.

    Returns
    -------
    dict
        ``dense_direct`` (``K*C*out_h*out_w*9``), ``dense_winograd`` (``K*C*T*n*n``) and
        ``sparse_winograd``: the pairs ``(U[xi,k,c], V[xi,c,t])`` with both non-zero, with ``V``
        after the Winograd ReLU when the layer has it.
    """
    trace = conv_layer_trace(x, layer, cfg)
    grid = trace.grid
    K, C = layer.K, layer.C
    nz_u = (layer.U != 0).sum(axis=1)                     # [xi, c]: non-zero weights over k
    nz_v = (trace.V != 0).sum(axis=2)                     # [xi, c]: non-zero inputs over t
    return {
        "dense_direct": K * C * grid.out_h * grid.out_w * 9,
        "dense_winograd": K * C * grid.tiles * cfg.coords,
        "sparse_winograd": int((nz_u * nz_v).sum()),
    }


def direct_conv2d(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Plain direct 3×3 correlation ``x[C, H, W]``, ``w[K, C, 3, 3]`` → ``[K, out_h, out_w]``.

    Integer inputs give exact int64 results, float inputs float64. This is the reference the
    Winograd paths are checked against:
    ``y[k, r, s] = sum_{c,i,j} w[k,c,i,j] x[c, r+i-pad, s+j-pad]``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    dtype = np.int64 if np.issubdtype(np.result_type(x, w), np.integer) else np.float64
    x = np.pad(x.astype(dtype), ((0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((w.shape[0], out_h, out_w), dtype=dtype)
    for i in range(3):
        for j in range(3):
            out += np.einsum("kc,chw->khw", w[:, :, i, j].astype(dtype),
                             x[:, i:i + out_h, j:j + out_w])
    return out


def float_winograd_conv(x: np.ndarray, U: np.ndarray, bias: np.ndarray | None, m: int,
                        pad: int, winograd_relu: bool = False,
                        spatial_relu: bool = False) -> np.ndarray:
    """Float Winograd layer with Winograd-domain weights ``U[n*n, K, C]``: the float model of
    what :func:`conv_layer` computes, without any rounding, wrapping or clamping.
    """
    x = np.asarray(x, dtype=np.float64)
    AT, _, BT = winograd.matrices(m).as_float()
    n = m + 2
    C, H, W = x.shape
    K = U.shape[1]
    grid = winograd.tile_grid(H, W, m, pad)
    d = winograd.extract_tiles(x, grid).reshape(C, grid.tiles, n, n)
    Vt = np.einsum("ij,...jk,lk->...il", BT, d, BT)
    if winograd_relu:
        Vt = np.maximum(Vt, 0)
    V = Vt.transpose(2, 3, 0, 1).reshape(n * n, C, -1)
    M = np.matmul(np.asarray(U, dtype=np.float64), V)
    Y = np.einsum("ij,...jk,lk->...il", AT, M.reshape(n, n, K, -1).transpose(2, 3, 0, 1), AT)
    y = winograd.assemble_tiles(Y.reshape(K, grid.tiles_h, grid.tiles_w, m, m), grid)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[:, None, None]
    return np.maximum(y, 0) if spatial_relu else y


def error_bound(x: np.ndarray, layer: QuantLayer, cfg: AccelConfig) -> np.ndarray:
    """Worst-case distance, in output steps, between :func:`conv_layer` and the float layer.

    The float layer is :func:`float_winograd_conv` on the same input ``x * in_scale`` with the
    unquantised Winograd weights and float bias, divided by ``out_scale``, then the same ReLU
    and clamp. With ``r = in_scale * w_scale / out_scale`` and ``S = sum_c |V|`` per tile and
    coordinate (docs/golden.md derives it)::

        bound = 1/2 + (r / 2) * (|A^T| S |A| + 1) + |Y + bias| * 2**-(shift + 1)

    for weights quantised by :func:`sw.quant.quantize_layer` (``|U - w_scale U_q| <= w_scale/2``,
    bias within ``bias_bits``) and no accumulator overflow. Returns float ``[K, out_h, out_w]``.
    """
    trace = conv_layer_trace(x, layer, cfg)
    grid, n, m = trace.grid, cfg.n, cfg.tile
    S = np.abs(trace.V).sum(axis=1).astype(np.float64)                  # [n*n, T]
    S = S.reshape(n, n, -1).transpose(2, 0, 1)                          # [T, n, n]
    absAT = np.abs(cfg.AT).astype(np.float64)
    spread = np.einsum("ij,tjk,lk->til", absAT, S, absAT)               # [T, m, m]
    spread = winograd.assemble_tiles(spread.reshape(grid.tiles_h, grid.tiles_w, m, m), grid)
    r = layer.acc_scale / layer.out_scale
    y = winograd.assemble_tiles(trace.Y.reshape(layer.K, grid.tiles_h, grid.tiles_w, m, m), grid)
    acc = np.abs(y + layer.bias[:, None, None]).astype(np.float64)
    rounding = acc * np.exp2(-(layer.shift.astype(np.float64) + 1))[:, None, None]
    return 0.5 + (r[:, None, None] / 2) * (spread[None] + 1) + rounding
