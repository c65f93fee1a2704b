"""``PinShell``: a component behind a few pins, for place and route with an honest Fmax.

The accelerator's ports (and far more those of a single block such as the sparse array, whose
performance counters alone are thousands of bits) are wider than any package. Leaving them
unconnected would let Yosys remove the logic that drives nothing; constraining them to pins
is impossible. The shell instead drives every input of the core from a flip-flop and captures
every output of the core in a flip-flop:

* the input flip-flops form ``pins`` shift chains, filled one bit per chain per cycle from the
  ``sdi`` pins while ``load`` (registered) is low, and holding while it is high;
* the output flip-flops form ``pins`` chains too; while ``load`` is high they capture the
  core's outputs, otherwise they shift towards the ``sdo`` pins;
* reset comes from the ``rst`` pin through two flip-flops, so the core's reset net is driven by
  a register like any other.

Every core input can therefore take any value and every core output is observable: nothing can
be optimised away, and each path through the core starts and ends at a register, which is what
nextpnr's Fmax measures. The shell adds one flip-flop per port bit (with a clock enable on
the input side) and one 2:1 multiplexer (one LUT4) per output bit; :func:`shell_bits` tells
how many. ``load`` is registered once, so it acts one cycle after the pin changes.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Const, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PinShell", "core_ports", "shell_bits"]


def core_ports(core: wiring.Component) -> tuple[list[Value], list[Value]]:
    """The core's port values as ``(inputs, outputs)``, in signature order.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        Any component; its clock and reset are the implicit ``sync`` domain.

    Returns
    -------
    tuple of list of Value
        Flattened members with flow ``In`` and with flow ``Out``, each as a plain value. An
        input that is a constant (the ``ready`` of an always-ready output stream) is no port
        and is left out.
    """
    inputs, outputs = [], []
    for _path, member, value in core.signature.flatten(core):
        value = Value.cast(value)
        if member.flow == In and isinstance(value, Const):
            continue
        (inputs if member.flow == In else outputs).append(value)
    return inputs, outputs


def shell_bits(core: wiring.Component) -> tuple[int, int]:
    """Input and output port bits of ``core``: the flip-flops :class:`PinShell` adds."""
    inputs, outputs = core_ports(core)
    return sum(len(v) for v in inputs), sum(len(v) for v in outputs)


def _chains(total: int, pins: int) -> list[tuple[int, int]]:
    """``(start, length)`` of ``pins`` nearly equal chains covering ``total`` bits."""
    base, extra = divmod(total, pins)
    spans, start = [], 0
    for j in range(pins):
        length = base + (1 if j < extra else 0)
        spans.append((start, length))
        start += length
    return spans


class PinShell(wiring.Component):
    """``core`` with every port bit behind shift-register flip-flops and ``pins`` data pins.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        The component to implement; it becomes submodule ``core``.
    pins : int
        Serial data pins in each direction (1..64).

    Members
    -------
    clk : In(1)
        The clock of the core and the shell.
    rst : In(1)
        Synchronous active-high reset, registered twice before it reaches the core.
    sdi : In(pins)
        One bit per input chain per cycle.
    load : In(1)
        Registered; while high the input chains hold and the output chains capture the
        core's outputs, while low both shift.
    sdo : Out(pins)
        The last flip-flop of each output chain.

    Raises
    ------
    ValueError
        ``pins`` is out of range.
    """

    def __init__(self, core: wiring.Component, pins: int = 4):
        if isinstance(pins, bool) or not isinstance(pins, int) or not 1 <= pins <= 64:
            raise ValueError(f"pins must be an integer in [1, 64], not {pins!r}")
        self._core = core
        self._pins = pins
        super().__init__({"clk": In(1), "rst": In(1), "sdi": In(pins), "load": In(1),
                          "sdo": Out(pins)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        inputs, outputs = core_ports(core)

        # The core's `sync` domain is defined here, so only this shell's members become ports.
        m.domains.sync = ClockDomain("sync")
        m.domains.pin = ClockDomain("pin", reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(self.clk), ClockSignal("pin").eq(self.clk)]
        rst_meta = Signal(init=1)
        rst_sync = Signal(init=1)
        m.d.pin += [rst_meta.eq(self.rst), rst_sync.eq(rst_meta)]
        m.d.comb += ResetSignal("sync").eq(rst_sync)

        load = Signal()
        m.d.pin += load.eq(self.load)

        in_bits = sum(len(v) for v in inputs)
        if in_bits:
            chain_in = Signal(in_bits)
            for j, (start, length) in enumerate(_chains(in_bits, self._pins)):
                if length == 0:
                    continue
                seg = chain_in[start:start + length]
                with m.If(~load):
                    m.d.pin += seg.eq(self.sdi[j] if length == 1 else
                                      (seg << 1)[:length] | self.sdi[j])
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain_in[offset:offset + len(value)])
                offset += len(value)

        out_bits = sum(len(v) for v in outputs)
        if out_bits:
            chain_out = Signal(out_bits)
            captured = Signal(out_bits)
            offset = 0
            for value in outputs:
                m.d.comb += captured[offset:offset + len(value)].eq(value)
                offset += len(value)
            for j, (start, length) in enumerate(_chains(out_bits, self._pins)):
                if length == 0:
                    continue
                seg = chain_out[start:start + length]
                with m.If(load):
                    m.d.pin += seg.eq(captured[start:start + length])
                with m.Else():
                    m.d.pin += seg.eq(seg >> 1)
                m.d.comb += self.sdo[j].eq(seg[0])
        return m
