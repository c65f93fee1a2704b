"""pytest runner for the weight-loader bench in :mod:`verif.tb_loader`."""

from __future__ import annotations

from sw.config import AccelConfig
from verif.runner import bench_test

#: Small enough for Icarus in seconds: per-coordinate lanes (1- to 5-byte words) on tile 2,
#: and tile 4 with 2-byte directory entries; both memories small enough for several passes.
CASES = {
    "weight_loader_t2": AccelConfig(tile=2, lanes=(1, 2, 3, 2) * 4, k_max=8, c_max=4,
                                    wmem_depth=12),
    "weight_loader_t4": AccelConfig(tile=4, lanes=2, k_max=4, c_max=2, wmem_depth=300),
}


test_weight_loader = bench_test("weight_loader", "verif.tb_loader", CASES)
