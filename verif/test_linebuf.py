"""pytest runner for the line-buffer bench in :mod:`verif.tb_linebuf`."""

from __future__ import annotations

import pytest

from sw.config import AccelConfig
from verif.runner import run_bench

#: Small enough for Icarus in seconds; neither w_max is a multiple of n, and for m = 4 the
#: last patch column of a full-width frame lies past the final column group.
CASES = {
    "line_buffer_m2": AccelConfig(tile=2, w_max=12, c_max=4),
    "line_buffer_m4": AccelConfig(tile=4, w_max=10, c_max=3),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(CASES))
def test_line_buffer(case):
    run_bench("line_buffer", CASES[case], "verif.tb_linebuf", case)
