"""Amaranth-pysim helpers for ``lib.stream`` interfaces (async testbench API).

``stream_put`` and ``stream_get`` move one beat with the transfer rules of ``lib.stream``;
the optional ``rng``/``idle`` arguments insert random idle cycles before a beat (valid gaps
on the producer side, back-pressure on the consumer side), so every unit test exercises
stalls without its own ad-hoc loop.
"""

from __future__ import annotations

import random

import numpy as np

__all__ = ["stream_put", "stream_get", "payload_value", "frame_monitor"]


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
