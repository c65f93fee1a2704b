"""Shared fixtures of the fast unit tier."""

import os

import numpy as np
import pytest

#: Default stimulus seed of the unit tier; ``UNIT_SEED=<n>`` reruns it with another one.
DEFAULT_SEED = 20261123


@pytest.fixture
def rng():
    """A seeded generator; the seed is printed so a failure can be reproduced."""
    seed = int(os.environ.get("UNIT_SEED", DEFAULT_SEED))
    print(f"seed {seed} (UNIT_SEED={seed} reproduces it)")
    return np.random.default_rng(seed)
