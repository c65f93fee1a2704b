"""Winograd transform units: ``V = Bᵀ d B`` in front of the PEs, ``Y = Aᵀ M A`` behind them.

Both units are generated from the integer matrices of :class:`sw.config.AccelConfig` (which
reads them from :mod:`sw.winograd`). Every non-zero coefficient is written in canonical
signed-digit form, so a 2-D transform becomes two layers of balanced adder trees over shifted
operands: no multiplier, and nothing here is specific to one tile size. The only multiplier in
this file is the requantisation one in :class:`OutputTransform`.

Each pipeline stage has its own valid bit and moves when it is empty or when the stage after it
moves, so bubbles are squeezed out and a full pipeline accepts one tile per cycle. Output
``valid`` is a register (it never depends on ``ready``), and a stalled stage holds its payload.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent
from sw.config import AccelConfig, require_config, signed_bits

__all__ = ["InputTransform", "OutputTransform", "csd_digits"]


def csd_digits(coef: int) -> list[tuple[int, int]]:
    """Canonical signed-digit form of ``coef`` as ``[(sign, shift), ...]``.

    ``coef == sum(sign << shift)`` with no two adjacent non-zero digits, which is the fewest
    adders for a constant coefficient (``-5 = -4 - 1``, ``3 = 4 - 1``).
    """
    digits = []
    shift = 0
    while coef:
        if coef & 1:
            digit = 2 - (coef & 3)  # +1 when coef ≡ 1 (mod 4), -1 when coef ≡ 3 (mod 4)
            digits.append((digit, shift))
            coef -= digit
        coef >>= 1
        shift += 1
    return digits


def _tree_sum(m: Module, terms: list, name: str):
    """Balanced tree of two-input adders, so depth grows with log2 of the number of terms.

    Each partial sum is a kept wire. Without that, Yosys' ``alumacc`` fuses the whole tree
    into one multi-operand ``$macc`` and maps it to a carry-save tree of LUTs instead of
    carry chains (see docs/rtl.md for the measured difference).
    """
    level = 0
    while len(terms) > 1:
        pairs = []
        for i in range(0, len(terms) - 1, 2):
            total = terms[i] + terms[i + 1]
            wire = Signal(total.shape(), name=f"{name}_l{level}_{i // 2}", attrs={"keep": 1})
            m.d.comb += wire.eq(total)
            pairs.append(wire)
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        level += 1
    return terms[0]


def _dot(m: Module, coefs, operands, name: str):
    """Shift-and-add expression for ``sum(coefs[k] * operands[k])`` (coefs are Python ints).

    Positive and negative signed digits are summed in separate trees and subtracted once, so
    no operand needs its own negation.
    """
    positive, negative = [], []
    for coef, operand in zip(coefs, operands):
        for sign, shift in csd_digits(int(coef)):
            (positive if sign > 0 else negative).append(operand.as_signed() << shift)
    if not positive and not negative:
        return Const(0, signed(2))
    pos = _tree_sum(m, positive, f"{name}_p") if positive else None
    neg = _tree_sum(m, negative, f"{name}_n") if negative else None
    if neg is None:
        return pos
    return -neg if pos is None else pos - neg


def _dot_range(coefs, ranges) -> tuple[int, int]:
    """Exact range of ``sum(coefs[k] * x_k)`` for independent ``x_k`` in ``ranges[k]``."""
    lo = sum(int(c) * (r[0] if c > 0 else r[1]) for c, r in zip(coefs, ranges))
    hi = sum(int(c) * (r[1] if c > 0 else r[0]) for c, r in zip(coefs, ranges))
    return lo, hi


class _Transform2D:
    """``mat @ X @ mat.T`` as two registered shift-and-add stages, with exact widths.

    Stage 1 holds ``T = mat @ X`` (rows × n), stage 2 holds ``mat @ X @ mat.T``; each element's
    register is exactly as wide as its value range needs. The second stage's expressions are
    returned unregistered so the caller can fold more logic (ReLU, bias) into that stage.
    """

    def __init__(self, m: Module, mat, x, x_range: tuple[int, int], enable, name: str):
        rows, cols = mat.shape
        self.t = [[None] * cols for _ in range(rows)]
        t_range = [[None] * cols for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                t_range[i][j] = _dot_range(mat[i], [x_range] * cols)
                reg = Signal(signed(signed_bits(*t_range[i][j])), name=f"{name}_t{i}_{j}",
                             reset_less=True)
                # The adder tree's comb wires are built outside the enable: inside it they would
                # become `always @*` blocks that Icarus never runs when their inputs do not
                # change after time 0 (they then stay x), instead of continuous assignments.
                value = _dot(m, mat[i], [x[k * cols + j] for k in range(cols)],
                             f"{name}_t{i}_{j}")
                with m.If(enable):
                    m.d.sync += reg.eq(value)
                self.t[i][j] = reg
        self.y = [[_dot(m, mat[j], self.t[i], f"{name}_y{i}_{j}") for j in range(rows)]
                  for i in range(rows)]
        self.y_range = [[_dot_range(mat[j], t_range[i]) for j in range(rows)]
                        for i in range(rows)]


class _StageControl:
    """Valid bits and enables of a pipeline whose stages move together.

    Every stage loads when the last stage is empty or the sink takes its beat: one enable,
    made from the last valid bit and the sink's ``ready`` alone. A stall holds the bubbles
    too, but no ``ready`` ripples back through the stages into the source's ``ready`` (that
    chain, on to the channel buffer's payload enables, was the routed critical path,
    docs/fpga.md). :attr:`enable` is that one enable.
    """

    def __init__(self, m: Module, stages: int, i_stream, o_stream):
        self.valid = [Signal(name=f"stage{s}_valid") for s in range(stages)]
        self.enable = enable = Signal(name="stages_enable")
        m.d.comb += enable.eq(~self.valid[-1] | o_stream.ready)
        for s in range(stages):
            upstream = i_stream.valid if s == 0 else self.valid[s - 1]
            with m.If(enable):
                m.d.sync += self.valid[s].eq(upstream)
        m.d.comb += [
            i_stream.ready.eq(enable),
            o_stream.valid.eq(self.valid[-1]),
        ]


class _TransformUnit(ConfiguredComponent):
    """A one-tile-per-cycle unit with stream ports ``i`` and ``o`` whose layouts come from
    the subclass's ``layouts(cfg)``."""

    def __init__(self, cfg: AccelConfig, **options):
        require_config(cfg)
        i_layout, o_layout = self.layouts(cfg, **options)
        super().__init__(cfg, {
            "i": In(stream.Signature(i_layout)),
            "o": Out(stream.Signature(o_layout)),
        })


