"""Amaranth-pysim helpers for ``lib.stream`` interfaces (async testbench API).

``stream_put`` and ``stream_get`` move one beat with the transfer rules of ``lib.stream``;
the optional ``rng``/``idle`` arguments insert random idle cycles before a beat (valid gaps
on the producer side, back-pressure on the consumer side), so every unit test exercises
stalls without its own ad-hoc loop.

``run_frame_groups`` and ``run_frames_free`` drive a block that streams frames from ``i`` to ``o``
and reads its shape inputs only while ``idle`` (the line buffer, the output reorder): the first
under gaps and back-pressure with every check, the second with neither, logging cycles.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

__all__ = ["stream_put", "stream_get", "payload_value", "frame_monitor", "run_frame_groups",
           "run_frames_free"]


async def _idle(ctx, rng: random.Random | None, idle: float):
    while rng is not None and rng.random() < idle:
        await ctx.tick()


async def stream_put(ctx, stream, payload, *, rng: random.Random | None = None,
                     idle: float = 0.0):
    """Offer ``payload`` on ``stream`` until the sink takes it.

    With ``rng``, first waits a geometric number of cycles (each with probability ``idle``).
    """
    await _idle(ctx, rng, idle)
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, rng: random.Random | None = None, idle: float = 0.0):
    """Take one beat from ``stream`` and return its payload as plain Python values.

    With ``rng``, first holds ``ready`` low for a geometric number of cycles (back-pressure).
    """
    await _idle(ctx, rng, idle)
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload_value(payload)


def payload_value(value):
    """A ``data.Const`` of a struct/array layout as nested dicts/lists of ints."""
    if hasattr(value, "shape") and hasattr(value.shape(), "__iter__"):
        layout = value.shape()
        if hasattr(layout, "elem_shape"):
            return [payload_value(value[k]) for k in range(layout.length)]
        return {name: payload_value(value[name]) for name, _ in layout}
    return int(value)


def frame_monitor(dut, frames: list[dict], limit: int):
    """Background checks, every cycle, of a component streaming ``frames`` from ``i`` to ``o``.

    Each frame is a dict with its input ``beats`` and ``expected`` output beats. ``o`` keeps
    valid and payload while a beat is stalled; ``idle`` is high exactly when every frame that has
    had a beat accepted has also had all its output taken; and the run ends within ``limit``
    cycles (the testbench ends the simulation first).
    """
    beats_before = np.cumsum([0] + [len(f["beats"]) for f in frames])
    owed_after = np.cumsum([0] + [len(f["expected"]) for f in frames])

    async def checker(ctx):
        held = None
        accepted = taken = 0
        for cycle in range(limit):
            _, _, i_valid, i_ready, valid, ready, payload, idle = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload, dut.idle)
            payload = payload_value(payload)
            if held is not None:
                assert valid, f"cycle {cycle}: o.valid dropped before the beat was taken"
                assert payload == held, (f"cycle {cycle}: o.payload changed from {held} to "
                                         f"{payload} while stalled")
            held = payload if valid and not ready else None
            started = int(np.searchsorted(beats_before[:-1], accepted, side="left"))
            owed = owed_after[started]      # output beats of the frames with a beat accepted
            assert idle == (taken >= owed), (f"cycle {cycle}: idle={idle} with {accepted} "
                                             f"beats accepted and {taken} output beats taken")
            accepted += i_valid and i_ready
            taken += valid and ready
        raise AssertionError(f"the run did not finish in {limit} cycles")
    return checker


def run_frame_groups(dut, groups: list[list[dict]], set_shape, rng, in_idle: float,
                     out_idle: float, *, slack: int, item: str, mismatch) -> None:
    """Stream every group through one simulation, checking order, values, count and idle.

    Each group is a list of back-to-back frames of one ``shape`` (dicts as for
    :func:`frame_monitor`); ``set_shape(ctx, dut, shape)`` applies it once the previous group has
    drained, and ``idle`` must be high then, after reset, and after the last frame. Nothing more
    may leave ``o`` in the 20 cycles after it (``item`` names the beat in that failure, e.g.
    ``"a patch"``), :func:`frame_monitor` checks every cycle within ``slack`` cycles per beat in
    and out, and ``mismatch(frame, j, got, expected)`` describes a wrong output beat ``j``.
    """
    frames = [f for g in groups for f in g]
    total = sum(len(f["expected"]) for f in frames)
    received = []

    async def producer(ctx):
        assert ctx.get(dut.idle) == 1, "not idle after reset"
        done = 0
        for g, group in enumerate(groups):
            # The shape changes only while idle, after the previous group has drained.
            while len(received) < done:
                await ctx.tick()
            assert ctx.get(dut.idle) == 1, f"not idle before group {g}"
            set_shape(ctx, dut, group[0]["shape"])
            for frame in group:
                for beat in frame["beats"]:
                    await stream_put(ctx, dut.i, beat, rng=rng, idle=in_idle)
            done += sum(len(f["expected"]) for f in group)

    async def consumer(ctx):
        while len(received) < total:
            received.append(await stream_get(ctx, dut.o, rng=rng, idle=out_idle))
        for _ in range(20):       # nothing more may come out
            await ctx.tick()
            assert ctx.get(dut.o.valid) == 0, f"{item} beyond the last frame"
        assert ctx.get(dut.idle) == 1, "not idle after the last frame"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    limit = slack * sum(len(f["beats"]) + len(f["expected"]) for f in frames) + 200
    sim.add_testbench(frame_monitor(dut, frames, limit), background=True)
    sim.run()

    pos = 0
    for g, group in enumerate(groups):
        for k, frame in enumerate(group):
            want = frame["expected"]
            got = received[pos:pos + len(want)]
            for j, (w, r) in enumerate(zip(want, got)):
                assert r == w, f"group {g} frame {k} {mismatch(frame, j, r, w)}"
            pos += len(want)
    assert len(received) == pos == total


def run_frames_free(dut, frames: list[dict], set_shape, *, name: str, item: str):
    """No gaps, no back-pressure: per-cycle log of accepted beats and emitted outputs.

    ``frames`` share one shape, applied with ``set_shape(ctx, dut, shape)``; ``idle`` must be
    high after reset and right after the final output (``item`` names it, ``name`` the block in
    the failure when the outputs stop). Returns the cycles of the accepted input beats and
    ``(cycle, payload)`` per output beat, the first beat offered in cycle 0.
    """
    beats = [b for f in frames for b in f["beats"]]
    total = sum(len(f["expected"]) for f in frames)
    accepted, emitted = [], []

    async def bench(ctx):
        assert ctx.get(dut.idle) == 1, "not idle after reset"
        set_shape(ctx, dut, frames[0]["shape"])
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(emitted) < total:
            if len(accepted) < len(beats):
                ctx.set(dut.i.payload, beats[len(accepted)])
                ctx.set(dut.i.valid, 1)
            else:
                ctx.set(dut.i.valid, 0)
            take = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                emitted.append((cycle, payload_value(ctx.get(dut.o.payload))))
            if take:
                accepted.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 10 * (total + len(beats)), f"the {name} stopped"
        assert ctx.get(dut.idle) == 1, f"not idle after the final {item}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return accepted, emitted
