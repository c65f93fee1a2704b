"""``python -m verif.run --backend rtl`` on a small ONNX CNN the project never saw: the generated
Verilog's outputs are identical to the golden backend's, and the report holds the RTL cycles.

Runs on the fastest simulator at hand (:func:`verif.simulator.fast_simulator`); the first run
builds the accelerator for this configuration (Verilator: about a minute and a half of CPU),
later runs reuse the build.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sw.config import AccelConfig
from verif import run
from verif.simulator import fast_simulator
from verif.stalls import session_seed
from verif.tiny_cnn import save_tiny_cnn

#: Small enough to build quickly; a weight memory of 6 words splits conv2 into two passes over
#: its output channels.
CONFIG = AccelConfig(tile=2, c_max=4, k_max=6, w_max=8, wmem_depth=6, fifo_depth=8, lanes=2)


@pytest.mark.cocotb
def test_rtl_equals_golden_on_a_fresh_onnx_model(tmp_path):
    model = save_tiny_cnn(tmp_path / "cnn.onnx")
    winnow = tmp_path / "winnow.json"
    winnow.write_text(CONFIG.to_json())
    np.save(tmp_path / "x.npy", np.random.default_rng(session_seed()).standard_normal(
        (2, 1, 8, 8)))
    common = [str(model), "--hw", str(winnow), "--input", str(tmp_path / "x.npy"), "-q"]
    assert run.main(common + ["--out", str(tmp_path / "golden")]) == 0
    assert run.main(common + ["--out", str(tmp_path / "rtl"), "--backend", "rtl", "--sim",
                              fast_simulator(), "--stalls", "stall25",
                              "--seed", str(session_seed())]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "rtl" / run.OUTPUTS_NAME),
                                  np.load(tmp_path / "golden" / run.OUTPUTS_NAME))
    report = json.loads((tmp_path / "rtl" / run.REPORT_NAME).read_text())
    assert report["status"] == "ok" and report["backend"] == "rtl"
    rtl = report["rtl"]
    assert rtl["matches_golden"] is True and rtl["mismatch"] is None
    assert rtl["simulator"] == fast_simulator() and rtl["stalls"] == "stall25"
    assert rtl["sim_cycles"] > 0 and rtl["cycles_per_second"] > 0
    golden_rows = json.loads((tmp_path / "golden" / run.REPORT_NAME).read_text())["layers"]
    assert [(r["layer"], r["passes"]) for r in report["layers"]] == [("conv1", 1), ("conv2", 2)]
    for row, golden_row in zip(report["layers"], golden_rows):
        # PERF_MACS, the PEs' summed MACs, is the golden model's non-zero pairs (layer_table).
        assert row["macs"] == golden_row["macs"] > 0
        assert row["model_cycles"] == golden_row["model_cycles"]
        assert row["ideal_cycles"] <= row["array_cycles"] <= row["rtl_cycles"]
