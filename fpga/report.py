"""Reading tool outputs: Yosys ``stat -json``, nextpnr's report and log; per-block tables.

Nothing here runs a tool, so everything can be tested on small captured outputs
(``tests/data/``). The per-block rows themselves come from :mod:`fpga.blocks`;
:func:`group_rows` folds siblings that differ only in their numbers (``pe0`` … ``pe15`` →
``pe*``), so a table stays short whatever the configuration, and submodules that a later RTL
split adds show up without any change here.
"""

from __future__ import annotations

import json
import re

__all__ = ["ECP5_COLUMNS", "XC7_GROUPS", "MAIN_BELS", "group_rows", "markdown_blocks",
           "markdown_signals", "ecp5_counts", "xc7_counts", "nextpnr_report", "nextpnr_log",
           "used_only", "load_json"]

#: Table columns of the ECP5 per-block report: key -> primitive cell type.
ECP5_COLUMNS = {
    "lut": "LUT4",
    "ff": "TRELLIS_FF",
    "bram": "DP16KD",
    "lutram": "TRELLIS_DPR16X4",
    "dsp": "MULT18X18D",
    "carry": "CCU2C",
}

#: Xilinx 7-series resource groups counted in the report: key -> primitive cell types.
XC7_GROUPS = {
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
    "ff": ("FDRE", "FDSE", "FDCE", "FDPE"),
    "dsp": ("DSP48E1",),
    "ramb18": ("RAMB18E1",),
    "ramb36": ("RAMB36E1",),
    "lutram": ("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S",
               "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM32M16", "RAM64M8"),
    "carry": ("CARRY4",),
    "srl": ("SRL16E", "SRLC32E"),
}


def _name(module: str) -> str:
    """A Yosys name without its RTLIL escape (``\\accelerator.csr`` -> ``accelerator.csr``)."""
    return module[1:] if module.startswith("\\") else module


def _columns(cells: dict[str, int]) -> dict[str, int]:
    return {key: int(cells.get(prim, 0)) for key, prim in ECP5_COLUMNS.items()}


def group_rows(rows: list[dict]) -> list[dict]:
    """Fold numbered sibling blocks (``array.pe0`` … ``array.pe15``) into one row each.

    A folded row has ``block`` with ``*`` for the numbers, ``instances`` summed, and ``self``
    and ``total`` summed over the members; ``members`` lists the original block names.
    Children of folded blocks are folded the same way (``array.pe*.pairs``). Rows keep the
    order of their first member. Rows whose pattern matches only one block stay unchanged.
    """
    def key(block: str) -> str:
        parts = block.split(".")
        return ".".join(re.sub(r"\d+", "*", p) for p in parts)

    order, groups = [], {}
    for row in rows:
        k = key(row["block"]) if row["depth"] else row["block"]
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(row)
    out = []
    for k in order:
        members = groups[k]
        if len(members) == 1:
            out.append({**members[0], "members": [members[0]["block"]]})
            continue
        first = members[0]
        summed = {part: {col: sum(r[part][col] for r in members) for col in first[part]}
                  for part in ("self", "total")}
        out.append({"block": k, "module": first["module"], "depth": first["depth"],
                    "instances": sum(r["instances"] for r in members), **summed,
                    "members": [r["block"] for r in members]})
    return out


