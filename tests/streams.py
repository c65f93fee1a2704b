"""The one Amaranth-pysim stream runner of the unit tests (async testbench API).

:func:`run_streams` drives every ``lib.stream`` input of a component from lists of beats and
takes a given number of beats from every output, in *phases* (:class:`Phase`), inside one
testbench that works cycle by cycle (weights, then activations; or groups of frames with a
shape change between them). Valid gaps and back-pressure come from the named stall
patterns of :mod:`verif.stalls`, the same vocabulary as the cocotb benches: a producer with
nothing on the bus stays silent in each cycle its gap pattern stalls, and a consumer drops
``ready`` in each cycle its back-pressure pattern stalls. Every output is checked every cycle
against the stream rules (a stalled beat keeps ``valid`` and its payload), must offer no beat
the test does not expect, and must stay silent for ``quiet`` cycles after the last phase. The
caller checks the beats it receives (order, count, values) and any per-cycle ``probes``.

``run_frame_groups`` and ``run_frames_free`` run a block that streams frames from ``i`` to ``o``
and reads its shape inputs only while ``idle`` (the line buffer, the output reorder): the first
under gaps and back-pressure with every check, the second with neither, logging cycles.

``stream_put`` and ``stream_get`` move one beat each, for directed benches that need a timing
of their own.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

import numpy as np
from amaranth.sim import Simulator

from verif.stalls import pattern

__all__ = ["Phase", "Streams", "run_streams", "stream_put", "stream_get", "payload_value",
           "run_frame_groups", "run_frames_free"]


@dataclass(frozen=True)
class Phase:
    """One phase of a :func:`run_streams` run.

    Attributes
    ----------
    inputs : Mapping[str, Sequence]
        Beats (plain Python payload values) to send, per input port name.
    outputs : Mapping[str, int]
        How many beats to take, per output port name.
    setup : Callable or None
        Called with the testbench context when the phase starts, in the cycle after the
        previous phase ended (its inputs all accepted, its outputs all taken), before any beat
        of this phase is offered; it may ``ctx.set`` and ``ctx.get`` but not wait.
    """

    inputs: Mapping[str, Sequence] = field(default_factory=dict)
    outputs: Mapping[str, int] = field(default_factory=dict)
    setup: Callable[[Any], None] | None = None


@dataclass
class Streams:
    """What a :func:`run_streams` run saw. Cycle 0 is the first cycle a beat can be offered in.

    Attributes
    ----------
    received : dict[str, list]
        The beats taken from each output port, as plain Python values, in order.
    beat_cycles : dict[str, list[int]]
        Per input and output port, the cycle in which each of its beats moved.
    trace : dict[str, list[int]]
        Per probe, its value in every cycle of the run (the ``quiet`` cycles included).
    cycles : int
        Cycles up to and including the one in which the last beat moved.
    length : int
        Cycles simulated, the ``quiet`` ones included: the length of every trace.
    final : Any
        What the ``finish`` hook returned.
    """

    received: dict[str, list]
    beat_cycles: dict[str, list[int]]
    trace: dict[str, list[int]]
    cycles: int = 0
    length: int = 0
    final: Any = None

    def before(self, port: str) -> np.ndarray:
        """Per cycle of the run, how many beats of ``port`` moved in the cycles before it."""
        return np.searchsorted(self.beat_cycles[port], np.arange(self.length), side="left")


def run_streams(dut, *phases: Phase, gaps: str = "none", backpressure: str = "none",
                rng: random.Random | np.random.Generator | None = None,
                probes: Mapping[str, Any] | None = None,
                finish: Callable[[Any], Awaitable] | None = None,
                deadline: int | None = None, quiet: int = 20) -> Streams:
    """Simulate ``dut`` streaming the ``phases`` one after the other; see the module docstring.

    Parameters
    ----------
    dut
        The component; ports are found by name (``getattr(dut, name)``).
    *phases : Phase
        Stimulus and expected output counts, in order.
    gaps, backpressure : str
        Stall pattern names of :data:`verif.stalls.PATTERNS` for every input and output port.
    rng : random.Random or numpy.random.Generator, optional
        Drives the stall patterns (a NumPy generator seeds a ``random.Random``); needed unless
        both patterns are ``"none"``.
    probes : Mapping[str, Value], optional
        Signals recorded in :attr:`Streams.trace` every cycle.
    finish : async callable, optional
        Awaited with the context after the ``quiet`` cycles; its result is
        :attr:`Streams.final`.
    deadline : int, optional
        Cycles the phases may take before the run fails; by default 100 per beat plus 1000.
    quiet : int
        Cycles after the last phase in which no output may offer a beat.

    Raises
    ------
    AssertionError
        A stream rule is broken, an output offers a beat the phases do not expect, or the
        phases do not end within ``deadline`` cycles.
    """
    ins = list(dict.fromkeys(name for ph in phases for name in ph.inputs))
    outs = list(dict.fromkeys(name for ph in phases for name in ph.outputs))
    if deadline is None:
        deadline = 1000 + 100 * sum(len(b) for ph in phases for b in ph.inputs.values()) \
            + 100 * sum(n for ph in phases for n in ph.outputs.values())
    if isinstance(rng, np.random.Generator):
        rng = random.Random(int(rng.integers(1 << 62)))
    if rng is None and (gaps, backpressure) != ("none", "none"):
        raise ValueError(f"stall patterns {gaps!r}/{backpressure!r} need an rng")
    gap = {name: pattern(gaps, rng) for name in ins}
    press = {name: pattern(backpressure, rng) for name in outs}
    probes = dict(probes or {})
    run = Streams({name: [] for name in outs}, {name: [] for name in ins + outs},
                  {name: [] for name in probes})

    async def bench(ctx):
        i_port = {name: getattr(dut, name) for name in ins}
        o_port = {name: getattr(dut, name) for name in outs}
        sampled = ([i_port[n].ready for n in ins] + [o_port[n].valid for n in outs]
                   + [o_port[n].payload for n in outs] + list(probes.values()))
        queue = {name: deque() for name in ins}     # beats of the phase not yet accepted
        owed = {name: 0 for name in outs}           # beats of the phase not yet taken
        offering = dict.fromkeys(ins, False)        # a beat is on the bus, not yet accepted
        line = dict.fromkeys(ins, False)            # the valid this bench drives
        ready = dict.fromkeys(outs, False)
        held = dict.fromkeys(outs)                  # payload of a beat stalled last cycle
        pending = list(phases)
        end = None
        cycle = 0
        while end is None or cycle < end + quiet:
            while end is None and not any(queue.values()) and not any(owed.values()):
                if not pending:
                    end = cycle
                    break
                phase = pending.pop(0)
                if phase.setup is not None:
                    phase.setup(ctx)
                for name, beats in phase.inputs.items():
                    queue[name] = deque(beats)
                owed.update(phase.outputs)
            if end is None and cycle >= deadline:
                raise AssertionError(f"the phases did not end in {deadline} cycles: "
                                     f"{ {n: len(q) for n, q in queue.items()} } beats not "
                                     f"accepted, {owed} not taken")
            for name, port in i_port.items():
                if not offering[name] and queue[name] and not next(gap[name]):
                    ctx.set(port.payload, queue[name][0])
                    offering[name] = True
                if offering[name] != line[name]:
                    ctx.set(port.valid, offering[name])
                    line[name] = offering[name]
            for name, port in o_port.items():
                want = owed[name] > 0 and not next(press[name])
                if want != ready[name]:
                    ctx.set(port.ready, want)
                    ready[name] = want
            _, _, *values = await ctx.tick().sample(*sampled)
            i_ready = values[:len(ins)]
            o_valid = values[len(ins):len(ins) + len(outs)]
            o_payload = values[len(ins) + len(outs):len(ins) + 2 * len(outs)]
            for name, value in zip(probes, values[len(ins) + 2 * len(outs):]):
                run.trace[name].append(value)
            for name, took in zip(ins, i_ready):
                if offering[name] and took:
                    run.beat_cycles[name].append(cycle)
                    queue[name].popleft()
                    offering[name] = False
            for name, offered, payload in zip(outs, o_valid, o_payload):
                if held[name] is not None:
                    assert offered, f"{name}: cycle {cycle}: valid dropped before the beat " \
                                    f"was taken"
                    assert payload == held[name], (
                        f"{name}: cycle {cycle}: payload changed from "
                        f"{payload_value(held[name])} to {payload_value(payload)} while stalled")
                held[name] = None
                if offered and not owed[name]:
                    raise AssertionError(f"{name}: cycle {cycle}: a beat beyond the "
                                         f"{len(run.received[name])} expected: "
                                         f"{payload_value(payload)}")
                if offered and ready[name]:
                    run.received[name].append(payload_value(payload))
                    run.beat_cycles[name].append(cycle)
                    owed[name] -= 1
                elif offered:
                    held[name] = payload
            cycle += 1
        run.cycles = 1 + max((c for cs in run.beat_cycles.values() for c in cs[-1:]),
                             default=-1)
        run.length = cycle
        if finish is not None:
            run.final = await finish(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` until the sink takes it."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one beat from ``stream`` and return its payload as plain Python values."""
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


