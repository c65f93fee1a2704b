"""sw/prune.py: counts kept, per-coordinate balance, structure carried into the Winograd domain,
importance factors, both-domain reports and error texts."""

import numpy as np
import pytest

from sw import prune, winograd

SEED = 1234


@pytest.fixture
def rng():
    print(f"seed {SEED}")
    return np.random.default_rng(SEED)


def test_prune_winograd_keeps_the_largest_magnitudes(rng):
    U = rng.standard_normal((16, 8, 4))
    mask = prune.prune_winograd(U, 0.25)
    assert mask.shape == U.shape and mask.dtype == bool
    assert mask.sum() == 128
    assert np.abs(U[mask]).min() >= np.abs(U[~mask]).max()


def test_prune_winograd_of_real_transform_is_unbalanced(rng):
    # One threshold per layer leaves corner coordinates (single taps of g) denser than central
    # ones (quarter-sums of nine): the imbalance the balanced method removes.
    U = prune.to_winograd(rng.standard_normal((32, 32, 3, 3)), 2)
    coord = prune.prune_winograd(U, 0.3).reshape(16, -1).mean(axis=1)
    assert coord[0] > 1.5 * coord[5]


def test_prune_balanced_equal_count_per_coordinate(rng):
    U = prune.to_winograd(rng.standard_normal((10, 6, 3, 3)), 2)
    mask = prune.prune_balanced(U, 0.3)
    assert mask.reshape(16, -1).sum(axis=1).tolist() == [18] * 16
    for xi in range(16):
        assert np.abs(U[xi][mask[xi]]).min() >= np.abs(U[xi][~mask[xi]]).max()


def _lane_counts(mask: np.ndarray, lanes: int) -> np.ndarray:
    """``[coords, lanes, C]`` kept weights of each lane (``k mod lanes``) in each column."""
    K = mask.shape[1]
    return np.stack([mask[:, lane:K:lanes].sum(axis=1) for lane in range(lanes)], axis=1)


@pytest.mark.parametrize("K, C, density", [(16, 12, 0.2), (10, 7, 0.3), (8, 5, 0.1)])
def test_prune_balanced_lanes_equal_count_per_lane_of_every_column(rng, K, C, density):
    U = prune.to_winograd(rng.standard_normal((K, C, 3, 3)), 2)
    mask = prune.prune_balanced(U, density, lanes=4)
    keep = round(density * K * C)
    assert mask.reshape(16, -1).sum(axis=1).tolist() == [keep] * 16
    counts = _lane_counts(mask, 4)
    size = np.array([len(range(lane, K, 4)) for lane in range(4)])
    for xi in range(16):
        # Equal per lane (a lane with fewer rows full), but for at most one column per
        # coordinate, the group cut to the exact count, which may differ by one.
        full = np.minimum(counts[xi].max(axis=0)[None, :], size[:, None])
        uneven = np.flatnonzero((counts[xi] != full).any(axis=0))
        assert uneven.size <= 1, (xi, counts[xi])
        if uneven.size:
            col = counts[xi][:, uneven[0]]
            assert col.max() - col.min() <= 1
        for lane in range(4):
            # each lane of a column keeps its largest magnitudes
            u, m = np.abs(U[xi, lane::4]), mask[xi, lane::4]
            for c in range(C):
                if m[:, c].any() and (~m[:, c]).any():
                    assert u[m[:, c], c].min() >= u[~m[:, c], c].max()


def test_prune_balanced_lanes_keeps_the_best_groups(rng):
    # Rank r of a column is the r-th largest magnitude of each of its lanes; a whole group kept
    # scores (sums) at least as high as any group dropped whole.
    U = prune.to_winograd(rng.standard_normal((8, 6, 3, 3)), 2)
    mask = prune.prune_balanced(U, 0.25, lanes=2)
    for xi in range(16):
        ranked = np.stack([-np.sort(-np.abs(U[xi, lane::2]), axis=0) for lane in range(2)])
        kept = np.stack([mask[xi, lane::2].sum(axis=0) for lane in range(2)])   # [lane, C]
        score = ranked.sum(axis=0)                                               # [rank, C]
        whole = np.arange(4)[:, None] < kept.min(axis=0)[None, :]
        dropped = np.arange(4)[:, None] >= kept.max(axis=0)[None, :]
        assert score[whole].min() >= score[dropped].max()


