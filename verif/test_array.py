"""pytest runner for the sparse-array bench in :mod:`verif.tb_array`."""

from __future__ import annotations

import pytest

from sw.config import AccelConfig
from hw.gen import COMPONENTS
from verif.runner import run_bench

#: Small enough for Icarus in seconds, with per-coordinate lanes and both overflow modes.
CASES = {
    "sparse_array_wrap": AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8,
                                     acc_bits=12, lanes=(1, 2, 3, 2) * 4),
    "sparse_array_sat": AccelConfig(tile=2, k_max=8, c_max=8, wmem_depth=64, fifo_depth=8,
                                    acc_bits=12, overflow="saturate", lanes=2,
                                    act_width=3, drain_width=2, slots_per_lane=1),
}


@pytest.mark.cocotb
@pytest.mark.skipif("sparse_array" not in COMPONENTS,
                    reason="hw/gen.py does not register the sparse_array component yet")
@pytest.mark.parametrize("case", sorted(CASES))
def test_sparse_array(case):
    run_bench("sparse_array", CASES[case], "verif.tb_array", case)
