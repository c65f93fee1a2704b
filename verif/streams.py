"""cocotb-side stream verification: payload codec, driver, monitor, scoreboard and the bench.

These classes know nothing about any one component. A stream is found by its signal-name prefix
(Amaranth names a top-level ``lib.stream`` port ``<prefix>__payload``, ``__valid``, ``__ready``)
and its payload is packed and unpacked from the Amaranth ``data`` layout the RTL was built with,
so a bench never restates a bit offset.

Timing discipline (the same on Icarus and Verilator): inputs change only just after a falling
clock edge, and the handshake is sampled in the ``ReadOnly`` phase that follows, while the clock
is low. A beat with ``valid & ready`` seen there is transferred by the next rising edge.

:class:`StreamBench` is the one harness of the cocotb block benches: clock, reset, a
:class:`StreamDriver` per input stream, a :class:`StreamMonitor` feeding an in-order
:class:`Scoreboard` per output stream, a transaction-level model giving the expected items, and
a drain with a deadline. Stall patterns are the names of :mod:`verif.stalls`; the stimulus
generator is :func:`verif.stalls.bench_rng` of the bench's name. :class:`ShapeGroupBench` adds
what the line buffer and the output reorder share: groups of frames of one shape each, the shape
changed only while the block is ``idle``.
"""

from __future__ import annotations

import os
import random
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping

import cocotb
from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from sw.config import AccelConfig
from verif.stalls import bench_rng, pattern, session_seed

#: ``{stream prefix: beats or items}``, one transaction's worth.
Beats = Mapping[str, Iterable]

__all__ = ["PayloadCodec", "StreamDriver", "StreamMonitor", "Scoreboard", "StreamProtocolError",
           "StreamBench", "ShapeGroupBench", "case_config", "sample_count", "frame_values"]

#: Cycles ``rst`` is held high after the clock starts.
RESET_CYCLES = 3
#: Cycles :meth:`StreamBench.finish` waits for items nobody expects (duplicates, extras).
SETTLE_CYCLES = 50
#: The default drain deadline: cycles per beat sent and item expected since the last drain...
DEADLINE_PER_ITEM = 30
#: ... plus these, for pipeline latency.
DEADLINE_SLACK = 200
#: Value kinds of :func:`frame_values`, drawn uniformly (random twice as often as each edge).
VALUE_KINDS = ("random", "random", "zeros", "min", "max")


def case_config() -> AccelConfig:
    """The configuration of the case under test, from the runner's ``$WINNOW_CONFIG``."""
    return AccelConfig.load(os.environ["WINNOW_CONFIG"])


def sample_count(default: int) -> int:
    """``$WINNOW_SAMPLES``, the amount of random stimulus per test, or the bench's ``default``."""
    return int(os.environ.get("WINNOW_SAMPLES") or default)


def frame_values(rng: random.Random, count: int, value_range: tuple[int, int]) -> list[int]:
    """``count`` values of one frame: random with the extremes mixed in, or all zero, all
    minimum or all maximum (:data:`VALUE_KINDS`)."""
    lo, hi = value_range
    kind = rng.choice(VALUE_KINDS)
    if kind == "random":
        return [rng.choice((lo, hi)) if rng.random() < 0.2 else rng.randint(lo, hi)
                for _ in range(count)]
    return [{"zeros": 0, "min": lo, "max": hi}[kind]] * count


class PayloadCodec:
    """Packs nested Python values into the bits of an Amaranth shape or layout, and back.

    ``StructLayout`` values are dicts, ``ArrayLayout`` values lists, plain shapes ints (signed
    shapes take and give negative ints). Out-of-range values raise, so a bench cannot silently
    drive a truncated stimulus.
    """

    def __init__(self, shape):
        self._shape = shape
        self.width = Shape.cast(shape).width

    def pack(self, value) -> int:
        return self._pack(self._shape, value)

    def unpack(self, bits: int):
        return self._unpack(self._shape, bits)

    @classmethod
    def _pack(cls, shape, value) -> int:
        if isinstance(shape, data.ArrayLayout):
            if len(value) != shape.length:
                raise ValueError(f"expected {shape.length} elements, got {len(value)}")
            width = Shape.cast(shape.elem_shape).width
            return sum(cls._pack(shape.elem_shape, v) << (k * width) for k, v in enumerate(value))
        if isinstance(shape, data.Layout):
            if set(value) != {name for name, _ in shape}:
                raise ValueError(f"expected fields {sorted(n for n, _ in shape)}, "
                                 f"got {sorted(value)}")
            return sum(cls._pack(field.shape, value[name]) << field.offset
                       for name, field in shape)
        shape = Shape.cast(shape)
        value = int(value)
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1 if shape.signed else shape.width)) - 1
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit {shape}")
        return value & ((1 << shape.width) - 1)

    @classmethod
    def _unpack(cls, shape, bits: int):
        if isinstance(shape, data.ArrayLayout):
            width = Shape.cast(shape.elem_shape).width
            return [cls._unpack(shape.elem_shape, (bits >> (k * width)) & ((1 << width) - 1))
                    for k in range(shape.length)]
        if isinstance(shape, data.Layout):
            return {name: cls._unpack(field.shape,
                                      (bits >> field.offset) & ((1 << field.width) - 1))
                    for name, field in shape}
        shape = Shape.cast(shape)
        if shape.signed and bits >> (shape.width - 1):
            return bits - (1 << shape.width)
        return bits


