"""Cycle model of the sparse PE array, from the packed weight image and the activations.

What the model assumes about the hardware (each number is a :class:`PerfParams` field)
-------------------------------------------------------------------------------------
The defaults follow hw/pe.py's ``SparsePE`` notes; change them when the RTL changes.

* One PE per Winograd coordinate ``xi`` with ``L = cfg.lanes_per_coord[xi]`` lanes. Zero
  activations are filtered before the PE's FIFO: only ``(c, v)`` with ``V[xi, c, t] != 0`` reach
  the PE, in ascending ``c`` within tile ``t``, tiles in raster order.
* For each such activation the PE walks the compressed column ``(pass, c)``: one weight word
  (``L`` slots, one lane each) per cycle. Lanes have private accumulators, so a word never stalls
  on a bank conflict. The activation costs ``max(words, min_activation_cycles) +
  activation_overhead`` cycles. Default ``min_activation_cycles = 0``: an activation whose
  column is empty costs the walker nothing (the RTL's directory stage still takes one cycle per
  FIFO entry, hidden behind multi-word columns; the model ignores it).
* Transform throughput: the input transform delivers one channel of one tile (all ``n²``
  coordinates) every ``transform_cycles_per_channel`` cycles, so activation ``(c, t)`` is in
  its FIFO from cycle ``(t*C + c + 1) * transform_cycles_per_channel``, and the end-of-tile
  marker of tile ``t`` from cycle ``(t+1) * C * transform_cycles_per_channel``. A PE cannot close
  tile ``t`` before that marker (0 switches the transform limit off).
* End of tile: the tile's last beat (channel ``C-1``) carries the end-of-tile flag. When it
  brings no word to walk (a zero activation, or an empty column), the PE spends
  ``marker_cycles`` (default 1, as in the RTL) on a bare end-of-tile marker.
* Activation FIFOs: ``fifo_depth`` non-zero activations per PE (default ``None``:
  ``cfg.fifo_depth``; 0: unlimited). A PE pops an activation when it starts walking its column.
  The array accepts a beat only when every PE taking a non-zero element of it has room, so a
  PE whose FIFO is full holds the transform, and with it every other PE, back; this delays
  the arrivals above. End-of-tile markers take no FIFO place in the model.
* Tiles in flight and drain: each PE has ``B = tiles_in_flight`` accumulator banks. The gather
  reads ``M[k]`` of one tile from every PE at once, one ``k`` per cycle, so the drain of tile
  ``t`` starts when every PE closed it and the drain of tile ``t-1`` ended, and takes
  ``drain_cycles`` (default ``None``: the pass's ``k_count``). A PE may start tile ``t`` once it
  closed tile ``t-1`` and the drain of tile ``t-B`` ended. With ``B = 1`` every tile is a
  barrier. The layer ends when the last drain ends.
* Passes over output channels run back to back; each re-streams every tile, and each adds
  ``latency_cycles`` once (pipeline fill; pass ``hw.array.SparseArray.LATENCY`` to compare with
  the RTL's cycle counter). Weight reloads between passes are not counted.

Reported quantities
-------------------
``ideal_cycles`` = non-zero pairs / multipliers, with
``pairs = Σ_{xi,c,t} nnz(U[xi, :, c]) · [V[xi, c, t] != 0]``.
``dense_cycles`` = the same array, schedule and transform with no skipping: every activation
walks a full column of ``ceil(k_count / L)`` words. The loss breakdown is additive::

    cycles = ideal + imbalance + lane_padding + transform + tile_sync

* ``imbalance``: ``Σ_pass max_xi pairs_xi / L_xi`` minus ideal (the busiest PE sets the pace);
* ``lane_padding``: ``Σ_pass max_xi (busy_xi + marker cycles_xi)`` minus that (partly filled
  words, empty columns, per-activation overhead, end-of-tile markers);
* ``transform``: cycles with unlimited tiles in flight and no drain (so only the transform
  rate and FIFO back-pressure hold PEs back), minus the above;
* ``tile_sync``: the rest (bank waits, drain throughput, the final drain, pipeline latency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import AccelConfig
from sw.formats import PackedLayer, slot_layout

__all__ = ["PerfParams", "PerfReport", "schedule_cycles", "model_layer"]


@dataclass(frozen=True)
class PerfParams:
    """Timing assumptions of the cycle model (see the module docstring).

    ``tiles_in_flight = None`` takes ``cfg.tiles_in_flight``; ``drain_cycles = None`` takes the
    pass's output-channel count (one ``M[k]`` per cycle); ``fifo_depth = None`` takes
    ``cfg.fifo_depth`` and 0 means unlimited.
    """

    tiles_in_flight: int | None = None
    min_activation_cycles: int = 0
    activation_overhead: int = 0
    drain_cycles: int | None = None
    transform_cycles_per_channel: int = 1
    fifo_depth: int | None = None
    latency_cycles: int = 0
    marker_cycles: int = 1

    def __post_init__(self):
        for name in ("min_activation_cycles", "activation_overhead", "drain_cycles",
                     "transform_cycles_per_channel", "fifo_depth", "latency_cycles",
                     "marker_cycles"):
            value = getattr(self, name)
            if value is None and name in ("drain_cycles", "fifo_depth"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"PerfParams.{name} = {value!r}: expected an integer >= 0")
        if self.tiles_in_flight is not None and not (isinstance(self.tiles_in_flight, int)
                                                     and self.tiles_in_flight >= 1):
            raise ValueError(f"PerfParams.tiles_in_flight = {self.tiles_in_flight!r}: "
                             "expected an integer >= 1 or None")


@dataclass(frozen=True)
class PerfReport:
    """Model results for one layer.

    Attributes
    ----------
    cycles, cycles_one_tile : int
        Array cycles with the configured tiles in flight, and with one.
    ideal_cycles : float
        Non-zero pairs / multipliers.
    dense_cycles : int
        The same array with no skipping.
    macs : int
        Non-zero (weight, activation) pairs, the multiplications issued.
    busy_cycles : tuple of int
        Per PE, the cycles spent walking columns.
    empty_slots : int
        Lane-cycles without a multiplication while a PE is busy.
    losses : dict
        ``imbalance``, ``lane_padding``, ``transform``, ``tile_sync`` in cycles.
    """

    cycles: int
    cycles_one_tile: int
    ideal_cycles: float
    dense_cycles: int
    macs: int
    busy_cycles: tuple[int, ...]
    empty_slots: int
    losses: dict

    @property
    def utilisation(self) -> float:
        """``ideal_cycles / cycles``."""
        return self.ideal_cycles / self.cycles if self.cycles else 1.0

    @property
    def speedup_vs_dense(self) -> float:
        return self.dense_cycles / self.cycles if self.cycles else 1.0

    def loss_fractions(self) -> dict:
        """Each loss as a fraction of ``cycles`` (they sum to ``1 - utilisation``)."""
        return {k: (v / self.cycles if self.cycles else 0.0) for k, v in self.losses.items()}

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "cycles_one_tile": self.cycles_one_tile,
                "ideal_cycles": self.ideal_cycles, "dense_cycles": self.dense_cycles,
                "macs": self.macs, "busy_cycles": list(self.busy_cycles),
                "empty_slots": self.empty_slots, "utilisation": self.utilisation,
                "losses": dict(self.losses)}


def schedule_cycles(cost: np.ndarray, active: np.ndarray, banks: int | None, drain: int,
                    transform: int, fifo: int = 0, marker: np.ndarray | None = None) -> int:
    """Cycles for one pass: the max-plus recurrence of the module docstring.

    Parameters
    ----------
    cost : ndarray, int [coords, C]
        Cycles an activation of channel ``c`` costs PE ``xi``.
    active : ndarray, bool [coords, C, T]
        Which activations reach each PE.
    banks : int or None
        Tiles in flight; None = unlimited, and drains cost nothing.
    drain, transform : int
        Cycles of one tile's drain, and ``transform_cycles_per_channel``.
    fifo : int
        Activation FIFO depth per PE; 0 = unlimited (then each tile is one vector step).
    marker : ndarray, int [coords, T], optional
        Cycles PE ``xi`` spends on the end-of-tile marker of tile ``t`` (default none).
    """
    coords, C, T = active.shape
    if marker is None:
        marker = np.zeros((coords, T), dtype=np.int64)
    if fifo:
        return _schedule_fifo(cost, active, banks, drain, transform, fifo, marker)
    arrival = (np.arange(C, dtype=np.int64) + 1) * transform          # within a tile
    finish = np.zeros(coords, dtype=np.int64)
    drained = np.zeros(T, dtype=np.int64)   # when tile t's bank has been read out
    last_drain = 0
    for t in range(T):
        bank_free = drained[t - banks] if banks is not None and t >= banks else 0
        start = np.maximum(finish, bank_free)
        work = np.where(active[:, :, t], cost, 0)
        # Activations arrive over time: the PE ends at the latest of "start + all work" and
        # "arrival of activation j + work of j and everything after it".
        suffix = np.cumsum(work[:, ::-1], axis=1)[:, ::-1]
        released = np.where(active[:, :, t], t * C * transform + arrival + suffix, 0)
        finish = np.maximum.reduce([start + work.sum(axis=1), released.max(axis=1),
                                    np.full(coords, (t + 1) * C * transform)]) + marker[:, t]
        last_drain = _drain_end(finish, last_drain, banks, drain)
        drained[t] = last_drain
    return last_drain


def _drain_end(finish: np.ndarray, last_drain: int, banks: int | None, drain: int) -> int:
    """Cycle at which a tile whose PEs finish at ``finish`` has drained.

    With no banks (one tile in flight) the drain is folded into the finish; otherwise the one
    gather port serialises drains, so a tile's drain follows the previous tile's.
    """
    if banks is None:
        return int(finish.max())
    return max(int(finish.max()), last_drain) + drain


def _schedule_fifo(cost: np.ndarray, active: np.ndarray, banks: int | None, drain: int,
                   transform: int, fifo: int, marker: np.ndarray) -> int:
    """:func:`schedule_cycles` with finite FIFOs: one step per transform beat.

    Beat ``j`` enters when the transform is ready (``transform`` cycles after beat ``j-1``) and
    every PE that takes a non-zero element of it has popped the element ``fifo`` places
    earlier in its queue (a PE pops an activation when it starts walking its column).
    """
    coords, C, T = active.shape
    rows = np.arange(coords)
    popped = np.zeros((coords, fifo), dtype=np.int64)   # start cycle of the last `fifo` items
    count = np.zeros(coords, dtype=np.int64)
    finish = np.zeros(coords, dtype=np.int64)
    drained = np.zeros(T, dtype=np.int64)
    last_drain = beat = 0
    for t in range(T):
        bank_free = drained[t - banks] if banks is not None and t >= banks else 0
        cur = np.maximum(finish, bank_free)
        for c in range(C):
            act = active[:, c, t]
            slot = count % fifo
            full = act & (count >= fifo)
            beat += transform
            if full.any():
                beat = max(beat, int(popped[rows[full], slot[full]].max()))
            start = np.maximum(cur, beat)
            cur = np.where(act, start + cost[:, c], cur)
            popped[rows[act], slot[act]] = start[act]
            count += act
        finish = np.maximum(cur, beat) + marker[:, t]  # the tile-end flag rides on beat C-1
        last_drain = _drain_end(finish, last_drain, banks, drain)
        drained[t] = last_drain
    return last_drain


def model_layer(packed: PackedLayer, V: np.ndarray, cfg: AccelConfig,
                params: PerfParams = PerfParams()) -> PerfReport:
    """Model one layer: ``packed`` weights against activations ``V [n*n, C, T]``.

    ``V`` is the transformed input after the optional Winograd ReLU, e.g.
    ``golden.conv_layer_trace(x, layer, cfg).V``; only ``V != 0`` matters.
    """
    V = np.asarray(V)
    if V.ndim != 3 or V.shape[:2] != (cfg.coords, packed.C):
        raise ValueError(f"layer {packed.name}: V has shape {V.shape}; expected "
                         f"[{cfg.coords}, {packed.C}, T]")
    banks = params.tiles_in_flight or cfg.tiles_in_flight
    lanes = np.array(cfg.lanes_per_coord, dtype=np.int64)
    active = V != 0
    act_count = active.sum(axis=2)                                       # [coords, C]
    words = packed.column_words()                                        # [P, coords, C]
    nnz = _column_nnz(packed, cfg)                                       # [P, coords, C]

    cycles = one = free = dense = 0
    bound_balanced = bound_padded = 0
    busy = np.zeros(cfg.coords, dtype=np.int64)
    pairs = empty = 0
    for p, im in enumerate(packed.passes):
        drain = im.k_count if params.drain_cycles is None else params.drain_cycles
        # A bare end-of-tile marker when the last beat brings no word to walk.
        marker = np.where(active[:, -1, :] & (words[p][:, -1:] > 0), 0, params.marker_cycles)
        sched = dict(drain=drain, transform=params.transform_cycles_per_channel,
                     fifo=cfg.fifo_depth if params.fifo_depth is None else params.fifo_depth,
                     marker=marker)
        cost = np.maximum(words[p], params.min_activation_cycles) + params.activation_overhead
        cycles += schedule_cycles(cost, active, banks, **sched) + params.latency_cycles
        one += schedule_cycles(cost, active, 1, **sched) + params.latency_cycles
        free += schedule_cycles(cost, active, None, **sched)
        dense_cost = np.broadcast_to(
            np.maximum(-(-im.k_count // lanes), params.min_activation_cycles)[:, None]
            + params.activation_overhead, cost.shape)
        dense += schedule_cycles(dense_cost, np.ones_like(active), banks,
                                 **{**sched, "marker": None}) \
            + params.latency_cycles
        pe_pairs = (nnz[p] * act_count).sum(axis=1)                      # [coords]
        pe_busy = (cost * act_count).sum(axis=1)
        bound_balanced += (pe_pairs / lanes).max()
        bound_padded += int((pe_busy + marker.sum(axis=1)).max())
        busy += pe_busy
        pairs += int(pe_pairs.sum())
        empty += int((np.maximum(words[p], params.min_activation_cycles) * act_count
                      * lanes[:, None]).sum() - pe_pairs.sum())
    ideal = pairs / cfg.multipliers
    losses = {"imbalance": float(bound_balanced - ideal),
              "lane_padding": float(bound_padded - bound_balanced),
              "transform": float(free - bound_padded),
              "tile_sync": float(cycles - free)}
    return PerfReport(cycles=int(cycles), cycles_one_tile=int(one), ideal_cycles=float(ideal),
                      dense_cycles=int(dense), macs=pairs, busy_cycles=tuple(int(b) for b in busy),
                      empty_slots=empty, losses=losses)


def _column_nnz(packed: PackedLayer, cfg: AccelConfig) -> np.ndarray:
    """Valid slots of every column, int64 ``[passes, coords, C]``, read from the image."""
    out = np.zeros((packed.num_passes, cfg.coords, packed.C), dtype=np.int64)
    for p, im in enumerate(packed.passes):
        for xi in range(cfg.coords):
            lay = slot_layout(cfg, xi)
            valid_bits = [lay.slot_lsb(q) + lay.valid_lsb for q in range(lay.lanes)]
            valid = [sum((w >> b) & 1 for b in valid_bits) for w in im.words[xi]]
            for c, (start, count) in enumerate(im.directory[xi]):
                out[p, xi, c] = sum(valid[start:start + count])
    return out
