"""pytest runner for the output-reorder bench in :mod:`verif.tb_reorder`: one case per tile size."""

from __future__ import annotations

import pytest

from sw.config import AccelConfig
from verif.runner import run_bench

#: Small band memories so Icarus runs every gap × back-pressure pattern in seconds; w_max 10
#: is not a multiple of 4, so tile 4 also has a padded band column.
CASES = {
    "output_reorder_m2": AccelConfig(tile=2, w_max=10, k_max=4),
    "output_reorder_m4": AccelConfig(tile=4, w_max=10, k_max=4),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(CASES))
def test_output_reorder(case):
    run_bench("output_reorder", CASES[case], "verif.tb_reorder", case)