class StreamProtocolError(AssertionError):
    """A source broke the ``lib.stream`` rules (dropped valid or changed payload while stalled)."""


class _StreamEnd:
    """The ``<prefix>__payload/__valid/__ready`` handles of one stream and its codec."""

    def __init__(self, dut, clk, prefix: str, codec: PayloadCodec):
        self._clk = clk
        self._prefix = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        # An always-ready stream (stream.Signature(always_ready=True)) has no ready port.
        self._ready = getattr(dut, f"{prefix}__ready", None)
        self._codec = codec


class StreamDriver(_StreamEnd):
    """Drives a stream *into* the DUT: ``<prefix>__payload/__valid``, reads ``__ready``.

    Parameters
    ----------
    dut, clk :
        The cocotb DUT handle and its clock.
    prefix : str
        Stream port prefix, e.g. ``"i"`` for Amaranth's ``i__payload``.
    codec : PayloadCodec
        Payload packing.
    gaps : Iterator[bool]
        Valid gaps: before offering each beat, the driver idles while this yields True.
    """

    def __init__(self, dut, clk, prefix: str, codec: PayloadCodec, gaps: Iterator[bool]):
        super().__init__(dut, clk, prefix, codec)
        self._gaps = gaps
        self._queue: deque = deque()
        self.sent = 0
        self._valid.value = 0

    def append(self, item) -> None:
        """Queue one beat (a value for the codec)."""
        self._queue.append(self._codec.pack(item))

    @property
    def idle(self) -> bool:
        return not self._queue

    async def run(self) -> None:
        """Forever: offer queued beats, honouring the gap pattern (start with cocotb.start_soon)."""
        offering = False
        while True:
            await FallingEdge(self._clk)
            if not offering:
                if self._queue and not next(self._gaps):
                    self._payload.value = self._queue[0]
                    self._valid.value = 1
                    offering = True
                else:
                    self._valid.value = 0
            await ReadOnly()
            if offering and (self._ready is None or bool(self._ready.value)):
                self._queue.popleft()
                self.sent += 1
                offering = False


class StreamMonitor(_StreamEnd):
    """Takes a stream *out of* the DUT: drives ``<prefix>__ready``, watches payload and valid.

    Every beat is unpacked and handed to ``callback``. While a beat is stalled (valid and not
    ready) the monitor also checks the source keeps ``valid`` high and the payload unchanged
    until it is taken, raising :class:`StreamProtocolError` otherwise.

    Parameters
    ----------
    stalls : Iterator[bool]
        Back-pressure: ``ready`` is low in every cycle for which this yields True.
    """

    def __init__(self, dut, clk, prefix: str, codec: PayloadCodec, stalls: Iterator[bool],
                 callback: Callable[[Any], None]):
        super().__init__(dut, clk, prefix, codec)
        self._stalls = stalls
        self._callback = callback
        self.received = 0
        self.stalled_cycles = 0
        self._ready.value = 0

    async def run(self) -> None:
        """Forever: apply back-pressure and collect beats (start with cocotb.start_soon)."""
        held = None  # payload bits of a beat the source offered while we stalled it
        while True:
            await FallingEdge(self._clk)
            ready = not next(self._stalls)
            self._ready.value = int(ready)
            await ReadOnly()
            valid = bool(self._valid.value)
            if held is not None:
                if not valid:
                    raise StreamProtocolError(f"{self._prefix}: valid dropped before beat "
                                              f"{self.received} was taken")
                if self._payload.value.to_unsigned() != held:
                    raise StreamProtocolError(f"{self._prefix}: payload of beat "
                                              f"{self.received} changed while stalled")
            held = None
            if valid:
                bits = self._payload.value.to_unsigned()
                if ready:
                    self.received += 1
                    self._callback(self._codec.unpack(bits))
                else:
                    self.stalled_cycles += 1
                    held = bits