class InputTransform(_TransformUnit):
    """Winograd input transform ``V = Bᵀ d B`` with optional Winograd-domain ReLU.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies the tile size (``n = m + 2``), ``Bᵀ``, ``act_bits`` and ``v_bits``.

    Members
    -------
    i : In(stream.Signature(StructLayout))
        ``d``: ``n*n`` signed ``act_bits`` values, row-major (element ``(r, c)`` at ``r*n + c``);
        ``relu``: when 1, the tile's ``V`` is replaced by ``max(V, 0)`` (Liu et al.). ReLU rides
        with each beat so one unit serves layers with and without Winograd ReLU.
        With ``meta``, ``i`` also has a ``meta`` field of that shape.
    o : Out(stream.Signature(ArrayLayout(signed(v_bits), n*n)))
        ``V`` row-major, exact (``v_bits`` covers the whole range of ``Bᵀ d B``). With
        ``meta``, ``o`` is ``StructLayout({"v": <that array>, "meta": meta})``: the beat's
        ``meta`` rides through the pipeline with it, so what the tile is (its channel, its
        place in the frame) needs no side queue.

    Latency is 2 cycles from a beat accepted on ``i`` to it being valid on ``o``; throughput
    is one tile per cycle.
    """

    LATENCY = 2

    def __init__(self, cfg: AccelConfig, *, meta=None):
        self._meta = meta
        super().__init__(cfg, meta=meta)

    @staticmethod
    def layouts(cfg: AccelConfig, meta=None) -> tuple[data.StructLayout, data.Layout]:
        """Payload layouts of ``i`` and ``o``, without building the component (for benches)."""
        n = cfg.n
        fields = {"d": data.ArrayLayout(signed(cfg.act_bits), n * n), "relu": unsigned(1)}
        v = data.ArrayLayout(signed(cfg.v_bits), n * n)
        if meta is None:
            return data.StructLayout(fields), v
        return data.StructLayout({**fields, "meta": meta}), \
            data.StructLayout({"v": v, "meta": meta})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        ctrl = _StageControl(m, self.LATENCY, self.i, self.o)

        tf = _Transform2D(m, cfg.BT, self.i.payload.d, cfg.act_range, ctrl.enable, "bt")
        relu = Signal(name="relu_s1", reset_less=True)
        with m.If(ctrl.enable):
            m.d.sync += relu.eq(self.i.payload.relu)

        widest = max(signed_bits(*r) for row in tf.y_range for r in row)
        assert widest == cfg.v_bits, "AccelConfig.v_bits disagrees with the generated transform"
        n = cfg.n
        # Datapath registers carry no reset (the stages' valid bits do): fewer loads on the
        # reset net, which reached every register of the design (docs/fpga.md).
        o_reg = Signal.like(self.o.payload, reset_less=True)
        m.d.comb += self.o.payload.eq(o_reg)
        out = o_reg if self._meta is None else o_reg.v
        with m.If(ctrl.enable):
            for i in range(n):
                for j in range(n):
                    v = tf.y[i][j]
                    m.d.sync += out[i * n + j].eq(Mux(relu & (v < 0), 0, v))
        if self._meta is not None:
            meta = Signal(self._meta, name="meta_s1", reset_less=True)
            with m.If(ctrl.enable):
                m.d.sync += meta.eq(self.i.payload.meta)
            with m.If(ctrl.enable):
                m.d.sync += o_reg.meta.eq(meta)
        return m


