"""Run a whole network on the simulated accelerator: the job behind ``make demo``.

:func:`run_network_job` writes a job file for :mod:`verif.tb_network`, builds the
:class:`hw.top.Accelerator` for the configuration, runs the bench (which checks every layer of
every image against the golden model) and returns the bench's results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sw.config import AccelConfig
from verif.runner import SIM_DIR, run_bench

__all__ = ["run_network_job"]


def run_network_job(cfg: AccelConfig, model: Path, stream: Path, images: np.ndarray,
                    labels: np.ndarray, case: str, *, sim: str | None = None,
                    stalls: str = "none", seed: int = 0, console: bool = False) -> dict:
    """Run ``images`` through ``model`` on the RTL; the results of :mod:`verif.tb_network`.

    ``stalls`` names the pattern of :mod:`verif.stalls` on every AXI stream, ``seed`` its seed.

    Raises
    ------
    AssertionError
        The bench failed (an RTL output differed from golden, or the run broke); the message
        names the log.
    """
    job_dir = SIM_DIR / case
    job_dir.mkdir(parents=True, exist_ok=True)
    images_file, results = job_dir / "images.npz", job_dir / "results.json"
    np.savez(images_file, images=np.asarray(images), labels=np.asarray(labels))
    results.unlink(missing_ok=True)
    job = job_dir / "job.json"
    job.write_text(json.dumps({"model": str(Path(model).resolve()),
                               "stream": str(Path(stream).resolve()),
                               "images": str(images_file), "results": str(results),
                               "stalls": stalls, "seed": seed}, indent=1) + "\n")
    run_bench("accelerator", cfg, "verif.tb_network", case,
              extra_env={"WINNOW_JOB": str(job), "COCOTB_LOG_LEVEL": "WARNING"},
              sim=sim, console=console)
    return json.loads(results.read_text())
