"""Per-block area of the flattened, mapped netlist: every primitive back to its Amaranth module.

Why not ``synth_ecp5 -noflatten``: kept as separate modules, the blocks cannot be optimised
together. Constants and unused outputs do not cross module ports, and LUT mapping stops at
every port, so the hierarchical design comes out far larger than the flattened one (measured
on the default accelerator: 163,733 LUT4 with ``-noflatten`` against 87k flattened, the pair
compactors alone larger than the whole flattened design). A table of that design says little
about the one that is placed and routed.

Instead this module reads the JSON netlist that nextpnr gets (flattened ``synth_ecp5``) and
attributes each primitive to a block by its name:

* flattening leaves one ``$scopeinfo`` cell per former instance, named by its instance path
  (``core``, ``core.array``, ``core.array.pe0``...): these are the blocks;
* the final ``autoname`` pass of ``synth_ecp5`` names every remaining cell after a wire it
  connects, and flattened wires carry their instance path (``core.array.pe0.acc_l0_b0.0.0``,
  ``core.array.pe3.a_last_LUT4_C_Z``), so the longest block path that prefixes a cell's name is
  its block; names with no block prefix belong to the top module (the pin shell).

The totals are exactly those of the flattened synthesis. A cell on a block boundary (a LUT
merging logic of a parent and a child) is counted where its name points, which is where the
wire it was named after lives.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["verilog_modules", "module_of_line", "scope_paths", "block_of", "attribute_cells",
           "signal_stem", "lut_signals", "rows_from_paths"]

_MODULE = re.compile(r"^module\s+(\\\S+|\w+)\s*\(")


def verilog_modules(text: str) -> list[tuple[int, int, str]]:
    """``(first line, last line, module name)`` of every module in Verilog ``text`` (1-based).

    Escaped names lose their backslash (``\\top.core.csr`` -> ``top.core.csr``).
    """
    out, start, name = [], None, None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MODULE.match(line)
        if match:
            start, name = number, match.group(1).lstrip("\\")
        elif line.startswith("endmodule") and name is not None:
            out.append((start, number, name))
            start, name = None, None
    return out


def module_of_line(modules: list[tuple[int, int, str]], line: int) -> str | None:
    """The module whose lines hold ``line`` (``modules`` sorted by first line)."""
    lo, hi = 0, len(modules) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        first, last, name = modules[mid]
        if line < first:
            hi = mid - 1
        elif line > last:
            lo = mid + 1
        else:
            return name
    return None


def _unescape(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def scope_paths(module: dict) -> set[str]:
    """Instance paths of the flattened submodules (the ``$scopeinfo`` cells' names)."""
    return {_unescape(name) for name, cell in module.get("cells", {}).items()
            if cell.get("type") == "$scopeinfo"}


def _natural(text: str):
    """Sort key putting ``pe2`` before ``pe10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def block_of(cell: str, paths: set[str]) -> str:
    """The longest path in ``paths`` that prefixes ``cell`` at a dot, or ``""`` (the top)."""
    name = _unescape(cell)
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in paths:
            return prefix
    return ""


def attribute_cells(netlist: dict, top: str, source: str | None = None,
                    modules: list[tuple[int, int, str]] | None = None) -> dict[str, Counter]:
    """Primitive counts per block of module ``top`` of a Yosys JSON netlist.

    A cell whose ``src`` attribute points into ``source`` (the Verilog file name) is placed in
    the module holding that line (``modules``, from :func:`verilog_modules`; module
    ``<top>.<path>`` is block ``<path>``): flip-flops, carry chains, multipliers keep the
    ``src`` of the Amaranth statement they come from. Other cells (LUTs from ABC, memories
    from the memory mapper) are placed by their name (:func:`block_of`).

    Returns
    -------
    dict
        ``"" `` (the top module itself) and every instance path -> Counter of cell types;
        ``$scopeinfo`` cells are not counted. Paths without cells of their own are present
        with an empty Counter.

    Raises
    ------
    ValueError
        ``top`` is not a module of ``netlist``.
    """
    modules_json = netlist.get("modules", {})
    if top not in modules_json:
        raise ValueError(f"module {top!r} is not in the netlist (modules: "
                         f"{', '.join(sorted(modules_json)[:5])})")
    module = modules_json[top]
    paths = scope_paths(module)
    counts: dict[str, Counter] = {"": Counter(), **{p: Counter() for p in paths}}
    where = re.compile(re.escape(source) + r":(\d+)") if source and modules else None
    for name, cell in module.get("cells", {}).items():
        kind = cell.get("type", "?")
        if kind == "$scopeinfo":
            continue
        block = None
        if where:
            found = where.search(cell.get("attributes", {}).get("src", ""))
            owner = module_of_line(modules, int(found.group(1))) if found else None
            if owner == top:
                block = ""
            elif owner and owner.startswith(top + ".") and owner[len(top) + 1:] in paths:
                block = owner[len(top) + 1:]
        counts[block_of(name, paths) if block is None else block][kind] += 1
    return counts


_PRIMITIVE_SUFFIX = re.compile(r"_(?:LUT4|TRELLIS_\w+|CCU2C|PFUMX|L6MUX21|MULT18X18D|DP16KD)_.*$")


def signal_stem(cell: str, block: str) -> str:
    """The wire a cell was named after, relative to its block, numbers folded to ``#``.

    ``core.array.pe3.acc_l1_b0.0.2_DI_LUT4_Z`` in block ``core.array.pe3`` ->
    ``acc_l#_b#.#.#_DI``.
    """
    name = _unescape(cell)
    rest = name[len(block) + 1:] if block and name.startswith(block + ".") else name
    rest = _PRIMITIVE_SUFFIX.sub("", rest)
    rest = re.sub(r"_\d+$", "", rest)
    rest = re.sub(r"\$\d+", "$", rest)
    return re.sub(r"\d+", "#", rest)


def lut_signals(netlist: dict, top: str) -> dict[str, Counter]:
    """LUT4s of each block by :func:`signal_stem`: which signals a block's LUTs compute."""
    module = netlist["modules"][top]
    paths = scope_paths(module)
    out: dict[str, Counter] = {}
    for name, cell in module.get("cells", {}).items():
        if cell.get("type") == "LUT4":
            block = block_of(name, paths)
            out.setdefault(block, Counter())[signal_stem(name, block)] += 1
    return out


def rows_from_paths(cells: dict[str, dict[str, int]], columns: dict[str, str],
                    top_label: str = "top", rename: tuple[str, str] | None = None
                    ) -> list[dict]:
    """Per-block rows (as :func:`fpga.report.block_rows`) from each block's own cells.

    Parameters
    ----------
    cells : dict
        Block path -> primitive type -> count of the block's own cells; ``""`` is the top.
    columns : dict
        Table column -> primitive type (:data:`fpga.report.ECP5_COLUMNS`).
    top_label : str
        ``block`` of the top row.
    rename : (str, str), optional
        ``(old, new)``: the path ``old`` and the paths below it are shown as ``new...``
        (``("core", "accelerator")`` for the pin shell's core).

    Returns
    -------
    list of dict
        Depth-first rows ``{"block", "module", "depth", "instances", "self", "total"}``:
        ``self`` counts the block's own cells, ``total`` also those of every block below it.
        Intermediate paths without cells of their own appear with an empty ``self``.
    """
    paths = {p for p in cells if p}
    for path in list(paths):
        parts = path.split(".")
        paths.update(".".join(parts[:i]) for i in range(1, len(parts)))

    def cols(counter) -> dict:
        return {**{k: int(counter.get(t, 0)) for k, t in columns.items()},
                "cells": int(sum(counter.values()))}

    def label(path: str) -> str:
        if not path:
            return top_label
        if rename and (path == rename[0] or path.startswith(rename[0] + ".")):
            return rename[1] + path[len(rename[0]):]
        return path

    children: dict[str, list[str]] = {"": [], **{p: [] for p in paths}}
    for path in paths:
        children[path.rsplit(".", 1)[0] if "." in path else ""].append(path)

    rows = []

    def visit(path: str, depth: int) -> Counter:
        own = Counter(cells.get(path, {}))
        row = {"block": label(path), "module": path or top_label, "depth": depth,
               "instances": 1, "self": cols(own)}
        rows.append(row)
        total = Counter(own)
        for child in sorted(children[path], key=_natural):
            total.update(visit(child, depth + 1))
        row["total"] = cols(total)
        return total

    visit("", 0)
    return rows