def test_prune_balanced_lanes_per_coordinate_and_one_lane_as_before(rng):
    U = prune.to_winograd(rng.standard_normal((12, 9, 3, 3)), 2)
    assert np.array_equal(prune.prune_balanced(U, 0.3, lanes=1), prune.prune_balanced(U, 0.3))
    lanes = (1, 2, 3, 4) * 4
    mask = prune.prune_balanced(U, 0.3, lanes=lanes)
    for xi, lane_count in enumerate(lanes):
        per = _lane_counts(mask[xi:xi + 1], lane_count)[0]
        assert (per.max(axis=0) - per.min(axis=0)).sum() <= 1
    assert np.array_equal(mask[0], prune.prune_balanced(U, 0.3)[0])
    w, m = prune.prune(U, "balanced", 0.3, 2, lanes=lanes)
    assert np.array_equal(m, mask) and np.array_equal(w, U * mask)


def test_prune_balanced_k_block_balances_every_pass(rng):
    # K = 20 in blocks of 8, 8 and 4 output channels (passes of k_max = 8): each block keeps
    # round(d * Kb * C) per coordinate and balances its own lanes.
    U = prune.to_winograd(rng.standard_normal((20, 6, 3, 3)), 2)
    mask = prune.prune_balanced(U, 0.25, lanes=2, k_block=8)
    for block, kb in ((slice(0, 8), 8), (slice(8, 16), 8), (slice(16, 20), 4)):
        sub = mask[:, block]
        assert sub.reshape(16, -1).sum(axis=1).tolist() == [round(0.25 * kb * 6)] * 16
        assert np.array_equal(sub, prune.prune_balanced(U[:, block], 0.25, lanes=2))
    whole = prune.prune_balanced(U, 0.25, lanes=2, k_block=20)
    assert np.array_equal(whole, prune.prune_balanced(U, 0.25, lanes=2))
    with pytest.raises(prune.PruneError, match=r"^conv2: k_block must be an integer >= 1 "
                                               r"\(output channels per pass\), got 0$"):
        prune.prune_balanced(U, 0.25, name="conv2", k_block=0)


def test_balance_for_reads_the_configuration():
    from sw.config import AccelConfig
    cfg = AccelConfig(lanes=(2, 3) * 8, k_max=16)
    assert prune.balance_for(cfg) == {"lanes": (2, 3) * 8, "k_block": 16}


@pytest.mark.parametrize("lanes, shown", [(0, "0"), ((4,) * 3, "(4, 4, 4)"), ("4", "'4'"),
                                          (2.0, "2.0"), (True, "True")])
def test_prune_balanced_refuses_bad_lanes(rng, lanes, shown):
    U = rng.standard_normal((16, 4, 4))
    with pytest.raises(prune.PruneError, match=r"^conv3: lanes must be one integer >= 1 or 16 "
                                               r"of them \(one per Winograd coordinate\), got "
                                               + shown.replace("(", r"\(").replace(")", r"\)")):
        prune.prune_balanced(U, 0.5, name="conv3", lanes=lanes)


def test_prune_spatial_structures(rng):
    g = rng.standard_normal((4, 5, 3, 3))
    assert prune.prune_spatial(g, 0.5).sum() == 90
    kernels = prune.prune_spatial(g, 0.25, "kernel")
    per_kernel = kernels.sum(axis=(2, 3))
    assert set(per_kernel.ravel().tolist()) == {0, 9} and (per_kernel == 9).sum() == 5
    norms = np.abs(g).sum(axis=(2, 3))
    assert norms[per_kernel == 9].min() >= norms[per_kernel == 0].max()
    channels = prune.prune_spatial(g, 0.5, "channel")
    assert channels.sum(axis=(1, 2, 3)).tolist().count(45) == 2


def test_spatial_winograd_zero_kernels_stay_zero(rng):
    g = rng.standard_normal((6, 6, 3, 3))
    U, mask = prune.prune_spatial_winograd(g, 0.5, 0.2, m=2)
    kept = prune.prune_spatial(g, 0.5, "kernel").any(axis=(2, 3))
    assert not U[:, ~kept].any()
    assert mask.sum() == round(0.2 * U.size)
    assert np.array_equal(U != 0, mask & (prune.to_winograd(g, 2) != 0))


def test_spatial_winograd_density_capped_by_spatial_step(rng):
    g = rng.standard_normal((4, 4, 3, 3))
    U, mask = prune.prune_spatial_winograd(g, 0.25, 0.9, m=2)
    assert mask.sum() == 4 * 16