class OutputTransform(_TransformUnit):
    """Winograd output transform ``Y = Aᵀ M A``, then bias, requantisation, ReLU and clamp.

    Per output element, exactly as :func:`sw.golden.requantize`::

        out = clamp(((Y + bias) * multiplier + (1 << (shift - 1))) >> shift)   (floor shift)

    with the clamp to ``[0, act_max]`` when ``relu`` is set and to the ``act_bits`` range
    otherwise. ``shift == 0`` (which the golden model rejects) passes the product unrounded.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``Aᵀ``, ``m_bits``, ``bias_bits``, ``mult_bits``, ``shift_bits``, ``act_bits``.

    Members
    -------
    i : In(stream.Signature(StructLayout))
        ``m``: ``n*n`` signed ``m_bits`` accumulator values, row-major; ``bias`` (signed
        ``bias_bits``), ``multiplier`` (signed ``mult_bits``), ``shift`` (unsigned
        ``shift_bits``) and ``relu`` (1 bit) of this tile's output channel. Requantisation
        parameters travel per beat, so one unit serves every output channel.
    o : Out(stream.Signature(ArrayLayout(signed(act_bits), m*m)))
        The requantised ``m×m`` output tile, row-major.

    Latency is 7 cycles (``Aᵀ M``; ``· A + bias``; ``× multiplier`` as 18 × 18 partial
    products; their sum; the shift by a multiple of 8; the rest of the shift; round and
    clamp); throughput is one tile per cycle.
    """

    LATENCY = 7

    @staticmethod
    def layouts(cfg: AccelConfig) -> tuple[data.StructLayout, data.ArrayLayout]:
        """Payload layouts of ``i`` and ``o``, without building the component (for benches)."""
        i_layout = data.StructLayout({
            "m": data.ArrayLayout(signed(cfg.m_bits), cfg.n * cfg.n),
            "bias": signed(cfg.bias_bits),
            "multiplier": signed(cfg.mult_bits),
            "shift": unsigned(cfg.shift_bits),
            "relu": unsigned(1),
        })
        return i_layout, data.ArrayLayout(signed(cfg.act_bits), cfg.tile * cfg.tile)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        mm = cfg.tile
        ctrl = _StageControl(m, self.LATENCY, self.i, self.o)
        p = self.i.payload

        # Requantisation parameters ride alongside the tile, each only as far as it is used.
        def carry(value, stages, name):
            regs = [value]
            for s in range(stages):
                reg = Signal.like(regs[-1], name=f"{name}_s{s + 1}", reset_less=True)
                with m.If(ctrl.enable):
                    m.d.sync += reg.eq(regs[-1])
                regs.append(reg)
            return regs

        bias = carry(p.bias, 1, "bias")
        mult = carry(p.multiplier, 2, "mult")
        shift = carry(p.shift, 4, "shift")
        relu = carry(p.relu, 6, "relu")

        tf = _Transform2D(m, cfg.AT, p.m, cfg.m_range, ctrl.enable, "at")
        assert max(signed_bits(*r) for row in tf.y_range for r in row) == cfg.y_bits, \
            "AccelConfig.y_bits disagrees with the generated transform"
        bias_lo, bias_hi = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
        mult_lo, mult_hi = -(1 << (cfg.mult_bits - 1)), (1 << (cfg.mult_bits - 1)) - 1

        for i in range(mm):
            for j in range(mm):
                y_lo, y_hi = tf.y_range[i][j]
                z_range = (y_lo + bias_lo, y_hi + bias_hi)
                z = Signal(signed(signed_bits(*z_range)), name=f"z{i}_{j}", reset_less=True)
                with m.If(ctrl.enable):
                    m.d.sync += z.eq(tf.y[i][j] + bias[1])

                corners = [a * b for a in z_range for b in (mult_lo, mult_hi)]
                prod = Signal(signed(signed_bits(min(corners), max(corners))),
                              name=f"prod{i}_{j}", reset_less=True)
                partials = _partial_products(m, z, mult[2], ctrl.enable, f"{i}_{j}",
                                             prod.shape())
                with m.If(ctrl.enable):
                    m.d.sync += prod.eq(sum(pp << at for pp, at in partials))

                window = _shifted_window(m, cfg, prod, shift[4], ctrl.enable, f"{i}_{j}")
                with m.If(ctrl.enable):
                    m.d.sync += self.o.payload[i * mm + j].eq(
                        _round_clamp(cfg, window, relu[6]))
        return m


