"""pytest setup shared by both tiers: one seed per run, printed once, the same in every worker.

The seed convention is :mod:`verif.stalls`: ``SEED=<n>`` sets it, ``SEED=random`` draws one,
and without ``SEED`` the run uses the fixed default. It is exported before the xdist workers
and the cocotb simulations start, so the one number in the report header reproduces the run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from verif.stalls import session_seed


def pytest_configure(config):
    os.environ["SEED"] = str(session_seed())


def pytest_report_header(config):
    sim = os.environ.get("SIM") or "auto"
    return (f"winnow: SEED={os.environ['SEED']} SIM={sim} WAVES={os.environ.get('WAVES', '0')} "
            f"WINNOW_SAMPLES={os.environ.get('WINNOW_SAMPLES') or 'default'}")


@pytest.fixture
def rng() -> np.random.Generator:
    """The run's seeded NumPy generator (the seed is in the report header)."""
    return np.random.default_rng(session_seed())
