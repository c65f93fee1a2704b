"""Weight pruning the way the four source papers prune, in NumPy only (the packer imports it).

Methods
-------
``winograd``
    Liu et al. 2018 / Li et al. 2017: magnitude pruning of ``U = G g G^T``, one threshold per
    layer. Per-coordinate densities come out unequal (corner coordinates are single taps of
    ``g``, central ones quarter-sums of nine).
``balanced``
    The same, but every coordinate keeps the same count (ESE-style load balance), because the
    accelerator runs one PE per coordinate and the densest sets the pace; given the PE's lanes,
    also the same count per lane in every column (bank-balanced), because a PE's fullest lane
    sets its pace.
``spatial-winograd``
    Yu et al. 2019: structured spatial pruning (whole 3×3 kernels by L1 norm) carries exact zeros
    into the Winograd domain; then Winograd-domain pruning of ``|U| * importance`` with an
    importance-factor matrix (:func:`importance_factors`).
``spatial``
    Spatial magnitude pruning of ``g``, the baseline. Choi et al. 2019 deploy this one model in
    either domain; :func:`joint_report` gives its density and multiplications in both.

Every function returns a boolean keep-mask (or masked weights) and never changes the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.config import SUPPORTED_TILES, AccelConfig
from sw import winograd

__all__ = ["PruneError", "METHODS", "PruneReport", "check_density", "prune_winograd",
           "prune_balanced", "balance_for", "prune_spatial", "importance_factors", "prune_spatial_winograd",
           "to_winograd", "joint_report", "prune", "density_schedule"]

METHODS = ("winograd", "balanced", "spatial-winograd", "spatial")
SPATIAL_STRUCTURES = ("weight", "kernel", "channel")


class PruneError(ValueError):
    """A bad density, shape or method; the message names the layer and the problem."""


def check_density(density: float, name: str = "layer") -> float:
    """Return ``density`` as float, or raise :class:`PruneError` unless it lies in (0, 1]."""
    try:
        value = float(density)
    except (TypeError, ValueError):
        raise PruneError(f"{name}: density {density!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise PruneError(f"{name}: density {value} is outside (0, 1]")
    return value


def _check_winograd(U: np.ndarray, name: str) -> np.ndarray:
    U = np.asarray(U, dtype=np.float64)
    side = int(round(np.sqrt(U.shape[0]))) if U.ndim == 3 else 0
    if U.ndim != 3 or side * side != U.shape[0] or side - 2 not in SUPPORTED_TILES:
        raise PruneError(f"{name}: Winograd weights must be [n*n, K, C] with n = m + 2 for "
                         f"m in {SUPPORTED_TILES}, got shape {U.shape}")
    if not np.all(np.isfinite(U)):
        raise PruneError(f"{name}: weights hold NaN/Inf")
    return U


def _check_spatial(g: np.ndarray, name: str) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64)
    if g.ndim != 4 or g.shape[2:] != (3, 3):
        raise PruneError(f"{name}: spatial weights must be [K, C, 3, 3], got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise PruneError(f"{name}: weights hold NaN/Inf")
    return g


def _keep_top(score: np.ndarray, keep: int) -> np.ndarray:
    """Mask keeping the ``keep`` largest scores; ties broken by position so results are stable."""
    flat = score.reshape(-1)
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:keep]] = True
    return mask.reshape(score.shape)


def prune_winograd(U: np.ndarray, density: float, name: str = "layer") -> np.ndarray:
    """Liu/Li Winograd-domain magnitude pruning: keep the ``round(density * U.size)`` largest |U|.

    Returns the boolean keep-mask ``[n*n, K, C]``.
    """
    U = _check_winograd(U, name)
    density = check_density(density, name)
    return _keep_top(np.abs(U), int(round(density * U.size)))


def _lane_counts(lanes, coords: int, name: str) -> tuple[int, ...]:
    """``lanes`` (one integer, or one per coordinate) as a tuple of ``coords`` integers >= 1."""
    try:
        values = (lanes,) * coords if isinstance(lanes, (int, np.integer)) else tuple(lanes)
    except TypeError:
        values = ()
    if len(values) != coords or not all(isinstance(v, (int, np.integer))
                                         and not isinstance(v, bool) and v >= 1
                                         for v in values):
        raise PruneError(f"{name}: lanes must be one integer >= 1 or {coords} of them (one per "
                         f"Winograd coordinate), got {lanes!r}")
    return tuple(int(v) for v in values)


def _keep_lane_balanced(mag: np.ndarray, keep: int, lanes: int) -> np.ndarray:
    """Mask of ``mag [K, C]`` keeping ``keep`` entries, each column the same count per lane.

    Lane ``l`` of a column is its rows ``k ≡ l (mod lanes)``. The ``r``-th largest magnitudes of
    a column's lanes form its rank-``r`` group, scored by their sum; groups are kept best first
    (ties: lower rank, then lower column), which keeps the most magnitude any lane-balanced mask
    of whole groups can. The group that would overshoot ``keep`` gives only its largest members,
    so the count is exact and one column may differ by one between lanes.
    """
    K, C = mag.shape
    rows = -(-K // lanes)
    lane_mag = np.full((lanes, rows, C), -np.inf)
    for lane in range(lanes):
        ks = np.arange(lane, K, lanes)
        lane_mag[lane, :ks.size] = mag[ks]
    order = np.argsort(-lane_mag, axis=1, kind="stable")          # [lanes, rank, C] -> row
    ranked = np.take_along_axis(lane_mag, order, axis=1)
    present = np.isfinite(ranked)
    score = np.where(present, ranked, 0.0).sum(axis=0)           # [rank, C]
    size = present.sum(axis=0)
    best = np.argsort(-score.reshape(-1), kind="stable")
    taken = np.cumsum(size.reshape(-1)[best])
    whole = best[taken <= keep]                                   # groups kept whole
    mask = np.zeros((lanes, rows * C), dtype=bool)                # by lane, (rank, column)
    mask[:, whole] = present.reshape(lanes, -1)[:, whole]
    left = keep - (int(taken[whole.size - 1]) if whole.size else 0)
    if left and whole.size < best.size:                           # the overshooting group
        r, c = divmod(int(best[whole.size]), C)
        members = np.flatnonzero(present[:, r, c])
        members = members[np.argsort(-ranked[members, r, c], kind="stable")[:left]]
        mask[members, r * C + c] = True
    mask = mask.reshape(lanes, rows, C)
    keep_mask = np.zeros((K, C), dtype=bool)
    for lane in range(lanes):
        ks = np.arange(lane, K, lanes)
        lane_keep = np.zeros((rows, C), dtype=bool)
        np.put_along_axis(lane_keep, order[lane], mask[lane], axis=0)
        keep_mask[ks] = lane_keep[:ks.size]
    return keep_mask


def prune_balanced(U: np.ndarray, density: float, name: str = "layer",
                   lanes: int | tuple[int, ...] = 1, k_block: int | None = None) -> np.ndarray:
    """Load-balanced Winograd pruning: every coordinate keeps ``round(density * K * C)`` weights.

    The same total density as :func:`prune_winograd`, but the per-coordinate PEs get equal work.
    With ``lanes`` > 1 (one integer, or one per coordinate: the accelerator's
    ``AccelConfig.lanes_per_coord``) the multiplier lanes of each PE get equal work too: output
    channel ``k`` is lane ``k mod lanes``'s, and every column ``(coordinate, c)`` keeps the same
    count in each lane (bank-balanced sparsity; see :func:`_keep_lane_balanced`), so no lane
    of a PE waits on another within a column. ``lanes = 1`` keeps the coordinate's largest
    magnitudes with no per-column constraint. With ``k_block`` (the accelerator's ``k_max``,
    the output channels of a pass) each block of ``k_block`` consecutive output channels is
    balanced on its own, keeping ``round(density * k_block * C)`` per coordinate, so every
    pass, not only the layer, gives its PEs and lanes equal work.
    """
    U = _check_winograd(U, name)
    density = check_density(density, name)
    lanes = _lane_counts(lanes, U.shape[0], name)
    K, C = U.shape[1:]
    if k_block is None:
        k_block = K
    elif isinstance(k_block, bool) or not isinstance(k_block, (int, np.integer)) or k_block < 1:
        raise PruneError(f"{name}: k_block must be an integer >= 1 (output channels per "
                         f"pass), got {k_block!r}")
    mask = np.zeros(U.shape, dtype=bool)
    for k0 in range(0, K, k_block):
        block = slice(k0, min(k0 + k_block, K))
        keep = int(round(density * (block.stop - k0) * C))
        mask[:, block] = [_keep_lane_balanced(np.abs(u[block]), keep, lane) if lane > 1
                          else _keep_top(np.abs(u[block]), keep) for u, lane in zip(U, lanes)]
    return mask


def balance_for(cfg: AccelConfig) -> dict:
    """The :func:`prune_balanced` keywords that balance the work of ``cfg``'s array: its lanes
    per coordinate (``lanes``) and the output channels of a pass (``k_block = k_max``)."""
    return {"lanes": cfg.lanes_per_coord, "k_block": cfg.k_max}


def prune_spatial(g: np.ndarray, density: float, structure: str = "weight",
                  name: str = "layer") -> np.ndarray:
    """Spatial magnitude pruning of ``g[K, C, 3, 3]``; returns the keep-mask of the same shape.

    ``structure`` is ``weight`` (single taps), ``kernel`` (whole 3×3 kernels ranked by L1 norm) or
    ``channel`` (whole output channels ranked by L1 norm). Structured modes keep
    ``round(density * groups)`` groups, so the achieved density is a multiple of 1/groups.
    """
    g = _check_spatial(g, name)
    density = check_density(density, name)
    if structure == "weight":
        return _keep_top(np.abs(g), int(round(density * g.size)))
    if structure == "kernel":
        norms = np.abs(g).sum(axis=(2, 3))
    elif structure == "channel":
        norms = np.abs(g).sum(axis=(1, 2, 3))
    else:
        raise PruneError(f"{name}: structure {structure!r} is not one of "
                         f"{', '.join(SPATIAL_STRUCTURES)}")
    keep = max(1, int(round(density * norms.size)))
    groups = _keep_top(norms, keep)
    return np.broadcast_to(groups.reshape(groups.shape + (1,) * (4 - groups.ndim)),
                           g.shape).copy()


def to_winograd(g: np.ndarray, m: int) -> np.ndarray:
    """Spatial ``[K, C, 3, 3]`` → Winograd ``[n*n, K, C]``, ``U = G g G^T``, coordinate i*n + j."""
    U = winograd.filter_transform(np.asarray(g, dtype=np.float64), m)    # K, C, n, n
    K, C, n, _ = U.shape
    return U.reshape(K, C, n * n).transpose(2, 0, 1).copy()


def importance_factors(m: int, v_abs_mean: np.ndarray | None = None) -> np.ndarray:
    """Yu et al.'s importance-factor matrix ``[n*n]`` for Winograd-domain pruning.

    A weight at coordinate (i, j) reaches the output through ``A^T M A``, so its effect on the
    output scales with ``a_i * a_j`` where ``a_i = sum_r |A^T[r, i]|``; it multiplies ``V[i, j]``,
    so its effect also scales with the mean ``|V|`` there (``v_abs_mean``, measured on calibration
    data; uniform when None). The product, normalised to mean 1, is the factor. This is our reading
    of the paper's matrix from the transforms; pruning ``|U| * factor`` ranks weights by estimated
    output contribution instead of raw magnitude.
    """
    AT, _, _ = winograd.matrices(m).as_float()
    a = np.abs(AT).sum(axis=0)
    factor = np.outer(a, a).reshape(-1)
    if v_abs_mean is not None:
        v = np.asarray(v_abs_mean, dtype=np.float64).reshape(-1)
        if v.shape != factor.shape or not np.all(np.isfinite(v)) or np.any(v < 0):
            raise PruneError(f"importance: v_abs_mean must be {factor.size} finite values >= 0, "
                             f"got shape {np.shape(v_abs_mean)}")
        factor = factor * v
    mean = factor.mean()
    return factor / mean if mean > 0 else np.ones_like(factor)


def prune_spatial_winograd(g: np.ndarray, spatial_density: float, winograd_density: float,
                           m: int, importance: np.ndarray | None = None,
                           structure: str = "kernel", name: str = "layer"
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Yu et al.: structured spatial pruning, then importance-weighted Winograd-domain pruning.

    ``winograd_density`` is the fraction of all ``n*n*K*C`` Winograd weights kept; it is capped by
    what the spatial step left non-zero. Returns ``(U_pruned [n*n, K, C], mask)``.
    """
    g = _check_spatial(g, name)
    winograd_density = check_density(winograd_density, name)
    spatial_mask = prune_spatial(g, spatial_density, structure, name)
    U = to_winograd(g * spatial_mask, m)
    factor = importance_factors(m) if importance is None else np.asarray(importance, float)
    if factor.shape != (U.shape[0],):
        raise PruneError(f"{name}: importance must have {U.shape[0]} values, got {factor.shape}")
    score = np.abs(U) * factor[:, None, None]
    keep = min(int(round(winograd_density * U.size)), int(np.count_nonzero(score)))
    mask = _keep_top(score, keep)
    return U * mask, mask


