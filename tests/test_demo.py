"""``python -m verif.demo``: options and bad input (the run itself is the system bench's job)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*args):
    return subprocess.run([sys.executable, "-m", "verif.demo", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_help():
    result = run_demo("--help")
    assert result.returncode == 0
    for word in ("--images", "--config", "--sim", "--stalls", "stall25", "build/report.md"):
        assert word in result.stdout


def test_bad_options_exit_2_with_one_message(tmp_path):
    out = tmp_path / "out"
    for args, message in ((("--images", "0"), "--images 0: choose 1..360"),
                          (("--stalls", "0.3"), "argument --stalls: invalid choice: '0.3'"),
                          (("--config", str(tmp_path / "nope.json")), "nope.json")):
        result = run_demo(*args, "-o", str(out))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not out.exists(), "a refused run must not write output"
