"""The system benchmark (:mod:`verif.bench_system`) on one tiny case of the whole accelerator.

A small configuration (``k_max`` 4, so the 8-channel layer runs as two passes) keeps the
Verilator build and the run short; the record must have every key, be bit-exact, and order
its cycle counts as the hardware must: the run covers the array's busy time, which covers the
ideal.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from sw.config import AccelConfig
from verif.bench_system import RECORD_KEYS, Spec, markdown, run_system_bench
from verif.stalls import session_seed

TINY = AccelConfig(tile=2, c_max=8, k_max=4, w_max=8, wmem_depth=32, fifo_depth=8, lanes=2,
                   act_width=2, drain_width=2)


@pytest.mark.cocotb
@pytest.mark.parametrize("weight_ports", [1, 4])
def test_system_bench_tiny_case(tmp_path, weight_ports):
    """One two-pass case with one weight-load port and with four (the system bench's)."""
    spec = Spec("tiny", 8, 6, "balanced", 0.5, 0.5)
    cfg = dataclasses.replace(TINY, weight_ports=weight_ports)
    (rec,) = run_system_bench(cfg, [spec], tmp_path, seed=session_seed(),
                              sim_case=f"bench_system_tiny_p{weight_ports}")
    missing = [k for k in RECORD_KEYS if k not in rec]
    assert not missing, f"record lacks {missing}"
    json.dumps(rec)                                     # system.json can hold it
    assert rec["bit_exact"] is True
    assert rec["passes"] == 2 and len(rec["per_pass"]) == 2
    assert rec["load_cycles"] > 0 and rec["ideal_cycles"] > 0
    # the first pass's record loads during its own run (START with AWAIT), the second's during
    # the first pass's run (hw.weight_ring)
    first, second = rec["per_pass"]
    assert first["hidden_load_cycles"] == first["load_cycles"] > 0
    assert 0 < second["hidden_load_cycles"] <= second["load_cycles"]
    assert rec["run_cycles"] == (rec["load_cycles"] - rec["hidden_load_cycles"]
                                 + rec["compute_cycles"])
    assert rec["run_cycles"] >= rec["array_busy_cycles"] >= rec["ideal_cycles"], rec
    assert rec["dense_winograd_cycles"] >= rec["ideal_cycles"]
    # every load lies inside the run, at most one beat of each port's stream per cycle
    assert rec["load_cycles"] >= rec["weight_stream_cycles"] > 0
    assert rec["run_cycles"] >= rec["weight_stream_cycles"]
    assert rec["speedup_ceiling"] >= rec["speedup_vs_dense"]
    assert 0 < rec["w"] <= 1 and 0 < rec["a"] <= 1
    assert "| tiny | balanced |" in markdown([rec])


def test_cli_help_and_refusals(tmp_path, capsys):
    from verif.bench_system import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--full" in capsys.readouterr().out
    for args, message in ((["--w", "0"], "densities must be in (0, 1]"),
                          (["--no-sim", "--out", str(tmp_path)], "does not exist"),
                          (["--config", str(tmp_path / "nope.json")], "nope.json")):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        assert message in capsys.readouterr().err
