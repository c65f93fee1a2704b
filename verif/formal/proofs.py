"""The formal proofs: one harness per block with a stream port, and the table that lists them.

Each harness instantiates one block in a small configuration, drives every input from free
variables under the stream rules, lets every output stall at will, and asserts

* the stream rules on every output (``valid`` held until ``ready``, payload stable while
  stalled), :func:`verif.formal.rules.assert_stream`;
* that no item is dropped, duplicated, reordered or corrupted: an
  :class:`~verif.formal.rules.ItemTracker` follows one item of the solver's choice, whose
  expected value comes from the block's specification (for the transform units, from the
  Winograd matrices of :mod:`sw.winograd` through :class:`~sw.config.AccelConfig`, so this is a
  bounded equivalence check against a reference written without the units' adder trees);
* where the block reports it (``busy``, ``level``, ``empty``, ``idle``), that it is empty only
  when every item has left, and otherwise that everything leaves within a few cycles of a ready
  sink (not for ``SparsePE`` and ``SparseArray``: their drain takes longer than the depth).

The proofs are bounded model checks from reset (:attr:`Proof.depth` cycles), except where
:attr:`Proof.mode` is ``"prove"`` (k-induction: the properties hold in every reachable state).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from amaranth.asserts import AnyConst, AnySeq, Initial
from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Module, Mux, Signal, Value,
                          signed)
from amaranth.lib import data
from amaranth.lib.wiring import In

from hw.array import SparseArray
from hw.channels import ChannelGather, ChannelSerialiser
from hw.csr import ControlRegisters
from hw.free_running import FreeRunning
from hw.lane_queue import LaneQueue
from hw.linebuf import LineBuffer
from hw.loader import WeightLoader, accelerator_loader
from hw.pe import SparsePE, directory_bank_bit
from hw.record_join import RecordJoin
from hw.reorder import OutputReorder
from hw.stream_buffer import StreamBuffer
from hw.top import Accelerator
from hw.transforms import InputTransform, OutputTransform
from hw.weight_ring import WeightRing
from hw.zero_filter import ZeroFilter
from sw.config import AccelConfig
from sw.formats import WEIGHT_BEAT_BYTES, directory_layout
from verif.formal.axi_lite import axi_lite_responses, axi_lite_slave, channel
from verif.formal.internals import elaborate_with_internals
from verif.formal.rules import ItemTracker, assert_stream, assume_stream, past

__all__ = ["Proof", "PROOFS"]


@dataclass(frozen=True)
class Proof:
    """One formal proof: a harness, how it is checked and how deep.

    Attributes
    ----------
    name : str
        Its name on the command line and its directory under ``build/formal/``.
    block : str
        The component it is about.
    summary : str
        What it proves, in a line.
    build : callable
        ``build(m)`` adds the block and its properties to the harness module ``m``.
    depth : int
        Cycles from reset the bounded check covers (for ``prove``, the induction length).
    mode : str
        ``"bmc"`` (bounded model check) or ``"prove"`` (k-induction).
    slow : bool
        Takes minutes: ``make formal`` runs it, ``verif/test_formal.py`` leaves it out.
    solver : str
        The SMT solver yosys-smtbmc drives (``verif.formal.runner.SOLVERS``): Boolector, or
        Yices where it was measured much faster (the output transform's ``Z[i][3]``).
    memory_map : bool
        Turn the block's memories into registers (Yosys ``memory_map``) instead of handing
        them to the solver as arrays: faster where the proof follows values through a small
        memory (the frame buffers' order proofs).
    """

    name: str
    block: str
    summary: str
    build: Callable[[Module], None]
    depth: int
    mode: str = "bmc"
    slow: bool = False
    solver: str = "boolector"
    memory_map: bool = False


def source(m: Module, port, name: str) -> None:
    """Drive input stream ``port`` with any beats that keep the stream rules."""
    m.d.comb += [port.valid.eq(AnySeq(1)),
                 Value.cast(port.payload).eq(AnySeq(Value.cast(port.payload).shape().width))]
    assume_stream(m, port, name)


def sink(m: Module, port, name: str) -> None:
    """Take output stream ``port`` whenever the solver likes, and prove the stream rules on it."""
    m.d.comb += port.ready.eq(AnySeq(1))
    assert_stream(m, port, name)


def taken(port):
    """A beat moves on ``port`` this cycle."""
    return port.valid & port.ready


def assume_constant(m: Module, value, lo: int, hi: int) -> None:
    """Tie ``value`` to one solver-chosen constant in ``lo .. hi`` (a frame or pass setting)."""
    m.d.comb += value.eq(AnyConst(Value.cast(value).shape()))
    m.d.comb += Assume((value >= lo) & (value <= hi))


# -- StreamBuffer ---------------------------------------------------------------------------

def stream_buffer(m: Module) -> None:
    dut = m.submodules.dut = StreamBuffer(8)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    items = ItemTracker(m, 8, "beat", capacity=3)
    items.enter([(taken(dut.i), dut.i.payload)])
    items.leave([(taken(dut.o), dut.o.payload)])
    items.assert_empty_when(~dut.busy, "busy low")


def stream_buffer_rules(m: Module) -> None:
    dut = m.submodules.dut = StreamBuffer(8)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")


# -- LaneQueue ------------------------------------------------------------------------------

def lane_queue(m: Module) -> None:
    # One bit per field is enough to tell items apart; wider fields only slow the solver.
    group = data.StructLayout({"v": 1, "end": 1})
    slot = data.StructLayout({"w": 1})
    dut = m.submodules.dut = LaneQueue(group, slot, slots=2, depth=4)
    m.d.comb += [dut.i_count.eq(AnySeq(dut.i_count.shape())),
                 Value.cast(dut.i_group).eq(AnySeq(group.size)),
                 Value.cast(dut.i_slot).eq(AnySeq(dut.i_slot.shape().size))]
    # The writer's contract: a group only when room was high in the previous cycle.
    m.d.comb += Assume((dut.i_count <= 2)
                       & ((dut.i_count == 0) | past(m, dut.room, "room_before")))
    sink(m, dut.o, "o")
    items = ItemTracker(m, dut.o.payload.shape(), "entry", capacity=8)
    items.enter([(dut.i_count > s, Cat(Value.cast(dut.i_group), Value.cast(dut.i_slot[s]),
                                       dut.i_count == s + 1))
                 for s in range(2)])
    items.leave([(taken(dut.o), dut.o.payload)])
    items.assert_empty_when(dut.empty, "empty high")


# -- ZeroFilter -----------------------------------------------------------------------------

def _zero_filter(m: Module, cfg: AccelConfig) -> None:
    dut = m.submodules.dut = ZeroFilter(cfg)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    beat, width = dut.i.payload, cfg.act_width
    m.d.comb += Assume(~dut.i.valid | ((beat.n >= 1) & (beat.n <= width)))
    items = ItemTracker(m, dut.o.payload.shape(), "activation",
                         capacity=cfg.fifo_depth)
    # The specification: the non-zero channels of a beat in order, the tile's end on the last
    # of them; a tile-final beat without one becomes a bare marker (v = 0) of its first channel.
    real = [(i < beat.n) & (beat.v[i] != 0) for i in range(width)]
    entries = []
    for i in range(width):
        later = Cat(*real[i + 1:]).any() if i + 1 < width else 0
        entries.append((taken(dut.i) & real[i],
                        Cat((beat.c + i)[:len(beat.c)], beat.v[i], beat.last & ~later)))
    marker = Cat(beat.c, Const(0, signed(cfg.v_bits)), Const(1, 1))
    entries.append((taken(dut.i) & beat.last & ~Cat(*real).any(), marker))
    items.enter(entries)
    items.leave([(taken(dut.o), dut.o.payload)])
    items.assert_empty_when(dut.level == 0, "level 0")


def zero_filter_w1(m: Module) -> None:
    _zero_filter(m, AccelConfig(act_bits=2, c_max=4, act_width=1, fifo_depth=4))


def zero_filter_w2(m: Module) -> None:
    _zero_filter(m, AccelConfig(act_bits=2, c_max=4, act_width=2, fifo_depth=4))


# -- ChannelGather / ChannelSerialiser ------------------------------------------------------

#: Two channels per beat on both sides of the sparse array, one bit per activation (the values
#: only need to tell channels apart).
CHANNELS_CFG = AccelConfig(act_bits=2, c_max=4, k_max=4, lanes=2, act_width=2, drain_width=2,
                           fifo_depth=4, acc_bits=8)


#: Two channels per input beat (transform_channels) into beats of four.
CHANNELS_P2_CFG = AccelConfig(act_bits=2, c_max=6, k_max=4, lanes=2, act_width=4, drain_width=2,
                              fifo_depth=8, acc_bits=8, transform_channels=2)


def channel_gather(m: Module, cfg: AccelConfig = CHANNELS_CFG) -> None:
    width, P = cfg.act_width, cfg.transform_channels
    dut = m.submodules.dut = ChannelGather(cfg)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    channel, beat = dut.i.payload, dut.o.payload
    # The environment's order: beats of P channels c, c + 1, ... of a tile from 0 up, fewer
    # (the rest zero) only in the final one, last on the final one, below c_max.
    tile_open = Signal(init=0)
    next_c = Signal.like(channel.c)
    with m.If(taken(dut.i)):
        m.d.sync += [next_c.eq(Mux(channel.last, 0, channel.c + P)), tile_open.eq(~channel.last)]
    end = channel.c + channel.n
    m.d.comb += Assume(~dut.i.valid | ((channel.c == next_c) & (channel.n >= 1)
                                       & (channel.n <= P) & ((channel.n == P) | channel.last)
                                       & (end <= cfg.c_max) & ((end < cfg.c_max) | channel.last)))
    for j in range(1, P):
        m.d.comb += Assume(~dut.i.valid | (j < channel.n) | (Value.cast(channel.v[j]) == 0))
    # A beat holds A channels, or fewer at a tile's end, from c up, zero past n.
    m.d.comb += Assert(~dut.o.valid | ((beat.n >= 1) & (beat.n <= width)
                                       & ((beat.n == width) | beat.last)),
                       "o: A channels per beat, fewer only at a tile's end")
    for j in range(1, width):
        m.d.comb += Assert(~dut.o.valid | (j < beat.n) | (Value.cast(beat.v[j]) == 0),
                           f"o: channel slot {j} is zero past n")
    items = ItemTracker(m, Cat(Value.cast(channel.v[0]), channel.c, channel.last).shape(),
                        "channel", capacity=2 * width)
    items.enter([(taken(dut.i) & (j < channel.n),
                  Cat(Value.cast(channel.v[j]), (channel.c + j)[:len(channel.c)],
                      channel.last & (channel.n == j + 1)))
                 for j in range(P)])
    items.leave([(taken(dut.o) & (j < beat.n),
                  Cat(Value.cast(beat.v[j]), (beat.c + j)[:len(channel.c)],
                      beat.last & (beat.n == j + 1)))
                 for j in range(width)])
    items.assert_drains(~taken(dut.i) & ~tile_open & dut.o.ready, 2)


#: Drain beats of four channels into beats of two (transform_channels), six channels at most.
SERIALISER_P2_CFG = AccelConfig(act_bits=2, c_max=4, k_max=6, lanes=4, act_width=2,
                                drain_width=4, fifo_depth=4, acc_bits=8, transform_channels=2)


def channel_serialiser(m: Module, cfg: AccelConfig = CHANNELS_CFG) -> None:
    width, P = cfg.drain_width, cfg.transform_channels
    dut = m.submodules.dut = ChannelSerialiser(cfg)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    assume_constant(m, dut.k_count, 1, cfg.k_max)
    beat = dut.i.payload
    # Beats start at a multiple of D below k_count (the array's drain order).
    m.d.comb += Assume(~dut.i.valid | ((beat.k % width == 0) & (beat.k < dut.k_count)))
    entry = dut.o.payload
    m.d.comb += Assert(~dut.o.valid | ((entry.k % P == 0) & (entry.k < dut.k_count)),
                       "o: a beat starts at a multiple of P below k_count")
    channel = Cat(Value.cast(entry.m[0]), entry.k, entry.last)
    items = ItemTracker(m, channel.shape(), "channel", capacity=2 * width)
    entries = []
    for j in range(width):
        final = (j == width - 1) | (beat.k + j == dut.k_count - 1)
        entries.append((taken(dut.i) & (beat.k + j < dut.k_count),
                        Cat(Value.cast(beat.m[j]), (beat.k + j)[:len(entry.k)],
                            beat.last & final)))
    items.enter(entries)
    items.leave([(taken(dut.o) & (entry.k + j < dut.k_count),
                  Cat(Value.cast(entry.m[j]), (entry.k + j)[:len(entry.k)],
                      entry.last & ((j == P - 1) | (entry.k + j == dut.k_count - 1))))
                 for j in range(P)])
    items.assert_drains(~taken(dut.i) & dut.o.ready, width + 1)


# -- InputTransform / OutputTransform: bounded equivalence ----------------------------------

def _scaled(coef: int, value):
    """``coef * value``, a negation or the value itself for ±1 (no multiplier cell)."""
    return value if coef == 1 else -value if coef == -1 else value * coef


def _dot(coefs, operands):
    """``sum(coefs[k] * operands[k])``, the zero coefficients left out."""
    return sum(_scaled(int(c), v) for c, v in zip(coefs, operands) if int(c) != 0)


def _column_pass(mat, x, n):
    """``mat @ X`` for the row-major ``n×n`` operand ``x``: the first half of the transform."""
    return [[_dot([mat[i][k] for k in range(n)], [x[k * n + l].as_signed() for k in range(n)])
             for l in range(n)] for i in range(len(mat))]


def _row_pass(mat, t):
    """``T @ mat.T`` for the rows ``t``: the second half of the transform."""
    return [[_dot(mat[j], [v.as_signed() if isinstance(v, Value) else v for v in t[i]])
             for j in range(len(mat))] for i in range(len(t))]


def _matrix_product(mat, x, n):
    """``mat @ X @ mat.T`` for the row-major ``n×n`` operand ``x``, rows first as the matrices
    are written: plain sums of constant multiples, none of the units' signed-digit adder trees
    or register widths. Amaranth widens every sum, so the reference is exact."""
    return _row_pass(mat, _column_pass(mat, x, n))


def one_tile(m: Module, dut) -> None:
    """Restrict the environment to one beat, offered in the first cycle, and a ready sink.

    The equivalence proofs compare one tile: the transform's arithmetic is the same in every
    cycle, and the pipeline's handling of many beats under stalls is proven separately with
    the values left out (comparing each of many symbolic tiles is beyond the solver's reach
    in the time the proofs have).
    """
    m.d.comb += Assume(dut.i.valid == Initial())
    m.d.comb += Assume(dut.o.ready)


def _input_transform(m: Module, *, cfg: AccelConfig, equivalence: bool) -> None:
    meta = 2
    dut = m.submodules.dut = InputTransform(cfg, meta=meta)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    p = dut.i.payload
    if not equivalence:
        items = ItemTracker(m, meta, "tile", capacity=InputTransform.LATENCY)
        items.enter([(taken(dut.i), p.meta)])
        items.leave([(taken(dut.o), dut.o.payload.meta)])
        items.assert_drains(~taken(dut.i) & dut.o.ready, InputTransform.LATENCY)
        return
    one_tile(m, dut)
    n = cfg.n
    wide = signed(cfg.v_bits + 2)   # wider than V, so a truncated output cannot match
    v = _matrix_product(cfg.BT, p.d, n)
    expected, actual = [], []
    for index in range(n * n):
        i, j = divmod(index, n)
        reference = Signal(wide, name=f"reference_{i}_{j}")
        m.d.comb += reference.eq(Mux(p.relu & (v[i][j] < 0), 0, v[i][j]))
        out = Signal(wide, name=f"out_{i}_{j}")
        m.d.comb += out.eq(dut.o.payload.v[index])
        expected.append(reference)
        actual.append(out)
    items = ItemTracker(m, n * n * wide.width + meta, "tile", capacity=InputTransform.LATENCY)
    items.enter([(taken(dut.i), Cat(*expected, p.meta))])
    items.leave([(taken(dut.o), Cat(*actual, dut.o.payload.meta))])


def _column_pass_range(mat, x_range, n):
    """The range of each element of ``mat @ X`` over every ``X`` with elements in ``x_range``."""
    lo, hi = x_range
    return [[(sum(int(c) * (lo if c > 0 else hi) for c in mat[i]),
              sum(int(c) * (hi if c > 0 else lo) for c in mat[i])) for _ in range(n)]
            for i in range(len(mat))]


def _stage_internals(m: Module, dut, prefix: str, rows: int, cols: int, names=()):
    """Elaborate a transform unit; return its first stage's ``rows × cols`` registers
    (``_Transform2D`` names them ``<prefix>_t<i>_<j>``), per stage whether it loaded in the
    previous cycle (``_StageControl``'s one ``stages_enable``, the same for every stage) and
    its signals ``names``."""
    cells = [f"{prefix}_t{i}_{j}" for i in range(rows) for j in range(cols)]
    found = elaborate_with_internals(m, dut, cells + ["stages_enable"] + list(names))
    t = [[found[f"{prefix}_t{i}_{j}"] for j in range(cols)] for i in range(rows)]
    loaded = [past(m, found["stages_enable"], "stages_enable_before")] * dut.LATENCY
    return t, loaded, found


def _input_transform_stages(m: Module, *, cfg: AccelConfig, rows) -> None:
    """``Bᵀ d B`` one pass at a time, by 1-induction: whenever the first stage loads, its
    registers become ``T = Bᵀ d`` of the beat on ``i``; whenever the second loads, ``o``
    becomes ``T B`` of the first stage's registers, ReLU'd when asked, and the beat's
    ``relu`` and ``meta`` ride along. From any state: every comparison is one pass, ``n``
    terms wide instead of ``n²``; chained through the stages (the tile order is
    ``input_transform_m4``'s) they are the tile's equivalence. The second stage is compared
    for the output ``rows`` only: all six rows of F(4,3) at once do not finish in 5 minutes,
    two rows take 15 to 82 s."""
    meta, n = 2, cfg.n
    dut = InputTransform(cfg, meta=meta)
    t, loaded, found = _stage_internals(m, dut, "bt", n, n, ("relu_s1", "meta_s1"))
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    p, o = dut.i.payload, dut.o.payload
    relu, tile_meta = found["relu_s1"], found["meta_s1"]
    expected_t = _column_pass(cfg.BT, [past(m, p.d[k], f"d{k}_before") for k in range(n * n)],
                              n)
    for i in range(n):
        for j in range(n):
            m.d.comb += Assert(~loaded[0] | (t[i][j] == expected_t[i][j]),
                               f"stage 1: T[{i}][{j}] = (Bᵀ d)[{i}][{j}]")
    # The invariant the second stage's comparison needs: T is the column pass of some tile.
    for i, row in enumerate(_column_pass_range(cfg.BT, cfg.act_range, n)):
        for j, (lo, hi) in enumerate(row):
            m.d.comb += Assert((t[i][j] >= lo) & (t[i][j] <= hi),
                               f"stage 1: T[{i}][{j}] within the range of Bᵀ d")
    m.d.comb += Assert(~loaded[0] | ((relu == past(m, p.relu, "relu_before"))
                                     & (tile_meta == past(m, p.meta, "meta_before"))),
                       "stage 1: relu and meta ride along")
    v = _row_pass(cfg.BT, [[past(m, t[i][j], f"t{i}_{j}_before") for j in range(n)]
                           for i in range(n)])
    relu_before = past(m, relu, "relu_s1_before")
    for i in rows:
        for j in range(n):
            m.d.comb += Assert(~loaded[1] | (o.v[i * n + j] == Mux(relu_before & (v[i][j] < 0),
                                                                   0, v[i][j])),
                               f"stage 2: V[{i}][{j}] = (T B)[{i}][{j}], ReLU'd when asked")
    m.d.comb += Assert(~loaded[1] | (o.meta == past(m, tile_meta, "meta_s1_before")),
                       "stage 2: meta rides along")
    m.d.comb += Cover(taken(dut.i))   # the environment offers tiles (one step deep)


#: The transform proofs' configurations: the smallest accumulators and requantisation
#: parameters, so the solver's multiplier is small. The whole-tile equivalence runs on F(2,3)
#: only: on F(4,3)'s 6×6 tile it does not finish in minutes, even at 2-bit activations; the
#: F(4,3) input transform is proven one pass at a time (:func:`_input_transform_stages`).
TRANSFORM_CFGS = {
    2: AccelConfig(tile=2, act_bits=4, acc_bits=8, bias_bits=4, mult_bits=4, shift_bits=3),
    4: AccelConfig(tile=4, act_bits=2, acc_bits=8, bias_bits=4, mult_bits=4, shift_bits=3),
}


def _output_transform(m: Module, *, cfg: AccelConfig, equivalence: bool) -> None:
    dut = m.submodules.dut = OutputTransform(cfg)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    p, tile = dut.i.payload, cfg.tile
    if not equivalence:
        # The unit has no side band to carry an item's identity, so the tracker only counts
        # tiles (zero-width values): none leaves an empty unit, at most LATENCY are inside,
        # and all have left after LATENCY cycles of a ready sink.
        items = ItemTracker(m, 0, "tile", capacity=OutputTransform.LATENCY)
        items.enter([(taken(dut.i), Const(0, 0))])
        items.leave([(taken(dut.o), Const(0, 0))])
        items.assert_drains(~taken(dut.i) & dut.o.ready, OutputTransform.LATENCY)
        return
    one_tile(m, dut)
    # sw.golden.requantize's domain: shift >= 1.
    m.d.comb += Assume(~dut.i.valid | (p.shift >= 1))
    y = _matrix_product(cfg.AT, p.m, cfg.n)
    act_lo, act_hi = cfg.act_range
    expected, actual = [], []
    for index in range(tile * tile):
        i, j = divmod(index, tile)
        # sw.golden.requantize: ((y + bias) * multiplier + 2**(shift-1)) >> shift, ReLU as
        # max(., 0), then the clamp to the activation range.
        scaled = ((y[i][j] + p.bias) * p.multiplier + ((Const(1, 2) << p.shift) >> 1)) \
            >> p.shift
        rectified = Mux(p.relu & (scaled < 0), 0, scaled)
        reference = Signal(signed(cfg.act_bits), name=f"reference_{i}_{j}")
        m.d.comb += reference.eq(Mux(rectified < act_lo, act_lo,
                                     Mux(rectified > act_hi, act_hi, rectified)))
        expected.append(reference)
        actual.append(dut.o.payload[index])
    items = ItemTracker(m, tile * tile * cfg.act_bits, "tile", capacity=OutputTransform.LATENCY)
    items.enter([(taken(dut.i), Cat(*expected))])
    items.leave([(taken(dut.o), Cat(*actual))])


def _row_pass_range(mat, t_range):
    """The range of each element of ``T @ mat.T`` over every ``T`` with its element ``(i, j)``
    in ``t_range[i][j]``."""
    return [[(sum(int(c) * (lo if c > 0 else hi) for c, (lo, hi) in zip(mat[j], row)),
              sum(int(c) * (hi if c > 0 else lo) for c, (lo, hi) in zip(mat[j], row)))
             for j in range(len(mat))] for row in t_range]


def _requantize(value, shift, relu, cfg: AccelConfig):
    """``sw.golden.requantize``'s rounding, ReLU and clamp of ``value = (y + bias) ·
    multiplier``: ``(value + 2**(shift-1)) >> shift``, ``max(., 0)`` when ``relu``, clamped to
    the activation range. For ``shift == 0``, which the golden model rejects, it is ``value``
    (the unit's documented behaviour)."""
    act_lo, act_hi = cfg.act_range
    scaled = (value + ((Const(1, 2) << shift) >> 1)) >> shift
    rectified = Mux(relu & (scaled < 0), 0, scaled)
    return Mux(rectified < act_lo, act_lo, Mux(rectified > act_hi, act_hi, rectified))


#: What each stage of the output transform loads, for :func:`_output_transform_stages`.
OUTPUT_STAGES = {1: "T = Aᵀ M of the beat on i", 2: "Z = T A + bias of stage 1's registers",
                 3: "the partial products of Z · multiplier of stage 2's",
                 4: "P = Z · multiplier, their sum",
                 5: "sw.golden.requantize's rounding, ReLU and clamp of P, over stages 5-7"}


def _output_transform_stages(m: Module, *, cfg: AccelConfig, stages, rows, cols=None) -> None:
    """``requantize(Aᵀ M A)`` one stage at a time, by 1-induction, for output ``rows``.

    Whenever stage ``s`` loads (``stages_enable`` in the previous cycle), its registers
    become the reference function of what it loaded from: stage 1 ``T = Aᵀ M`` of the beat on
    ``i``, stage 2 ``Z = T A + bias`` of the first stage's registers, stage 3 the partial
    product of ``Z · multiplier`` (one 18 × 18 product at these widths), stage 4
    ``P = Z · multiplier`` (their sum); stages 5-7 (the coarse shift, the fine shift and the
    window, the round and clamp) are compared as one: whenever stage 7 loads, the output is
    ``sw.golden.requantize``'s rounding, ReLU and clamp of the ``P`` and shift stage 5 loaded
    from two loads before, with the lemmas that carry them (stage 5's two shifts are the
    whole shift of that ``P``, stage 6's window, ``fits`` and sign are those of its value);
    the requantisation parameters ride along with the stage that loads them.
    Output row ``i`` needs row ``i`` of ``T`` only, so every stage is compared for ``rows``
    (stage 2 for the output columns ``cols`` too, all by default). Only the stages in
    ``stages`` are compared; the range invariants
    the comparisons need (``T`` within the range of ``Aᵀ M`` over ``m_range``, ``Z`` within
    that of ``T A + bias``) are asserted in every proof that needs them. From any state, so
    for any stalls; chained through the stages (the tile order is ``output_transform_m4``'s)
    they are the tile's equivalence."""
    tile, n = cfg.tile, cfg.n
    cols = range(tile) if cols is None else cols
    dut = OutputTransform(cfg)
    carried = [f"{name}_s{s}" for name, last in (("bias", 1), ("mult", 2), ("shift", 4),
                                                 ("relu", 6)) for s in range(1, last + 1)]
    cells = [(i, j) for i in range(tile) for j in range(tile)]
    per_cell = ["z", "pp", "prod", "coarse", "fine", "window", "fits", "negative"]
    # At these widths Z and the multiplier are one 18-bit chunk each: one partial product.
    names = [f"{kind}{i}_{j}" + ("_00" if kind == "pp" else "")
             for kind in per_cell for i, j in cells]
    t, loaded, found = _stage_internals(m, dut, "at", tile, n, carried + names)
    for i, j in cells:
        assert len(found[f"z{i}_{j}"]) <= 18 and cfg.mult_bits <= 18, \
            "the stage proofs expect one partial product per output (18-bit operands)"
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    p, o = dut.i.payload, dut.o.payload

    def before(name):
        return past(m, found[name], f"{name}_before")

    # The requantisation parameters ride along: stage s loads stage s-1's copy. Stage 5
    # stands for stages 5-7, compared as one.
    inputs = {"bias": p.bias, "mult": p.multiplier, "shift": p.shift, "relu": p.relu}
    compared = set(stages) | ({6, 7} if 5 in stages else set())
    for name in carried:
        field, s = name.rsplit("_s", 1)
        s = int(s)
        if s not in compared:
            continue
        source_value = past(m, inputs[field], f"{field}_in_before") if s == 1 \
            else before(f"{field}_s{s - 1}")
        m.d.comb += Assert(~loaded[s - 1] | (found[name] == source_value),
                           f"stage {s}: {field} rides along")

    t_range = _column_pass_range(cfg.AT, cfg.m_range, n)
    if 1 in stages:
        expected_t = _column_pass(cfg.AT, [past(m, p.m[k], f"m{k}_before")
                                           for k in range(n * n)], n)
        for i in rows:
            for j in range(n):
                m.d.comb += Assert(~loaded[0] | (t[i][j] == expected_t[i][j]),
                                   f"stage 1: T[{i}][{j}] = (Aᵀ M)[{i}][{j}]")
    if 2 in stages or 3 in stages:
        for i, row in enumerate(t_range):
            for j, (lo, hi) in enumerate(row):
                m.d.comb += Assert((t[i][j] >= lo) & (t[i][j] <= hi),
                                   f"stage 1: T[{i}][{j}] within the range of Aᵀ M")
    if 2 in stages:
        y = _row_pass(cfg.AT, [[past(m, t[i][j], f"t{i}_{j}_before") for j in range(n)]
                               for i in range(tile)])
        bias_before = before("bias_s1")
        for i in rows:
            for j in cols:
                m.d.comb += Assert(~loaded[1] | (found[f"z{i}_{j}"] == y[i][j] + bias_before),
                                   f"stage 2: Z[{i}][{j}] = (T A)[{i}][{j}] + bias")
    if 3 in stages:
        bias_lo, bias_hi = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
        y_range = _row_pass_range(cfg.AT, t_range)
        mult_before = before("mult_s2")
        for i in rows:
            for j in range(tile):
                z = found[f"z{i}_{j}"]
                lo, hi = y_range[i][j]
                z_lo, z_hi = lo + bias_lo, hi + bias_hi
                m.d.comb += Assert((z >= z_lo) & (z <= z_hi),
                                   f"stage 2: Z[{i}][{j}] within the range of T A + bias")
                m.d.comb += Assert(~loaded[2] | (found[f"pp{i}_{j}_00"]
                                                 == before(f"z{i}_{j}") * mult_before),
                                   f"stage 3: P[{i}][{j}] = Z[{i}][{j}] · multiplier")
    if 4 in stages:
        for i in rows:
            for j in range(tile):
                m.d.comb += Assert(~loaded[3] | (found[f"prod{i}_{j}"]
                                                 == before(f"pp{i}_{j}_00")),
                                   f"stage 4: P[{i}][{j}] = the sum of its partial products")
    if 5 in stages:
        # What stage 5 loaded from (P, shift) and since when, carried to stage 6 with it.
        width = cfg.act_bits + 2
        shift5 = Signal.like(found["shift_s4"], name="shift_at_stage5")
        shift6 = Signal.like(found["shift_s4"], name="shift_at_stage6")
        had5, had6 = Signal(name="stage5_loaded"), Signal(name="stage6_loaded")
        enable = found["stages_enable"]
        with m.If(enable):
            m.d.sync += [shift5.eq(found["shift_s4"]), shift6.eq(shift5),
                         had5.eq(1), had6.eq(had5)]
        for i in rows:
            for j in range(tile):
                prod = found[f"prod{i}_{j}"]
                p5 = Signal.like(prod, name=f"p{i}_{j}_at_stage5")
                p6 = Signal.like(prod, name=f"p{i}_{j}_at_stage6")
                with m.If(enable):
                    m.d.sync += [p5.eq(prod), p6.eq(p5)]
                shifted = found[f"coarse{i}_{j}"] >> found[f"fine{i}_{j}"]
                m.d.comb += Assert(~had5 | (shifted == (p5 << 1) >> shift5),
                                   f"stage 5: coarse >> fine = 2·P[{i}][{j}] >> shift")
                h6 = Signal(signed(len(prod) + 1), name=f"h{i}_{j}_at_stage6")
                m.d.comb += h6.eq((p6 << 1) >> shift6)
                inside = (h6 >= -(1 << (width - 1))) & (h6 < (1 << (width - 1)))
                window, fits = found[f"window{i}_{j}"], found[f"fits{i}_{j}"]
                m.d.comb += Assert(~had6 | ((fits == inside)
                                            & (found[f"negative{i}_{j}"] == (h6 < 0))
                                            & (~inside | (window == h6))),
                                   f"stage 6: window, fits and sign of 2·P[{i}][{j}] >> shift")
                reference = _requantize(past(m, p6, f"p{i}_{j}_before"),
                                        past(m, shift6, f"shift_{i}_{j}_before"),
                                        before("relu_s6"), cfg)
                m.d.comb += Assert(~(loaded[6] & past(m, had6, f"had6_{i}_{j}_before"))
                                   | (o[i * tile + j] == reference),
                                   f"stage 7: out[{i}][{j}] = requantize(P[{i}][{j}])")
    m.d.comb += Cover(taken(dut.i))   # the environment offers tiles (one step deep)


def free_running(m: Module) -> None:
    """FreeRunning around the F(2,3) output transform, with the shallowest queue it allows:
    stream rules on ``o``; tiles out once each (counted, the unit carries no identity),
    at most ``depth`` inside, none once ``busy`` is low."""
    unit = OutputTransform(TRANSFORM_CFGS[2])
    depth = OutputTransform.LATENCY + 2
    dut = m.submodules.dut = FreeRunning(unit, depth=depth)
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    items = ItemTracker(m, 0, "tile", capacity=depth)
    items.enter([(taken(dut.i), Const(0, 0))])
    items.leave([(taken(dut.o), Const(0, 0))])
    items.assert_empty_when(~dut.busy, "busy low")
    m.d.comb += Assert(unit.o.ready, "the unit's output is always ready")


def _transform_proofs(name: str, unit: str, build, latency: int, reference: str) -> tuple:
    """The stream proofs of one transform unit (F(2,3), F(4,3)) and its equivalence (F(2,3))."""
    proofs = [Proof(f"{name}_m{tile}", f"{unit} F({tile},3)",
                    "stream rules on o under stalls; tiles out once each, in order; drained "
                    f"after {latency} ready cycles",
                    partial(build, cfg=cfg, equivalence=False), depth=12)
              for tile, cfg in TRANSFORM_CFGS.items()]
    proofs.append(Proof(f"{name}_m2_equivalence", f"{unit} F(2,3)",
                        f"one tile of any value equals {reference}",
                        partial(build, cfg=TRANSFORM_CFGS[2], equivalence=True),
                        depth=latency + 2))
    return tuple(proofs)


# -- LineBuffer, OutputReorder, WeightLoader: the stream rules ------------------------------

#: The smallest frame memories: F(2, 3), four columns, two channels, one value per beat.
FRAME_CFG = AccelConfig(tile=2, act_bits=2, w_max=4, c_max=2, k_max=2, stream_values=1)
#: The order proofs' depth without stalls: the first frame of every FRAME_CFG shape has left
#: the block after this many steps from reset (the largest, 4×4×2 with pad 1 for the line
#: buffer, in the last), when the input is offered and the output ready in every cycle; one
#: step less fails the proofs' assertion that it has.
LINE_BUFFER_FRAME_DEPTH, REORDER_FRAME_DEPTH = 40, 39
#: The line buffer's spread row memory (:meth:`hw.linebuf.LineBuffer.spread_columns`: ``n``
#: divides ``V``): four channels a beat, so a slot's four column banks are spread over four
#: memories of one element each.
SPREAD_FRAME_CFG = AccelConfig(tile=2, act_bits=2, w_max=4, c_max=4, k_max=2, stream_values=4)
#: As LINE_BUFFER_FRAME_DEPTH, for SPREAD_FRAME_CFG (31 fails).
SPREAD_FRAME_DEPTH = 32
#: Two channels' patches a beat (transform_channels): eight values an input beat, so the spread
#: row memory holds two channels a word; three channels at most, so a tile's last beat is
#: partial when C is odd.
P2_FRAME_CFG = AccelConfig(tile=2, act_bits=2, w_max=4, c_max=3, k_max=2, stream_values=8,
                           act_width=2, drain_width=2, fifo_depth=4,
                           transform_channels=2)
#: As LINE_BUFFER_FRAME_DEPTH, for P2_FRAME_CFG (23 fails).
P2_FRAME_DEPTH = 24
#: Two channels' tiles a beat into the reorder buffer (transform_channels), two channels an
#: output beat, three channels at most: a tile's last input beat is partial when K is odd.
P2_REORDER_FRAME_CFG = AccelConfig(tile=2, act_bits=2, w_max=4, c_max=2, k_max=3,
                                   stream_values=2, act_width=2, drain_width=2, lanes=2,
                                   fifo_depth=4, transform_channels=2)
#: As REORDER_FRAME_DEPTH, for P2_REORDER_FRAME_CFG (38 fails).
P2_REORDER_FRAME_DEPTH = 39
#: Output beats of two channels, three channels at most: a pixel's second beat is partial.
WIDE_FRAME_CFG = AccelConfig(tile=2, act_bits=2, w_max=4, c_max=2, k_max=3, stream_values=2)
#: As REORDER_FRAME_DEPTH, for WIDE_FRAME_CFG (40 fails).
WIDE_REORDER_FRAME_DEPTH = 41
#: F(4, 3): 6×6 patches from a ring of ten row slots, a memory per column bank (6 does not
#: divide the one value per beat), 4×4 output tiles; a frame of at most 4×4 pixels is one tile.
F4_FRAME_CFG = AccelConfig(tile=4, act_bits=2, w_max=4, c_max=2, k_max=2, stream_values=1)
#: As LINE_BUFFER_FRAME_DEPTH and REORDER_FRAME_DEPTH, for F4_FRAME_CFG (37 and 36 fail).
F4_LINE_BUFFER_FRAME_DEPTH, F4_REORDER_FRAME_DEPTH = 38, 37


def line_buffer(m: Module) -> None:
    """The stream rules on ``o`` for any frame shape and pad, and the row memory's
    ``no_rw_check``: in a cycle where a patch is issued (every bank's read port enabled) and
    a beat is written, a patch row in the written row slot (the band's last row, read while it
    arrives) reads only columns before the written one, so no address is read and written at
    once; a read from another slot's banks is dropped if it collides. A cover of a patch read
    from the row being written."""
    cfg = FRAME_CFG
    dut = LineBuffer(cfg)
    found = elaborate_with_internals(m, dut, ["issue", "accept", "wslot", "head", "pf",
                                              "rows_left", "wx", "q0"])
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    # One frame shape for the whole trace (they may change only while idle), out_h, out_w >= 1.
    assume_constant(m, dut.height, 1, 4)
    assume_constant(m, dut.width, 1, cfg.w_max)
    assume_constant(m, dut.channels, 1, cfg.c_max)
    m.d.comb += dut.pad.eq(AnyConst(1))
    m.d.comb += Assume((dut.height + 2 * dut.pad >= 3) & (dut.width + 2 * dut.pad >= 3))
    slots = LineBuffer.slots(cfg)
    issue, accept, wslot = found["issue"], found["accept"], found["wslot"]
    head, pf, rows_left = found["head"], found["pf"], found["rows_left"]
    # The padded column being written lies past the patch's last one (q0 + n - 1).
    past = found["wx"] + dut.pad >= found["q0"] + cfg.n
    in_written = []
    for r in range(cfg.n):
        used = (r >= pf) & (r < rows_left + pf)          # patch row r lies in the image
        ahead = head + (slots + r) - pf                  # its ring slot, plus one lap
        slot = Mux(ahead >= 2 * slots, ahead - 2 * slots,
                   Mux(ahead >= slots, ahead - slots, ahead))
        written = issue & accept & used & (slot == wslot)
        in_written.append(written)
        m.d.comb += Assert(~written | past,
                           f"no_rw_check: patch row {r} reads the column being written")
    m.d.comb += Cover(issue & accept)
    m.d.comb += Cover(Cat(*in_written).any())


def output_reorder(m: Module) -> None:
    """The stream rules on ``o`` for any frame shape, and the band memory's
    ``no_rw_check``: a tile written in the cycle a word is read goes to another address (the
    other band, or in the band being filled a later tile column than the first row's pixel
    read); a cover of a read in the band being written."""
    cfg = FRAME_CFG
    dut = OutputReorder(cfg)
    found = elaborate_with_internals(m, dut, ["accept", "issue", "wband", "rband", "w_addr",
                                              "r_addr"])
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    assume_constant(m, dut.out_height, 1, 4)
    assume_constant(m, dut.out_width, 1, cfg.w_max)
    assume_constant(m, dut.channels, 1, cfg.k_max)
    both = found["accept"] & found["issue"]
    m.d.comb += Assert(~(both & (found["w_addr"] == found["r_addr"])),
                       "no_rw_check: an address is written and read in one cycle")
    m.d.comb += Cover(both & (found["wband"] == found["rband"]))


# -- LineBuffer, OutputReorder: every value at its place in the reshaped order --------------

def _nested_count(m: Module, step, loops, name: str):
    """The indices of a nested loop, outermost first, advanced once in each cycle ``step`` is
    high: ``loops`` is a list of ``(label, count, most)``, the loop running ``0 .. count-1``
    (``count`` a signal, at most ``most``). Returns the indices, the frame number (how often
    the whole nest has wrapped, saturating at 3) and whether the current position is the
    nest's last one."""
    indices = [Signal(range(most), name=f"{name}_{label}") for label, _, most in loops]
    at_end = [index == count - 1 for index, (_, count, _) in zip(indices, loops)]
    frame = Signal(2, name=f"{name}_frame")
    with m.If(step):
        for position, index in enumerate(indices):
            inner_end = Cat(*at_end[position + 1:]).all() if position + 1 < len(indices) else 1
            with m.If(inner_end):
                m.d.sync += index.eq(Mux(at_end[position], 0, index + 1))
        with m.If(Cat(*at_end).all() & (frame != 3)):
            m.d.sync += frame.eq(frame + 1)
    return indices, frame, Cat(*at_end).all()


def _followed(m: Module, bound, name: str):
    """A solver-chosen constant in ``0 .. bound-1`` (``bound`` a signal of at most 8)."""
    value = Signal(range(8), name=name)
    m.d.comb += value.eq(AnyConst(value.shape()))
    m.d.comb += Assume(value < bound)
    return value


def _frame_ports(m: Module, dut, stalls: bool) -> None:
    """``i`` offers any beats and ``o`` stalls at will (``stalls``), or ``i`` offers a beat
    and ``o`` is ready in every cycle (the block's own ``i.ready`` still holds the input
    back), which leaves the solver no timing to choose: deep enough for whole frames."""
    source(m, dut.i, "i")
    sink(m, dut.o, "o")
    if not stalls:
        m.d.comb += Assume(dut.i.valid & dut.o.ready)


def _first_frame_within(m: Module, out_frame, cycles: int) -> None:
    """The first frame has left within ``cycles`` cycles of reset (so a check of that depth
    saw every item of it leave)."""
    cycle = Signal(range(cycles + 1), name="cycle")
    with m.If(cycle != cycles):
        m.d.sync += cycle.eq(cycle + 1)
    m.d.comb += Assert((cycle != cycles) | (out_frame != 0),
                       f"the first frame has left within {cycles} cycles")


def _line_buffer_order(m: Module, *, stalls: bool, frame_cycles: int = 0,
                       block=LineBuffer, cfg: AccelConfig = FRAME_CFG) -> None:
    """Every patch of :func:`sw.winograd.extract_tiles`, in its order, with the values of the
    pixels it covers and zero elsewhere.

    The solver picks one input value, by frame (the first or the second), row ``Y``, column
    ``X`` and channel ``c`` of a frame of any shape and pad, and the value is recorded when its
    beat is accepted (the input is indexed in NHWC raster order by nested counters). The
    patches are indexed the same way (``ty``, ``tx``, ``c``); element ``(r, s)`` of a patch
    lies at padded row ``ty·m + r`` and column ``tx·m + s``. Every element of every patch of
    channel ``c`` at ``(Y + pad, X + pad)`` must carry the recorded value (and the beat must
    have been accepted), every element outside the image must be zero, ``c`` and ``last``
    must be the patch's. So a missing, extra or misplaced patch, a wrong value or a wrong
    padding fails for some choice. ``idle`` must mean that every patch of every frame begun
    has left (the input and patch indices are both at a frame's start, in the same frame).
    Timing as :func:`_frame_ports` says for ``stalls``; without stalls the first frame must
    have left within ``frame_cycles`` (:func:`_first_frame_within`). ``block`` makes the block
    from the configuration ``cfg`` (a broken one for the mutants). With ``V =
    stream_values > 1`` the input is indexed by beat (``y``, ``x``, beat ``g`` of the pixel)
    and the followed channel ``c`` is element ``c mod V`` of beat ``c div V``.
    """
    mm, n = cfg.tile, cfg.n
    V = cfg.stream_values
    log_v = V.bit_length() - 1
    words = -(-cfg.c_max // V)
    dut = m.submodules.dut = block(cfg)
    _frame_ports(m, dut, stalls)
    assume_constant(m, dut.height, 1, 4)
    assume_constant(m, dut.width, 1, cfg.w_max)
    assume_constant(m, dut.channels, 1, cfg.c_max)
    m.d.comb += dut.pad.eq(AnyConst(1))
    m.d.comb += Assume((dut.height + 2 * dut.pad >= 3) & (dut.width + 2 * dut.pad >= 3))
    H, W, C, pad = dut.height, dut.width, dut.channels, dut.pad
    tiles_h, tiles_w = Signal(range(4), name="tiles_h"), Signal(range(4), name="tiles_w")
    m.d.comb += [tiles_h.eq((H + 2 * pad - 2 + (mm - 1)) // mm),
                 tiles_w.eq((W + 2 * pad - 2 + (mm - 1)) // mm)]
    beats = Signal(range(words + 1), name="beats")
    m.d.comb += beats.eq((C + (V - 1)) >> log_v)
    (y, x, g), in_frame, _ = _nested_count(
        m, taken(dut.i), [("y", H, 4), ("x", W, cfg.w_max), ("g", beats, words)], "in")
    P = cfg.transform_channels
    log_p = P.bit_length() - 1
    patch_beats = Signal(range(cfg.c_max + 1), name="patch_beats")     # ceil(C / P)
    m.d.comb += patch_beats.eq((C + (P - 1)) >> log_p)
    (ty, tx, pb), out_frame, _ = _nested_count(
        m, taken(dut.o), [("ty", tiles_h, 2), ("tx", tiles_w, 2),
                          ("b", patch_beats, -(-cfg.c_max // P))], "out")
    pc = Signal(range(cfg.c_max + P), name="out_c")       # the beat's first channel
    m.d.comb += pc.eq(pb << log_p)
    frame = Signal(name="followed_frame")
    m.d.comb += frame.eq(AnyConst(1))
    fy, fx, fc = _followed(m, H, "followed_y"), _followed(m, W, "followed_x"), \
        _followed(m, C, "followed_c")
    value = Signal(signed(cfg.act_bits), name="followed_value")
    entered = Signal(name="followed_entered")
    with m.If(taken(dut.i) & (in_frame == frame) & (y == fy) & (x == fx)
              & (g == (fc >> log_v))):
        m.d.sync += [value.eq(dut.i.payload[fc & (V - 1)]), entered.eq(1)]
    patch = dut.o.payload
    out = taken(dut.o)
    m.d.comb += Assert(~out | ((patch.c == pc) & (patch.last == (pb == patch_beats - 1))
                               & (patch.n == Mux(pc + P > C, C - pc, P))),
                       "o: c, n and last are the beat's")
    hits = []
    for j in range(P):
        suffix = f" of channel {j}" if P > 1 else ""
        for r in range(n):
            for s in range(n):
                row, col = ty * mm + r, tx * mm + s         # padded coordinates
                inside = (row >= pad) & (row < H + pad) & (col >= pad) & (col < W + pad)
                element = patch.d[j][r * n + s]
                m.d.comb += Assert(~out | (inside & (pc + j < C)) | (element == 0),
                                   f"o: patch element ({r}, {s}){suffix} outside the image "
                                   "or past C is zero")
                hit = Signal(name=f"followed_at_{j}_{r}_{s}")
                m.d.comb += hit.eq(out & (out_frame == frame) & (pc + j == fc)
                                   & (row == fy + pad) & (col == fx + pad))
                m.d.comb += Assert(~hit | (entered & (element == value)),
                                   f"o: patch element ({r}, {s}){suffix} over the followed "
                                   "pixel carries its value")
                hits.append(hit)
    m.d.comb += Cover(Cat(*hits).any())
    m.d.comb += Assert(~dut.idle | ((y == 0) & (x == 0) & (g == 0) & (ty == 0) & (tx == 0)
                                    & (pb == 0) & (in_frame == out_frame)),
                       "idle only when every patch of every frame begun has left")
    if not stalls:
        _first_frame_within(m, out_frame, frame_cycles)


def _output_reorder_order(m: Module, *, stalls: bool, frame_cycles: int = 0,
                          block=OutputReorder, cfg: AccelConfig = FRAME_CFG) -> None:
    """The NHWC raster of :func:`sw.winograd.assemble_tiles`, every value once, at its place.

    The solver picks one output value, by frame (the first or the second), row ``y < out_h``,
    column ``x < out_w`` and channel ``k`` of a frame of any shape; the input tiles are
    indexed in their order (``ty``, ``tx``, ``k``) by nested counters, and the value is
    recorded from element ``(y mod m, x mod m)`` of tile ``(y div m, x div m, k)`` when that
    beat is accepted (with ``P = transform_channels`` tiles a beat: of tile ``k mod P`` of
    beat ``k div P``; the tiles past ``K`` in a tile's last beat are any values). The output beats are indexed in raster order (``y``, ``x``, beat ``g``
    of the pixel), and beat ``k div V`` of pixel ``(y, x)`` must carry the recorded value in
    element ``k mod V`` (and the tile must have been accepted). Every beat's ``keep`` is the
    spec's (zero data where it is clear), and ``last`` is high exactly on a frame's final
    beat, so the count of beats per frame is exact. ``idle`` (nothing buffered, which may come
    between two bands) must mean that every value of every tile accepted has left. ``stalls``,
    ``frame_cycles``, ``block`` and ``cfg`` as for :func:`_line_buffer_order`.
    """
    mm, V, P = cfg.tile, cfg.stream_values, cfg.transform_channels
    log_m, log_p = mm.bit_length() - 1, P.bit_length() - 1
    dut = m.submodules.dut = block(cfg)
    _frame_ports(m, dut, stalls)
    assume_constant(m, dut.out_height, 1, 4)
    assume_constant(m, dut.out_width, 1, cfg.w_max)
    assume_constant(m, dut.channels, 1, cfg.k_max)
    out_h, out_w, K = dut.out_height, dut.out_width, dut.channels
    words = OutputReorder.pixel_words(cfg)
    tiles_h, tiles_w = Signal(range(4), name="tiles_h"), Signal(range(4), name="tiles_w")
    beats = Signal(range(words + 1), name="beats")
    m.d.comb += [tiles_h.eq((out_h + (mm - 1)) >> log_m),
                 tiles_w.eq((out_w + (mm - 1)) >> log_m), beats.eq((K + (V - 1)) // V)]
    in_beats = Signal(range(cfg.k_max + 1), name="in_beats")     # ceil(K / P) per tile
    m.d.comb += in_beats.eq((K + (P - 1)) >> log_p)
    (ty, tx, k), in_frame, _ = _nested_count(
        m, taken(dut.i), [("ty", tiles_h, 2), ("tx", tiles_w, 2),
                          ("kb", in_beats, -(-cfg.k_max // P))], "in")
    (y, x, g), out_frame, frame_end = _nested_count(
        m, taken(dut.o), [("y", out_h, 4), ("x", out_w, cfg.w_max), ("g", beats, words)], "out")
    frame = Signal(name="followed_frame")
    m.d.comb += frame.eq(AnyConst(1))
    fy, fx, fk = _followed(m, out_h, "followed_y"), _followed(m, out_w, "followed_x"), \
        _followed(m, K, "followed_k")
    value = Signal(signed(cfg.act_bits), name="followed_value")
    entered = Signal(name="followed_entered")
    # the followed channel's tile is element fk mod P of beat fk div P (the tiles of channels
    # past K in a tile's last beat are any values: the environment's choice)
    tile = Array(dut.i.payload[j] for j in range(P))[fk & (P - 1)]
    element = Array(tile[j] for j in range(mm * mm))[
        ((fy & (mm - 1)) << log_m) | (fx & (mm - 1))]
    with m.If(taken(dut.i) & (in_frame == frame) & (ty == fy >> log_m) & (tx == fx >> log_m)
              & (k == fk >> log_p)):
        m.d.sync += [value.eq(element), entered.eq(1)]
    beat = dut.o.payload
    out = taken(dut.o)
    hit = Signal(name="followed_leaves")
    m.d.comb += hit.eq(out & (out_frame == frame) & (y == fy) & (x == fx) & (g == fk // V))
    m.d.comb += Assert(~hit | (entered & (Array(beat.data[j] for j in range(V))[fk % V]
                                          == value)),
                       "o: the followed value leaves at its raster position")
    m.d.comb += Cover(hit)
    for j in range(V):
        kept = g * V + j < K
        m.d.comb += Assert(~out | ((beat.keep[j] == kept) & (kept | (beat.data[j] == 0))),
                           f"o: keep bit {j} is the spec's, data zero where clear")
    m.d.comb += Assert(~out | (beat.last == frame_end), "o: last exactly on a frame's final beat")
    # idle (nothing buffered) may also come between two bands of a frame.
    m.d.comb += Assert(~dut.idle | ((tx == 0) & (k == 0) & (y == ty << log_m) & (x == 0)
                                    & (g == 0) & (in_frame == out_frame)),
                       "idle only when every value accepted has left")
    if not stalls:
        _first_frame_within(m, out_frame, frame_cycles)


def wide_source(m: Module, port, name: str) -> None:
    """Drive a wide weight stream (:func:`hw.loader.beat_layout`) with any beats that keep the
    stream rules and the format's ``keep``: all bytes of a beat without ``last``, a non-empty
    prefix (``0b0..01..1``) of them on a frame's final beat."""
    source(m, port, name)
    keep, last = port.payload.keep, port.payload.last
    prefix = 0
    for n in range(1, len(keep) + 1):
        prefix = prefix | (keep == (1 << n) - 1)
    m.d.comb += Assume(~port.valid | Mux(last, prefix, keep == (1 << len(keep)) - 1))


def weight_loader(m: Module, *, loader: Callable[[], WeightLoader] = partial(
                      WeightLoader, FRAME_CFG, beat_bytes=1), covers: bool = False) -> None:
    """The stream rules on ``wr`` for any input under the stream rules (wide beats: and
    ``keep``'s) and any stalls on ``wr``, and that no write is overwritten: the parser
    completes a body unit (``issue``, which loads ``wr``) only while ``wr`` is empty or
    taken. ``covers`` (bounded checks deep enough for a write): a write stalled and then
    taken, a unit that makes no write taken while a write waits (a header field or a dropped
    byte: with one byte per beat, any byte), a write issued as the one before leaves, and a
    rejected record."""
    dut = loader()
    wide = hasattr(dut.i.payload, "keep")
    found = elaborate_with_internals(m, dut, ["issue", "take"] if covers and wide else ["issue"])
    issue = found["issue"]
    (wide_source if wide else source)(m, dut.i, "i")
    sink(m, dut.wr, "wr")
    stalled = dut.wr.valid & ~dut.wr.ready
    m.d.comb += Assert(~issue | ~stalled, "wr: a write issued only while wr is empty or taken")
    if covers:
        was_stalled = past(m, stalled, "wr_was_stalled")
        take = found["take"] if wide else taken(dut.i)
        m.d.comb += [Cover(was_stalled & taken(dut.wr)), Cover(stalled & take & ~issue),
                     Cover(issue & taken(dut.wr)), Cover(dut.error)]


# -- SparsePE, SparseArray: the stream rules and the drain beats of every tile --------------

#: The smallest PE that elaborates: F(2,3), one lane, one slot per word, two input and two
#: output channels (two accumulator rows), a two-word weight memory, a two-entry activation
#: queue, 2-bit activations and weights, 8-bit accumulators, two banks.
PE_CFG = AccelConfig(tile=2, act_bits=2, wgt_bits=2, acc_bits=8, lanes=1, c_max=2, k_max=2,
                     w_max=3, wmem_depth=2, fifo_depth=2, act_width=1, slots_per_lane=1,
                     drain_width=1, stream_values=1, bias_bits=4, mult_bits=4, shift_bits=3)
#: Two lanes, four output channels (two rows a lane), two channels drained per beat.
PE2_CFG = AccelConfig(tile=2, act_bits=2, wgt_bits=2, acc_bits=8, lanes=2, c_max=2, k_max=4,
                      w_max=3, wmem_depth=2, fifo_depth=2, act_width=1, slots_per_lane=1,
                      drain_width=2, stream_values=1, bias_bits=4, mult_bits=4, shift_bits=3)


def _sparse_ports(m: Module, dut, cfg: AccelConfig) -> None:
    """The environment of a PE or the array, and the stream rules on ``out``.

    ``act`` keeps the stream rules (1 <= n <= act_width); ``wgt_wr`` (always ready) writes
    anything to either memory in any cycle, also while the block is busy, which the loader
    never does, so the weights and directory are whatever the solver likes and may change
    mid-tile; ``k_count`` is one constant in 1 .. k_max; ``out`` stalls at will. A ``Cover``
    of a tile's final beat leaving keeps the proof from passing on an environment that never
    moves one through.
    """
    source(m, dut.act, "act")
    source(m, dut.wgt_wr, "wgt_wr")
    sink(m, dut.out, "out")
    assume_constant(m, dut.k_count, 1, cfg.k_max)
    beat = dut.act.payload
    m.d.comb += Assume(~dut.act.valid | ((beat.n >= 1) & (beat.n <= cfg.act_width)))
    m.d.comb += Cover(taken(dut.out) & dut.out.payload.last)


def _drain_beats(m: Module, dut, cfg: AccelConfig, depth: int, tiles_out: int) -> None:
    """Every tile accepted on ``act`` owes exactly its drain beats on ``out``, in order.

    A tile is accepted with its ``last`` beat; it then owes ``ceil(k_count / D)`` beats,
    beat ``r`` with ``k = r · D`` and ``last`` on the final one. An :class:`ItemTracker`
    follows one owed beat of the solver's choice, so a missing, extra or reordered beat, a
    wrong ``k`` or a misplaced ``last`` fails for some choice; ``idle`` must mean none is
    owed. At most one tile enters per cycle, so ``depth`` tiles bound the count inside (the
    capacity check is no claim). A ``Cover`` requires ``tiles_out`` tiles to have left, so the
    depth reaches the reuse of an accumulator bank (``tiles_in_flight`` = 2).
    """
    width = cfg.drain_width
    owed = Signal(range(cfg.drain_rows + 1), name="beats_per_tile")
    m.d.comb += owed.eq((dut.k_count + width - 1) // width)
    k_bits = len(dut.out.payload.k)
    items = ItemTracker(m, k_bits + 1, "beat", capacity=cfg.drain_rows * depth)
    tile_end = taken(dut.act) & dut.act.payload.last
    items.enter([(tile_end & (r < owed), Cat(Const(r * width, k_bits), owed == r + 1))
                 for r in range(cfg.drain_rows)])
    items.leave([(taken(dut.out), Cat(dut.out.payload.k, dut.out.payload.last))])
    items.assert_empty_when(dut.idle, "idle high")
    done = Signal(range(tiles_out + 1), name="tiles_out")
    with m.If(taken(dut.out) & dut.out.payload.last & (done != tiles_out)):
        m.d.sync += done.eq(done + 1)
    m.d.comb += Cover(done == tiles_out)


def sparse_pe_rules(m: Module) -> None:
    dut = m.submodules.dut = SparsePE(PE_CFG, 0, counter_bits=1)
    _sparse_ports(m, dut, PE_CFG)


def _sparse_pe(m: Module, *, cfg: AccelConfig, depth: int) -> None:
    dut = m.submodules.dut = SparsePE(cfg, 0, counter_bits=1)
    _sparse_ports(m, dut, cfg)
    _drain_beats(m, dut, cfg, depth, tiles_out=3)


def sparse_array_rules(m: Module) -> None:
    dut = m.submodules.dut = SparseArray(PE_CFG, counter_bits=1)
    _sparse_ports(m, dut, PE_CFG)


def _sparse_array(m: Module, *, depth: int, tiles_out: int) -> None:
    dut = m.submodules.dut = SparseArray(PE_CFG, counter_bits=1)
    _sparse_ports(m, dut, PE_CFG)
    # Writes reach PE 0 only: the other 15 keep all-zero memories (every column empty, each
    # tile one end marker), so PE 0 runs at its own pace behind them and the fan-out and the
    # gather see the skew. Free weights in all 16 PEs quadruple the time (117 s at depth 14).
    m.d.comb += Assume(~dut.wgt_wr.valid | (dut.wgt_wr.payload.pe == 0))
    _drain_beats(m, dut, PE_CFG, depth, tiles_out)


# -- WeightRing: every write placed in the ring, none on the running pass -------------------

#: The smallest ring: one lane and one slot per word (4-bit data), two channels (directory
#: bank bit 1), a three-word memory (not a power of two: the modulo is a compare and subtract).
RING_CFG = AccelConfig(tile=2, act_bits=2, wgt_bits=2, acc_bits=8, lanes=1, c_max=2, k_max=2,
                       w_max=3, wmem_depth=3, fifo_depth=2, slots_per_lane=1, stream_values=1,
                       bias_bits=4, mult_bits=4, shift_bits=3)


def weight_ring(m: Module, *, cfg: AccelConfig = RING_CFG) -> None:
    """Every beat taken on ``i`` leaves ``o`` once, in order, placed as WeightRing's docstring
    says, and none lands on the running pass.

    The environment is the loader's and the accelerator's (WeightRing's Notes): beats under
    the stream rules, each a directory entry, a weight word or both (at least one ``en``;
    the ``addr`` and ``data`` of a half with ``en`` clear are anything), a word's offset below
    ``wmem_depth``, a directory entry's channel below ``c_max`` and its ``start`` at most
    ``wmem_depth``; a record's first beat carries a directory entry (``C >= 1``; after a
    rejected record that had writes, its late writes may still come); ``committed`` only after a write since the last strobe, never in a cycle a write
    enters, never with ``rejected``; ``start`` only while no run is on, the ring is not busy
    and no write is offered (the CSR block refuses START while busy), ``running`` high from
    the next cycle until the solver ends it. The strobes otherwise come whenever the solver
    likes. Without "a record has writes" the proof fails, and rightly: two records committed
    in one run (the second without writes) bring the load bank back to the other bank, and
    the third record's words below ``room`` land on the running pass. A real record has at
    least ``C · n²`` writes, more than the ring holds, so the second record of a run, held at
    its first directory entry, cannot commit before the run ends.

    A reference written from the docstring (``%`` for the modulo) tracks ``base``, the
    record's span (of the beats with ``word.en``), the load bank and the last committed
    record; an :class:`ItemTracker` follows one beat, whose expected value is its placed
    form, each half with ``en`` set placed and each with ``en`` clear compared as 0: the word
    at ``(base + j) mod wmem_depth``, the directory entry in the load bank with ``start``
    moved by ``base``. Also: while ``running``, no beat leaves with a word onto the running
    record's words (``(word.addr - its base) mod wmem_depth`` below its span) nor with a
    directory entry into its bank; ``bank`` is 0 until a START and then the bank of the last record committed before
    it; ``busy`` low only when every write has left; all leave within three cycles once no
    run is on and no write enters. ``o`` is always ready, so its stream rules hold trivially
    (asserted all the same).
    """
    dut = m.submodules.dut = WeightRing(cfg)
    depth, bank_bit = cfg.wmem_depth, directory_bank_bit(cfg)
    start_bits = directory_layout(cfg, 0).addr_bits
    source(m, dut.i, "i")
    assert_stream(m, dut.o, "o")
    wr, out = dut.i.payload, dut.o.payload
    m.d.comb += Assume(~dut.i.valid
                       | ((wr.entry.en | wr.word.en)
                          & (~wr.word.en | (wr.word.addr < depth))
                          & (~wr.entry.en | ((wr.entry.addr < cfg.c_max)
                                             & (wr.entry.data[:start_bits] <= depth)))))

    # -- the environment: strobes, the run, records that start with a directory entry ------
    m.d.comb += [dut.committed.eq(AnySeq(1)), dut.rejected.eq(AnySeq(1)),
                 dut.start.eq(AnySeq(1))]
    running = Signal(name="running")
    m.d.comb += dut.running.eq(running)
    with m.If(dut.start):
        m.d.sync += running.eq(1)
    with m.Elif(AnySeq(1)):
        m.d.sync += running.eq(0)
    record_open = Signal(name="record_open")        # a write taken since the last strobe
    need_entry = Signal(init=1, name="need_entry")  # the next write opens a record
    with m.If(dut.committed):
        m.d.sync += [record_open.eq(0), need_entry.eq(1)]
    with m.Elif(dut.rejected):
        m.d.sync += [record_open.eq(0), need_entry.eq(~(record_open | taken(dut.i)))]
    with m.Elif(taken(dut.i)):
        m.d.sync += [record_open.eq(1), need_entry.eq(0)]
    m.d.comb += [
        Assume(~(dut.committed & (dut.rejected | taken(dut.i) | ~record_open))),
        Assume(~dut.start | ~(running | dut.busy | dut.i.valid | dut.committed
                              | dut.rejected)),
        Assume(~(dut.i.valid & need_entry) | wr.entry.en),
    ]

    # -- the reference -----------------------------------------------------------------------
    base = Signal(range(depth), name="ref_base")
    span = Signal(range(depth + 1), name="ref_span")
    load_bank = Signal(name="ref_load_bank")
    last_base = Signal(range(depth), name="ref_last_base")
    last_span = Signal(range(depth + 1), name="ref_last_span")
    last_bank = Signal(name="ref_last_bank")
    committed_any = Signal(name="ref_committed_any")
    run_base = Signal(range(depth), name="ref_run_base")
    run_span = Signal(range(depth + 1), name="ref_run_span")
    run_bank = Signal(name="ref_run_bank")
    run_known = Signal(name="ref_run_known")        # the run is of a committed record
    started = Signal(name="ref_started")
    with m.If(taken(dut.i) & wr.word.en & (wr.word.addr >= span)):
        m.d.sync += span.eq(wr.word.addr + 1)
    with m.If(dut.committed):
        m.d.sync += [last_base.eq(base), last_span.eq(span), last_bank.eq(load_bank),
                     committed_any.eq(1), base.eq((base + span) % depth), span.eq(0),
                     load_bank.eq(~load_bank)]
    with m.If(dut.rejected):
        m.d.sync += span.eq(0)
    with m.If(dut.start):
        m.d.sync += [run_base.eq(last_base), run_span.eq(last_span), run_bank.eq(last_bank),
                     run_known.eq(committed_any), started.eq(1)]

    def written(beat, name: str):
        """``beat`` with each half whose ``en`` is clear all 0: what it writes."""
        value = Signal(wr.shape(), name=name)
        m.d.comb += value.pe.eq(beat.pe)
        for half in ("entry", "word"):
            with m.If(beat[half].en):
                m.d.comb += value[half].eq(beat[half])
        return value

    placed = Signal(wr.shape(), name="ref_placed")
    m.d.comb += [
        placed.pe.eq(wr.pe),
        placed.word.en.eq(wr.word.en),
        placed.word.addr.eq((wr.word.addr + base) % depth),
        placed.word.data.eq(wr.word.data),
        placed.entry.en.eq(wr.entry.en),
        placed.entry.addr.eq(wr.entry.addr + (load_bank << bank_bit)),
        placed.entry.data.eq(Cat(((wr.entry.data[:start_bits] + base) % depth)[:start_bits],
                                 wr.entry.data[start_bits:])),
    ]
    items = ItemTracker(m, wr.shape(), "write", capacity=3)
    items.enter([(taken(dut.i), written(placed, "ref_written"))])
    items.leave([(dut.o.valid, written(out, "o_written"))])
    items.assert_empty_when(~dut.busy, "busy low")
    items.assert_drains(~taken(dut.i) & ~running, 3)

    # -- the running pass is not overwritten; bank ---------------------------------------------
    landing = dut.o.valid & running & run_known
    from_run_base = Signal(range(depth), name="from_run_base")
    m.d.comb += from_run_base.eq((out.word.addr + depth - run_base) % depth)
    m.d.comb += [
        Assert(~(landing & out.word.en) | (from_run_base >= run_span),
               "o: no word of the running pass overwritten"),
        Assert(~(landing & out.entry.en) | (out.entry.addr[bank_bit] != run_bank),
               "o: no directory entry of the running pass's bank written"),
        Assert(started | (dut.bank == 0), "bank: 0 until a START"),
        Assert(~run_known | (dut.bank == run_bank),
               "bank: that of the last record committed before the last START"),
        # reached: a word placed beside a running pass, a directory entry too, both in one
        # beat, a beat held by one, a word placed round the ring's end, a held beat leaving
        # after the run
        Cover(dut.o.valid & running & out.word.en),
        Cover(dut.o.valid & running & out.entry.en),
        Cover(dut.o.valid & running & out.entry.en & out.word.en),
        Cover(running & ~dut.i.ready),
        Cover(taken(dut.i) & wr.word.en & (wr.word.addr + base >= depth)),
        Cover(dut.o.valid & ~running & past(m, running & dut.busy, "held_in_run")),
    ]


# -- ControlRegisters: the AXI4-Lite handshakes --------------------------------------------

#: ``ControlRegisters``' Notes: B is valid 4 cycles after the later of a write's AW and W
#: handshakes (5 when a read was accepted in that cycle), R 2 cycles after its AR handshake.
CSR_WRITE_LATENCY, CSR_READ_LATENCY = 5, 2


# -- RecordJoin: one record of two weight-load ports' frames --------------------------------

JOIN_CFG = AccelConfig(lanes=1, c_max=2, k_max=2, wmem_depth=3, weight_ports=2)


def record_join(m: Module) -> None:
    """The ports' frames and outcomes from free variables under the environment's rules:
    a frame begins (a beat outside a frame) only while its port's ``hold`` is low; a port's
    loader gives one outcome per frame (``good`` or ``bad``, not both), in a cycle after the
    frame began, possibly before the frame's last beat; the status fields are anything.

    A reference written from the docstring tracks per port whether a frame began and whether
    its outcome came since the last join. Asserted: ``hold`` is exactly "began, and not inside
    a frame"; ``committed`` or ``rejected`` strobes exactly when every port's outcome has come,
    never both, ``committed`` only with every outcome good and the headers equal;
    ``records`` counts the committed strobes; the status is port 0's header after a commit and
    0 after a rejection.
    """
    cfg = JOIN_CFG
    dut = m.submodules.dut = RecordJoin(cfg)
    m.d.comb += Value.cast(dut.port).eq(AnySeq(len(Value.cast(dut.port))))
    ports = range(cfg.weight_ports)
    in_frame = Signal(len(ports), name="ref_in_frame")
    began = Signal(len(ports), name="ref_began")
    owed = Signal(len(ports), name="ref_owed")       # began, outcome not yet given
    came = Signal(len(ports), name="ref_came")       # outcome given since the last join
    bad = Signal(name="ref_bad")
    joined = came.all()
    for p in ports:
        port = dut.port[p]
        begin = port.beat & ~in_frame[p]
        m.d.comb += [
            Assume(~begin | ~dut.hold[p]),
            Assume(~(port.good & port.bad)),
            Assume(~(port.good | port.bad) | owed[p]),
            Assert(dut.hold[p] == (began[p] & ~in_frame[p])),
        ]
        with m.If(port.beat):
            m.d.sync += in_frame[p].eq(~port.last)
        with m.If(begin):
            m.d.sync += [began[p].eq(1), owed[p].eq(1)]
        with m.If(port.good | port.bad):
            m.d.sync += [owed[p].eq(0), came[p].eq(1)]
    with m.If(Cat(dut.port[p].bad for p in ports).any()):
        m.d.sync += bad.eq(1)
    with m.If(joined):
        m.d.sync += [began.eq(0), came.eq(0), bad.eq(0)]
    first = dut.port[0]
    agree = Cat((dut.port[p].channels == first.channels) & (dut.port[p].k_count == first.k_count)
                & (dut.port[p].k_base == first.k_base) for p in ports).all()
    records = Signal(16, name="ref_records")
    with m.If(dut.committed):
        m.d.sync += records.eq(records + 1)
    header = past(m, Cat(first.channels, first.k_count, first.k_base), "past_header")
    m.d.comb += [
        Assert(~(dut.committed & dut.rejected)),
        Assert((dut.committed | dut.rejected) == joined),
        Assert(~dut.committed | (~bad & agree)),
        Assert(~dut.rejected | bad | ~agree),
        Assert(dut.records == records),
    ]
    was_committed = past(m, dut.committed, "past_committed")
    was_rejected = past(m, dut.rejected, "past_rejected")
    status = Cat(dut.channels, dut.k_count, dut.k_base)
    m.d.comb += [Assert(~was_committed | (status == header)),
                 Assert(~was_rejected | (status == 0))]
    rejected_before = Signal(name="rejected_before")
    with m.If(dut.rejected):
        m.d.sync += rejected_before.eq(1)
    m.d.comb += [Cover(dut.committed), Cover(dut.rejected),
                 Cover(dut.committed & rejected_before)]     # a good record after a bad one


def free_inputs(m: Module, dut, skip: str) -> None:
    """Drive every input of ``dut`` but those named ``skip...`` with any value in any cycle."""
    for name, member in dut.signature.members.items():
        if member.flow == In and not name.startswith(skip):
            value = Value.cast(getattr(dut, name))
            m.d.comb += value.eq(AnySeq(len(value)))


def _csr(m: Module, *, responses: bool) -> None:
    dut = m.submodules.dut = ControlRegisters(PE_CFG, counter_bits=1)
    # The datapath's side (busy, done, flags, counters, the quantisation read address) does
    # anything; the host keeps the AXI rules.
    free_inputs(m, dut, "s_axi_")
    bus = axi_lite_slave(m, dut, "s_axi_")
    if responses:
        axi_lite_responses(m, bus, write_latency=CSR_WRITE_LATENCY,
                           read_latency=CSR_READ_LATENCY)


# -- Accelerator: the stream rules on its AXI ports -----------------------------------------

def accelerator(m: Module) -> None:
    dut = m.submodules.dut = Accelerator(PE_CFG, counter_bits=1)
    source(m, channel(dut, "s_axis_act_t", "data", "keep", "last"), "act")
    source(m, channel(dut, "s_axis_wgt_t", "data", "keep", "last"), "wgt")
    sink(m, channel(dut, "m_axis_out_t", "data", "keep", "last"), "out")
    axi_lite_slave(m, dut, "s_axi_")


def _frame_order_proofs(name: str, block: str, summary: str, harness, cfg: AccelConfig,
                        depth: int) -> tuple[Proof, Proof]:
    """An order proof of a frame block on ``cfg`` and its ``_stalls`` twin: whole frames with
    the input offered and ``o`` ready every cycle (the first frame has left after ``depth``
    steps, asserted), then any gaps and stalls, bounded at 12 steps."""
    return (Proof(name, block, summary,
                  partial(harness, stalls=False, frame_cycles=depth - 1, cfg=cfg),
                  depth=depth, memory_map=True),
            Proof(f"{name}_stalls", block,
                  f"as {name}, any input gaps and stalls on o (bounded)",
                  partial(harness, stalls=True, cfg=cfg), depth=12, memory_map=True))

PROOFS: tuple[Proof, ...] = (
    Proof("stream_buffer", "StreamBuffer(8)",
          "stream rules on o; every beat out once, in order, unchanged; busy low only when empty",
          stream_buffer, depth=20),
    Proof("stream_buffer_induction", "StreamBuffer(8)",
          "stream rules on o in every reachable state (k-induction)",
          stream_buffer_rules, depth=8, mode="prove"),
    Proof("free_running", "FreeRunning(OutputTransform F(2,3), depth=LATENCY + 2)",
          "stream rules on o; tiles out once each; at most depth inside; busy low only when "
          "empty; the unit's output always ready",
          free_running, depth=22),
    Proof("lane_queue", "LaneQueue(slots=2, depth=4)",
          "stream rules on o; every slot of every group out once, in order, with its group's "
          "fields and last on the group's final slot; empty only when drained",
          lane_queue, depth=10),
    Proof("zero_filter_w1", "ZeroFilter(act_width=1, fifo_depth=4)",
          "stream rules on o; the non-zero activations and tile-end markers, each once, in "
          "order; level 0 only when drained",
          zero_filter_w1, depth=10),
    Proof("zero_filter_w2", "ZeroFilter(act_width=2, fifo_depth=4) with CompactingQueue",
          "as zero_filter_w1, two channels per beat (any subset of them zero)",
          zero_filter_w2, depth=10),
    Proof("channel_gather", "ChannelGather(act_width=2)",
          "stream rules on o; every channel once, in order, in the slot its number says, A per "
          "beat but at a tile's end, last only on the tile's final channel",
          channel_gather, depth=12),
    Proof("channel_gather_p2", "ChannelGather(act_width=4, transform_channels=2)",
          "as channel_gather, two channels per input beat (one in a tile's last beat when C "
          "is odd)", partial(channel_gather, cfg=CHANNELS_P2_CFG), depth=12),
    Proof("channel_serialiser", "ChannelSerialiser(drain_width=2)",
          "stream rules on o; every channel below k_count once, in order, with its number, "
          "last on the tile's final one; the padding channels dropped",
          channel_serialiser, depth=10),
    Proof("channel_serialiser_p2", "ChannelSerialiser(drain_width=4, transform_channels=2)",
          "as channel_serialiser, two channels per output beat (the second past k_count only "
          "in a tile's last beat when k_count is odd)",
          partial(channel_serialiser, cfg=SERIALISER_P2_CFG), depth=10),
    *_transform_proofs("input_transform", "InputTransform", _input_transform,
                       InputTransform.LATENCY, "Bᵀ d B (ReLU'd when asked) computed from sw.winograd's matrices, "
                       "with its meta"),
    *_transform_proofs("output_transform", "OutputTransform", _output_transform,
                       OutputTransform.LATENCY, "sw.golden.requantize of Aᵀ M A (bias, multiplier, shift >= 1, ReLU, "
                       "clamp) from sw.winograd's matrices"),
    Proof("line_buffer", "LineBuffer(m=2, w_max=4, c_max=2)",
          "stream rules on o for any frame shape and pad", line_buffer, depth=16),
    Proof("output_reorder", "OutputReorder(m=2, w_max=4, k_max=2)",
          "stream rules on o for any frame shape", output_reorder, depth=16),
    Proof("line_buffer_order", "LineBuffer(m=2, w_max=4, c_max=2)",
          "every patch of extract_tiles in order: a followed pixel's value wherever a patch "
          "covers it, zero outside the image, c and last; idle only when all have left; "
          "input offered and o ready every cycle, whole frames of every shape",
          partial(_line_buffer_order, stalls=False,
                  frame_cycles=LINE_BUFFER_FRAME_DEPTH - 1), depth=LINE_BUFFER_FRAME_DEPTH,
          memory_map=True),
    Proof("line_buffer_order_stalls", "LineBuffer(m=2, w_max=4, c_max=2)",
          "as line_buffer_order, any input gaps and stalls on o (bounded: the smallest frames)",
          partial(_line_buffer_order, stalls=True), depth=12, memory_map=True),
    *_frame_order_proofs(
        "line_buffer_order_spread", "LineBuffer(m=2, w_max=4, c_max=4, V=4)",
        "as line_buffer_order with four channels a beat: the spread row memory (a slot's "
        "column banks over four memories), whole frames of every shape",
        _line_buffer_order, SPREAD_FRAME_CFG, SPREAD_FRAME_DEPTH),
    *_frame_order_proofs(
        "line_buffer_order_p2", "LineBuffer(m=2, w_max=4, c_max=3, V=8, P=2)",
        "as line_buffer_order with two channels' patches a beat (transform_channels): both "
        "elements of a spread memory word, the second patch zero past an odd C; whole "
        "frames of every shape",
        _line_buffer_order, P2_FRAME_CFG, P2_FRAME_DEPTH),
    Proof("output_reorder_order", "OutputReorder(m=2, w_max=4, k_max=2)",
          "the NHWC raster of assemble_tiles: a followed value once, at its raster position; "
          "keep, last on a frame's final beat; idle only when all accepted have left; input "
          "offered and o ready every cycle, whole frames of every shape",
          partial(_output_reorder_order, stalls=False,
                  frame_cycles=REORDER_FRAME_DEPTH - 1), depth=REORDER_FRAME_DEPTH,
          memory_map=True),
    *_frame_order_proofs(
        "output_reorder_order_p2", "OutputReorder(m=2, w_max=4, k_max=3, V=2, P=2)",
        "as output_reorder_order with two channels' tiles a beat (transform_channels), the "
        "second any value past an odd K; whole frames of every shape",
        _output_reorder_order, P2_REORDER_FRAME_CFG, P2_REORDER_FRAME_DEPTH),
    Proof("output_reorder_order_stalls", "OutputReorder(m=2, w_max=4, k_max=2)",
          "as output_reorder_order, any input gaps and stalls on o (bounded: the smallest "
          "frames)", partial(_output_reorder_order, stalls=True), depth=12, memory_map=True),
    Proof("line_buffer_order_m4", "LineBuffer(m=4, w_max=4, c_max=2)",
          "as line_buffer_order for F(4,3): 6×6 patches from ten row slots, whole frames of "
          "every shape", partial(_line_buffer_order, stalls=False,
                                 frame_cycles=F4_LINE_BUFFER_FRAME_DEPTH - 1, cfg=F4_FRAME_CFG),
          depth=F4_LINE_BUFFER_FRAME_DEPTH, memory_map=True),
    Proof("output_reorder_order_m4", "OutputReorder(m=4, w_max=4, k_max=2)",
          "as output_reorder_order for F(4,3): 4×4 tiles into the raster, whole frames of "
          "every shape", partial(_output_reorder_order, stalls=False,
                                 frame_cycles=F4_REORDER_FRAME_DEPTH - 1, cfg=F4_FRAME_CFG),
          depth=F4_REORDER_FRAME_DEPTH, memory_map=True),
    *_frame_order_proofs(
        "output_reorder_order_wide", "OutputReorder(m=2, w_max=4, k_max=3, V=2)",
        "as output_reorder_order with two channels a beat (a pixel's second beat partial: "
        "keep), whole frames of every shape",
        _output_reorder_order, WIDE_FRAME_CFG, WIDE_REORDER_FRAME_DEPTH),
    Proof("weight_loader", "WeightLoader(beat_bytes=1)",
          "stream rules on wr for any byte stream, no write overwritten; covers: a stalled "
          "write taken, a byte taken while a write waits, writes back to back, a rejected "
          "record", partial(weight_loader, covers=True), depth=56),
    Proof("weight_loader_induction", "WeightLoader(beat_bytes=1)",
          "as weight_loader in every reachable state (k-induction)", weight_loader,
          depth=1, mode="prove"),
    *(proof for beat_bytes, loader in (
        (WEIGHT_BEAT_BYTES, partial(accelerator_loader, FRAME_CFG)),
        *((b, partial(WeightLoader, FRAME_CFG, beat_bytes=b))
          for b in (8, 4) if b != WEIGHT_BEAT_BYTES))
      for proof in (
        Proof(f"weight_loader_b{beat_bytes}",
              f"WeightLoader(beat_bytes={beat_bytes})"
              + (": accelerator_loader" if beat_bytes == WEIGHT_BEAT_BYTES else ""),
              "stream rules on wr for any beats (keep a prefix on a frame's final beat), no "
              "write overwritten; covers: a stalled write taken, a unit making no write taken "
              "while one waits, writes back to back, a rejected record",
              partial(weight_loader, loader=loader, covers=True), depth=32),
        Proof(f"weight_loader_b{beat_bytes}_induction", f"WeightLoader(beat_bytes={beat_bytes})",
              f"as weight_loader_b{beat_bytes} in every reachable state (k-induction)",
              partial(weight_loader, loader=loader), depth=1, mode="prove"))),
    Proof("weight_ring", "WeightRing(lanes=1, c_max=2, wmem_depth=3)",
          "every beat (an entry, a word or both) out once, in order, placed in the ring (a "
          "word at (base + j) mod wmem_depth, a directory entry in the load bank, start moved "
          "by base); no word onto the running pass's words, no entry into its directory bank; "
          "bank that of the last record "
          "committed before START; busy low only when empty; drained when no run is on",
          weight_ring, depth=32),
    Proof("record_join", "RecordJoin(weight_ports=2, c_max=2, k_max=2)",
          "hold exactly while a port's frame of the record has begun and ended; one committed "
          "or rejected strobe per record, once every port's loader gave its outcome, committed "
          "only when all good with equal headers; records counts them; the status the header "
          "after a commit, 0 after a rejection",
          record_join, depth=24),
    Proof("sparse_pe_induction", "SparsePE(lanes=1, k_max=2, c_max=2, wmem_depth=2)",
          "stream rules on out in every reachable state (k-induction), any weights and writes",
          sparse_pe_rules, depth=12, mode="prove"),
    Proof("sparse_pe", "SparsePE(lanes=1, k_max=2, c_max=2, wmem_depth=2)",
          "stream rules on out; every tile's ceil(k_count/D) drain beats once, in k order, last "
          "on the final one; idle only when none is owed",
          partial(_sparse_pe, cfg=PE_CFG, depth=19), depth=19),
    Proof("sparse_pe_l2", "SparsePE(lanes=2, drain_width=2, k_max=4)",
          "as sparse_pe, two lanes, two channels per drain beat",
          partial(_sparse_pe, cfg=PE2_CFG, depth=19), depth=19),
    Proof("sparse_array_induction", "SparseArray(16 PEs as sparse_pe)",
          "stream rules on out in every reachable state (k-induction), any weights and writes",
          sparse_array_rules, depth=14, mode="prove"),
    Proof("sparse_array", "SparseArray(16 PEs as sparse_pe)",
          "stream rules on out; every tile's drain beats once, in order; idle only when none "
          "is owed (weights written to PE 0 only)",
          partial(_sparse_array, depth=15, tiles_out=1), depth=15),
    Proof("sparse_array_deep", "SparseArray(16 PEs as sparse_pe)",
          "as sparse_array, deep enough for two tiles to leave (both accumulator banks)",
          partial(_sparse_array, depth=17, tiles_out=2), depth=17, slow=True),
    Proof("csr_axi_lite_induction", "ControlRegisters(k_max=2, counter_bits=1)",
          "stream rules on s_axi's B and R in every reachable state (k-induction), any host "
          "keeping the AXI rules, any datapath inputs",
          partial(_csr, responses=False), depth=8, mode="prove"),
    Proof("csr_axi_lite", "ControlRegisters(k_max=2, counter_bits=1)",
          "stream rules on B and R; one response per accepted write (AW and W) and read, none "
          "extra, within the documented latency; AW/W/AR ready exactly when none outstanding",
          partial(_csr, responses=True), depth=40),
    Proof("accelerator_induction", "Accelerator(as sparse_array, counter_bits=1)",
          "stream rules on m_axis_out and on s_axi's B and R in every reachable state "
          "(k-induction), any AXI-Stream input and host keeping the rules",
          accelerator, depth=5, mode="prove"),
    *(Proof(f"input_transform_m4_equivalence_rows{rows[0]}{rows[1]}",
            "InputTransform F(4,3), 2-bit activations",
            "Bᵀ d B (ReLU'd when asked) from sw.winograd's matrices one pass at a time, by "
            "1-induction: stage 1 loads Bᵀ d, stage 2 loads rows "
            f"{rows[0]}-{rows[1]} of T B; relu and meta ride along",
            partial(_input_transform_stages, cfg=TRANSFORM_CFGS[4], rows=rows), depth=1,
            mode="prove", slow=slow)
      for rows, slow in (((0, 1), True), ((2, 3), True), ((4, 5), False))),
    *(Proof(f"output_transform_m4_equivalence_{suffix}",
            "OutputTransform F(4,3), 8-bit M, 4-bit bias and multiplier",
            "sw.golden.requantize of Aᵀ M A from sw.winograd's matrices one stage at a time, "
            f"by 1-induction: stage {stage} loads {OUTPUT_STAGES[stage]}, output "
            + (f"rows {rows[0]}-{rows[-1]}" if len(rows) > 1 else f"row {rows[0]}")
            + "; the parameters ride along",
            partial(_output_transform_stages, cfg=TRANSFORM_CFGS[4], stages=(stage,),
                    rows=rows), depth=1, mode="prove", slow=slow)
      for suffix, stage, rows, slow in (("stage1_rows012", 1, (0, 1, 2), False),
                                        ("stage1_row3", 1, (3,), True),
                                        ("stage3", 3, (0, 1, 2, 3), False),
                                        ("stage4", 4, (0, 1, 2, 3), False),
                                        ("stages567", 5, (0, 1, 2, 3), False))),
    *(Proof(f"output_transform_m4_equivalence_stage2_row{row}_{suffix}",
            "OutputTransform F(4,3), 8-bit M, 4-bit bias and multiplier",
            f"as _stage1_rows012: stage 2 loads {OUTPUT_STAGES[2]}, output row {row}, " +
            (f"columns {cols[0]}-{cols[-1]}" if len(cols) > 1 else f"column {cols[0]}")
            + "; bias rides along",
            partial(_output_transform_stages, cfg=TRANSFORM_CFGS[4], stages=(2,), rows=(row,),
                    cols=cols), depth=1, mode="prove", slow=slow, solver=solver)
      for row, suffix, cols, slow, solver in ((0, "cols012", (0, 1, 2), False, "boolector"),
                                              (1, "cols012", (0, 1, 2), False, "boolector"),
                                              (2, "cols012", (0, 1, 2), False, "boolector"),
                                              (3, "cols012", (0, 1, 2), True, "boolector"),
                                              # Aᵀ's row 3 (its ±8) over T: Yices takes
                                              # about 7 s each, Boolector 139 s to over 420 s.
                                              (0, "col3", (3,), False, "yices"),
                                              (1, "col3", (3,), False, "yices"),
                                              (2, "col3", (3,), False, "yices"),
                                              (3, "col3", (3,), False, "yices"))),
)
