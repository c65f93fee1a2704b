"""pytest runners for the benches in :mod:`verif.tb_transforms`: one case per unit and m."""

from __future__ import annotations

import pytest

from sw.config import AccelConfig
from verif.runner import run_bench


@pytest.mark.cocotb
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("component", ["input_transform", "output_transform"])
def test_transform(component, m):
    run_bench(component, AccelConfig(tile=m), "verif.tb_transforms", f"{component}_m{m}")
