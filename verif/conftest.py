"""pytest setup for the cocotb tier: one seed per run, shared by every xdist worker.

Without ``SEED`` a seed is drawn here, in the controller, and exported before the workers start,
so the whole run is reproduced by the single ``SEED=<n>`` printed in the report header.
"""

from __future__ import annotations

import os

from verif.runner import session_seed


def pytest_configure(config):
    os.environ["SEED"] = str(session_seed())


def pytest_report_header(config):
    sim = os.environ.get("SIM") or "auto"
    return (f"winnow verif: SEED={os.environ['SEED']} SIM={sim} "
            f"WAVES={os.environ.get('WAVES', '0')} WINNOW_SAMPLES="
            f"{os.environ.get('WINNOW_SAMPLES') or 'default'}")
