"""``Accelerator``: the whole sparse-Winograd convolution engine behind AXI ports.

One run computes one 3×3 stride-1 layer pass (``K ≤ k_max`` output channels) of one image::

    s_axis_act (stream_values channels of a pixel per beat)
               → stream buffer → LineBuffer (transform_channels channels' n×n patches per cycle)
               → stream buffer → InputTransform × P (+ Winograd ReLU; P = transform_channels,
                 in lockstep)
               → ChannelGather (P channels per beat → act_width) → stream buffer
               → SparseArray (n² sparse PEs)
               → ChannelSerialiser (drain_width channels per beat → P) → stream buffer
               → OutputTransform × P (+ bias, requantise, spatial ReLU, clamp; quant[k] from the
                 CSRs; in lockstep, free-running: credits in front, a queue behind)
               → stream buffer → OutputReorder (P channels' m×m tiles in per cycle)
               → m_axis_out (stream_values channels of a pixel per beat)
    s_axis_wgt (16 bytes per beat) → stream buffer → WeightLoader → WeightRing → the PEs'
               weight and directory memories (the next pass's record loads beside the
               running pass); with weight_ports 2 to 4 also s_axis_wgt1, ... → stream
               buffer → WeightLoader (each port's loader writes its share of the PEs) →
               WeightRing, and a RecordJoin counts a record once every port's frame is in
    s_axi      → ControlRegisters (shape, ReLU modes, quantisation memory, start/busy/done, flags,
                 perf counters)

Port names are Vivado-style and flat, so IP integrators and cocotbext-axi
(``AxiStreamBus.from_prefix(dut, "s_axis_act")``, ``AxiLiteBus.from_prefix(dut, "s_axi")``) bind
directly. Clock ``clk``, synchronous active-high reset ``rst``.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.array import SparseArray
from hw.component import ConfiguredComponent, port_member
from sw.config import AccelConfig, require_config
from sw.formats import WEIGHT_BEAT_BYTES, stream_bytes
from hw.csr import ControlRegisters
from hw.linebuf import LineBuffer
from hw.loader import accelerator_loader
from hw.record_join import RecordJoin
from hw.reorder import OutputReorder
from hw.stream_buffer import StreamBuffer
from hw.channels import ChannelGather, ChannelSerialiser
from hw.free_running import FreeRunning
from hw.lockstep import Lockstep
from hw.transforms import InputTransform, OutputTransform
from hw.weight_ring import WeightRing

__all__ = ["Accelerator"]


class Accelerator(ConfiguredComponent):
    """The integrated accelerator for one :class:`~sw.config.AccelConfig`.

    Parameters
    ----------
    cfg : AccelConfig
        Every size and width of the datapath.
    counter_bits : int
        Width of the run-cycle and performance counters.

    Members
    -------
    s_axis_act_tdata, s_axis_act_tkeep, s_axis_act_tvalid, s_axis_act_tready, s_axis_act_tlast
        Activations in: the layer's input in NHWC raster order (``y``, then ``x``, then ``c``),
        ``V = stream_values`` signed ``act_bits`` values of one pixel per beat, each
        sign-extended to whole bytes, ``tkeep`` one bit per byte: the beat format of
        :func:`sw.formats.pack_activations` (a pixel's ``C`` channels in ``ceil(C / V)`` beats,
        the last one partial when ``V`` does not divide ``C``). ``H·W·ceil(C / V)`` beats per
        run with ``tlast`` on the final one. Ready only during a run and only for the run's
        beats.
    s_axis_wgt_tdata, s_axis_wgt_tkeep, s_axis_wgt_tvalid, s_axis_wgt_tready, s_axis_wgt_tlast
        Packed weights in, :data:`sw.formats.WEIGHT_BEAT_BYTES` bytes per beat (byte ``j`` in
        bits ``8j .. 8j+7``, ``tkeep`` one bit per byte, a prefix: only a frame's final beat may
        be partial): one record of the weight-load stream (:func:`sw.formats.encode_record`) per
        frame, ``tlast`` on its final beat. Taken between runs and during them: a record
        sent during a run is the next pass's, loaded beside the running one
        (:class:`hw.weight_ring.WeightRing`); its writes that would land on the running pass
        wait for the run's end, so it loads at full speed when the two passes' words fit the
        weight memory together.
    s_axis_wgt1_tdata, s_axis_wgt1_tkeep, s_axis_wgt1_tvalid, s_axis_wgt1_tready, s_axis_wgt1_tlast
        With ``weight_ports`` 2 to 4: the second weight-load port (and ``s_axis_wgt2``,
        ``s_axis_wgt3`` likewise), in the same beat format. A record is then sent as one frame
        per port at once (:func:`sw.formats.record_frames`), each
        the record header and the blocks of its port's PEs (:func:`sw.formats.port_pes`),
        loaded by a loader of its own; the record counts (WGT_RECORDS) once both have been
        loaded, and a port takes its next record's frame only then
        (:class:`hw.record_join.RecordJoin`).
    m_axis_out_tdata, m_axis_out_tkeep, m_axis_out_tvalid, m_axis_out_tready, m_axis_out_tlast
        Activations out: the pass's ``out_h × out_w × K`` output in NHWC raster order, in the
        same beat format (``K`` in place of ``C``; bytes with ``tkeep`` 0 are zero), ``tlast``
        on the final beat.
    s_axi_*
        AXI4-Lite slave of :class:`hw.csr.ControlRegisters` (register map in
        :mod:`sw.regmap`).

    Notes
    -----
    A run: load the pass's weight record on ``s_axis_wgt``; write HEIGHT, WIDTH, CHANNELS, KOUT,
    PAD, RELU and the quantisation entries ``0 .. K-1``; write CTRL.START; stream the input on
    ``s_axis_act`` while taking the output from ``m_axis_out``; STATUS.DONE is set when the
    final output beat has been taken. STATUS.BUSY is also set while a weight record is being
    parsed, so configuration writes are refused then too. The next pass's record may be sent
    as soon as START is accepted; its quantisation entries are written after DONE (they are
    configuration), then START runs it.

    Performance counters: one set, each field summed over the PEs
    (:attr:`hw.array.SparseArray.perf_sum`, the PERF_* registers of :mod:`sw.regmap`). The
    sums trail the PEs' own counts by :meth:`hw.array.SparseArray.perf_lag` cycles and hold
    their final value from ``perf_lag`` cycles after the array's final output beat of a run
    is taken; that beat still has the output transform and the reorder buffer ahead of it,
    which take longer (checked when the design is built), so the PERF_* registers hold every
    count of a run by the time STATUS shows it DONE.

    Flags: ERROR is set by a rejected weight record and by an activation frame whose ``tlast``
    is misplaced or whose ``tkeep`` marks other bytes than the channels' (the run goes on
    counting beats; the output is then meaningless). OVERFLOW is
    set when a PE drains an output channel whose exact Winograd-domain sum lies outside
    ``acc_bits`` (``wrap`` or ``saturate`` changed it), in both modes: exactly
    :func:`sw.golden.accumulator_overflow` of the run.
    """

    #: Tiles the queue behind the output transform holds (:class:`hw.free_running.FreeRunning`).
    OUTPUT_QUEUE_DEPTH = 16

    def __init__(self, cfg: AccelConfig, counter_bits: int = 32):
        require_config(cfg)
        self._counter_bits = counter_bits
        self._csr = ControlRegisters(cfg, counter_bits)
        lane_bytes = stream_bytes(cfg.act_bits)
        act_width = 8 * lane_bytes * cfg.stream_values
        members = {
            "s_axis_act_tdata": In(act_width),
            "s_axis_act_tkeep": In(lane_bytes * cfg.stream_values),
            "s_axis_act_tvalid": In(1),
            "s_axis_act_tready": Out(1),
            "s_axis_act_tlast": In(1),
            **{f"{self.weight_port(p)}_{name}": member
               for p in range(cfg.weight_ports)
               for name, member in (("tdata", In(8 * WEIGHT_BEAT_BYTES)),
                                    ("tkeep", In(WEIGHT_BEAT_BYTES)), ("tvalid", In(1)),
                                    ("tready", Out(1)), ("tlast", In(1)))},
            "m_axis_out_tdata": Out(act_width),
            "m_axis_out_tkeep": Out(lane_bytes * cfg.stream_values),
            "m_axis_out_tvalid": Out(1),
            "m_axis_out_tready": In(1),
            "m_axis_out_tlast": Out(1),
        }
        for name, member in self._csr.signature.members.items():
            if name.startswith("s_axi_"):
                members[name] = member
        super().__init__(cfg, members)

    @staticmethod
    def weight_port(port: int) -> str:
        """The AXI4-Stream prefix of weight-load port ``port``: ``s_axis_wgt``, then
        ``s_axis_wgt1``, ... (``AccelConfig.weight_ports`` 2 to 4)."""
        return port_member("s_axis_wgt", port)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        csr = m.submodules.csr = self._csr
        linebuf = m.submodules.linebuf = LineBuffer(cfg)
        patch = linebuf.o.payload
        tile_meta = data.StructLayout({"c": patch.c.shape(), "n": patch.n.shape(), "last": 1})
        # One input (and output) transform per channel of a beat, in lockstep (hw.lockstep);
        # the beat's meta rides through the first input transform.
        P = cfg.transform_channels
        itf = m.submodules.input_transform = Lockstep(
            [InputTransform(cfg, meta=tile_meta) for _ in range(P)])
        gather = m.submodules.gather = ChannelGather(cfg)
        array = m.submodules.array = SparseArray(cfg, counter_bits=self._counter_bits)
        channels = m.submodules.serialiser = ChannelSerialiser(cfg)
        # The output transform never stalls: its seven stages' one enable (hundreds of clock
        # enables behind the reorder's back-pressure) was the routed critical path with the
        # channel buffer's enables (docs/fpga.md). Credits admit a tile only while the queue
        # behind it has room; 16 is one LUT RAM's depth.
        otf = m.submodules.output_transform = FreeRunning(
            Lockstep([OutputTransform(cfg) for _ in range(cfg.transform_channels)]),
            depth=self.OUTPUT_QUEUE_DEPTH)
        reorder = m.submodules.reorder = OutputReorder(cfg)
        loaders = [accelerator_loader(cfg, p) for p in range(cfg.weight_ports)]
        for p, loader in enumerate(loaders):
            m.submodules[port_member("loader", p)] = loader
        ring = m.submodules.weight_ring = WeightRing(cfg)

        # -- AXI4-Lite straight through to the registers ------------------------------------
        for name, member in csr.signature.members.items():
            if name.startswith("s_axi_"):
                ours, theirs = getattr(self, name), getattr(csr, name)
                if member.flow == wiring.In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)

        # -- run control ----------------------------------------------------------------------
        running = Signal()
        done = Signal()
        height, width, pad = csr.height, csr.width, csr.pad
        # The output frame's shape as registers: combinational, Yosys merged its adders with
        # the line buffer's identical ones, and the height register → the line buffer's and
        # the reorder buffer's band arithmetic → the reorder's `last_band` was a routed
        # critical path (docs/fpga.md). A register write commits at least five cycles before
        # START (each takes four), so both are current by then.
        out_h = Signal(16)
        out_w = Signal(range(cfg.w_max + 3))
        m.d.sync += [out_h.eq(height + 2 * pad - 2), out_w.eq(width + 2 * pad - 2)]
        V = cfg.stream_values
        log_v = V.bit_length() - 1
        lane_bytes = stream_bytes(cfg.act_bits)
        lane_bits = 8 * lane_bytes
        in_left = Signal(32)        # activation beats still expected in this run
        pixel_beats = Signal(range(-(-cfg.c_max // V) + 1))
        m.d.comb += pixel_beats.eq((csr.channels + (V - 1)) >> log_v)
        # in_left != 0 as a register of its own: a 32-bit zero test in front of every input
        # beat's valid was on the routed critical path (docs/fpga.md).
        in_open = Signal()
        # The frame's beat count in two registered multiplies (the two MULT18X18D in series
        # into in_left at START were the routed critical path, docs/fpga.md). The shape
        # registers change only by a register write, which commits at least five cycles
        # before a START does (each write takes four), so both products are current by then.
        frame_pixels = Signal(32)
        frame_beats = Signal(32)
        m.d.sync += [frame_pixels.eq(height * width), frame_beats.eq(frame_pixels * pixel_beats)]
        with m.If(csr.start):
            m.d.sync += [running.eq(1), in_left.eq(frame_beats),
                         in_open.eq((height != 0) & (width != 0) & (pixel_beats != 0))]
        with m.Elif(done):
            m.d.sync += running.eq(0)

        m.d.comb += [
            linebuf.height.eq(height), linebuf.width.eq(width),
            linebuf.channels.eq(csr.channels), linebuf.pad.eq(pad),
            array.k_count.eq(csr.k_count),
            reorder.out_height.eq(out_h), reorder.out_width.eq(out_w),
            reorder.channels.eq(csr.k_count),
        ]

        # -- activations in -------------------------------------------------------------------
        # Through a skid buffer, so the line buffer's write enables (one per block RAM) start
        # from a register next to it rather than from the port's valid and the run checks.
        act_in = m.submodules.act_in = StreamBuffer(linebuf.i.payload.shape())
        wiring.connect(m, act_in.o, linebuf.i)
        take = Signal()
        m.d.comb += [
            act_in.i.valid.eq(self.s_axis_act_tvalid & running & in_open),
            self.s_axis_act_tready.eq(act_in.i.ready & running & in_open),
            take.eq(self.s_axis_act_tvalid & self.s_axis_act_tready),
        ]
        m.d.comb += [act_in.i.payload[j].eq(
            self.s_axis_act_tdata[j * lane_bits:j * lane_bits + cfg.act_bits].as_signed())
            for j in range(V)]
        # tkeep must mark the lanes that hold a channel: all of them but in a pixel's last
        # beat, which holds C - (pixel_beats - 1)·V. Its index and lane count are registers
        # (current well before START, like the products above), not arithmetic on the channel
        # count in front of the beat counter and the framing check.
        in_beat = Signal.like(pixel_beats)      # beat of the current pixel
        last_beat = Signal.like(pixel_beats)    # pixel_beats - 1
        last_lanes = Signal(range(V + 1))       # channels in a pixel's last beat
        m.d.sync += [last_beat.eq((csr.channels - 1) >> log_v),
                     last_lanes.eq(((csr.channels - 1) & (V - 1)) + 1)]
        want_keep = Signal.like(self.s_axis_act_tkeep)
        m.d.comb += [want_keep[j].eq((in_beat != last_beat)
                                     | (j // lane_bytes < last_lanes))
                     for j in range(len(want_keep))]
        with m.If(csr.start):
            m.d.sync += in_beat.eq(0)
        framing_error = Signal()
        with m.If(take):
            m.d.sync += [in_left.eq(in_left - 1),
                         in_beat.eq(Mux(in_beat == last_beat, 0, in_beat + 1))]
            with m.If(in_left == 1):
                m.d.sync += in_open.eq(0)
            m.d.comb += framing_error.eq((self.s_axis_act_tlast != (in_left == 1))
                                         | (self.s_axis_act_tkeep != want_keep))

        # -- patches → input transform; (c, last) ride through it as the beat's meta ---------
        # A stream buffer between them: the line buffer's issue (the read enable of its 48
        # block RAMs, a net across the die) then waits on a register of its own, not on the
        # input transform's and the gather's enables (the routed critical path at 42a0169,
        # docs/fpga.md).
        patches = m.submodules.patches = StreamBuffer(linebuf.o.payload.shape())
        wiring.connect(m, linebuf.o, patches.i)
        patch = patches.o.payload
        m.d.comb += [
            itf.i.payload[0].meta.c.eq(patch.c),
            itf.i.payload[0].meta.n.eq(patch.n),
            itf.i.payload[0].meta.last.eq(patch.last),
            itf.i.valid.eq(patches.o.valid),
            patches.o.ready.eq(itf.i.ready),
            gather.i.payload.c.eq(itf.o.payload[0].meta.c),
            gather.i.payload.n.eq(itf.o.payload[0].meta.n),
            gather.i.payload.last.eq(itf.o.payload[0].meta.last),
            gather.i.valid.eq(itf.o.valid),
            itf.o.ready.eq(gather.i.ready),
        ]
        for j in range(P):
            m.d.comb += [
                itf.i.payload[j].d.eq(patch.d[j]),
                itf.i.payload[j].relu.eq(csr.winograd_relu),
                gather.i.payload.v[j].eq(itf.o.payload[j].v),
            ]
        # The array takes a beat once all n² PEs have: a stream buffer keeps that wide AND
        # out of the gather, the input transform and the line buffer.
        act_buffer = m.submodules.act_buffer = StreamBuffer(gather.o.payload.shape())
        wiring.connect(m, gather.o, act_buffer.i)
        # A run started with AWAIT keeps the array's input shut until its weight record is in
        # (below); the input meanwhile fills the line buffer.
        act_open = Signal(init=1)
        m.d.comb += [
            array.act.payload.eq(act_buffer.o.payload),
            array.act.valid.eq(act_buffer.o.valid & act_open),
            act_buffer.o.ready.eq(array.act.ready & act_open),
        ]

        # -- weights in ----------------------------------------------------------------------
        # Per weight-load port: through a skid buffer, so the loader's parser and byte buffer
        # start from a register next to them rather than from the port's valid and the run
        # check (a routed critical path, docs/fpga.md). A beat it holds counts as busy, so no
        # START overtakes it. The ring places each record beside the running pass (or holds
        # its writes until the run ends), so records are taken during runs too.
        join = RecordJoin(cfg) if cfg.weight_ports > 1 else None
        if join is not None:
            m.submodules.record_join = join
        wgt_ins = []
        for p, (loader, (ring_i, ring_o), array_port) in enumerate(
                zip(loaders, ring.ports(), array.load_ports())):
            prefix = self.weight_port(p)
            tvalid, tready, tlast = (getattr(self, f"{prefix}_{n}")
                                     for n in ("tvalid", "tready", "tlast"))
            wgt_in = StreamBuffer(loader.i.payload.shape())
            m.submodules[port_member("wgt_in", p)] = wgt_in
            wgt_ins.append(wgt_in)
            wiring.connect(m, wgt_in.o, loader.i)
            # With several ports, a port takes one frame per record (RecordJoin.hold).
            free = 1 if join is None else ~join.hold[p]
            m.d.comb += [
                wgt_in.i.payload.data.eq(getattr(self, f"{prefix}_tdata")),
                wgt_in.i.payload.keep.eq(getattr(self, f"{prefix}_tkeep")),
                wgt_in.i.payload.last.eq(tlast),
                wgt_in.i.valid.eq(tvalid & free),
                tready.eq(wgt_in.i.ready & free),
            ]
            wiring.connect(m, loader.wr, ring_i)
            wiring.connect(m, ring_o, array_port)
            if join is not None:
                records_lsb = Signal(name=f"records{p}_lsb")
                m.d.sync += records_lsb.eq(loader.records[0])
                port = join.port[p]
                m.d.comb += [
                    port.beat.eq(tvalid & tready), port.last.eq(tlast),
                    port.good.eq(loader.records[0] != records_lsb), port.bad.eq(loader.error),
                    port.channels.eq(loader.channels), port.k_count.eq(loader.k_count),
                    port.k_base.eq(loader.k_base),
                ]
        # The record's status: its one loader's, or the join of the ports' loaders.
        status = loaders[0] if join is None else join
        if join is None:
            records_lsb = Signal()          # the loader's count moves by one per good record
            m.d.sync += records_lsb.eq(loaders[0].records[0])
            committed, rejected = loaders[0].records[0] != records_lsb, loaders[0].error
        else:
            committed, rejected = join.committed, join.rejected
        # -- a run started with CTRL.AWAIT: its record loads after the START ----------------
        # The run takes the input at once but waits (`waiting`) for the next record to be
        # committed; the ring is not yet told of the run, so that record is placed as if none
        # were on. From the cycle after the commit (`pending`: the ring has moved its bank and
        # base past the record, WGT_* are the record's) the record is checked: one not for
        # CHANNELS and KOUT sets BAD_CONFIG and the run waits for the next; a good one starts
        # the run in the ring once the ring has placed the record's last writes (as a plain
        # START finds it: nothing held or offered, a cycle or two; a next record's first
        # write is several header cycles away), and the array's input opens the ring's and
        # the load port's latency later, once those writes have reached the memories.
        awaits = csr.start & csr.await_record
        waiting = Signal()
        pending = Signal()
        ring_idle = ~ring.busy & ~reduce(operator.or_, [i.valid for i, _ in ring.ports()])
        resolves = pending & (~csr.weights_ok | ring_idle)     # checked: begins or waits on
        begins = resolves & csr.weights_ok
        write_latency = WeightRing.LATENCY + SparseArray.LOAD_LATENCY
        settle = Signal(range(write_latency + 1))
        with m.If(waiting & committed):
            m.d.sync += pending.eq(1)
        with m.Elif(resolves):
            m.d.sync += pending.eq(0)
        with m.If(awaits | (pending & ~csr.weights_ok)):
            m.d.sync += waiting.eq(1)
        with m.Elif(committed):
            m.d.sync += waiting.eq(0)
        with m.If(awaits):
            m.d.sync += act_open.eq(0)
        with m.If(begins):
            m.d.sync += settle.eq(write_latency)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
            with m.If(settle == 1):
                m.d.sync += act_open.eq(1)
        m.d.comb += [
            ring.committed.eq(committed),
            ring.rejected.eq(rejected),
            ring.start.eq((csr.start & ~csr.await_record) | begins),
            ring.running.eq(running & ~waiting & ~pending),
            array.bank.eq(ring.bank),
            csr.awaited.eq(resolves),
        ]

        # -- M → output transform with this channel's quantisation ---------------------------
        # Stream buffers with registered ready on both sides of the output transform: the
        # reorder buffer's back-pressure then stops at the output transform, and the output
        # transform's at the serialiser, instead of running combinationally into the PEs'
        # drains (the critical path of docs/fpga.md).
        wiring.connect(m, array.out, channels.i)
        m.d.comb += channels.k_count.eq(csr.k_count)
        channel_buffer = StreamBuffer(channels.o.payload.shape())
        m.submodules.channel_buffer = channel_buffer
        wiring.connect(m, channels.o, channel_buffer.i)
        head = channel_buffer.o.payload
        for j in range(P):
            m.d.comb += [
                csr.quant_k[j].eq(head.k + j),
                otf.i.payload[j].m.eq(head.m[j]),
                otf.i.payload[j].bias.eq(csr.quant[j].bias),
                otf.i.payload[j].multiplier.eq(csr.quant[j].multiplier),
                otf.i.payload[j].shift.eq(csr.quant[j].shift),
                otf.i.payload[j].relu.eq(csr.spatial_relu),
            ]
        m.d.comb += [
            otf.i.valid.eq(channel_buffer.o.valid),
            channel_buffer.o.ready.eq(otf.i.ready),
        ]
        tile_buffer = m.submodules.tile_buffer = StreamBuffer(otf.o.payload.shape())
        wiring.connect(m, otf.o, tile_buffer.i)
        wiring.connect(m, tile_buffer.o, reorder.i)

        # -- activations out -----------------------------------------------------------------
        m.d.comb += [self.m_axis_out_tdata[j * lane_bits:(j + 1) * lane_bits].eq(
            reorder.o.payload.data[j]) for j in range(V)]
        m.d.comb += self.m_axis_out_tkeep.eq(
            Cat(reorder.o.payload.keep[j].replicate(lane_bytes) for j in range(V)))
        m.d.comb += [
            self.m_axis_out_tlast.eq(reorder.o.payload.last),
            self.m_axis_out_tvalid.eq(reorder.o.valid),
            reorder.o.ready.eq(self.m_axis_out_tready),
            done.eq(running & reorder.o.valid & reorder.o.ready & reorder.o.payload.last),
        ]

        # -- status and counters -------------------------------------------------------------
        cycles = Signal(unsigned(self._counter_bits))
        with m.If(csr.start):
            m.d.sync += cycles.eq(0)
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
        # The summed counters are final perf_lag cycles after the array's last beat of the run
        # is taken; the run is done no sooner than that beat has crossed the buffers, the
        # output transform and the reorder buffer, so DONE needs no wait of its own for them.
        # (Should the tree grow deeper than that path, DONE would have to wait: refuse to build.)
        ahead = 2 * StreamBuffer.LATENCY + otf.LATENCY + OutputReorder.LATENCY
        if SparseArray.perf_lag(cfg) > ahead:
            raise AssertionError(f"the summed perf counters trail by "
                                 f"{SparseArray.perf_lag(cfg)} cycles, more than the "
                                 f"{ahead} from the array's output to m_axis_out: STATUS.DONE "
                                 f"would show before the counts are complete")
        # ARRAY_CYCLES: the array's cycles not idle, counted a cycle late from a register. The
        # AND of the sixteen PEs' idle spans the die, and with the counter's increment behind
        # it, it was the routed critical path (docs/fpga.md). Like the summed counters, the
        # count is complete long before DONE (the array's last beat still has `ahead` cycles
        # to go).
        array_busy = Signal()
        array_cycles = Signal(unsigned(self._counter_bits))
        m.d.sync += array_busy.eq(~array.idle)
        with m.If(array_busy):
            m.d.sync += array_cycles.eq(array_cycles + 1)
        m.d.comb += [
            csr.busy.eq(reduce(operator.or_, [running, *(~loader.idle for loader in loaders),
                                              *(wgt_in.busy for wgt_in in wgt_ins),
                                              ring.busy, array.loading])),
            csr.run_busy.eq(running),
            csr.done.eq(done),
            csr.error.eq(rejected | framing_error),
            csr.overflow.eq(array.overflow),
            csr.cycles.eq(cycles),
            csr.array_cycles.eq(array_cycles),
            csr.perf.eq(array.perf_sum),
            csr.wgt_records.eq(status.records),
            csr.wgt_channels.eq(status.channels),
            csr.wgt_k_count.eq(status.k_count),
        ]
        return m