class Scoreboard:
    """In-order scoreboard: every received item must equal the oldest expected one.

    A mismatch raises at once, naming the item index and the context the item was expected
    with (so reordering shows as a mismatch); :meth:`check_complete` then proves nothing was
    lost, and an extra item finds no expectation and raises (nothing was duplicated).
    """

    def __init__(self, name: str):
        self.name = name
        self._expected: deque = deque()
        self.expected_total = 0
        self.matched = 0

    def expect(self, item, context: str = "") -> None:
        """Expect ``item`` next; ``context`` (e.g. ``" (tile 3)"``) follows its mismatch."""
        self._expected.append((item, context))
        self.expected_total += 1

    def receive(self, item) -> None:
        index = self.matched
        if not self._expected:
            raise AssertionError(f"{self.name}: unexpected item #{index} {item} "
                                 f"(only {self.expected_total} were sent)")
        want, context = self._expected.popleft()
        if item != want:
            raise AssertionError(f"{self.name}: item #{index} mismatch{context}\n"
                                 f"  expected {want}\n  got      {item}")
        self.matched += 1

    @property
    def done(self) -> bool:
        return not self._expected

    def check_complete(self) -> None:
        if self._expected:
            raise AssertionError(f"{self.name}: {len(self._expected)} of "
                                 f"{self.expected_total} items never arrived")


class StreamBench:
    """One DUT with its clock and reset, a driver per input stream and a monitor and in-order
    scoreboard per output stream.

    The life of a test: construct (``rst`` goes high, every ``valid``/``ready`` low; drive any
    other input that must hold during reset), ``await start()``, then any number of
    :meth:`send` and ``await drain()``, then ``await finish()``. The constructor logs the run's
    seed once; ``rng`` is :func:`verif.stalls.bench_rng` of ``name``, so a test's stimulus
    depends only on ``SEED`` and its name.

    Parameters
    ----------
    dut :
        The cocotb DUT handle, with ``clk``, ``rst`` and the named streams.
    name : str
        The test's name: seeds ``rng`` and starts every failure message and log line.
    inputs, outputs : dict of str to shape
        Payload shape or ``data`` layout of each input and output stream, by port prefix.
    gaps, backpressure : str or dict of str to str
        Stall pattern (:data:`verif.stalls.PATTERNS`) of every input (valid gaps) and every
        output (back-pressure), or one per prefix. Patterns draw from ``rng``.
    model : callable, optional
        The transaction-level model: ``model(beats)`` gives ``{output prefix: expected items}``
        for the ``{input prefix: beats}`` of a :meth:`send` that names no expected items.

    Attributes
    ----------
    rng : random.Random
        The test's generator, for stimulus.
    drivers, monitors, boards : dict
        :class:`StreamDriver`, :class:`StreamMonitor` and :class:`Scoreboard` by prefix.
    """

    def __init__(self, dut, name: str, *, inputs: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, Any] | None = None,
                 gaps: str | Mapping[str, str] = "none",
                 backpressure: str | Mapping[str, str] = "none",
                 model: Callable[[Beats], Beats] | None = None):
        self.dut = dut
        self.name = name
        self.rng = bench_rng(name)
        self._model = model
        dut.rst.value = 1

        def named(choice, prefix):
            return pattern(choice if isinstance(choice, str) else choice[prefix], self.rng)

        self.drivers = {prefix: StreamDriver(dut, dut.clk, prefix, PayloadCodec(shape),
                                             named(gaps, prefix))
                        for prefix, shape in (inputs or {}).items()}
        self.boards = {prefix: Scoreboard(f"{name}: {prefix}") for prefix in outputs or {}}
        self.monitors = {prefix: StreamMonitor(dut, dut.clk, prefix, PayloadCodec(shape),
                                               named(backpressure, prefix),
                                               self.boards[prefix].receive)
                         for prefix, shape in (outputs or {}).items()}
        self._queued = 0
        dut._log.info(f"{name}: SEED={session_seed()} (stimulus from the seed and this name)")

    async def start(self) -> None:
        """Start the clock, hold ``rst`` for :data:`RESET_CYCLES`, start drivers and monitors."""
        Clock(self.dut.clk, 10, unit="ns").start()
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        for part in (*self.drivers.values(), *self.monitors.values()):
            cocotb.start_soon(part.run())

    def send(self, beats: Beats, expected: Beats | None = None,
             context: Callable[[int], str] | None = None) -> None:
        """Queue one transaction: ``{input prefix: beats}`` on the drivers, and the
        ``{output prefix: items}`` it must produce (``model(beats)`` when not given) on the
        scoreboards. ``context(k)`` describes the transaction's ``k``-th expected item of a
        stream in a mismatch message."""
        beats = {prefix: list(items) for prefix, items in beats.items()}
        if expected is None:
            expected = self._model(beats)
        for prefix, items in beats.items():
            for item in items:
                self.drivers[prefix].append(item)
            self._queued += len(items)
        for prefix, items in expected.items():
            for k, item in enumerate(items):
                self.boards[prefix].expect(item, context(k) if context else "")
                self._queued += 1

    @property
    def done(self) -> bool:
        """Every queued beat is sent and every expected item has arrived."""
        return (all(d.idle for d in self.drivers.values())
                and all(b.done for b in self.boards.values()))

    async def drain(self, deadline: int | None = None, *, idle: bool = False) -> int:
        """Wait until :attr:`done` (and, with ``idle``, the DUT's ``idle`` is high), at most
        ``deadline`` cycles (default :data:`DEADLINE_PER_ITEM` per beat and item queued since
        the last drain, plus :data:`DEADLINE_SLACK`); raise naming what is missing after it.

        Returns
        -------
        int
            Cycles waited.
        """
        if deadline is None:
            deadline = DEADLINE_PER_ITEM * self._queued + DEADLINE_SLACK
        self._queued = 0
        cycles = 0
        while not (self.done and (not idle or int(self.dut.idle.value))) and cycles < deadline:
            await RisingEdge(self.dut.clk)
            cycles += 1
        for board in self.boards.values():
            board.check_complete()
        for prefix, driver in self.drivers.items():
            assert driver.idle, f"{self.name}: {prefix} did not take every beat in {cycles} cycles"
        assert not idle or int(self.dut.idle.value), f"{self.name}: not idle after {cycles} cycles"
        return cycles

    async def finish(self) -> None:
        """Wait :data:`SETTLE_CYCLES` (an item arriving now is unexpected and raises), check
        every output's count and log it."""
        await ClockCycles(self.dut.clk, SETTLE_CYCLES)
        for prefix, monitor in self.monitors.items():
            board = self.boards[prefix]
            assert monitor.received == board.expected_total, \
                f"{board.name}: received {monitor.received}, expected {board.expected_total}"
            self.dut._log.info(f"{board.name}: {board.matched} items bit-exact in order, "
                               f"{monitor.stalled_cycles} stalled cycles")


