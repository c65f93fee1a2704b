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
* **Lanes.** Output channel ``k`` belongs to lane ``k mod L``. Lane ``l`` takes the ``p_l``
  pairs of an activation's column that are its own, one per cycle from its queue, so it
  finishes them at ``max(lane_free_l, start) + p_l``. The lanes drift apart freely; the walker
  runs ahead of a lane by at most its queue's room: ``cfg.lane_queue_depth`` groups (a word's
  valid slots for the lane, 1 to ``slots_per_lane`` pairs), counted as that many times the
  PE's mean group size in lane cycles. So the PE's pace is ``max(words, max_l p_l)`` per
  activation, and over a tile the fullest lane's share.
* Input throughput: one activation beat of ``A = cfg.act_width`` channels of one tile (all
  ``n²`` coordinates) arrives every ``transform_cycles_per_beat`` cycles, so with
  ``G = ceil(C / A)`` beats a tile, activation ``(c, t)`` is in its FIFO from cycle
  ``(t*G + c // A + 1) * transform_cycles_per_beat``, and the end-of-tile flag of tile ``t``
  from cycle ``(t+1) * G * transform_cycles_per_beat``. A PE cannot close tile ``t`` before
  that flag (0 switches the input limit off).
* End of tile: the tile's last beat (channel ``C-1``) carries the end-of-tile flag. When it
  brings no word to walk (a zero activation, or an empty column), the PE spends
  ``marker_cycles`` (default 1, as in the RTL) of its walker, and one slot of every lane, on
  a bare end-of-tile marker; when it does bring a word, each lane with no pair in that
  final word spends one slot on a bare marker.
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
    pairs : ndarray, int [coords, lanes, C]
        Multiplications of each lane in each column (lanes past a PE's own are all zero).
    slack : ndarray, float [coords]
        Cycles the walker may run ahead of a lane (its queue's room).
    bare_end : ndarray, bool [coords, lanes, C], optional
        Lanes with no pair in the column's final word: when that word ends a tile, the lane
        takes a bare end-of-tile entry (one cycle). None: never.
    """

    pairs: np.ndarray
    slack: np.ndarray
    bare_end: np.ndarray | None = None


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
        pairs = np.zeros((coords, 1, C), dtype=np.int64)
        slack = np.full(coords, np.inf)
        bare_end = np.zeros((coords, 1, C), dtype=bool)
        per_marker = 0
    else:
        pairs, slack = lanes.pairs, lanes.slack
        bare_end = np.zeros(pairs.shape, dtype=bool) if lanes.bare_end is None \
            else lanes.bare_end
        per_marker = 1
    owns = pairs.sum(axis=2) > 0                         # [coords, lanes]: a lane with work
    depth = fifo or C * T + 1
    rows = np.arange(coords)
    popped = np.zeros((coords, depth), dtype=np.int64)  # start cycle of the last `depth` items
    count = np.zeros(coords, dtype=np.int64)
    walker = np.zeros(coords, dtype=np.int64)            # cycle the walker is free
    lane = np.zeros(pairs.shape[:2], dtype=np.int64)     # cycle each lane has caught up
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
            behind = np.ceil(lane.max(axis=1) - slack).clip(0).astype(np.int64)
            start = np.maximum(np.maximum(walker, beat), behind)
            walk = act & (cost[:, c] > 0)
            done = start + cost[:, c]
            busy = walk[:, None] & (pairs[:, :, c] > 0)
            lane = np.where(busy, np.maximum(lane, start[:, None]) + pairs[:, :, c], lane)
            walker = np.where(walk, done, walker)
            popped[rows[act], slot[act]] = start[act]
            count += act
        # The tile-end flag rides on beat C-1. A bare marker word takes the walker and a slot
        # of every lane; a real final word gives a bare entry to each lane it has no pair for.
        end = np.maximum(walker, beat)
        has_marker = marker[:, t] > 0
        walker = np.where(has_marker, end + marker[:, t], end)
        bare = np.where(has_marker[:, None], True, bare_end[:, :, C - 1]) & owns
        lane = np.where(bare, np.maximum(np.maximum(lane, end[:, None]) + per_marker,
                                         walker[:, None]), lane)
        finish = np.maximum(walker, lane.max(axis=1))
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
    active = V != 0
    act_count = active.sum(axis=2)                                       # [coords, C]
    words = packed.column_words()                                        # [P, coords, C]
    lane_nnz = _lane_nnz(packed, cfg)                                    # [P, coords, L, C]
    nnz = lane_nnz.sum(axis=2)                                           # [P, coords, C]

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
        last_word = (words[p][:, None, :] - 1) * cfg.slots_per_lane
        slack = _queue_slack(lane_nnz[p], act_count, cfg)
        lane = LaneModel(pairs=lane_nnz[p], slack=slack,
                         bare_end=lane_nnz[p] <= last_word)
        cycles += schedule_cycles(cost, active, banks, lanes=lane, **sched) \
            + params.latency_cycles
        one += schedule_cycles(cost, active, 1, lanes=lane, **sched) + params.latency_cycles
        free += schedule_cycles(cost, active, None, lanes=lane, **sched)
        dense_share = _dense_shares(im.k_count, lanes)                  # [coords, L]
        dense_words = np.broadcast_to(
            np.maximum(-(-dense_share.max(axis=1) // cfg.slots_per_lane),
                       params.min_activation_cycles)[:, None]
            + params.activation_overhead, cost.shape)
        dense_pairs = np.repeat(dense_share[:, :, None], cost.shape[1], axis=2)
        dense_lane = LaneModel(pairs=dense_pairs,
                               slack=_queue_slack(dense_pairs, np.ones_like(act_count), cfg))
        dense += schedule_cycles(dense_words, np.ones_like(active), banks, lanes=dense_lane,
                                 **{**sched, "marker": None}) + params.latency_cycles
        pe_pairs = (nnz[p] * act_count).sum(axis=1)                      # [coords]
        lane_pairs = (lane_nnz[p] * act_count[:, None, :]).sum(axis=2)   # [coords, L]
        # the PE can be no faster than its walker, nor than its fullest lane
        pe_time = np.maximum((cost * act_count).sum(axis=1) + marker.sum(axis=1),
                             lane_pairs.max(axis=1) + (marker > 0).sum(axis=1))
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


def _queue_slack(lane_nnz: np.ndarray, act_count: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Cycles the walker may run ahead of a lane, per PE, ``[coords]``.

    A lane queue holds ``cfg.lane_queue_depth`` groups (a word's valid slots for the lane,
    1 to ``slots_per_lane`` pairs) before the walker must wait, so its room in lane cycles is
    that many groups of the PE's mean group size: pairs over non-empty groups, counted over
    the activations that reach the PE.
    """
    spl = cfg.slots_per_lane
    groups = -(-lane_nnz // spl)                                         # [coords, L, C]
    pairs = (lane_nnz * act_count[:, None, :]).sum(axis=(1, 2))
    count = (groups * act_count[:, None, :]).sum(axis=(1, 2))
    mean = np.where(count > 0, pairs / np.maximum(count, 1), 1.0)
    return cfg.lane_queue_depth * mean


def _lane_nnz(packed: PackedLayer, cfg: AccelConfig) -> np.ndarray:
    """Valid slots of every lane in every column, int64 ``[passes, coords, L_max, C]``.

    Read from the image: lane ``l`` of PE ``xi`` owns slots ``[l·spl, (l+1)·spl)`` of a word.
    """
    out = np.zeros((packed.num_passes, cfg.coords, max(cfg.lanes_per_coord), packed.C),
                   dtype=np.int64)
    spl = cfg.slots_per_lane
    for p, im in enumerate(packed.passes):
        for xi in range(cfg.coords):
            lay = slot_layout(cfg, xi)
            valid = np.array([[sum((w >> (lay.slot_lsb(l * spl + s) + lay.valid_lsb)) & 1
                                   for s in range(spl)) for l in range(lay.lanes)]
                              for w in im.words[xi]], dtype=np.int64).reshape(-1, lay.lanes)
            for c, (start, count) in enumerate(im.directory[xi]):
                out[p, xi, :lay.lanes, c] = valid[start:start + count].sum(axis=0)
    return out


def _dense_shares(k_count: int, lanes: np.ndarray) -> np.ndarray:
    """Output channels of each lane, ``[coords, L_max]``, when all ``k_count`` are non-zero."""
    out = np.zeros((lanes.size, int(lanes.max())), dtype=np.int64)
    for xi, L in enumerate(lanes):
        out[xi, :L] = [len(range(l, k_count, L)) for l in range(L)]
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
