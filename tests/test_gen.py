"""``python -m hw.gen``: output files, config round trip, and one clear error per bad option."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw import gen
from sw.config import AccelConfig

ROOT = Path(__file__).resolve().parents[1]


def run_gen(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hw.gen", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_help_lists_components_and_fields():
    result = run_gen("--help")
    assert result.returncode == 0
    for word in ("--component", "input_transform", "output_transform", "--config",
                 "--tile", "--lanes", "--overflow"):
        assert word in result.stdout


def test_writes_verilog_config_and_header(tmp_path):
    result = run_gen("--component", "input_transform", "--tile", "4", "--lanes", "2",
                     "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "input_transform.v", "winnow.json", "winnow_params.h"]
    assert "module input_transform" in (tmp_path / "input_transform.v").read_text()
    cfg = AccelConfig.load(tmp_path / "winnow.json")
    assert cfg == AccelConfig(tile=4, lanes=2)
    header = (tmp_path / "winnow_params.h").read_text()
    assert "#define WINNOW_TILE 4" in header
    assert f"#define WINNOW_V_BITS {cfg.v_bits}" in header
    assert "#define WINNOW_OVERFLOW_WRAP 1" in header


def test_config_file_then_option_override(tmp_path):
    cfg_file = tmp_path / "in.json"
    cfg_file.write_text(AccelConfig(tile=4, overflow="saturate").to_json())
    out = tmp_path / "out"
    result = run_gen("--component", "output_transform", "--config", str(cfg_file),
                     "--acc-bits", "24", "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = json.loads((out / "winnow.json").read_text())
    assert (written["tile"], written["overflow"], written["acc_bits"]) == (4, "saturate", 24)


@pytest.mark.parametrize("args, message", [
    (("--tile", "3"), "AccelConfig.tile: 3 is not allowed"),
    (("--lanes", "1,2,3"), "AccelConfig.lanes: (1, 2, 3) is not allowed"),
    (("--lanes", "x"), "'x' is not an integer"),
    (("--overflow", "clip"), "AccelConfig.overflow: 'clip' is not allowed"),
    (("--config", "missing.json"), "missing.json: cannot read"),
    (("--component", "nope"), "invalid choice: 'nope'"),
])
def test_bad_option_exits_2_without_files(tmp_path, args, message):
    out = tmp_path / "out"
    base = () if "--component" in args else ("--component", "input_transform")
    result = run_gen(*base, *args, "-o", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()


def test_stale_derived_section_is_refused(tmp_path):
    data = AccelConfig().to_dict()
    data["derived"]["v_bits"] += 1
    cfg_file = tmp_path / "stale.json"
    cfg_file.write_text(json.dumps(data))
    result = run_gen("--component", "input_transform", "--config", str(cfg_file),
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "'derived' section does not match" in result.stderr


def test_every_component_is_generated_from_config():
    for name in gen.COMPONENTS:
        assert f"module {name}" in gen.verilog_text(name, AccelConfig())


def test_weight_loader_component_is_the_accelerators_loader():
    """``--component weight_loader`` (and so a block-alone ``fpga.synth`` run) builds the loader
    with the accelerator's beat, ``sw.formats.WEIGHT_BEAT_BYTES`` bytes, not the byte mode;
    ``hw.top`` builds its loader with the same factory."""
    import hw.top
    from hw.loader import accelerator_loader, beat_layout
    from sw.formats import WEIGHT_BEAT_BYTES
    assert gen.COMPONENTS["weight_loader"] == "hw.loader:accelerator_loader"
    assert hw.top.accelerator_loader is accelerator_loader
    width = beat_layout(WEIGHT_BEAT_BYTES).size          # data, keep, last
    assert width > beat_layout(1).size
    text = gen.verilog_text("weight_loader", AccelConfig())
    assert f"input [{width - 1}:0] i__payload;" in text
