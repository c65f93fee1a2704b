"""pytest runner for the register-block bench in :mod:`verif.tb_csr`."""

from __future__ import annotations

from sw.config import AccelConfig
from verif.runner import bench_test

#: Odd sizes with narrow quantisation fields (sign extension, range refusals), and F(4x4, 3x3)
#: with the default sizes (36 PE counter blocks, 32-bit bias and multiplier, k_max = 256).
CASES = {
    "csr_small": AccelConfig(tile=2, c_max=6, k_max=5, w_max=9, wmem_depth=16, fifo_depth=4,
                             act_width=2, bias_bits=12, mult_bits=10, shift_bits=4),
    "csr_default_f4": AccelConfig(tile=4),
}


test_control_registers = bench_test("control_registers", "verif.tb_csr", CASES)