@dataclass(frozen=True)
class PruneReport:
    """Density and multiplication counts of one pruned 3×3 layer in both domains (Choi et al.).

    ``mults_*`` are multiplications per output pixel per image: direct ``nnz(g) / (K)`` summed
    over K, i.e. ``nnz(g)``; Winograd ``nnz(U) / m**2``. Dense direct is ``9 * K * C``.
    """

    spatial_density: float
    winograd_density: float
    coord_density: np.ndarray
    mults_dense_direct: float
    mults_sparse_direct: float
    mults_dense_winograd: float
    mults_sparse_winograd: float

    @property
    def reduction_direct(self) -> float:
        """Dense direct ÷ sparse direct multiplications."""
        return self.mults_dense_direct / max(self.mults_sparse_direct, 1e-12)

    @property
    def reduction_winograd(self) -> float:
        """Dense direct ÷ sparse Winograd multiplications (Liu's headline ratio, weights only)."""
        return self.mults_dense_direct / max(self.mults_sparse_winograd, 1e-12)


def joint_report(g: np.ndarray | None, U: np.ndarray, m: int, name: str = "layer") -> PruneReport:
    """Report a layer in both domains. ``g`` is the spatial weights (None if the layer exists only
    in the Winograd domain, then the spatial figures are those of dense direct convolution)."""
    U = _check_winograd(U, name)
    if U.shape[0] != (m + 2) ** 2:
        raise PruneError(f"{name}: {U.shape[0]} Winograd coordinates do not match F({m},3)")
    _, K, C = U.shape
    dense = 9.0 * K * C
    if g is None:
        spatial_density, sparse_direct = 1.0, dense
    else:
        g = _check_spatial(g, name)
        spatial_density = float(np.count_nonzero(g)) / g.size
        sparse_direct = float(np.count_nonzero(g))
    coord = (U != 0).reshape(U.shape[0], -1).mean(axis=1)
    return PruneReport(spatial_density=spatial_density,
                       winograd_density=float(np.count_nonzero(U)) / U.size,
                       coord_density=coord, mults_dense_direct=dense,
                       mults_sparse_direct=sparse_direct,
                       mults_dense_winograd=U.size / m**2,
                       mults_sparse_winograd=float(np.count_nonzero(U)) / m**2)


