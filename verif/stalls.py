"""The one stall vocabulary and the one seed convention of every bench, pysim and cocotb alike.

A *stall pattern* is an endless iterator of per-cycle "stall this cycle" decisions. A producer
that stalls drops ``valid`` (a valid gap); a consumer that stalls drops ``ready``
(back-pressure). The same named patterns drive Amaranth-pysim tests (``tests/streams.py``),
cocotb drivers and monitors (:mod:`verif.streams`), and cocotbext-axi pause generators
(``set_pause_generator`` takes the iterator as it is).

The seed: ``SEED=<n>`` in the environment sets it for the whole run; ``SEED=random`` draws
one. Without ``SEED`` the run uses :data:`DEFAULT_SEED`, so CI is reproducible. The pytest
report header prints it once, and every xdist worker and cocotb simulation gets the same one.
Each bench derives its own generator from the seed and its name (:func:`bench_rng`), so adding
a bench does not shift the stimulus of the others.

This module imports neither cocotb nor Amaranth.
"""

from __future__ import annotations

import itertools
import os
import random
import zlib
from typing import Iterator

__all__ = ["PATTERNS", "GAP_PATTERNS", "DEFAULT_SEED", "pattern", "session_seed", "bench_rng"]

#: Every stall pattern, used both for valid gaps (producers) and back-pressure (consumers).
PATTERNS = ("none", "stall25", "stall75", "bursts")
#: The valid-gap subset for benches whose stimulus is long (each pattern is a full run).
GAP_PATTERNS = ("none", "stall25", "bursts")
#: The seed of a run without ``SEED`` in the environment.
DEFAULT_SEED = 20261123


def pattern(name: str, rng: random.Random) -> Iterator[bool]:
    """Endless per-cycle "stall this cycle" decisions of the pattern ``name``.

    ``none`` never stalls; ``stall25``/``stall75`` stall each cycle independently with that
    probability; ``bursts`` alternates runs of 1-16 active cycles with runs of 1-16 stalled
    cycles.

    Raises
    ------
    ValueError
        ``name`` is not one of :data:`PATTERNS`.
    """
    if name == "none":
        return itertools.repeat(False)
    if name in ("stall25", "stall75"):
        p = int(name[5:]) / 100
        return (rng.random() < p for _ in itertools.count())
    if name == "bursts":
        def bursts():
            while True:
                yield from itertools.repeat(False, rng.randint(1, 16))
                yield from itertools.repeat(True, rng.randint(1, 16))
        return bursts()
    raise ValueError(f"stall pattern {name!r} is unknown; choose one of {', '.join(PATTERNS)}")


def session_seed() -> int:
    """The run's seed: ``SEED`` from the environment, :data:`DEFAULT_SEED` without it.

    ``SEED=random`` draws one seed and writes it back to ``os.environ``, so workers and
    simulations started later in the run see the same number.

    Raises
    ------
    ValueError
        ``SEED`` is neither an integer nor ``random``.
    """
    text = os.environ.get("SEED", "").strip()
    if text == "random":
        text = str(random.SystemRandom().randrange(1 << 31))
        os.environ["SEED"] = text
    if not text:
        return DEFAULT_SEED
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"SEED={text!r} is not an integer (or 'random')") from None


def bench_rng(name: str, seed: int | None = None) -> random.Random:
    """A generator of its own for the bench or test ``name``, derived from the run's seed."""
    base = session_seed() if seed is None else seed
    return random.Random(base * 1_000_003 + zlib.crc32(name.encode()))