class ShapeGroupBench(StreamBench):
    """A block of the case's configuration streaming frames from ``i`` to ``o`` that reads its
    shape inputs only while ``idle`` (the line buffer, the output reorder).

    Parameters
    ----------
    component : str
        The block's name; with the tile size and the patterns it makes the bench's name.
    layouts : callable
        ``layouts(cfg)``: the payload shapes of ``i`` and ``o``.
    shape_ports : tuple of str
        The DUT's shape inputs, in the order of a shape tuple; all ones during reset.
    gaps, backpressure : str
        The stall patterns of ``i`` and ``o``.
    golden : callable
        ``golden(cfg, shape, beats)``: the expected ``o`` items of one frame of ``i`` beats.

    Attributes
    ----------
    cfg : AccelConfig
        The case's configuration (:func:`case_config`).
    """

    def __init__(self, dut, component: str, layouts: Callable[[AccelConfig], tuple],
                 shape_ports: tuple[str, ...], gaps: str, backpressure: str,
                 golden: Callable[[AccelConfig, tuple, list], list]):
        self.cfg = case_config()
        i_layout, o_layout = layouts(self.cfg)
        super().__init__(dut, f"{component} m={self.cfg.tile} gaps={gaps} "
                              f"backpressure={backpressure}",
                         inputs={"i": i_layout}, outputs={"o": o_layout}, gaps=gaps,
                         backpressure=backpressure,
                         model=lambda beats: {"o": golden(self.cfg, self.shape, beats["i"])})
        self.shape_ports = shape_ports
        self.shape = (1,) * len(shape_ports)
        self._apply_shape()

    def _apply_shape(self) -> None:
        for port, value in zip(self.shape_ports, self.shape):
            getattr(self.dut, port).value = value

    async def _idle_now(self) -> bool:
        await ReadOnly()
        return bool(self.dut.idle.value)

    async def run(self, shapes: Iterable[tuple], frames: Callable[[tuple], list[list]]) -> None:
        """Reset, then per shape: wait for ``idle``, apply the shape, send the group of frames
        ``frames(shape)`` (each a list of ``i`` beats; called once the group's turn comes, so
        ``rng`` is drawn in bench order) and drain it; ``idle`` must be high before every group
        and the cycle right after its final item. Then :meth:`finish`."""
        await self.start()
        names = ", ".join(self.shape_ports)
        for shape in shapes:
            await FallingEdge(self.dut.clk)
            assert await self._idle_now(), f"{self.name}: not idle before shape {shape}"
            await FallingEdge(self.dut.clk)
            self.shape = shape
            self._apply_shape()
            for n, beats in enumerate(frames(shape)):
                self.send({"i": beats},
                          context=lambda k: f" (({names}) = {shape}, frame {n}, item {k})")
            await self.drain()
            assert await self._idle_now(), f"{self.name}: not idle after shape {shape}"
        await self.finish()
