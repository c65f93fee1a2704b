"""``AccelConfig``: the one parameter contract shared by the generator, packer and models.

The configuration is a frozen dataclass with no Amaranth import, so the packer, the golden
model, the perf model and the tests can all take it without pulling in the HDL. Every width
that follows from the Winograd matrices is *derived* here from :mod:`sw.winograd`; no width is
written down twice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from sw import winograd

__all__ = ["AccelConfig", "ConfigError", "OVERFLOW_MODES", "SUPPORTED_TILES", "signed_bits",
           "require_config", "require_count"]

#: Output tile sizes m the hardware supports (integer B^T and A^T exist for these).
SUPPORTED_TILES = (2, 4)
#: How accumulators and the requantiser treat values out of range.
OVERFLOW_MODES = ("wrap", "saturate")
#: Bumped whenever a field is added, removed or changes meaning.
SCHEMA_VERSION = 5


class ConfigError(ValueError):
    """An ``AccelConfig`` field holds a value that is not allowed."""


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``[lo, hi]``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _transform_range(mat: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Exact range of ``M x M^T`` over the last two axes for inputs in ``[lo, hi]``."""
    coef = np.einsum("ik,jl->ijkl", mat, mat).reshape(mat.shape[0] ** 2, -1)
    pos = np.where(coef > 0, coef, 0).sum(axis=1)
    neg = np.where(coef < 0, coef, 0).sum(axis=1)
    return int((pos * lo + neg * hi).min()), int((pos * hi + neg * lo).max())


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of one generated accelerator, F(m×m, 3×3).

    Parameters
    ----------
    tile : int
        Output tile size m; the input tile is ``n = m + 2``. One of :data:`SUPPORTED_TILES`.
    act_bits, wgt_bits : int
        Signed widths of activations and Winograd-domain weights (2..16).
    acc_bits : int
        Architected width of the per-coordinate accumulators ``M`` (8..48).
    lanes : int or tuple of int
        Multiplier lanes per Winograd coordinate: one number for all ``n²`` PEs, or one per
        coordinate in row-major ``(i, j)`` order.
    c_max, k_max : int
        Largest input and output channel counts a layer may have.
    w_max : int
        Largest feature-map width the line buffer holds.
    wmem_depth : int
        Weight-memory words per PE. The default 512 holds a dense 64×64 layer in one pass
        (``64 · ceil(ceil(64 / L) / slots_per_lane)`` words at ``L = 4``), and a word of
        ``S = 8`` slots then fills three 512×36 block RAMs (DP16KD) per PE.
    fifo_depth : int
        Depth of each per-coordinate activation FIFO (a power of two, at least 2).
    tiles_in_flight : int
        Accumulator banks per PE, so the drain of one tile overlaps the next (at least 2).
    act_width : int
        Input channels per activation beat of the sparse array (1..16): each PE's zero filter
        takes the non-zero ones of a beat in one cycle, so layers whose columns hold little
        work are not held to one channel per cycle by the input side.
    slots_per_lane : int
        Weight slots per memory word, per lane: a word holds ``slots_per_lane · L`` slots, so
        the column walker reads weights ``slots_per_lane`` times as fast as the lanes use them
        and the pair compactor can keep the lanes full across short columns (1..4).
    drain_width : int
        Output channels each PE drains per cycle, a power of two (1..16): a tile drains in
        ``ceil(K / drain_width)`` cycles, so tiles with little work are not bound by their
        ``K`` outputs.
    transform_channels : int
        Channels the line buffer, the input transform, the output transform and the reorder
        buffer move per cycle: a power of two that divides ``act_width``, ``drain_width`` and
        the channels of one line-buffer row-memory word (``V / n`` when ``n`` divides
        ``V = stream_values``, else ``V``): 1 or 2 at the default ``V = 8``, F(2,3). With 1,
        a layer whose columns hold little work waits on one channel per cycle on both sides
        of the array (``tiles · C`` and ``tiles · K`` cycles a pass); 2 halves both floors, for
        a second input and output transform and a second quantisation read port.
    stream_values : int
        Activation values per beat of the AXI streams ``s_axis_act`` and ``m_axis_out``, a power
        of two (1..16): a beat carries up to ``stream_values`` channels of one pixel, so
        ``tdata`` is ``stream_values · 8 · ceil(act_bits / 8)`` bits (64 at the default 8).
    weight_ports : int
        Weight-load streams (1 to 4): each has its own loader over a contiguous share of the
        PEs (:func:`sw.formats.port_pes`) and takes that share of every record
        (:func:`sw.formats.record_frames`), so a record loads up to ``weight_ports`` times as
        fast. Port ``p`` is ``s_axis_wgt`` for ``p = 0`` and ``s_axis_wgt{p}`` after.
    overflow : str
        ``"wrap"`` (two's complement modulo ``2**acc_bits``) or ``"saturate"`` (clamp the exact
        per-coordinate sum to ``acc_bits``). Both are independent of summation order.
    bias_bits, mult_bits, shift_bits : int
        Requantisation: signed bias and multiplier widths, and the unsigned shift width.
    """

    tile: int = 2
    act_bits: int = 8
    wgt_bits: int = 8
    acc_bits: int = 32
    lanes: int | tuple[int, ...] = 4
    c_max: int = 64
    k_max: int = 64
    w_max: int = 32
    wmem_depth: int = 512
    fifo_depth: int = 32
    tiles_in_flight: int = 2
    act_width: int = 1
    slots_per_lane: int = 2
    drain_width: int = 1
    transform_channels: int = 1
    stream_values: int = 8
    weight_ports: int = 1
    overflow: str = "wrap"
    bias_bits: int = 32
    mult_bits: int = 32
    shift_bits: int = 6

    def __post_init__(self):
        def bad(name: str, allowed: str):
            raise ConfigError(f"AccelConfig.{name}: {getattr(self, name)!r} is not allowed; "
                              f"expected {allowed}")

        def check_int(name: str, lo: int, hi: int):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                bad(name, f"an integer in [{lo}, {hi}]")

        if isinstance(self.tile, bool) or not isinstance(self.tile, int) \
                or self.tile not in SUPPORTED_TILES:
            bad("tile", f"one of {', '.join(map(str, SUPPORTED_TILES))}")
        check_int("act_bits", 2, 16)
        check_int("wgt_bits", 2, 16)
        check_int("acc_bits", 8, 48)
        check_int("c_max", 1, 4096)
        check_int("k_max", 1, 4096)
        check_int("w_max", 3, 4096)
        check_int("wmem_depth", 1, 1 << 20)
        check_int("fifo_depth", 2, 1 << 16)
        if self.fifo_depth & (self.fifo_depth - 1):
            bad("fifo_depth", "a power of two")
        check_int("tiles_in_flight", 2, 8)
        check_int("act_width", 1, 16)
        if self.fifo_depth < 2 * self.act_width:
            bad("fifo_depth", f"a power of two >= 2 * act_width = {2 * self.act_width}")
        check_int("slots_per_lane", 1, 4)
        check_int("drain_width", 1, 16)
        if self.drain_width & (self.drain_width - 1):
            bad("drain_width", "a power of two")
        check_int("stream_values", 1, 16)
        if self.stream_values & (self.stream_values - 1):
            bad("stream_values", "a power of two")
        check_int("transform_channels", 1, 16)
        word = self.row_word_channels
        P = self.transform_channels
        if P & (P - 1) or self.act_width % P or self.drain_width % P or word % P:
            bad("transform_channels", f"a power of two that divides act_width = "
                                      f"{self.act_width}, drain_width = {self.drain_width} "
                                      f"and the {word} channels of a line-buffer memory word")
        check_int("weight_ports", 1, 4)
        if not isinstance(self.overflow, str) or self.overflow not in OVERFLOW_MODES:
            bad("overflow", f"one of {', '.join(OVERFLOW_MODES)}")
        check_int("bias_bits", 2, 48)
        check_int("mult_bits", 2, 48)
        check_int("shift_bits", 1, 8)

        lanes = self.lanes
        if isinstance(lanes, list):
            lanes = tuple(lanes)
            object.__setattr__(self, "lanes", lanes)
        if isinstance(lanes, tuple):
            if len(lanes) != self.coords or not all(
                    isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 64
                    for x in lanes):
                bad("lanes", f"one integer in [1, 64], or {self.coords} of them (one per "
                             f"Winograd coordinate of F({self.tile},3))")
        else:
            check_int("lanes", 1, 64)
        if self.drain_width > min(self.lanes_per_coord):
            bad("drain_width", f"at most the fewest lanes of a coordinate, "
                               f"{min(self.lanes_per_coord)} (a lane drains one output channel "
                               "per cycle)")

    # -- shape ---------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Input tile size ``m + 2``."""
        return self.tile + 2

    @property
    def coords(self) -> int:
        """Number of Winograd coordinates ``n²``, one PE each."""
        return self.n * self.n

    @property
    def lanes_per_coord(self) -> tuple[int, ...]:
        """Lanes of each PE, row-major over ``(i, j)``."""
        if isinstance(self.lanes, tuple):
            return self.lanes
        return (self.lanes,) * self.coords

    def word_slots(self, xi: int) -> int:
        """Weight slots per memory word of PE ``xi``: ``slots_per_lane · lanes_per_coord[xi]``."""
        return self.slots_per_lane * self.lanes_per_coord[xi]

    #: Depth of a lane queue's FIFO (one entry per word's group of slots): one LUT RAM's depth
    #: (16 on ECP5 distributed RAM), so a shallower queue would save nothing.
    lane_fifo_depth = 16

    @property
    def lane_queue_depth(self) -> int:
        """Words' groups a lane queue takes before it refuses the next word: the FIFO depth
        less the group in flight, the one about to be written, and one more because the
        queue's ``room`` is decided from its level alone (:class:`hw.lane_queue.LaneQueue`)."""
        return self.lane_fifo_depth - 3

    def accumulator_rows(self, xi: int) -> int:
        """Accumulator rows per lane and bank of PE ``xi``: ``ceil(k_max / L)``.

        Output channel ``k`` lives in lane ``k mod L``, row ``k // L``.
        """
        return -(-self.k_max // self.lanes_per_coord[xi])

    @property
    def row_word_channels(self) -> int:
        """Channels of one line-buffer row-memory word: ``V / n`` when ``n`` divides
        ``V = stream_values`` (the spread layout of :class:`hw.linebuf.LineBuffer`), else ``V``."""
        V = self.stream_values
        return V // self.n if V % self.n == 0 else V

    @property
    def drain_rows(self) -> int:
        """Drain beats of a tile with ``k_max`` output channels: ``ceil(k_max / drain_width)``."""
        return -(-self.k_max // self.drain_width)

    @property
    def multipliers(self) -> int:
        """Total multipliers in the sparse array."""
        return sum(self.lanes_per_coord)

    # -- matrices --------------------------------------------------------------------------
    @property
    def matrices(self) -> winograd.WinogradMatrices:
        """The exact Cook-Toom matrices for this tile size."""
        return winograd.matrices(self.tile)

    @cached_property
    def BT(self) -> np.ndarray:
        """Integer input transform ``B^T`` (n × n)."""
        return winograd.integer_matrix(self.matrices.BT, "B^T")

    @cached_property
    def AT(self) -> np.ndarray:
        """Integer output transform ``A^T`` (m × n)."""
        return winograd.integer_matrix(self.matrices.AT, "A^T")

    # -- derived widths --------------------------------------------------------------------
    @property
    def act_range(self) -> tuple[int, int]:
        return _signed_range(self.act_bits)

    @property
    def wgt_range(self) -> tuple[int, int]:
        return _signed_range(self.wgt_bits)

    @property
    def acc_range(self) -> tuple[int, int]:
        return _signed_range(self.acc_bits)

    @cached_property
    def v_range(self) -> tuple[int, int]:
        """Exact range of the input transform ``V = B^T d B`` for int ``act_bits`` inputs."""
        return _transform_range(self.BT, *self.act_range)

    @property
    def v_bits(self) -> int:
        """Width of a transformed activation V."""
        return signed_bits(*self.v_range)

    @property
    def product_bits(self) -> int:
        """Width of one product ``U * V``."""
        wl, wh = self.wgt_range
        vl, vh = self.v_range
        corners = (wl * vl, wl * vh, wh * vl, wh * vh)
        return signed_bits(min(corners), max(corners))

    @property
    def exact_sum_bits(self) -> int:
        """Width that holds the exact sum of ``c_max`` products without overflow."""
        return self.product_bits + (self.c_max - 1).bit_length()

    @property
    def acc_internal_bits(self) -> int:
        """Accumulator register width in hardware: the exact sum's, :attr:`exact_sum_bits`, in
        both modes and whatever ``acc_bits`` is.

        The drain reduces the exact sum to ``acc_bits`` (``wrap``: modulo; ``saturate``:
        clamp; a narrower sum is sign-extended, which both modes leave unchanged) and knows
        whether that changed it: the sticky STATUS.OVERFLOW flag, exact in both modes
        (:func:`sw.golden.accumulator_overflow`). With the defaults (``acc_bits`` 32, the exact
        sum 24 bits) nothing can overflow and the accumulators are 24 bits, not 32.
        """
        return self.exact_sum_bits

    @property
    def m_bits(self) -> int:
        """Width of a drained accumulator ``M`` on the wires after the array:
        ``min(acc_bits, exact_sum_bits)``.

        ``M`` is the exact sum reduced to ``acc_bits``, and the exact sum never needs more than
        :attr:`exact_sum_bits`, so the narrower of the two holds every ``M`` (24 bits in the
        default configuration, whose ``acc_bits`` is 32).
        """
        return min(self.acc_bits, self.exact_sum_bits)

    @property
    def m_range(self) -> tuple[int, int]:
        """Range of a drained accumulator ``M``, ``m_bits`` signed."""
        return _signed_range(self.m_bits)

    @cached_property
    def y_range(self) -> tuple[int, int]:
        """Exact range of the output transform ``Y = A^T M A`` for ``M`` in :attr:`m_range`."""
        return _transform_range(self.AT, *self.m_range)

    @property
    def y_bits(self) -> int:
        """Width of an output-transform result Y (before bias)."""
        return signed_bits(*self.y_range)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Fields plus a read-only ``derived`` section (for people and C headers)."""
        fields = dataclasses.asdict(self)
        if isinstance(self.lanes, tuple):
            fields["lanes"] = list(self.lanes)
        return {
            "schema": SCHEMA_VERSION,
            **fields,
            "derived": {
                "n": self.n, "coords": self.coords, "multipliers": self.multipliers,
                "v_bits": self.v_bits, "product_bits": self.product_bits,
                "acc_internal_bits": self.acc_internal_bits, "m_bits": self.m_bits,
                "y_bits": self.y_bits,
                "BT": self.BT.tolist(), "AT": self.AT.tolist(),
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "AccelConfig":
        """Build from :meth:`to_dict` output, refusing anything it would not write.

        Parameters
        ----------
        data : dict
            ``schema`` (must be :data:`SCHEMA_VERSION`), every field of the class, and
            optionally ``derived`` (checked against the fields, never read).
        source : str
            Names the file in error messages.

        Raises
        ------
        ConfigError
            ``data`` is not a dict; ``schema`` is missing or another version; a field is
            missing (never filled in with its default: a configuration that does not say
            everything may not describe the hardware it is meant for) or unknown; a value is
            not allowed; ``derived`` does not match the fields.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        if "schema" not in data:
            raise ConfigError(f"{source}: no 'schema' field; not a winnow.json written by "
                              f"python -m hw.gen (this winnow reads schema {SCHEMA_VERSION})")
        schema = data.pop("schema")
        if isinstance(schema, bool) or not isinstance(schema, int) or schema != SCHEMA_VERSION:
            raise ConfigError(f"{source}: schema {schema!r} is not supported "
                              f"(this winnow reads schema {SCHEMA_VERSION}); regenerate it "
                              "with python -m hw.gen")
        derived = data.pop("derived", None)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            shown = (name if name.isidentifier() else repr(name) for name in unknown)
            raise ConfigError(f"{source}: unknown field(s) {', '.join(shown)}; "
                              f"known fields: {', '.join(sorted(names))}")
        missing = [name for name in names if name not in data]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {', '.join(missing)}; a winnow.json "
                              "names every field (none is filled in with a default), "
                              "regenerate it with python -m hw.gen")
        if isinstance(data.get("lanes"), list):
            data["lanes"] = tuple(data["lanes"])
        try:
            cfg = cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        if derived is not None and derived != cfg.to_dict()["derived"]:
            raise ConfigError(f"{source}: the 'derived' section does not match the fields; "
                              "regenerate it with python -m hw.gen")
        return cfg

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "AccelConfig":
        """Parse :meth:`to_json` output; see :meth:`from_dict` for what is refused.

        Raises
        ------
        ConfigError
            Not JSON (or nested too deeply to parse), or refused by :meth:`from_dict`.
        """
        try:
            data = json.loads(text)
        except ValueError as err:  # JSONDecodeError, or an integer of too many digits
            raise ConfigError(f"{source}: not valid JSON ({err})") from None
        except RecursionError:
            raise ConfigError(f"{source}: not valid JSON (nested too deeply)") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "AccelConfig":
        """Read a ``winnow.json`` written by ``python -m hw.gen``.

        Raises
        ------
        ConfigError
            Naming ``path``: it cannot be read, is not UTF-8 text, or is refused by
            :meth:`from_json`.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a winnow.json: not UTF-8 text (byte "
                              f"{err.start} is {err.object[err.start:err.start + 1]!r})") \
                from None
        return cls.from_json(text, str(path))


def require_config(cfg) -> AccelConfig:
    """``cfg`` itself if it is an :class:`AccelConfig`; the one type check of every component.

    Raises
    ------
    TypeError
        ``cfg`` is anything else (a dict or a path must go through :meth:`AccelConfig.load`).
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"cfg must be an AccelConfig, not {type(cfg).__name__}")
    return cfg


def require_count(name: str, value, lo: int = 1, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``[lo, hi]`` (no upper bound when ``hi`` is None).

    Raises
    ------
    ValueError
        Naming ``name``, the allowed range and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < lo \
            or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {allowed}, not {value!r}")
    return value