def prune(weight: np.ndarray, method: str, density: float, m: int,
          name: str = "layer", lanes: int | tuple[int, ...] = 1, k_block: int | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """One entry point for every method: returns ``(pruned weights, keep-mask)``.

    ``weight`` is spatial ``[K, C, 3, 3]`` or Winograd ``[n*n, K, C]``. ``winograd`` and
    ``balanced`` return Winograd weights (transforming spatial input first); ``spatial`` needs and
    returns spatial weights; ``spatial-winograd`` needs spatial weights, prunes whole kernels to
    ``sqrt(density)`` and then the Winograd domain to ``density``. ``lanes`` and ``k_block``
    are :func:`prune_balanced`'s (the other methods ignore them).
    """
    if method not in METHODS:
        raise PruneError(f"{name}: prune method {method!r} is not one of {', '.join(METHODS)}")
    w = np.asarray(weight, dtype=np.float64)
    if method in ("winograd", "balanced"):
        U = to_winograd(_check_spatial(w, name), m) if w.ndim == 4 else _check_winograd(w, name)
        mask = prune_winograd(U, density, name) if method == "winograd" \
            else prune_balanced(U, density, name, lanes, k_block)
        return U * mask, mask
    if w.ndim != 4:
        raise PruneError(f"{name}: method {method} needs spatial weights [K, C, 3, 3], "
                         f"got shape {w.shape}")
    if method == "spatial":
        mask = prune_spatial(w, density, "weight", name)
        return w * mask, mask
    density = check_density(density, name)
    return prune_spatial_winograd(w, np.sqrt(density), density, m, name=name)


def density_schedule(target: float, steps: int) -> list[float]:
    """Densities for iterative pruning: geometric from 1 down to ``target`` in ``steps`` steps."""
    target = check_density(target, "schedule")
    if steps < 1:
        raise PruneError(f"schedule: steps = {steps} must be >= 1")
    return [float(target ** ((i + 1) / steps)) for i in range(steps)]
