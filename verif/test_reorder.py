"""pytest runner for the output-reorder bench in :mod:`verif.tb_reorder`: one case per tile size."""

from __future__ import annotations

from sw.config import AccelConfig
from verif.runner import bench_test

#: Small band memories so Icarus runs every gap × back-pressure pattern in seconds; w_max 10
#: is not a multiple of 4, so tile 4 also has a padded band column. Channel counts up to 13 in
#: beats of 4 at m = 2 (multiples of the beat and not), up to 4 in beats of 8 (the default) at
#: m = 4.
CASES = {
    "output_reorder_m2": AccelConfig(tile=2, w_max=10, k_max=13, stream_values=4),
    "output_reorder_m4": AccelConfig(tile=4, w_max=10, k_max=4),
    # two channels' tiles a beat (transform_channels), odd K included
    "output_reorder_m2_p2": AccelConfig(tile=2, w_max=10, k_max=13, act_width=2, drain_width=2,
                                        transform_channels=2),
}


test_output_reorder = bench_test("output_reorder", "verif.tb_reorder", CASES)
