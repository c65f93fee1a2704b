"""``ControlRegisters``: the accelerator's AXI4-Lite slave (the register map of :mod:`sw.regmap`).

The host writes the layer shape, the ReLU modes and the per-output-channel quantisation
entries, starts a run and polls STATUS; the datapath reads the configuration from this block
and reports busy/done/error/overflow, the weight loader's state and the performance counters
back into it. The address decoder is built from the :mod:`sw.regmap` table, so the map exists
once for the RTL, the host driver and the C header.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.component import ConfiguredComponent
from sw import regmap
from sw.config import AccelConfig, require_config, require_count
from hw.pe import perf_layout

__all__ = ["ControlRegisters", "quant_layout"]

#: Data width of the AXI4-Lite bus and of every register.
DATA_BITS = 32


def quant_layout(cfg: AccelConfig) -> data.StructLayout:
    """One quantisation entry: signed bias, signed multiplier, unsigned shift (OutputTransform)."""
    return data.StructLayout({
        "bias": signed(cfg.bias_bits),
        "multiplier": signed(cfg.mult_bits),
        "shift": unsigned(cfg.shift_bits),
    })


def _fits(value, shape) -> object:
    """``value`` (a 32-bit register word) is representable in ``shape`` without truncation.

    A signed field takes the word as a two's-complement number, so every bit above the field's
    sign bit must equal it; an unsigned field needs every bit above it clear.
    """
    if shape.width >= DATA_BITS:
        return Const(1)
    if shape.signed:
        top = value[shape.width - 1:]
        return (top == 0) | (top == (1 << (DATA_BITS - shape.width + 1)) - 1)
    return value[shape.width:] == 0


def _or_all(values):
    """The bitwise OR of ``values``."""
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result


class ControlRegisters(ConfiguredComponent):
    """AXI4-Lite register block with the configuration, status, perf and quantisation registers.

    Parameters
    ----------
    cfg : AccelConfig
        Supplies ``c_max``, ``k_max``, ``w_max`` (field widths and the START shape check) and
        ``bias_bits``/``mult_bits``/``shift_bits`` (the quantisation memory; bias and
        multiplier must fit the 32-bit registers).
    counter_bits : int
        Width of the run-cycle and performance counters read through the registers (1..32).

    Members
    -------
    s_axi_aw*, s_axi_w*, s_axi_b*, s_axi_ar*, s_axi_r*
        AXI4-Lite slave, Vivado names, ``addr_bits(cfg)`` address bits (:func:`sw.regmap
        .addr_bits`), 32-bit data. ``awprot``/``arprot`` are ignored.
    height : Out(16), width : Out(range(w_max + 1)), channels : Out(range(c_max + 1)),
    k_count : Out(range(k_max + 1)), pad : Out(1), winograd_relu : Out(1), spatial_relu : Out(1)
        The HEIGHT, WIDTH, CHANNELS, KOUT, PAD and RELU registers (all 0 after reset).
    start : Out(1)
        One-cycle pulse, one cycle after the write of an accepted CTRL.START.
    await_record : Out(1)
        With ``start``: that START had CTRL.AWAIT set (the run's array waits for its weight
        record, which may still be loading). 0 otherwise.
    quant_k : In(ArrayLayout(range(k_max), P)), quant : Out(ArrayLayout(quant_layout(cfg), P))
        ``P = transform_channels`` asynchronous read ports of the quantisation memory: ``quant[j]``
        is entry ``quant_k[j]`` in the same cycle (a combinational path from ``quant_k[j]``).
    busy : In(1)
        A run or a weight load is in progress: configuration writes and START are refused.
        Must rise in the cycle after ``start`` (STATUS.BUSY and the refusal also count that
        ``start`` cycle itself).
    run_busy : In(1)
        A run is in progress (a part of ``busy``): a START with AWAIT is refused only while
        this is set (or in a ``start`` cycle). Must rise in the cycle after ``start``.
    awaited : In(1)
        One-cycle pulse: a weight record committed while a run started with AWAIT waits
        (WGT_CHANNELS and WGT_KCOUNT are its own). It is checked as a START checks a record
        (``weights_ok``); a mismatch sets BAD_CONFIG (the datapath then waits for another).
    weights_ok : Out(1)
        WGT_CHANNELS and WGT_KCOUNT equal CHANNELS and KOUT: the weight check of START
        (:func:`sw.regmap.weights_problem` once CHANNELS >= 1).
    done, error, overflow : In(1)
        One-cycle pulses (or levels): set STATUS.DONE, ERROR, OVERFLOW.
    cycles, array_cycles : In(counter_bits)
        Shown in CYCLES and ARRAY_CYCLES.
    perf : In(perf_layout(counter_bits))
        The performance counters summed over the PEs, shown in PERF_BUSY .. PERF_ZEROS_SKIPPED
        (:data:`sw.regmap.PERF_REGISTERS`).
    wgt_records : In(16), wgt_channels : In(range(c_max + 1)), wgt_k_count : In(range(k_max+1))
        Weight-loader status, shown in WGT_RECORDS, WGT_CHANNELS, WGT_KCOUNT.

    Notes
    -----
    AXI4-Lite: AW and W are accepted in either order or together, one write and one read
    outstanding; ``awready``/``wready``/``arready`` never depend on the valids. A write
    completes (B valid) 4 cycles after the later of its AW and W handshakes (read the old
    value, merge and check, commit, B), 5 when a read was accepted in the cycle of that
    handshake (the old value's read waits a cycle for the quantisation memory's host port); a
    read answers (R valid) 2 cycles after its AR handshake. B and R are held until
    ``bready``/``rready``. Throughput: one write per 5 cycles (6 with a read in the way), one
    read per 3 cycles. ``rdata`` is the OR of two registers loaded in the cycle before R
    becomes valid (the fixed registers' part and the quantisation memory's), so it is held
    with R like a register.

    Write rules, in the order they are checked (each refusal answers SLVERR and changes nothing
    else):

    1. an unmapped offset, or a read-only register: SLVERR;
    2. a configuration write (HEIGHT..RELU or a quantisation entry), or CTRL with START, while
       busy, or CTRL with START and AWAIT while ``run_busy``: SLVERR and STATUS.REFUSED;
    3. a value that does not fit its field: SLVERR. The 32-bit word (after merging the byte
       lanes of ``wstrb`` into the current value) must be representable in the field:
       unsigned fields (the shape registers, PAD, RELU, CTRL, shift) need the bits above them
       clear, signed fields (bias, multiplier) take the word as two's complement and need it
       in range. Nothing is silently truncated;
    4. CTRL with START and a shape that :func:`sw.regmap.shape_problem` rejects, or weights
       that :func:`sw.regmap.weights_problem` rejects (WGT_CHANNELS must equal CHANNELS and
       WGT_KCOUNT equal KOUT; both are 0 until a good record is loaded; not checked with
       AWAIT, whose record is checked on ``awaited``): SLVERR and STATUS.BAD_CONFIG, no START
       (and no CLEAR).

    ``wstrb`` is honoured: unselected bytes keep their current value (CTRL merges into 0).
    Reads of a quantisation entry return the stored value sign-extended (bias, multiplier)
    or zero-extended (shift); counters narrower than 32 bits are zero-extended. An unmapped
    read answers SLVERR with data 0.

    Reset clears every register and flag but not the quantisation memory, which holds zeros
    only after configuration (FPGA) or simulation start; the host writes the entries of a pass
    before its START anyway.

    Flags: ERROR, OVERFLOW, REFUSED, BAD_CONFIG are sticky until CTRL.CLEAR; an ``error`` or
    ``overflow`` pulse in the cycle of the CLEAR wins. DONE is set by ``done`` and cleared by an
    accepted START.
    """

    def __init__(self, cfg: AccelConfig, counter_bits: int = 32):
        require_config(cfg)
        require_count("counter_bits", counter_bits, 1, DATA_BITS)
        for name in ("bias_bits", "mult_bits"):
            if getattr(cfg, name) > DATA_BITS:
                raise ValueError(f"AccelConfig.{name}={getattr(cfg, name)} does not fit the "
                                 f"{DATA_BITS}-bit quantisation registers; use {name} <= "
                                 f"{DATA_BITS}")
        counters = tuple(name for name, _ in perf_layout(1))
        if counters != regmap.PERF_COUNTERS:
            raise AssertionError(f"sw.regmap.PERF_COUNTERS {regmap.PERF_COUNTERS} differs "
                                 f"from the fields of hw.pe.perf_layout {counters}")
        self._counter_bits = counter_bits
        abits = regmap.addr_bits(cfg)
        super().__init__(cfg, {
            "s_axi_awaddr": In(abits),
            "s_axi_awprot": In(3),
            "s_axi_awvalid": In(1),
            "s_axi_awready": Out(1),
            "s_axi_wdata": In(DATA_BITS),
            "s_axi_wstrb": In(DATA_BITS // 8),
            "s_axi_wvalid": In(1),
            "s_axi_wready": Out(1),
            "s_axi_bresp": Out(2),
            "s_axi_bvalid": Out(1),
            "s_axi_bready": In(1),
            "s_axi_araddr": In(abits),
            "s_axi_arprot": In(3),
            "s_axi_arvalid": In(1),
            "s_axi_arready": Out(1),
            "s_axi_rdata": Out(DATA_BITS),
            "s_axi_rresp": Out(2),
            "s_axi_rvalid": Out(1),
            "s_axi_rready": In(1),
            "height": Out(16),
            "width": Out(range(cfg.w_max + 1)),
            "channels": Out(range(cfg.c_max + 1)),
            "k_count": Out(range(cfg.k_max + 1)),
            "pad": Out(1),
            "winograd_relu": Out(1),
            "spatial_relu": Out(1),
            "start": Out(1),
            "await_record": Out(1),
            "quant_k": In(data.ArrayLayout(range(cfg.k_max), cfg.transform_channels)),
            "quant": Out(data.ArrayLayout(quant_layout(cfg), cfg.transform_channels)),
            "busy": In(1),
            "run_busy": In(1),
            "awaited": In(1),
            "weights_ok": Out(1),
            "done": In(1),
            "error": In(1),
            "overflow": In(1),
            "cycles": In(counter_bits),
            "array_cycles": In(counter_bits),
            "perf": In(perf_layout(counter_bits)),
            "wgt_records": In(16),
            "wgt_channels": In(range(cfg.c_max + 1)),
            "wgt_k_count": In(range(cfg.k_max + 1)),
        })


    @property
    def counter_bits(self) -> int:
        return self._counter_bits

    @property
    def addr_bits(self) -> int:
        return regmap.addr_bits(self._cfg)

    def _shape_ok(self):
        """The START shape check of :func:`sw.regmap.shape_problem`, on the registers."""
        cfg = self._cfg
        padded = 2 * self.pad
        # W >= 1 and H >= 1 follow from the padded sizes, as PAD is at most 1
        return ((self.channels >= 1) & (self.channels <= cfg.c_max)
                & (self.k_count >= 1) & (self.k_count <= cfg.k_max)
                & (self.width <= cfg.w_max)
                & (self.width + padded >= 3) & (self.height + padded >= 3))

    def _weights_ok(self):
        """The START weight check of :func:`sw.regmap.weights_problem`, on the registers."""
        return (self.wgt_channels == self.channels) & (self.wgt_k_count == self.k_count)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        word_bits = self.addr_bits - 2
        quant_word = regmap.QUANT_BASE // 4
        quant_end = quant_word + cfg.k_max * regmap.QUANT_STRIDE // 4
        entry_words = regmap.QUANT_STRIDE // 4

        # -- state ------------------------------------------------------------------------
        done_f, error_f, overflow_f = Signal(), Signal(), Signal()
        refused_f, bad_config_f = Signal(), Signal()
        busy_now = Signal()
        m.d.comb += busy_now.eq(self.busy | self.start)
        status = Cat(busy_now, done_f, error_f, overflow_f, refused_f, bad_config_f)
        relu = Cat(self.winograd_relu, self.spatial_relu)
        config = {regmap.HEIGHT: self.height, regmap.WIDTH: self.width,
                  regmap.CHANNELS: self.channels, regmap.KOUT: self.k_count,
                  regmap.PAD: self.pad, regmap.RELU: relu}
        read_only = {
            regmap.ID: Const(regmap.ID_MAGIC, DATA_BITS),
            regmap.VERSION: Const(regmap.VERSION_VALUE, DATA_BITS),
            regmap.STATUS: status,
            regmap.WGT_RECORDS: self.wgt_records, regmap.WGT_CHANNELS: self.wgt_channels,
            regmap.WGT_KCOUNT: self.wgt_k_count,
            regmap.CYCLES: self.cycles, regmap.ARRAY_CYCLES: self.array_cycles,
            **{reg: self.perf[name] for name, reg in regmap.PERF_REGISTERS.items()},
        }
        missing = set(regmap.REGISTERS) - set(config) - set(read_only) - {regmap.CTRL}
        if missing:
            raise AssertionError(f"sw.regmap registers without hardware: "
                                 f"{', '.join(sorted(r.name for r in missing))}")

        def quant_hit(word, field_index):
            return ((word >= quant_word) & (word < quant_end)
                    & (word[:2] == field_index))

        # -- quantisation memory: one memory per field, P + 1 asynchronous read ports ------
        # The output transforms' ports (one per channel of their beat), and the host's,
        # shared by an AXI read (in its one ar_full cycle) and the byte-strobe merge of a
        # write (which waits for that cycle): one more port would be one more copy of the LUT
        # RAM and of its read-out multiplexers.
        # The host port's address and its field selects are registers loaded with their next
        # values (the read's address in the cycle of the AR handshake, else the write's), so
        # nothing but a register drives the address lines of the LUT RAM, and the port's
        # output is one word: the selected field, sign- or zero-extended, or 0 (no field).
        aw_word = Signal(word_bits)
        ar_full = Signal()
        ar_take = Signal()
        aw_take = Signal()
        host_word = Signal(word_bits)
        m.d.comb += host_word.eq(Mux(ar_take, self.s_axi_araddr[2:],
                                     Mux(aw_take, self.s_axi_awaddr[2:], aw_word)))
        q_write, q_host = {}, {}
        host_out = Signal(DATA_BITS)
        host_terms, host_sels = [], []
        for index, (name, field) in enumerate(quant_layout(cfg)):
            mem = Memory(shape=field.shape, depth=cfg.k_max, init=[])
            m.submodules[f"quant_{name}"] = mem
            q_write[name] = mem.write_port()
            for j in range(cfg.transform_channels):
                port = mem.read_port(domain="comb")
                m.d.comb += [port.addr.eq(self.quant_k[j]), self.quant[j][name].eq(port.data)]
            q_host[name] = mem.read_port(domain="comb")
            # One copy per field, each driving the read address of fewer LUT-RAM cells. Yosys
            # merges identical flip-flops, so the copies are built differently: with a reset,
            # without, and without but loaded only when the value can change (a handshake, or
            # the read's ar_full cycle, after which the port returns to the write's address).
            host_addr = Signal.like(q_host[name].addr, name=f"host_addr_{name}",
                                    reset_less=index > 0)
            host_sel = Signal(name=f"host_sel_{name}")
            with m.If(Const(index < 2) | ar_take | aw_take | ar_full):
                m.d.sync += host_addr.eq(host_word[2:] - quant_word // entry_words)
            m.d.sync += host_sel.eq(quant_hit(host_word, index))
            wide = Signal(DATA_BITS, name=f"host_{name}")
            m.d.comb += [q_host[name].addr.eq(host_addr), wide.eq(q_host[name].data)]
            host_terms.append(wide & host_sel.replicate(DATA_BITS))
            host_sels.append(host_sel)
        m.d.comb += host_out.eq(_or_all(host_terms))

        # -- write channel ------------------------------------------------------------------
        aw_full, w_full = Signal(), Signal()
        w_data = Signal(DATA_BITS)
        w_strb = Signal(DATA_BITS // 8)
        b_valid = self.s_axi_bvalid
        m.d.comb += [self.s_axi_awready.eq(~aw_full & ~b_valid),
                     self.s_axi_wready.eq(~w_full & ~b_valid)]
        m.d.comb += aw_take.eq(self.s_axi_awvalid & self.s_axi_awready)
        with m.If(aw_take):
            m.d.sync += [aw_full.eq(1), aw_word.eq(self.s_axi_awaddr[2:])]
        with m.If(self.s_axi_wvalid & self.s_axi_wready):
            m.d.sync += [w_full.eq(1), w_data.eq(self.s_axi_wdata), w_strb.eq(self.s_axi_wstrb)]
        with m.If(b_valid & self.s_axi_bready):
            m.d.sync += b_valid.eq(0)

        # Every writable location: (hit, current value, fits(merged), configuration?, target)
        targets = []
        for reg, sig in config.items():
            targets.append((aw_word == reg.offset // 4, sig, lambda v, s=sig: _fits(v, s.shape()),
                            True, sig))
        ctrl_hit = aw_word == regmap.CTRL.offset // 4
        targets.append((ctrl_hit, Const(0, DATA_BITS),
                        lambda v: _fits(v, unsigned(regmap.CTRL_BITS)), False, None))
        for index, (name, field) in enumerate(quant_layout(cfg)):
            targets.append((quant_hit(aw_word, index), None,
                            lambda v, s=field.shape: _fits(v, s), True, name))

        # A write takes three cycles: the first reads the old value of the addressed location
        # (the quantisation memory's host port, or a register), the second merges the byte
        # strobes into it and range-checks the result, the third commits. The LUT-RAM read,
        # the merge and the range check in one cycle were the register file's routed critical
        # path (docs/fpga.md); so, before, were the merge read and the write enable.
        mask = Cat(w_strb[i].replicate(8) for i in range(DATA_BITS // 8))
        old_now = Signal(DATA_BITS)              # a register's value (0 for the rest)
        for hit, current, _, _, _ in targets:
            if current is not None:
                with m.If(hit):
                    m.d.comb += old_now.eq(current)

        selected = Signal()                      # `old` and `hits` hold this write's
        old = Signal(DATA_BITS)
        old_reg = Signal(DATA_BITS)              # the old value, a register's part
        old_host = Signal(DATA_BITS)             # and the quantisation memory's part
        hits = Signal(len(targets))
        writable, is_config = Signal(), Signal()
        with m.If(aw_full & w_full & ~selected & ~ar_full):
            m.d.sync += [
                selected.eq(1),
                old_reg.eq(old_now),
                old_host.eq(host_out),
                hits.eq(Cat(t[0] for t in targets)),
                writable.eq(Cat(t[0] for t in targets).any()),
                is_config.eq(Cat(t[0] & t[3] for t in targets).any()),
            ]

        decoded = Signal()                       # `merged` and `fits` hold this write's
        merged = Signal(DATA_BITS)
        merged_now = Signal(DATA_BITS)
        fits = Signal()
        fit_hits = Signal(len(targets))          # per target: addressed, and the value fits
        execute = Signal()
        m.d.comb += [old.eq(old_reg | old_host),
                     merged_now.eq((old & ~mask) | (w_data & mask)),
                     execute.eq(decoded & aw_full & w_full)]
        with m.If(selected & ~decoded):
            m.d.sync += [
                decoded.eq(1),
                merged.eq(merged_now),
                fits.eq(Cat(hits[i] & t[2](merged_now) for i, t in enumerate(targets)).any()),
                fit_hits.eq(Cat(hits[i] & t[2](merged_now) for i, t in enumerate(targets))),
            ]
        with m.If(execute):
            m.d.sync += [selected.eq(0), decoded.eq(0)]

        ctrl_index = next(i for i, t in enumerate(targets) if t[4] is None)
        wants_start = hits[ctrl_index] & (merged & regmap.CTRL_START).any()
        wants_await = (merged & regmap.CTRL_AWAIT).any()
        # A START with AWAIT is refused only while a run is on: its record may be loading.
        start_refused = Mux(wants_await, self.run_busy | self.start, busy_now)
        refuse = Signal()
        accept = Signal()                        # the write takes effect (but a bad START)
        start_ok, clear, bad_config = Signal(), Signal(), Signal()
        resp = Signal(2)
        # The shape check's carry chains, registered: the shape registers change only by a
        # write, and the next write executes no sooner than four cycles later (B, then AW/W,
        # then the merge stage), so the registered value is always current for a START. The
        # weight check stays combinational: the loader's WGT_* change when it goes idle.
        shape_ok = Signal()
        m.d.sync += shape_ok.eq(self._shape_ok())
        m.d.comb += [
            refuse.eq(execute & writable & ((is_config & busy_now)
                                            | (wants_start & start_refused))),
            accept.eq(execute & writable & ~refuse & fits),
            bad_config.eq(accept & wants_start
                          & ~(shape_ok & (wants_await | self._weights_ok()))),
        ]
        with m.If(~writable | refuse | ~fits | bad_config):
            m.d.comb += resp.eq(regmap.RESP_SLVERR)
        with m.Elif(execute):
            m.d.comb += resp.eq(regmap.RESP_OKAY)
        # Only a CTRL write can be a bad START, so the other writes' enables leave the shape
        # and weight checks out (they were on the quantisation memories' write path). A
        # configuration target's enable is `accept & hits[index]` written with the merge
        # stage's registered per-target check: execute, that target hit and its value fits,
        # and not busy (the refusal of a configuration write).
        m.d.comb += [start_ok.eq(accept & wants_start & ~bad_config),
                     clear.eq(accept & hits[ctrl_index] & (merged & regmap.CTRL_CLEAR).any()
                               & ~bad_config)]
        for index, (_, _, _, _, target) in enumerate(targets):
            enable = execute & fit_hits[index] & ~busy_now
            if isinstance(target, str):
                port = q_write[target]
                m.d.comb += [port.addr.eq(aw_word[2:] - quant_word // entry_words),
                             port.data.eq(merged), port.en.eq(enable)]
            elif target is not None:
                with m.If(enable):
                    m.d.sync += target.eq(merged)
        with m.If(execute):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), b_valid.eq(1),
                         self.s_axi_bresp.eq(resp)]

        # -- status flags (a set wins over CLEAR, START wins over a stale done) -----------------
        m.d.sync += [self.start.eq(start_ok), self.await_record.eq(start_ok & wants_await)]
        with m.If(self.done):
            m.d.sync += done_f.eq(1)
        with m.If(start_ok):
            m.d.sync += done_f.eq(0)
        with m.If(clear):
            m.d.sync += [error_f.eq(0), overflow_f.eq(0), refused_f.eq(0), bad_config_f.eq(0)]
        with m.If(self.error):
            m.d.sync += error_f.eq(1)
        with m.If(self.overflow):
            m.d.sync += overflow_f.eq(1)
        with m.If(refuse):
            m.d.sync += refused_f.eq(1)
        m.d.comb += self.weights_ok.eq(self._weights_ok())
        with m.If(bad_config | (self.awaited & ~self.weights_ok)):
            m.d.sync += bad_config_f.eq(1)

        # -- read channel -------------------------------------------------------------------
        r_valid = self.s_axi_rvalid
        m.d.comb += self.s_axi_arready.eq(~ar_full & ~r_valid)
        # The address is decoded at the AR handshake, into registered selects: a one-hot
        # choice of the fixed registers (the performance counters among them) and whether the
        # offset is mapped. The cycle after (ar_full) then only picks among the selected
        # values, which are sampled there (STATUS, the WGT_*, cycle and counter inputs as
        # they are then).
        fixed = {**config, **read_only, regmap.CTRL: Const(0, DATA_BITS)}
        fixed_sel = Signal(len(fixed))
        r_hit = Signal()
        # These registers are loaded in every cycle, from whatever is on araddr: only the
        # values loaded in the cycle of the handshake are used, in the ar_full cycle that
        # follows it (no clock enable to fan out).
        m.d.comb += ar_take.eq(self.s_axi_arvalid & self.s_axi_arready)
        with m.If(ar_take):
            m.d.sync += ar_full.eq(1)
        m.d.sync += [fixed_sel.eq(0), r_hit.eq(1)]
        with m.Switch(self.s_axi_araddr[2:]):
            for index, reg in enumerate(fixed):
                with m.Case(reg.offset // 4):
                    m.d.sync += fixed_sel.eq(1 << index)
            with m.Default():
                m.d.sync += r_hit.eq(Cat(quant_hit(self.s_axi_araddr[2:], i)
                                         for i in range(len(host_sels))).any())
        with m.If(r_valid & self.s_axi_rready):
            m.d.sync += r_valid.eq(0)

        r_fixed = Signal(DATA_BITS)              # R's data: the registers' part
        r_host = Signal(DATA_BITS)               # and the quantisation memory's part
        m.d.comb += self.s_axi_rdata.eq(r_fixed | r_host)
        fixed_terms = []
        for index, value in enumerate(fixed.values()):
            wide = Signal(DATA_BITS, name=f"rd_fixed{index}")
            m.d.comb += wide.eq(value)
            fixed_terms.append(wide & fixed_sel[index].replicate(DATA_BITS))
        with m.If(ar_full):
            m.d.sync += [
                ar_full.eq(0), r_valid.eq(1),
                r_fixed.eq(_or_all(fixed_terms)),
                r_host.eq(host_out),
                self.s_axi_rresp.eq(Mux(r_hit, regmap.RESP_OKAY, regmap.RESP_SLVERR)),
            ]
        return m
