"""pytest runner for the sparse-array bench in :mod:`verif.tb_array`."""

from __future__ import annotations

from sw.config import AccelConfig
from verif.runner import bench_test

#: Small enough for Icarus in seconds, with per-coordinate lanes and both overflow modes.
CASES = {
    "sparse_array_wrap": AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8,
                                     acc_bits=12, lanes=(1, 2, 3, 2) * 4),
    "sparse_array_sat": AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8,
                                    acc_bits=12, overflow="saturate", lanes=2,
                                    act_width=3, drain_width=2, slots_per_lane=1),
}


test_sparse_array = bench_test("sparse_array", "verif.tb_array", CASES)