def test_importance_factors_f23():
    # F(2,3): A^T = [[1,1,1,0],[0,1,-1,-1]] -> column sums of |A^T| are 1, 2, 2, 1.
    f = prune.importance_factors(2)
    a = np.array([1, 2, 2, 1.0])
    expected = np.outer(a, a).ravel()
    np.testing.assert_allclose(f, expected / expected.mean())
    v = np.arange(16, dtype=float)
    np.testing.assert_allclose(prune.importance_factors(2, v),
                               expected * v / (expected * v).mean())


def test_joint_report_counts(rng):
    g = rng.standard_normal((4, 3, 3, 3))
    g[0, 0] = 0.0                                # one whole kernel gone: 9 zeros
    g[1, 1, 0, 0] = 0.0
    U = prune.to_winograd(g, 2)
    r = prune.joint_report(g, U, 2)
    assert r.mults_dense_direct == 108.0
    assert r.mults_sparse_direct == 98.0
    assert r.spatial_density == pytest.approx(98 / 108)
    assert r.mults_dense_winograd == 16 * 12 / 4
    assert r.mults_sparse_winograd == np.count_nonzero(U) / 4
    assert r.coord_density.shape == (16,)
    assert r.reduction_winograd == pytest.approx(108 / (np.count_nonzero(U) / 4))


def test_jointly_sparse_is_denser_in_winograd_domain(rng):
    # Choi's point: spatial sparsity does not survive G g G^T unless pruned for it jointly.
    g = rng.standard_normal((8, 8, 3, 3))
    gs, _ = prune.prune(g, "spatial", 0.3, 2)
    r = prune.joint_report(gs, prune.to_winograd(gs, 2), 2)
    assert r.spatial_density == pytest.approx(0.3, abs=1 / g.size)
    assert r.winograd_density > 0.6


def test_prune_dispatch_and_schedule(rng):
    g = rng.standard_normal((3, 2, 3, 3))
    for method in prune.METHODS:
        w, mask = prune.prune(g, method, 0.5, 2)
        assert w.shape == mask.shape
        assert not w[~mask].any()
    assert prune.density_schedule(0.25, 2) == [0.5, 0.25]


@pytest.mark.parametrize("density, text", [
    (0.0, "layer: density 0.0 is outside (0, 1]"),
    (1.5, "layer: density 1.5 is outside (0, 1]"),
    ("x", "layer: density 'x' is not a number"),
])
def test_bad_density(density, text):
    with pytest.raises(prune.PruneError) as err:
        prune.prune_winograd(np.ones((16, 2, 2)), density)
    assert str(err.value) == text


def test_bad_shapes_and_method():
    with pytest.raises(prune.PruneError, match=r"conv2: Winograd weights must be \[n\*n, K, C\]"
                       r" with n = m \+ 2 for m in \(2, 4\), got shape \(9, 2, 2\)"):
        prune.prune_winograd(np.ones((9, 2, 2)), 0.5, name="conv2")
    with pytest.raises(prune.PruneError, match=r"conv1: spatial weights must be \[K, C, 3, 3\], "
                       r"got shape \(2, 2, 5, 5\)"):
        prune.prune_spatial(np.ones((2, 2, 5, 5)), 0.5, name="conv1")
    with pytest.raises(prune.PruneError, match="structure 'row' is not one of"):
        prune.prune_spatial(np.ones((2, 2, 3, 3)), 0.5, "row")
    with pytest.raises(prune.PruneError, match="prune method 'magic' is not one of"):
        prune.prune(np.ones((2, 2, 3, 3)), "magic", 0.5, 2)
    with pytest.raises(prune.PruneError, match="method spatial needs spatial weights"):
        prune.prune(np.ones((16, 2, 2)), "spatial", 0.5, 2)
    with pytest.raises(prune.PruneError, match="weights hold NaN/Inf"):
        prune.prune_winograd(np.full((16, 1, 1), np.nan), 0.5)


def test_to_winograd_matches_filter_transform(rng):
    g = rng.standard_normal((2, 3, 3, 3))
    U = prune.to_winograd(g, 4)
    ref = winograd.filter_transform(g, 4)
    assert U.shape == (36, 2, 3)
    np.testing.assert_allclose(U[6 * 2 + 5], ref[:, :, 2, 5])
