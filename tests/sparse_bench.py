"""Shared stimulus, run and scoreboard of the pysim tests of ``hw.pe.SparsePE`` and
``hw.array.SparseArray``: one coordinate (``U [n*n, K, C]`` indexed ``[xi]``, ``M [K, T]``) or
all of them (``M [n*n, K, T]``)."""

from __future__ import annotations

import numpy as np

from hw.pe import load_write
from streams import Phase, Streams, payload_value, run_streams
from sw import golden

__all__ = ["random_U", "random_V", "shuffled_acts", "out_beats", "check_outputs", "run_sparse",
           "image_writes"]


def random_U(cfg, rng: np.random.Generator, K: int, C: int, density: float) -> np.ndarray:
    """Sparse weights ``[n*n, K, C]``, the extreme weights at ``[:, 0, 0]`` and
    ``[:, K-1, C-1]`` so the multiplier and the slot sign extension see both ends."""
    lo, hi = cfg.wgt_range
    U = rng.integers(lo, hi + 1, size=(cfg.coords, K, C))
    U[rng.random(U.shape) >= density] = 0
    U[:, 0, 0] = lo
    U[:, K - 1, C - 1] = hi
    return U


def random_V(cfg, rng: np.random.Generator, C: int, T: int, density: float) -> np.ndarray:
    """Sparse activations ``[n*n, C, T]``: tile 0 dense with the largest V, tile 1 with the
    smallest, tile 2 with no non-zero activation at all (as far as ``T`` goes)."""
    lo, hi = cfg.v_range
    V = rng.integers(lo, hi + 1, size=(cfg.coords, C, T))
    V[rng.random(V.shape) >= density] = 0
    V[:, :, 0] = hi
    if T > 1:
        V[:, :, 1] = lo
    if T > 2:
        V[:, :, 2] = 0
    return V


def shuffled_acts(V: np.ndarray, act_width: int, rng: np.random.Generator) -> list[dict]:
    """The ``act`` beats of ``V [..., C, T]``, the channel groups of each tile in a random
    order, ``last`` on the final one."""
    return golden.act_beats(V, act_width, order=lambda n: rng.permutation(n).tolist())


def out_beats(cfg, K: int, T: int) -> int:
    """Output beats of ``T`` tiles of ``K`` channels."""
    return -(-K // cfg.drain_width) * T


def check_outputs(out: list[dict], M: np.ndarray, K: int, T: int, drain_width: int) -> None:
    """``out`` is :func:`sw.golden.drain_beats` of ``M [..., :K, :T]``, beat for beat."""
    expect = golden.drain_beats(M[..., :K, :T], drain_width)
    assert len(out) == len(expect)
    rows = len(expect) // T
    for i, (got, want) in enumerate(zip(out, expect)):
        assert got == want, f"output {i} (tile {i // rows}, k {want['k']})"


def overflow_beats(U: np.ndarray, V: np.ndarray, cfg, K: int, T: int) -> int:
    """Drain beats of one coordinate (``U [K, C]``, ``V [C, T]``) that hold a channel below
    ``K`` whose exact sum lies outside ``cfg.acc_range``: the pulses a PE's ``overflow`` gives."""
    exact = np.asarray(U, np.int64)[:K] @ np.asarray(V, np.int64)[:, :T]
    lo, hi = cfg.acc_range
    outside = (exact < lo) | (exact > hi)                   # [K, T]
    rows = -(-K // cfg.drain_width)
    padded = np.zeros((rows * cfg.drain_width, T), dtype=bool)
    padded[:K] = outside
    return int(padded.reshape(rows, cfg.drain_width, T).any(axis=1).sum())


def image_writes(directory, words, pe: int | None = None, paired: bool = False) -> list[dict]:
    """The ``wgt_wr`` beats (:func:`hw.pe.load_write`) that load one PE's ``directory``
    entries and weight ``words``: one entry or word per beat (the words, then the entries),
    or with ``paired`` entry ``j`` and word ``j`` in beat ``j`` (a half left out once its
    list has ended). ``pe`` as in :func:`hw.pe.load_write`."""
    entries, words = list(enumerate(directory)), list(enumerate(words))
    if not paired:
        return ([load_write(pe, word=w) for w in words]
                + [load_write(pe, entry=e) for e in entries])
    return [load_write(pe, entry=entries[j] if j < len(entries) else None,
                       word=words[j] if j < len(words) else None)
            for j in range(max(len(entries), len(words)))]


def run_sparse(dut, acts: list[dict], K: int, count: int, *, writes=(), counters=("perf",),
               probes=None, **stalls) -> Streams:
    """Load ``writes`` through ``wgt_wr``, then stream ``acts`` and take ``count`` outputs.

    ``k_count`` is ``K`` from the start; ``stalls`` (``gaps``, ``backpressure``, ``rng``) go to
    :func:`streams.run_streams` for both phases. :attr:`~streams.Streams.final` holds the value
    of each output port named in ``counters``, read once the block is idle after the run;
    ``trace["overflow"]`` the ``overflow`` output in every cycle, and so each of ``probes``
    (a mapping of names to signals).
    """
    def setup(ctx):
        ctx.set(dut.k_count, K)

    async def read_counters(ctx):
        await ctx.tick().until(dut.idle)
        return {name: payload_value(ctx.get(getattr(dut, name))) for name in counters}

    return run_streams(dut, Phase({"wgt_wr": list(writes)}, setup=setup),
                       Phase({"act": acts}, {"out": count}), finish=read_counters,
                       probes={"overflow": dut.overflow, **(probes or {})}, **stalls)
