"""cocotb-side stream verification: payload codec, driver, monitor, scoreboard, stall patterns.

These classes know nothing about any one component. A stream is found by its signal-name prefix
(Amaranth names a top-level ``lib.stream`` port ``<prefix>__payload``, ``__valid``, ``__ready``)
and its payload is packed and unpacked from the Amaranth ``data`` layout the RTL was built with,
so a bench never restates a bit offset.

Timing discipline (the same on Icarus and Verilator): inputs change only just after a falling
clock edge, and the handshake is sampled in the ``ReadOnly`` phase that follows, while the clock
is low. A beat with ``valid & ready`` seen there is transferred by the next rising edge.

:func:`stream_shape_groups` runs a whole bench of a block that streams frames from ``i`` to
``o`` and reads its shape inputs only while ``idle`` (the line buffer, the output reorder).
"""

from __future__ import annotations

import os
import random
from collections import deque
from typing import Any, Callable, Iterator

import cocotb
from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from verif.stalls import PATTERNS, pattern

__all__ = ["PATTERNS", "pattern", "PayloadCodec", "StreamDriver", "StreamMonitor", "Scoreboard",
           "StreamProtocolError", "stream_shape_groups"]

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


def _handle(dut, prefix: str, suffix: str):
    return getattr(dut, f"{prefix}__{suffix}")


class StreamDriver:
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
        self._clk = clk
        self._payload = _handle(dut, prefix, "payload")
        self._valid = _handle(dut, prefix, "valid")
        self._ready = _handle(dut, prefix, "ready")
        self._codec = codec
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
            if offering and bool(self._ready.value):
                self._queue.popleft()
                self.sent += 1
                offering = False


class StreamMonitor:
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
        self._clk = clk
        self._prefix = prefix
        self._payload = _handle(dut, prefix, "payload")
        self._valid = _handle(dut, prefix, "valid")
        self._ready = _handle(dut, prefix, "ready")
        self._codec = codec
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

    A mismatch raises at once, naming the item index (so reordering shows as a mismatch);
    :meth:`check_complete` then proves nothing was lost, and the monitor's count that nothing
    was duplicated (an extra item finds no expectation and raises).
    """

    def __init__(self, name: str, describe: Callable[[int], str] | None = None):
        self.name = name
        self._expected: deque = deque()
        self._describe = describe or (lambda index: "")
        self.expected_total = 0
        self.matched = 0

    def expect(self, item) -> None:
        self._expected.append(item)
        self.expected_total += 1

    def receive(self, item) -> None:
        index = self.matched
        if not self._expected:
            raise AssertionError(f"{self.name}: unexpected item #{index} {item} "
                                 f"(only {self.expected_total} were sent)")
        want = self._expected.popleft()
        if item != want:
            raise AssertionError(f"{self.name}: item #{index} mismatch{self._describe(index)}\n"
                                 f"  expected {want}\n  got      {item}")
        self.matched += 1

    @property
    def done(self) -> bool:
        return not self._expected

    def check_complete(self) -> None:
        if self._expected:
            raise AssertionError(f"{self.name}: {len(self._expected)} of "
                                 f"{self.expected_total} items never arrived")


async def _idle_now(dut) -> bool:
    await ReadOnly()
    return bool(dut.idle.value)


async def stream_shape_groups(dut, name: str, layouts, gaps: str, backpressure: str,
                              rng: random.Random, seed: str, shapes: list[tuple],
                              set_shape: Callable[[tuple], None],
                              make_group: Callable[[tuple], list[tuple[list, list]]],
                              items: tuple[str, str], shape_fields: str = "") -> None:
    """Stream groups of frames of one shape each from ``i`` to ``o`` and check every output.

    Resets the DUT (shape inputs all ones), then per shape: waits for ``idle``, applies the
    shape, queues the group's frames on a :class:`StreamDriver` under ``gaps``, and waits until
    an in-order :class:`Scoreboard` fed by a :class:`StreamMonitor` under ``backpressure`` has
    every expected item; ``idle`` must be high before every group and right after its final
    item. Finally no further item may arrive, and the totals and ``seed`` are logged.

    Parameters
    ----------
    dut :
        A block with ``clk``, ``rst``, ``idle`` and the streams ``i`` and ``o``.
    name : str
        Scoreboard name: it starts every failure message and the log line.
    layouts : tuple
        The payload shapes of ``i`` and ``o``.
    gaps, backpressure : str
        Names of :data:`PATTERNS`, drawn from ``rng``.
    seed : str
        The seed ``rng`` was made from.
    shapes : list of tuple
        One shape per group, in order; ``set_shape(shape)`` drives the DUT's shape inputs.
    make_group : callable
        ``make_group(shape)`` gives the group's frames as ``(input beats, expected items)``;
        it is called once the group's turn comes, so ``rng`` is drawn in bench order.
    items : tuple of str
        Singular and plural of an output item, as the messages name them.
    shape_fields : str
        Prefix of the shape in a mismatch message, e.g. ``"(H, W, C, pad) "``.
    """
    i_layout, o_layout = layouts
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    set_shape((1,) * len(shapes[0]))
    driver = StreamDriver(dut, dut.clk, "i", PayloadCodec(i_layout), pattern(gaps, rng))
    shape_now = [None]

    def describe(index: int) -> str:
        return f" (group shape {shape_fields}{shape_now[0]}, {items[0]} {index} of the test)"

    board = Scoreboard(name, describe=describe)
    monitor = StreamMonitor(dut, dut.clk, "o", PayloadCodec(o_layout),
                            pattern(backpressure, rng), board.receive)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(driver.run())
    cocotb.start_soon(monitor.run())

    frames = expected_items = 0
    for shape in shapes:
        await FallingEdge(dut.clk)
        assert await _idle_now(dut), f"{name}: not idle before shape {shape}"
        await FallingEdge(dut.clk)
        set_shape(shape)
        shape_now[0] = shape
        group = make_group(shape)
        work = 0
        for beats, expected in group:
            for beat in beats:
                driver.append(beat)
            for item in expected:
                board.expect(item)
            expected_items += len(expected)
            work += len(beats) + len(expected)
        frames += len(group)
        for _ in range(30 * work + 100):
            await RisingEdge(dut.clk)
            if board.done:
                break
        board.check_complete()
        # The cycle right after the final item is taken the block must be idle.
        assert await _idle_now(dut), f"{name}: not idle after shape {shape}"
        assert driver.idle

    await ClockCycles(dut.clk, 20)      # a duplicate arriving now fails in receive()
    assert monitor.received == expected_items, \
        f"received {monitor.received}, expected {expected_items}"
    dut._log.info(f"{name}: {frames} frames, {expected_items} {items[1]} bit-exact in order, "
                  f"{monitor.stalled_cycles} stalled cycles; SEED={os.environ.get('SEED')} "
                  f"(test seed {seed})")