def run_frame_groups(dut, groups: list[list[dict]], set_shape, rng, gaps: str,
                     backpressure: str, *, slack: int, mismatch) -> None:
    """Stream every group through one simulation, checking order, values, count and idle.

    Each group is a list of back-to-back frames of one ``shape``, each frame a dict with its
    input ``beats`` and ``expected`` output beats; a group is one :class:`Phase`, whose setup
    ``set_shape(ctx, dut, shape)`` applies once the previous group has drained. ``idle`` must be
    high then, after reset, and after the last frame, and in every cycle exactly when each frame
    that has had a beat accepted has also had all its output taken. The run may take ``slack``
    cycles per beat in and out, and ``mismatch(frame, j, got, expected)`` describes a wrong
    output beat ``j``.
    """
    def phase(g: int, group: list[dict]) -> Phase:
        def setup(ctx):
            assert ctx.get(dut.idle) == 1, f"not idle before group {g}" if g else \
                "not idle after reset"
            set_shape(ctx, dut, group[0]["shape"])
        return Phase({"i": [b for f in group for b in f["beats"]]},
                     {"o": sum(len(f["expected"]) for f in group)}, setup)

    frames = [f for g in groups for f in g]
    limit = slack * sum(len(f["beats"]) + len(f["expected"]) for f in frames) + 200
    run = run_streams(dut, *(phase(g, group) for g, group in enumerate(groups)), gaps=gaps,
                      backpressure=backpressure, rng=rng, probes={"idle": dut.idle},
                      deadline=limit)

    beats_before = np.cumsum([0] + [len(f["beats"]) for f in frames])
    owed_after = np.cumsum([0] + [len(f["expected"]) for f in frames])
    accepted, taken = run.before("i"), run.before("o")
    started = np.searchsorted(beats_before[:-1], accepted, side="left")
    idle = np.array(run.trace["idle"], bool)
    wrong = np.flatnonzero(idle != (taken >= owed_after[started]))
    assert not wrong.size, (f"cycle {wrong[0]}: idle={int(idle[wrong[0]])} with "
                            f"{accepted[wrong[0]]} beats accepted and {taken[wrong[0]]} "
                            f"output beats taken")
    assert idle[-1], "not idle after the last frame"

    received = run.received["o"]
    pos = 0
    for g, group in enumerate(groups):
        for k, frame in enumerate(group):
            want = frame["expected"]
            for j, (w, r) in enumerate(zip(want, received[pos:pos + len(want)])):
                assert r == w, f"group {g} frame {k} {mismatch(frame, j, r, w)}"
            pos += len(want)
    assert len(received) == pos


def run_frames_free(dut, frames: list[dict], set_shape):
    """No gaps, no back-pressure: the cycles of accepted beats and of emitted outputs.

    ``frames`` (as for :func:`run_frame_groups`) share one shape, applied with
    ``set_shape(ctx, dut, shape)``; ``idle`` must be high after reset and in the cycle after
    the final output. Returns the cycles of the accepted input beats and ``(cycle, payload)``
    per output beat, the first beat offered in cycle 0.
    """
    beats = [b for f in frames for b in f["beats"]]
    total = sum(len(f["expected"]) for f in frames)

    def setup(ctx):
        assert ctx.get(dut.idle) == 1, "not idle after reset"
        set_shape(ctx, dut, frames[0]["shape"])

    run = run_streams(dut, Phase({"i": beats}, {"o": total}, setup), probes={"idle": dut.idle},
                      deadline=10 * (total + len(beats)))
    emitted = run.beat_cycles["o"]
    assert run.trace["idle"][emitted[-1] + 1] == 1, "not idle after the final output"
    return run.beat_cycles["i"], list(zip(emitted, run.received["o"]))