#: Width of the low chunks of a split multiplication operand: an unsigned 17-bit chunk is an
#: 18-bit signed input of an 18 × 18 multiplier (ECP5's MULT18X18D, xc7's DSP48E1 A port).
_CHUNK_BITS = 17


def _chunks(value) -> list[tuple[object, int]]:
    """``value`` (signed) as ``[(chunk, bit offset), ...]`` with ``value == Σ chunk << offset``.

    The low chunks are unsigned ``_CHUNK_BITS`` bits, the top one signed; a value of at most
    ``_CHUNK_BITS + 1`` bits is one chunk, itself.
    """
    width = len(value)
    if width <= _CHUNK_BITS + 1:
        return [(value, 0)]
    chunks = []
    at = 0
    while width - at > _CHUNK_BITS + 1:
        chunks.append((value[at:at + _CHUNK_BITS], at))
        at += _CHUNK_BITS
    chunks.append((value[at:].as_signed(), at))
    return chunks


def _partial_products(m: Module, a, b, enable, name: str, shape) -> list[tuple[Signal, int]]:
    """Registers ``a_i · b_j`` of every pair of 18-bit chunks, loaded on ``enable``.

    Returns ``[(register, bit offset), ...]`` whose shifted sum is ``a · b`` exactly. Each
    product fits one hard 18 × 18 multiplier and its register is the multiplier's output
    register; the sum is the next stage, so the carry chains that join the partial products
    are not in series with the multipliers (the output transform's routed critical path when
    the whole product was one stage). ``shape`` holds ``a · b`` over the values ``a`` takes:
    a single product (both operands one chunk) is registered at that shape.
    """
    a_chunks, b_chunks = _chunks(a), _chunks(b)
    single = len(a_chunks) == len(b_chunks) == 1
    partials = []
    for ai, (a_chunk, a_at) in enumerate(a_chunks):
        for bi, (b_chunk, b_at) in enumerate(b_chunks):
            product = a_chunk * b_chunk
            reg = Signal(shape if single else product.shape(), name=f"pp{name}_{ai}{bi}",
                         reset_less=True)
            with m.If(enable):
                m.d.sync += reg.eq(product)
            partials.append((reg, a_at + b_at))
    return partials


