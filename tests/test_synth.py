"""Synthesis smoke: the generated transforms pass Yosys ``synth_ecp5`` and ``check -assert``."""

from __future__ import annotations

import json

import pytest

from fpga.synth import SynthError, main, synthesize, synthesize_verilog
from sw.config import AccelConfig

pytestmark = [pytest.mark.synth, pytest.mark.slow]


@pytest.mark.parametrize("component", ["input_transform"])
def test_transform_synthesises_for_ecp5(component, tmp_path):
    report = synthesize(component, AccelConfig(tile=2), tmp_path)
    assert json.loads((tmp_path / component / "report.json").read_text()) == report
    assert report["lut"] > 50 and report["ff"] > 50
    # Shifts and adds only in the input transform; the requantiser's multipliers map to DSPs.
    assert report["dsp"] == (0 if component == "input_transform" else 16)


def test_broken_rtl_fails_check_assert(tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input a, input b, output y);\n"
                      "  assign y = a;\n  assign y = b;\nendmodule\n")
    with pytest.raises(SynthError, match="broken: yosys"):
        synthesize_verilog(source, "broken", tmp_path)


def test_bad_option_exits_2_without_output(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--tile", "3", "-o", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "AccelConfig.tile: 3 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
