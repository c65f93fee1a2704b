"""Amaranth-pysim helpers for ``lib.stream`` interfaces (async testbench API).

``stream_put`` and ``stream_get`` move one beat with the transfer rules of ``lib.stream``;
the optional ``rng``/``idle`` arguments insert random idle cycles before a beat (valid gaps
on the producer side, back-pressure on the consumer side), so every unit test exercises
stalls without its own ad-hoc loop.
"""

from __future__ import annotations

import random

__all__ = ["stream_put", "stream_get", "payload_value"]


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