class _Window(NamedTuple):
    """The registered result of :func:`_shifted_window`."""

    low: Signal         # h on its act_bits + 2-bit window
    fits: Signal        # h lies in that window
    negative: Signal    # h < 0


def _shifted_window(m: Module, cfg: AccelConfig, prod, shift, enable, name: str) -> _Window:
    """Registers ``h = floor(2·prod / 2**shift)`` on an ``act_bits + 2``-bit window, in two stages.

    ``floor((p + 2**(s-1)) / 2**s) == floor((h + 1) / 2)`` (the rounding bit added after the
    barrel shift; ``s == 0`` gives ``p``), and ``lo <= floor((h + 1) / 2) <= hi`` iff
    ``2·lo − 1 <= h <= 2·hi``. Both bounds fit a signed ``act_bits + 2``-bit window, so only
    the window's bits of ``h`` are kept, with ``fits`` (its upper bits all equal: a LUT tree,
    not a carry chain over the product's width) and ``h``'s sign; :func:`_round_clamp` then
    compares, rounds and clamps the window in the next stage.
    """
    # Two stages: the shift by the multiple of 8 in `shift`, then by the rest (each half the
    # multiplexer levels; the whole shift and the window test in one were the unit's critical
    # path, its shift amount fanned out to every bit of every product).
    coarse = Signal(signed(len(prod) + 1), name=f"coarse{name}", reset_less=True)
    fine = Signal(3, name=f"fine{name}", reset_less=True)
    with m.If(enable):
        m.d.sync += [coarse.eq((prod << 1) >> Cat(Const(0, 3), shift[3:])), fine.eq(shift[:3])]
    halves = Signal(signed(len(prod) + 1), name=f"halves{name}")
    m.d.comb += halves.eq(coarse >> fine)
    width = cfg.act_bits + 2
    window = _Window(Signal(signed(width), name=f"window{name}", reset_less=True),
                     Signal(name=f"fits{name}", reset_less=True),
                     Signal(name=f"negative{name}", reset_less=True))
    if len(halves) > width:
        upper = halves[width - 1:]
        fits = upper.all() | ~upper.any()
    else:
        fits = 1
    with m.If(enable):
        m.d.sync += [window.low.eq(halves), window.fits.eq(fits),
                     window.negative.eq(halves[-1])]
    return window


def _round_clamp(cfg: AccelConfig, window: _Window, relu):
    """``clamp((h + 1) >> 1)`` to ``[relu ? 0 : act_lo, act_hi]`` from :func:`_shifted_window`.

    Out of range on the side of ``h``'s sign when the window does not hold ``h``; otherwise
    the window is compared with ``2·act_hi`` and ``2·act_lo − 1`` (``-1`` under ReLU) and its
    low bits rounded.
    """
    act_bits = cfg.act_bits
    act_lo, act_hi = cfg.act_range
    low, fits, negative = window.low, window.fits, window.negative
    over = Mux(fits, low > 2 * act_hi, ~negative)
    under = Mux(fits, low < Mux(relu, -1, 2 * act_lo - 1), negative)
    rounded = ((low + 1) >> 1)[:act_bits].as_signed()
    return Mux(over, act_hi, Mux(under, Mux(relu, 0, act_lo), rounded))
