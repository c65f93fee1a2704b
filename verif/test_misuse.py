"""pytest runner of :mod:`verif.tb_misuse`: the accelerator used wrongly (docs/registers.md,
"Misuse"), on the fastest simulator at hand, in its own build directory."""

from __future__ import annotations

import pytest

from sw.config import AccelConfig
from verif.runner import run_bench
from verif.simulator import fast_simulator

#: Small, so it builds quickly: F(2,3), 6 input and 5 output channels, 9 pixels wide;
#: ``wmem_depth`` 24 so the random layers sometimes need several passes.
CASES = {
    "misuse_f2": AccelConfig(tile=2, c_max=6, k_max=5, w_max=9, wmem_depth=24, fifo_depth=8,
                             lanes=2),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(CASES))
def test_misuse(case):
    run_bench("accelerator", CASES[case], "verif.tb_misuse", case, sim=fast_simulator())
