# amaranth: UnusedElaboratable=no
"""FPGA flow: a quick synthesis smoke, the pin shell, the report parsers and the CLIs' errors.

The full flow (nextpnr, ecppack, the whole accelerator) does not run here: ``make fpga`` does.
The parsers are tested on real tool outputs captured from one run of the flow and kept,
gzipped, in ``tests/data/`` (see ``tests/data/README.md``).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from fpga import blocks
from fpga import report as rpt
from fpga import sweep
from fpga.flow import run_yosys, yosys_script
from fpga.shell import PinShell, shell_bits
from fpga.synth import SynthError, main, synthesize, synthesize_verilog
from sw.config import AccelConfig

DATA = Path(__file__).parent / "data"


def _data(name: str) -> str:
    with gzip.open(DATA / name, "rt") as f:
        return f.read()


class _Adder(wiring.Component):
    """A tiny core: a registered 4-bit + 3-bit adder with a valid bit."""

    def __init__(self):
        super().__init__({"a": In(4), "b": In(3), "valid": In(1), "s": Out(5),
                          "s_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.s.eq(self.a + self.b), self.s_valid.eq(self.valid)]
        return m


# -- quick synthesis of one small block (the whole flow runs in make fpga) ----------------------

@pytest.mark.synth
@pytest.mark.slow
def test_input_transform_synthesises_for_ecp5(tmp_path):
    report = synthesize("input_transform", AccelConfig(tile=2), tmp_path)
    assert json.loads((tmp_path / "input_transform" / "report.json").read_text()) == report
    # nothing optimised away: the adders map to carry cells (its datapath registers have no
    # reset, so few LUT4s remain besides them)
    assert report["carry"] > 50 and report["ff"] > 50, report
    assert report["dsp"] == 0  # shifts and adds only


@pytest.mark.synth
def test_broken_rtl_fails_check_assert(tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input a, input b, output y);\n"
                      "  assign y = a;\n  assign y = b;\nendmodule\n")
    with pytest.raises(SynthError, match="broken: yosys"):
        synthesize_verilog(source, "broken", tmp_path)


# -- pin shell --------------------------------------------------------------------------------

@pytest.mark.synth
def test_shell_verilog_passes_check_assert_and_keeps_the_core(tmp_path):
    text = verilog.convert(PinShell(_Adder(), pins=2), name="top", emit_src=False)
    header = text[text.index("module top("):].split(";")[0]
    assert sorted(p.strip() for p in header[len("module top("):-1].split(",")) == \
        ["clk", "load", "rst", "sdi", "sdo"]
    (tmp_path / "top.v").write_text(text)
    run_yosys(yosys_script("top.v", "top", "synth_ecp5 -top top"), tmp_path, "shell")
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    # 8 input and 6 output flip-flops, the adder's 6 and the reset synchroniser's 2
    assert cells["TRELLIS_FF"] >= 8 + 6 + 6 + 2
    assert cells.get("CCU2C", 0) + cells.get("LUT4", 0) > 6  # the adder survived


def test_shell_drives_every_input_and_captures_every_output():
    core = _Adder()
    assert shell_bits(core) == (8, 6)
    shell = PinShell(core, pins=2)
    sim = Simulator(shell)
    seen = {}

    async def clock(ctx):
        while True:
            ctx.set(shell.clk, 0)
            await ctx.delay(5e-9)
            ctx.set(shell.clk, 1)
            await ctx.delay(5e-9)

    async def bench(ctx):
        ctx.set(shell.rst, 1)
        await ctx.tick("pin").repeat(3)
        ctx.set(shell.rst, 0)
        word = 11 | (6 << 4) | (1 << 7)           # a = 11, b = 6, valid = 1
        chains = [(word & 0xF, 4), (word >> 4, 4)]  # two chains of 4 bits
        for i in range(4):
            ctx.set(shell.sdi, sum(((v >> (n - 1 - i)) & 1) << j
                                   for j, (v, n) in enumerate(chains)))
            if i == 3:
                ctx.set(shell.load, 1)             # registered: the 4th bit still shifts in
            await ctx.tick("pin")
        ctx.set(shell.sdi, 0b11)                   # held off by load
        await ctx.tick("pin").repeat(3)            # core adds, output chains capture
        seen["a"], seen["b"], seen["valid"] = ctx.get(core.a), ctx.get(core.b), \
            ctx.get(core.valid)
        ctx.set(shell.load, 0)
        await ctx.tick("pin")                      # the last capture
        out = []
        for _ in range(3):
            out.append(ctx.get(shell.sdo))
            await ctx.tick("pin")
        # outputs s (5 bits) then s_valid: chain 0 holds s[0:3], chain 1 s[3:5] and s_valid
        bits = [[(o >> j) & 1 for o in out] for j in range(2)]
        seen["s"] = sum(b << i for i, b in enumerate(bits[0])) | \
            sum(b << (3 + i) for i, b in enumerate(bits[1][:2]))
        seen["s_valid"] = bits[1][2]

    sim.add_process(clock)
    sim.add_testbench(bench)
    sim.run_until(2e-6)
    assert seen == {"a": 11, "b": 6, "valid": 1, "s": 17, "s_valid": 1}


def test_shell_rejects_bad_pin_count():
    with pytest.raises(ValueError, match="pins must be an integer in"):
        PinShell(_Adder(), pins=0)


# -- report parsing on captured real outputs ---------------------------------------------------

def test_nextpnr_report_gives_fmax_and_utilisation():
    report = json.loads(_data("input_transform_pnr_report.json.gz"))
    parsed = rpt.nextpnr_report(report)
    assert parsed["fmax_mhz"] == 217.01
    assert list(parsed["clocks"].values())[0]["constraint"] == pytest.approx(150, abs=0.1)
    assert parsed["utilisation"]["TRELLIS_COMB"] == {"used": 771, "available": 83640,
                                                     "percent": 0.9}
    assert parsed["utilisation"]["TRELLIS_IO"]["used"] == 11  # clk, rst, load, 4 + 4 data
    trimmed = rpt.nextpnr_report(report, trim=True)["utilisation"]
    assert "DCUA" not in trimmed and set(rpt.MAIN_BELS) <= set(trimmed)


def test_nextpnr_report_rejects_other_json():
    with pytest.raises(ValueError, match="not a nextpnr --report document"):
        rpt.nextpnr_report({"fmax": {}})


def test_nextpnr_log_of_a_fitting_run():
    parsed = rpt.nextpnr_log(_data("input_transform_pnr.log.gz"))
    assert parsed["utilisation"]["TRELLIS_COMB"] == {"used": 771, "available": 83640,
                                                     "percent": 0.9}
    assert parsed["overflow"] == {} and parsed["errors"] == [] and parsed["fits"] is None


def test_nextpnr_log_of_a_design_that_does_not_fit():
    parsed = rpt.nextpnr_log(_data("accelerator_pnr_overflow.log.gz"))
    assert parsed["fits"] is False
    assert set(parsed["overflow"]) == DEFAULT_OVERFLOW
    for u in parsed["overflow"].values():
        assert u["used"] > u["available"]
    assert parsed["errors"], "nextpnr's ERROR line is reported"


def test_yosys_stat_totals():
    ecp5 = rpt.ecp5_counts(json.loads(_data("sparse_array_ecp5_stat.json.gz")))
    assert {k: ecp5[k] for k in rpt.ECP5_COLUMNS} == {
        "lut": 5244, "ff": 7369, "bram": 0, "lutram": 240, "dsp": 16, "carry": 1598}
    xc7 = rpt.xc7_counts(json.loads(_data("input_transform_xc7_stat.json.gz")))
    assert (xc7["lut"], xc7["ff"], xc7["dsp"], xc7["carry"]) == (600, 603, 0, 96)
    with pytest.raises(ValueError, match="no 'design' object"):
        rpt.ecp5_counts({})


def _netlist_fixture():
    fx = json.loads(_data("sparse_array_netlist_subset.json.gz"))
    return fx["netlist"], fx["source"], [tuple(m) for m in fx["modules"]]


def test_blocks_attribute_every_cell_of_the_flat_netlist():
    netlist, source, modules = _netlist_fixture()
    cells = netlist["modules"]["top"]["cells"]
    counts = blocks.attribute_cells(netlist, "top", source, modules)
    # every primitive counted once, no $scopeinfo
    total = Counter()
    for c in counts.values():
        total.update(c)
    assert total == Counter(c["type"] for c in cells.values() if c["type"] != "$scopeinfo")
    assert set(counts) == {""} | {blocks._unescape(n) for n, c in cells.items()
                                  if c["type"] == "$scopeinfo"}
    # a flip-flop goes where its source line is, a LUT where its name points
    for name, cell in cells.items():
        src = cell.get("attributes", {}).get("src", "")
        if cell["type"] == "TRELLIS_FF" and src.startswith("top.v:"):
            owner = blocks.module_of_line(modules, int(src.split(":")[1].split(".")[0]))
            block = "" if owner == "top" else owner[len("top."):]
            assert counts[block]["TRELLIS_FF"] > 0
    luts = Counter(blocks.block_of(n, blocks.scope_paths(netlist["modules"]["top"]))
                   for n, c in cells.items() if c["type"] == "LUT4")
    assert luts == Counter({b: c["LUT4"] for b, c in counts.items() if c["LUT4"]})


def test_block_rows_nest_and_group():
    netlist, source, modules = _netlist_fixture()
    counts = blocks.attribute_cells(netlist, "top", source, modules)
    rows = blocks.rows_from_paths(counts, rpt.ECP5_COLUMNS, "top", ("core", "sparse_array"))
    assert [r["block"] for r in rows[:3]] == ["top", "sparse_array", "sparse_array.pe0"]
    assert rows[0]["total"]["lut"] == sum(c["LUT4"] for c in counts.values())
    for row in rows:   # a block's total: its own cells and its children's totals
        children = [r for r in rows if r["depth"] == row["depth"] + 1
                    and r["module"].rsplit(".", 1)[0] == row["module"]]
        if row["depth"] >= 1:
            assert row["total"]["ff"] == row["self"]["ff"] + sum(c["total"]["ff"]
                                                                 for c in children)
    grouped = rpt.group_rows(rows)
    pe = next(r for r in grouped if r["block"] == "sparse_array.pe*")
    assert pe["instances"] == 3 and pe["members"] == [f"sparse_array.pe{i}" for i in range(3)]
    assert pe["total"]["lut"] == sum(r["total"]["lut"] for r in rows
                                     if r["block"] in pe["members"])
    assert any(r["block"].startswith("sparse_array.pe*.") for r in grouped)
    table = rpt.markdown_blocks(grouped)
    assert "| LUT4 |" in table and "sparse_array.pe*" in table


def test_blocks_names_a_missing_top():
    with pytest.raises(ValueError, match="module 'nope' is not in the netlist"):
        blocks.attribute_cells(_netlist_fixture()[0], "nope")


def test_verilog_modules_and_lines():
    text = "module top(a);\n  x;\nendmodule\n\nmodule \\top.core (b);\nendmodule\n"
    modules = blocks.verilog_modules(text)
    assert modules == [(1, 3, "top"), (5, 6, "top.core")]
    assert [blocks.module_of_line(modules, n) for n in (1, 3, 4, 5, 7)] == \
        ["top", "top", None, "top.core", None]
    assert blocks.block_of("core.pe1.acc_LUT4_Z", {"core", "core.pe1"}) == "core.pe1"
    assert blocks.block_of("chain_out_LUT4_Z", {"core"}) == ""


def test_signal_stems_say_what_a_block_computes():
    assert blocks.signal_stem("core.array.pe3.acc_l1_b0.0.2_DI_LUT4_Z", "core.array.pe3") == \
        "acc_l#_b#.#.#_DI"
    assert blocks.signal_stem("core.csr.s_axi_rdata_LUT4_Z_12", "core.csr") == "s_axi_rdata"
    netlist, _, _ = _netlist_fixture()
    stems = blocks.lut_signals(netlist, "top")
    cells = netlist["modules"]["top"]["cells"]
    assert sum(sum(c.values()) for c in stems.values()) == \
        sum(c["type"] == "LUT4" for c in cells.values())
    table = rpt.markdown_signals([{"block": "a.pe*", "instances": 3, "lut": 90,
                                   "signals": [("acc", 60), ("x", 30)]}])
    assert "| a.pe* ×3 (90) | `acc` 60, `x` 30 |" in table


def test_group_rows_folds_numbered_siblings_only():
    def row(block, depth, lut):
        cols = {c: 0 for c in (*rpt.ECP5_COLUMNS, "cells")}
        return {"block": block, "module": block, "depth": depth, "instances": 1,
                "self": {**cols, "lut": lut}, "total": {**cols, "lut": lut}}
    rows = [row("a", 0, 10), row("a.pe0", 1, 3), row("a.pe1", 1, 4), row("a.csr", 1, 2)]
    grouped = rpt.group_rows(rows)
    assert [(r["block"], r["instances"], r["total"]["lut"]) for r in grouped] == \
        [("a", 1, 10), ("a.pe*", 2, 7), ("a.csr", 1, 2)]


# -- CLIs: bad options exit 2 with a message, before any output -------------------------------

def test_synth_bad_option_exits_2_without_output(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--tile", "3", "-o", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "AccelConfig.tile: 3 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--tile", "3"], "AccelConfig.tile: 3 is not allowed"),
    (["--lanes", "two"], "is not a comma-separated list of integers"),
    (["--set", "bogus=1"], "'bogus' is not an AccelConfig field"),
    (["--set", "c_max"], "expected FIELD=V1[,V2...]"),
    (["--set", "tile=2,4"], "use --tile for tile"),
    (["--set", "fifo_depth=3,4"], "AccelConfig.fifo_depth: 3 is not allowed"),
    (["--jobs", "0"], "--jobs 0: must be >= 1"),
    (["--w", "0"], "densities must be in (0, 1]"),
    (["--steps", "pnr,route"], "unknown step(s) route"),
    (["--scheduler", "localhost:8786"], "expected an address like tcp://host:8786"),
    (["--layer", "conv3"], "invalid choice: 'conv3'"),
])
def test_sweep_bad_option_exits_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep.main([*args, "-o", str(tmp_path / "out"), "--plot", str(tmp_path / "p.png")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sweep_without_distributed_says_what_to_install(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.startswith(("dask", "distributed")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--scheduler", "tcp://127.0.0.1:9", "-o", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "pip install -e '.[sweep]'" in capsys.readouterr().err


def test_sweep_dry_run_lists_the_grid(capsys):
    assert sweep.main(["--tile", "2,4", "--lanes", "2,8", "--set", "act_width=1,4",
                       "--set", "c_max=64", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 points" in out and "t4_l8_act_width4" in out


def test_sweep_pareto_and_gops():
    assert sweep.dense_ops("conv64") == 2 * 32 * 32 * 64 * 64 * 9
    recs = [{"name": "a", "lut": 10, "gops": 5.0}, {"name": "b", "lut": 20, "gops": 4.0},
            {"name": "c", "lut": 30, "gops": 9.0}, {"name": "d", "lut": 5, "gops": None}]
    assert sweep.pareto(recs) == ["a", "c"]


# What overflowed when the default accelerator's netlist went to an LFE5U-25F (tests/data/).
DEFAULT_OVERFLOW = {"DP16KD", "MULT18X18D", "TRELLIS_COMB"}
