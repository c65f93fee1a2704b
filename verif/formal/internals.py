"""A block's named internal registers, for harnesses that check a pipeline stage by stage.

A stage-by-stage proof compares each pipeline register with its reference instead of only
the block's output: each comparison is then a small circuit, where the whole tile's is
beyond the solver (the F(4,3) transform units). The harness elaborates the block itself,
adds the resulting fragment as its submodule, and reads the registers by the names the block
gives them; a name that is missing or not unique raises, so a renamed register fails the
harness loudly instead of checking nothing.
"""

from __future__ import annotations

from amaranth.hdl import Fragment, Module, Signal

__all__ = ["elaborate_with_internals"]


def elaborate_with_internals(m: Module, dut, names) -> dict[str, Signal]:
    """Add ``dut`` to ``m`` as submodule ``dut``; return its signals called ``names``.

    Only the block's own module is searched (not its submodules), and only signals it
    drives.
    """
    fragment = Fragment.get(dut, None)
    found: dict[str, dict[int, Signal]] = {}
    for statements in fragment.statements.values():
        for statement in statements:
            for signal in statement._lhs_signals():
                if signal.name in names:
                    found.setdefault(signal.name, {})[id(signal)] = signal
    missing = [name for name in names if len(found.get(name, {})) != 1]
    if missing:
        raise LookupError(f"{type(dut).__name__} has no unique signal named "
                          f"{', '.join(missing)}; the stage-by-stage harness needs them")
    m.submodules.dut = fragment
    return {name: next(iter(found[name].values())) for name in names}