def markdown_blocks(rows: list[dict], part: str = "total", limit_depth: int | None = None) -> str:
    """A markdown table of (grouped) block rows: one column per :data:`ECP5_COLUMNS` entry.

    ``part`` is ``"total"`` (each block with everything below it) or ``"self"``; the share
    column is the block's part of the top row's LUT4 total.
    """
    top_lut = rows[0]["total"]["lut"] if rows else 0
    head = ("| block | inst | LUT4 | share | FF | DP16KD | DPR16X4 | MULT18X18D | CCU2C |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for row in rows:
        if limit_depth is not None and row["depth"] > limit_depth:
            continue
        c = row[part]
        share = f"{100 * c['lut'] / top_lut:.1f} %" if top_lut else "-"
        indent = "&nbsp;&nbsp;" * row["depth"]
        lines.append(f"| {indent}{row['block']} | {row['instances']} | {c['lut']:,} | {share} | "
                     f"{c['ff']:,} | {c['bram']:,} | {c['lutram']:,} | {c['dsp']:,} | "
                     f"{c['carry']:,} |")
    return "\n".join(lines) + "\n"


def markdown_signals(signals: list[dict]) -> str:
    """The biggest blocks' own LUT4s by the signal each was named after (``block_signals``)."""
    lines = ["| block (own LUT4) | LUT4 by signal (named after the wire they drive or read) |",
             "|---|---|"]
    for entry in signals:
        top = ", ".join(f"`{name}` {count:,}" for name, count in entry["signals"])
        lines.append(f"| {entry['block']} ×{entry['instances']} ({entry['lut']:,}) | {top} |")
    return "\n".join(lines) + "\n"


def _design_cells(stat: dict) -> dict[str, int]:
    design = stat.get("design")
    if not isinstance(design, dict):
        raise ValueError("not a Yosys `stat -json` document: no 'design' object")
    return {_name(t): int(n) for t, n in design.get("num_cells_by_type", {}).items()}


def ecp5_counts(stat: dict) -> dict[str, int]:
    """ECP5 resources of a whole (flattened) design: :data:`ECP5_COLUMNS` keys plus ``cells``."""
    cells = _design_cells(stat)
    return {**_columns(cells), "alu54": cells.get("ALU54B", 0), "cells": sum(cells.values())}


def xc7_counts(stat: dict) -> dict[str, int]:
    """Xilinx 7-series resources of a ``synth_xilinx`` design, :data:`XC7_GROUPS` keys.

    ``bram36_equiv`` counts a RAMB18E1 as half a RAMB36E1.
    """
    cells = _design_cells(stat)
    out = {key: sum(cells.get(t, 0) for t in types) for key, types in XC7_GROUPS.items()}
    out["bram36_equiv"] = out["ramb36"] + out["ramb18"] / 2
    out["cells"] = sum(cells.values())
    return out


#: Bels kept in a trimmed utilisation table even when unused.
MAIN_BELS = ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_RAMW", "TRELLIS_IO")


def used_only(util: dict) -> dict:
    """``util`` without the bels that are unused and not in :data:`MAIN_BELS`."""
    return {bel: u for bel, u in util.items() if u["used"] or bel in MAIN_BELS}


def nextpnr_report(report: dict, trim: bool = False) -> dict:
    """Fmax and utilisation from nextpnr's ``--report`` JSON.

    ``trim`` drops the unused bels other than :data:`MAIN_BELS` from ``utilisation``.

    Returns
    -------
    dict
        ``fmax_mhz`` (the lowest achieved clock over all clocks, or None), ``clocks``
        (``name -> {"achieved", "constraint"}``) and ``utilisation`` (``bel -> {"used",
        "available", "percent"}``).
    """
    if not isinstance(report, dict) or "utilization" not in report:
        raise ValueError("not a nextpnr --report document: no 'utilization' object")
    clocks = {}
    for name, info in (report.get("fmax") or {}).items():
        clocks[name] = {"achieved": float(info["achieved"]),
                        "constraint": float(info["constraint"])}
    util = {}
    for bel, info in report["utilization"].items():
        used, avail = int(info["used"]), int(info["available"])
        util[bel] = {"used": used, "available": avail,
                     "percent": round(100 * used / avail, 1) if avail else None}
    if trim:
        util = used_only(util)
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    return {"fmax_mhz": None if fmax is None else round(fmax, 2), "clocks": clocks,
            "utilisation": util}


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")
_ERROR_LINE = re.compile(r"^ERROR: (.*)$")


def nextpnr_log(text: str) -> dict:
    """Utilisation, overflow and errors from a nextpnr-ecp5 log (also when it failed).

    Returns
    -------
    dict
        ``utilisation`` (``bel -> {"used", "available", "percent"}``, from the last "Device
        utilisation" block), ``overflow`` (the bels used beyond what the device has), ``errors``
        (the ``ERROR:`` lines), and ``fits`` (False when something overflowed, else None: the
        log alone cannot tell that placement and routing succeeded).
    """
    util, errors = {}, []
    block: dict = {}
    in_block = False
    for line in text.splitlines():
        if "Device utilisation:" in line:
            in_block, block = True, {}
            continue
        match = _UTIL_LINE.match(line)
        if in_block and match:
            bel, used, avail = match.group(1), int(match.group(2)), int(match.group(3))
            block[bel] = {"used": used, "available": avail,
                          "percent": round(100 * used / avail, 1) if avail else None}
            util = block
            continue
        if in_block and line.strip() and not match:
            in_block = False
        err = _ERROR_LINE.match(line)
        if err:
            errors.append(err.group(1).strip())
    overflow = {bel: u for bel, u in util.items() if u["used"] > u["available"]}
    return {"utilisation": util, "overflow": overflow, "errors": errors,
            "fits": False if overflow else None}


def load_json(path) -> dict:
    """JSON from ``path`` with a message naming the file when it is not JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
