"""Cycle model of the sparse PE array, from the packed weight image and the activations.

What the model assumes about the hardware (each number is a :class:`PerfParams` field)
-------------------------------------------------------------------------------------
The defaults follow hw/pe.py's ``SparsePE`` notes; change them when the RTL changes.

* One PE per Winograd coordinate ``xi`` with ``L = cfg.lanes_per_coord[xi]`` lanes. Zero
  activations are filtered before the PE's FIFO: only ``(c, v)`` with ``V[xi, c, t] != 0`` reach
  the PE, in ascending ``c`` within tile ``t``, tiles in raster order.
* **Walker.** For each such activation the PE walks the compressed column ``(pass, c)``: one
  weight word (``S = cfg.word_slots(xi)`` slots) per cycle, ``max(words,
  min_activation_cycles) + activation_overhead`` cycles. Default ``min_activation_cycles = 0``:
  an activation whose column is empty costs the walker nothing.
* **Lanes.** The valid slots become ``(weight, activation, k)`` pairs in a compactor that hands
  ``L`` pairs per cycle to the lanes across column and tile boundaries, so the lanes finish an
  activation's ``p`` pairs at ``max(lanes_free, start) + p / L``, but not before its last word
  has been read (``start + words``). The walker runs ahead of the lanes by at most
  ``(pair_queue_depth - S) / L`` cycles (the compactor has room for that much), so with
  ``S > L`` the PE's pace is ``max(words, pairs / L)`` per activation.
* Input throughput: one activation beat of ``A = cfg.act_width`` channels of one tile (all
  ``n²`` coordinates) arrives every ``transform_cycles_per_beat`` cycles, so with
  ``G = ceil(C / A)`` beats a tile, activation ``(c, t)`` is in its FIFO from cycle
  ``(t*G + c // A + 1) * transform_cycles_per_beat``, and the end-of-tile flag of tile ``t``
  from cycle ``(t+1) * G * transform_cycles_per_beat``. A PE cannot close tile ``t`` before
  that flag (0 switches the input limit off).
* End of tile: the tile's last beat (channel ``C-1``) carries the end-of-tile flag. When it
  brings no word to walk (a zero activation, or an empty column), the PE spends
  ``marker_cycles`` (default 1, as in the RTL) of its walker, and one lane slot, on a bare
  end-of-tile marker.
* Activation FIFOs: ``fifo_depth`` non-zero activations per PE (default ``None``:
  ``cfg.fifo_depth``; 0: unlimited). A PE pops an activation when it starts walking its column.
  The array accepts a beat only when every PE taking a non-zero element of it has room, so a
  PE whose FIFO is full holds the transform, and with it every other PE, back; this delays
  the arrivals above. End-of-tile markers take no FIFO place in the model.
* Tiles in flight and drain: each PE has ``B = tiles_in_flight`` accumulator banks. The gather
  reads ``D = cfg.drain_width`` channels of one tile from every PE at once per cycle, so the
  drain of tile ``t`` starts when every PE closed it (its last pair left the lanes) and the
  drain of tile ``t-1`` ended, and takes ``drain_cycles`` (default ``None``:
  ``ceil(k_count / D)``). A PE may start tile ``t`` once it closed tile ``t-1`` and the drain of
  tile ``t-B`` ended. With ``B = 1`` every tile is a barrier. The layer ends when the last
  drain ends.
* Passes over output channels run back to back; each re-streams every tile, and each adds
  ``latency_cycles`` once (pipeline fill; pass ``hw.array.SparseArray.LATENCY`` to compare with
  the RTL's cycle counter). Weight reloads between passes are not counted.

Reported quantities
-------------------
``ideal_cycles`` = non-zero pairs / multipliers, with
``pairs = Σ_{xi,c,t} nnz(U[xi, :, c]) · [V[xi, c, t] != 0]``.
``dense_cycles`` = the same array, schedule and transform with no skipping: every activation
walks a full column of ``K`` pairs in ``ceil(k_count / S)`` words. The loss breakdown is
additive::

    cycles = ideal + imbalance + lane_padding + transform + tile_sync

* ``imbalance``: ``Σ_pass max_xi pairs_xi / L_xi`` minus ideal (the busiest PE sets the pace);
* ``lane_padding``: ``Σ_pass max_xi busy_xi`` minus that, ``busy`` being the larger of the
  PE's walker time (words walked and end-of-tile markers) and its lane time (pairs and markers
  over ``L``): walker-bound short columns, per-activation overhead, markers;
* ``transform``: cycles with unlimited tiles in flight and no drain (so only the transform
  rate and FIFO back-pressure hold PEs back), minus the above;
* ``tile_sync``: the rest (bank waits, drain throughput, the final drain, pipeline latency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.config import AccelConfig
from sw.formats import PackedLayer, slot_layout

__all__ = ["PerfParams", "PerfReport", "LaneModel", "schedule_cycles", "model_layer",
           "allocate_lanes"]


@dataclass(frozen=True)
class PerfParams:
    """Timing assumptions of the cycle model (see the module docstring).

    ``tiles_in_flight = None`` takes ``cfg.tiles_in_flight``; ``drain_cycles = None`` takes
    ``ceil(k_count / cfg.drain_width)`` (``drain_width`` channels per cycle);
    ``fifo_depth = None`` takes ``cfg.fifo_depth`` and 0 means unlimited.
    """

    tiles_in_flight: int | None = None
    min_activation_cycles: int = 0
    activation_overhead: int = 0
    drain_cycles: int | None = None
    transform_cycles_per_beat: int = 1
    fifo_depth: int | None = None
    latency_cycles: int = 0
    marker_cycles: int = 1

    def __post_init__(self):
        for name in ("min_activation_cycles", "activation_overhead", "drain_cycles",
                     "transform_cycles_per_beat", "fifo_depth", "latency_cycles",
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
        Per PE, its busy time: the larger of its walker time and its lane time.
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


@dataclass(frozen=True)
class LaneModel:
    """What the lanes behind a PE's walker do (see the module docstring).

    Attributes
    ----------
    pairs : ndarray, int [coords, C]
        Multiplications (valid slots) of each column.
    lanes : ndarray, int [coords]
        Lanes of each PE.
    slack : ndarray, float [coords]
        Cycles the walker may run ahead of its lanes (compactor room).
    """

    pairs: np.ndarray
    lanes: np.ndarray
    slack: np.ndarray


def schedule_cycles(cost: np.ndarray, active: np.ndarray, banks: int | None, drain: int,
                    transform: int, fifo: int = 0, marker: np.ndarray | None = None,
                    lanes: LaneModel | None = None, group: int = 1) -> int:
    """Cycles for one pass: the recurrence of the module docstring, one transform beat a step.

    Parameters
    ----------
    cost : ndarray, int [coords, C]
        Walker cycles an activation of channel ``c`` costs PE ``xi``.
    active : ndarray, bool [coords, C, T]
        Which activations reach each PE.
    banks : int or None
        Tiles in flight; None = unlimited, and drains cost nothing.
    drain, transform : int
        Cycles of one tile's drain, and ``transform_cycles_per_beat``.
    fifo : int
        Activation FIFO depth per PE; 0 = unlimited.
    marker : ndarray, int [coords, T], optional
        Walker cycles PE ``xi`` spends on the end-of-tile marker of tile ``t`` (default none).
    lanes : LaneModel, optional
        The lanes behind the walker; None: the walker alone sets the pace.
    group : int
        Channels per activation beat (``act_width``).

    Beat ``j`` enters when the transform is ready (``transform`` cycles after beat ``j-1``) and
    every PE that takes a non-zero element of it has popped the element ``fifo`` places
    earlier in its queue (a PE pops an activation when it starts walking its column).
    """
    coords, C, T = active.shape
    if marker is None:
        marker = np.zeros((coords, T), dtype=np.int64)
    if lanes is None:
        per_pair = np.zeros(coords)
        pairs = np.zeros((coords, C), dtype=np.int64)
        slack = np.full(coords, np.inf)
    else:
        per_pair, pairs, slack = 1.0 / lanes.lanes, lanes.pairs, lanes.slack
    depth = fifo or C * T + 1
    rows = np.arange(coords)
    popped = np.zeros((coords, depth), dtype=np.int64)  # start cycle of the last `depth` items
    count = np.zeros(coords, dtype=np.int64)
    walker = np.zeros(coords, dtype=np.int64)            # cycle the walker is free
    lane = np.zeros(coords)                              # cycle the lanes have caught up
    drained = np.zeros(T, dtype=np.int64)
    last_drain = beat = 0
    for t in range(T):
        bank_free = drained[t - banks] if banks is not None and t >= banks else 0
        walker = np.maximum(walker, bank_free)
        for c in range(C):
            act = active[:, c, t]
            slot = count % depth
            full = act & (count >= depth)
            if c % group == 0:
                beat += transform
            if full.any():
                beat = max(beat, int(popped[rows[full], slot[full]].max()))
            start = np.maximum(np.maximum(walker, beat),
                               np.ceil(lane - slack).clip(0).astype(np.int64))
            walk = act & (cost[:, c] > 0)
            done = start + cost[:, c]
            lane = np.where(walk, np.maximum(np.maximum(lane, start) + pairs[:, c] * per_pair,
                                             done), lane)
            walker = np.where(walk, done, walker)
            popped[rows[act], slot[act]] = start[act]
            count += act
        # the tile-end flag rides on beat C-1; a bare marker takes the walker and one lane slot
        end = np.maximum(walker, beat)
        has_marker = marker[:, t] > 0
        walker = np.where(has_marker, end + marker[:, t], end)
        lane = np.where(has_marker, np.maximum(np.maximum(lane, end) + per_pair, walker), lane)
        finish = np.maximum(walker, np.ceil(lane - 1e-9).astype(np.int64))
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
    slots = np.array([cfg.word_slots(xi) for xi in range(cfg.coords)], dtype=np.int64)
    slack = np.array([(cfg.pair_queue_depth(xi) - cfg.word_slots(xi)) / cfg.lanes_per_coord[xi]
                      for xi in range(cfg.coords)])
    active = V != 0
    act_count = active.sum(axis=2)                                       # [coords, C]
    words = packed.column_words()                                        # [P, coords, C]
    nnz = _column_nnz(packed, cfg)                                       # [P, coords, C]

    cycles = one = free = dense = 0
    bound_balanced = bound_padded = 0
    busy = np.zeros(cfg.coords, dtype=np.int64)
    pairs = empty = 0
    for p, im in enumerate(packed.passes):
        drain = (-(-im.k_count // cfg.drain_width) if params.drain_cycles is None
                 else params.drain_cycles)
        # A bare end-of-tile marker when the last beat brings no word to walk.
        marker = np.where(active[:, -1, :] & (words[p][:, -1:] > 0), 0, params.marker_cycles)
        sched = dict(drain=drain, transform=params.transform_cycles_per_beat,
                     group=cfg.act_width,
                     fifo=cfg.fifo_depth if params.fifo_depth is None else params.fifo_depth,
                     marker=marker)
        cost = np.maximum(words[p], params.min_activation_cycles) + params.activation_overhead
        lane = LaneModel(pairs=nnz[p], lanes=lanes, slack=slack)
        cycles += schedule_cycles(cost, active, banks, lanes=lane, **sched) \
            + params.latency_cycles
        one += schedule_cycles(cost, active, 1, lanes=lane, **sched) + params.latency_cycles
        free += schedule_cycles(cost, active, None, lanes=lane, **sched)
        dense_words = np.broadcast_to(
            np.maximum(-(-im.k_count // slots), params.min_activation_cycles)[:, None]
            + params.activation_overhead, cost.shape)
        dense_lane = LaneModel(pairs=np.full(cost.shape, im.k_count), lanes=lanes, slack=slack)
        dense += schedule_cycles(dense_words, np.ones_like(active), banks, lanes=dense_lane,
                                 **{**sched, "marker": None}) + params.latency_cycles
        pe_pairs = (nnz[p] * act_count).sum(axis=1)                      # [coords]
        # the PE can be no faster than its walker, nor than its lanes
        pe_time = np.maximum((cost * act_count).sum(axis=1) + marker.sum(axis=1),
                             (pe_pairs + (marker > 0).sum(axis=1)) / lanes)
        bound_balanced += (pe_pairs / lanes).max()
        bound_padded += float(pe_time.max())
        pe_busy = np.ceil(pe_time).astype(np.int64)
        busy += pe_busy
        pairs += int(pe_pairs.sum())
        empty += int((pe_busy * lanes).sum() - pe_pairs.sum())
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
            valid_bits = [lay.slot_lsb(q) + lay.valid_lsb for q in range(lay.slots)]
            valid = [sum((w >> b) & 1 for b in valid_bits) for w in im.words[xi]]
            for c, (start, count) in enumerate(im.directory[xi]):
                out[p, xi, c] = sum(valid[start:start + count])
    return out


def allocate_lanes(coord_density, multipliers: int) -> tuple[int, ...]:
    """Lanes per Winograd coordinate in proportion to measured weight densities.

    Each coordinate gets one lane, then each further lane goes to the coordinate whose work per
    lane (``density / lanes``) is largest, which minimises the slowest PE's pace. The result is
    what ``AccelConfig(lanes=...)`` takes, for hardware that runs layers pruned with one
    threshold per layer (whose corner coordinates keep more weights) without one PE setting
    the pace.

    Raises
    ------
    ValueError
        Fewer multipliers than coordinates, or a density that is negative or all zero.
    """
    density = np.asarray(coord_density, dtype=float).ravel()
    if multipliers < density.size:
        raise ValueError(f"{multipliers} multipliers cannot give each of {density.size} "
                         "coordinates a lane")
    if (density < 0).any() or density.sum() <= 0:
        raise ValueError("coordinate densities must be >= 0 and not all zero")
    lanes = np.ones(density.size, dtype=np.int64)
    for _ in range(multipliers - density.size):
        lanes[int(np.argmax(density / lanes))] += 1
    return tuple(int(x) for x in lanes)
