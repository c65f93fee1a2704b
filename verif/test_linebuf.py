"""pytest runner for the line-buffer bench in :mod:`verif.tb_linebuf`."""

from __future__ import annotations

from sw.config import AccelConfig
from verif.runner import bench_test

#: Small enough for Icarus in seconds; neither w_max is a multiple of n, and for m = 4 the
#: last patch column of a full-width frame lies past the final column group. Channel counts
#: up to 13 in beats of 4 at m = 2 (multiples of the beat and not), up to 3 in beats of 8 (the
#: default, every pixel one partial beat) at m = 4; and two channels' patches per beat.
CASES = {
    "line_buffer_m2": AccelConfig(tile=2, w_max=12, c_max=13, stream_values=4),
    "line_buffer_m4": AccelConfig(tile=4, w_max=10, c_max=3),
    # two channels' patches a beat, the spread row memory's both elements; odd C included
    "line_buffer_m2_p2": AccelConfig(tile=2, w_max=12, c_max=13, act_width=2, drain_width=2,
                                     transform_channels=2),
}


test_line_buffer = bench_test("line_buffer", "verif.tb_linebuf", CASES)
