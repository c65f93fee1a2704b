"""Amaranth-pysim tests of :class:`hw.weight_ring.WeightRing` against a reference model of the ring.

Records are made the way :class:`hw.loader.WeightLoader` writes them (per PE its ``C``
directory entries, then its weight words from offset 0, one per beat), with a random number of
words per PE and directory entries whose ``start`` is anywhere in ``0 .. wmem_depth``; some
records carry a PE's entry ``c`` and word ``c`` in one beat (:func:`make_record`'s ``paired``),
as a loader that writes both at once would. A cycle-level
driver sends them with random valid gaps, strobes ``committed`` or ``rejected`` one to three
cycles after a record's final write entered, leaves a few header cycles before the next
record, and strobes ``start`` (``running`` then high for a given number of cycles, from the
next one) only when the ring is idle, as the accelerator's CSR block does.

:class:`RingModel` is the ring as its docstring specifies it. Every run is checked in every
cycle against it, bit-exact and cycle-exact:

* the beats on ``o``: every beat once, in order, each enabled half at its place (a word at
  ``(base + j) mod wmem_depth``; a directory entry in the load bank, ``start`` moved by
  ``base``), ``pe`` and the ``en`` bits unchanged, and no beat beyond the last (a half whose
  ``en`` is clear writes nothing, so its ``addr`` and ``data`` are not compared);
* when each leaves: the oldest beat held is released in every cycle unless ``running`` is
  high and either half would land on the running pass (a word whose offset is at least
  ``wmem_depth`` minus the pass's words, or a directory entry of the pass's bank), and it is
  on ``o`` in the next cycle (so two cycles after it was taken when it does not wait);
* ``i.ready`` exactly while fewer than two writes are held, ``busy`` exactly while a write
  taken has not left, ``bank`` the bank of the last record committed before the last START;
* independently of the hold rule: no beat leaves with a word onto one the running pass's
  record wrote, nor with an entry into its directory bank.

The random runs (a power-of-two and a non-power-of-two ``wmem_depth``, each under three
gap patterns) wrap the ring several times, load records beside a running pass, hold records
that do not fit, and hold a second record during one run. Directed tests assert literal
addresses and banks, the hold of a record that exceeds the room and of a second record, a
rejected record's base reused, and beats carrying an entry and a word, each half placed and
each able to hold the beat.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace

import pytest
from amaranth.sim import Simulator

from hw.array import SparseArray
from hw.pe import directory_bank_bit, load_write
from hw.weight_ring import WeightRing
from streams import payload_value
from sw import formats
from sw.config import AccelConfig
from verif.stalls import pattern

#: Sixteen PEs of two lanes, six channels (directory bank bit 3), a 16-word ring.
CFG16 = AccelConfig(tile=2, lanes=2, k_max=4, c_max=6, wmem_depth=16)
#: The same with a 24-word ring: the modulo is a compare and subtract, not a dropped bit.
CFG24 = AccelConfig(tile=2, lanes=2, k_max=4, c_max=6, wmem_depth=24)
CONFIGS = {"depth16": CFG16, "depth24": CFG24}
GAPS = ("none", "stall25", "bursts")


# -- records ----------------------------------------------------------------------------------

def make_record(cfg: AccelConfig, rng: random.Random, words: list[int],
                channels: int | None = None, paired: bool = False) -> list[dict]:
    """The loader's writes of one record: per PE ``xi`` its ``C`` directory entries (random
    ``start`` in ``0 .. wmem_depth`` and count), then ``words[xi]`` random weight words, one
    per beat; with ``paired``, beat ``j`` of PE ``xi`` carries its entry ``j`` and its word
    ``j`` (either left out once its list has ended)."""
    channels = channels or rng.randint(1, 3)
    data_bits = SparseArray.layouts(cfg)[1]["word"].shape["data"].width
    writes = []
    for xi, count in enumerate(words):
        lay = formats.directory_layout(cfg, xi)
        entries = [(c, rng.randint(0, cfg.wmem_depth) | (rng.randrange(1 << lay.count_bits)
                                                         << lay.count_lsb))
                   for c in range(channels)]
        pe_words = [(j, rng.getrandbits(data_bits)) for j in range(count)]
        if paired:
            writes += [load_write(xi, entry=entries[j] if j < channels else None,
                                  word=pe_words[j] if j < count else None)
                       for j in range(max(channels, count))]
        else:
            writes += [load_write(xi, entry=e) for e in entries]
            writes += [load_write(xi, word=w) for w in pe_words]
    return writes


def word_counts(cfg: AccelConfig, rng: random.Random, span: int, fill: float = 0.4) -> list[int]:
    """Words per PE of a record whose largest PE has exactly ``span`` words: PE ``span % n``
    has ``span``, the others ``0 .. span`` (most of them none, to keep the records short)."""
    counts = [rng.randint(0, span) if rng.random() < fill else 0 for _ in range(cfg.coords)]
    counts[span % cfg.coords] = span
    return counts


def record_span(writes: list[dict]) -> int:
    return max((wr["word"]["addr"] + 1 for wr in writes if wr["word"]["en"]), default=0)


def significant(beat: dict) -> dict:
    """``beat`` with the ``addr`` and ``data`` of a half whose ``en`` is clear zeroed: what
    it writes."""
    return {**beat, **{half: beat[half] if beat[half]["en"] else {"en": 0, "addr": 0, "data": 0}
                       for half in ("entry", "word")}}


# -- the reference model ----------------------------------------------------------------------

class RingModel:
    """The ring as :class:`hw.weight_ring.WeightRing`'s docstring specifies it."""

    def __init__(self, cfg: AccelConfig):
        self.depth = cfg.wmem_depth
        self.bank_bit = directory_bank_bit(cfg)
        self.start_mask = (1 << formats.directory_layout(cfg, 0).addr_bits) - 1
        self.base = 0             # where the record being loaded starts
        self.span = 0             # its highest word offset + 1 so far
        self.load_bank = 0        # the directory bank it writes
        self.placed_words = set()  # (pe, addr) its words went to
        self.committed = None     # (words, span, bank) of the last committed record
        self.bank = 0             # the bank output
        self.room = 0             # running: word offsets below this are free
        self.run_words = frozenset()  # (pe, addr) the running pass's record wrote

    def place(self, wr: dict) -> dict:
        """Where beat ``wr`` of the record being loaded goes (its enabled halves; the others
        as :func:`significant` shows them)."""
        placed = significant(wr)
        word, entry = wr["word"], wr["entry"]
        if word["en"]:
            addr = (self.base + word["addr"]) % self.depth
            self.span = max(self.span, word["addr"] + 1)
            self.placed_words.add((wr["pe"], addr))
            placed["word"] = {**word, "addr": addr}
        if entry["en"]:
            start = (entry["data"] & self.start_mask) + self.base
            placed["entry"] = {**entry,
                               "addr": entry["addr"] + (self.load_bank << self.bank_bit),
                               "data": (entry["data"] & ~self.start_mask) | (start % self.depth)}
        return placed

    def commit(self) -> None:
        self.committed = (frozenset(self.placed_words), self.span, self.load_bank)
        self.base = (self.base + self.span) % self.depth
        self.span, self.placed_words, self.load_bank = 0, set(), self.load_bank ^ 1

    def reject(self) -> None:
        self.span, self.placed_words = 0, set()

    def start(self) -> None:
        assert self.committed is not None, "test bug: START before any committed record"
        self.run_words, span, self.bank = self.committed
        self.room = self.depth - span

    def waits(self, wr: dict, placed: dict) -> bool:
        """The hold rule (while ``running``): either half of ``wr`` would land on the running
        pass."""
        return bool((wr["word"]["en"] and wr["word"]["addr"] >= self.room)
                    or (wr["entry"]["en"] and self.entry_bank(placed) == self.bank))

    def on_run(self, placed: dict) -> bool:
        """Independently of the hold rule: ``placed`` overwrites what the running pass reads."""
        return bool((placed["word"]["en"]
                     and (placed["pe"], placed["word"]["addr"]) in self.run_words)
                    or (placed["entry"]["en"] and self.entry_bank(placed) == self.bank))

    def entry_bank(self, placed: dict) -> int:
        """The directory bank ``placed``'s entry goes to."""
        return (placed["entry"]["addr"] >> self.bank_bit) & 1


# -- the driver -------------------------------------------------------------------------------

@dataclass
class Load:
    """Send a record's ``writes``, then strobe ``outcome`` (``committed`` or ``rejected``)."""
    writes: list[dict]
    outcome: str = "committed"


@dataclass
class Start:
    """Once every write has left and no run is on: strobe ``start``; ``running`` is then high
    for ``cycles`` cycles from the next one."""
    cycles: int


@dataclass
class Idle:
    """Wait until the run has ended and every write has left."""


@dataclass
class Write:
    """One write as it went through the ring."""
    record: int
    index: int                # its position in the record
    sent: dict
    placed: dict              # where the model says it goes
    taken: int                # cycle it entered i
    left: int | None = None   # cycle it was on o
    waited: bool = False      # it was held by the hold rule in some cycle


@dataclass
class Trace:
    writes: list[Write] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    bank: list[int] = field(default_factory=list)
    runs: list[tuple[int, int]] = field(default_factory=list)  # first, last running cycle
    strobes: list[tuple[int, str, int]] = field(default_factory=list)  # cycle, name, record

    def record(self, r: int) -> list[Write]:
        return [w for w in self.writes if w.record == r]


class Feedback:
    """What the producer learns after each cycle."""
    taken = False
    running = False
    inflight = 0


def producer(steps, rng: random.Random, gap, fb: Feedback):
    """Per cycle, the drives of ``i`` and the strobes: a generator the bench ``send``s to."""
    record = 0
    for step in steps:
        if isinstance(step, Load):
            for k, wr in enumerate(step.writes):
                while next(gap):
                    yield {}
                while True:
                    yield {"payload": wr, "record": record, "index": k}
                    if fb.taken:
                        break
            for _ in range(rng.randint(0, 2)):      # the final write entered cycles before
                yield {}
            yield {step.outcome: 1, "record": record}
            record += 1
            for _ in range(rng.randint(2, 4)):      # the next record's header
                yield {}
        elif isinstance(step, Start):
            while fb.running or fb.inflight:
                yield {}
            yield {"start": step.cycles}
        elif isinstance(step, Idle):
            while fb.running or fb.inflight:
                yield {}
        else:
            raise TypeError(step)


def simulate(cfg: AccelConfig, steps, rng: random.Random, gaps: str = "none",
             quiet: int = 12, deadline: int = 40000) -> Trace:
    """Run ``steps`` through a fresh ring; check every cycle against :class:`RingModel`."""
    dut = WeightRing(cfg)
    model = RingModel(cfg)
    trace = Trace()
    fb = Feedback()
    drives = producer(steps, rng, pattern(gaps, rng), fb)

    async def bench(ctx):
        inflight: deque[Write] = deque()   # taken, not yet on o
        expect_out = None                  # the write that must be on o this cycle
        run_left = 0
        ending = None
        exhausted = False
        cycle = 0
        drive = next(drives)
        while ending is None or cycle < ending + quiet:
            assert cycle < deadline, f"not done in {deadline} cycles"
            running = run_left > 0
            payload = drive.get("payload")
            if payload is not None:
                ctx.set(dut.i.payload, payload)
            ctx.set(dut.i.valid, payload is not None)
            for name in ("committed", "rejected", "start"):
                ctx.set(getattr(dut, name), name in drive)
            ctx.set(dut.running, running)
            _, _, ready, o_valid, o_payload, busy, bank = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload, dut.busy, dut.bank)
            trace.running.append(int(running))
            trace.ready.append(ready)
            trace.busy.append(busy)
            trace.bank.append(bank)
            where = f"cycle {cycle}"

            # -- o: exactly the write the model releases, where the model places it ---------
            assert busy == (len(inflight) > 0), \
                f"{where}: busy {busy} with {len(inflight)} writes taken and not left"
            assert ready == (len(inflight) - o_valid < 2), \
                f"{where}: i.ready {ready} with {len(inflight) - o_valid} writes held"
            if expect_out is None:
                assert not o_valid, (f"{where}: a write on o the model does not release: "
                                     f"{payload_value(o_payload)}")
            else:
                assert o_valid, (f"{where}: write {expect_out.index} of record "
                                 f"{expect_out.record} not on o")
                got = significant(payload_value(o_payload))
                assert got == expect_out.placed, (
                    f"{where}: write {expect_out.index} of record {expect_out.record} "
                    f"({expect_out.sent}) on o as {got}, expected {expect_out.placed}")
                assert inflight.popleft() is expect_out
                expect_out.left = cycle
                if running:
                    assert not model.on_run(got), \
                        f"{where}: {got} lands on the running pass"
            assert bank == model.bank, f"{where}: bank {bank}, expected {model.bank}"

            # -- the next release: the oldest write held, unless it would land on the run ----
            expect_out = None
            if inflight:
                head = inflight[0]
                if running and model.waits(head.sent, head.placed):
                    head.waited = True
                else:
                    expect_out = head

            # -- what entered, and the strobes (after the writes: they take effect next) -----
            fb.taken = payload is not None and bool(ready)
            if fb.taken:
                write = Write(drive["record"], drive["index"], payload, model.place(payload),
                              cycle)
                trace.writes.append(write)
                inflight.append(write)
            if "committed" in drive:
                model.commit()
                trace.strobes.append((cycle, "committed", drive["record"]))
            if "rejected" in drive:
                model.reject()
                trace.strobes.append((cycle, "rejected", drive["record"]))
            if "start" in drive:
                assert not inflight and not running, "test bug: START while busy"
                model.start()
                run_left = drive["start"]
                trace.runs.append((cycle + 1, cycle + run_left))
            elif running:
                run_left -= 1
            fb.running, fb.inflight = run_left > 0, len(inflight)
            cycle += 1
            drive = {}
            if not exhausted:
                try:
                    drive = next(drives)
                except StopIteration:
                    exhausted = True
            if exhausted and ending is None and not run_left and not inflight:
                ending = cycle
        assert not inflight

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


# -- random runs against the model ------------------------------------------------------------

def random_steps(cfg: AccelConfig, rng: random.Random, rounds: int = 6) -> list:
    """Records and runs: after each START the next pass's record fits beside the run (even
    rounds; a second record then follows in the same run) or does not (odd rounds); rejected
    records (cut anywhere) come in between, and the ring wraps several times. The first run
    is long enough for its two records to reach it: a rejected record in it fits the room.
    Half of the records carry a PE's entries and words in pairs."""
    depth = cfg.wmem_depth
    steps = []

    def load(span: int, outcome: str = "committed") -> int:
        writes = make_record(cfg, rng, word_counts(cfg, rng, span), paired=rng.random() < 0.5)
        if outcome == "rejected":
            writes = writes[:rng.randint(0, len(writes))]
        steps.append(Load(writes, outcome))
        return record_span(writes)

    last = load(rng.randint(depth // 2, depth))
    for r in range(rounds):
        steps.append(Start(600 if r == 0 else rng.randint(30, 300)))
        room = depth - last
        if rng.random() < 0.3:
            load(rng.randint(0, room) if r == 0 else rng.randint(1, depth), "rejected")
        if r % 2 == 0:
            last = load(rng.randint(0, room))
            if rng.random() < 0.3:
                load(rng.randint(1, depth), "rejected")
            last = load(rng.randint(1, depth))
        else:
            last = load(rng.randint(min(room + 1, depth), depth))
        if rng.random() < 0.5:
            steps.append(Idle())
    return steps


@pytest.mark.parametrize("gaps", GAPS)
@pytest.mark.parametrize("name", CONFIGS)
def test_writes_match_model(name, gaps, rng):
    """Every write once, in order, at the model's place and cycle, over several records and
    runs; the ring wraps, records load beside a run, and writes wait for a run's end."""
    cfg = CONFIGS[name]
    seed = int(rng.integers(1 << 31))
    print(f"seed {seed}")
    pyrng = random.Random(seed)
    steps = random_steps(cfg, pyrng)
    trace = simulate(cfg, steps, pyrng, gaps)
    sent = [wr for step in steps if isinstance(step, Load) for wr in step.writes]
    assert [w.sent for w in trace.writes] == sent
    assert all(w.left is not None for w in trace.writes)
    # what the run covered
    words = [w for w in trace.writes if w.sent["word"]["en"]]
    assert any(w.placed["word"]["addr"] < w.sent["word"]["addr"] for w in words), \
        "the ring never wrapped"
    assert sum(record_span(step.writes) for step in steps if isinstance(step, Load)
               and step.outcome == "committed") > 2 * cfg.wmem_depth
    assert any(trace.running[w.left] for w in trace.writes), "nothing loaded beside a run"
    assert any(w.waited for w in words if not w.sent["entry"]["en"]), \
        "no word waited for a run's end"
    assert any(w.waited for w in trace.writes if not w.sent["word"]["en"]), \
        "no second record waited for a run's end"
    assert any(w.sent["entry"]["en"] and w.sent["word"]["en"] and trace.running[w.left]
               for w in trace.writes), "no beat with an entry and a word beside a run"


# -- directed ---------------------------------------------------------------------------------

def pe0_record(cfg: AccelConfig, rng: random.Random, words: int, channels: int = 2,
               paired: bool = False) -> list:
    """A record whose words are all PE 0's (every PE still has its ``channels`` entries)."""
    return make_record(cfg, rng, [words] + [0] * (cfg.coords - 1), channels, paired)


def pe0_words(trace: Trace, record: int) -> list[int]:
    return [w.placed["word"]["addr"] for w in trace.record(record) if w.sent["word"]["en"]]


def banks(trace: Trace, record: int, cfg: AccelConfig) -> set[int]:
    return {w.placed["entry"]["addr"] >> directory_bank_bit(cfg) for w in trace.record(record)
            if w.sent["entry"]["en"]}


def test_full_rate_latency():
    """No run: one write per cycle in, each on ``o`` LATENCY cycles later, ``i.ready`` high."""
    rng = random.Random(1)
    records = [make_record(CFG16, rng, word_counts(CFG16, rng, span)) for span in (9, 16, 5)]
    trace = simulate(CFG16, [Load(r) for r in records], rng)
    for r, writes in enumerate(records):
        taken = [w.taken for w in trace.record(r)]
        assert taken == list(range(taken[0], taken[0] + len(writes)))
    assert all(w.left == w.taken + WeightRing.LATENCY for w in trace.writes)
    assert all(trace.ready)
    # base moves by each record's span: 0, 9, 25 = 9 (mod 16)
    assert [pe0_words(trace, r)[:1] for r in range(3)] == [[0], [9], [9]]


def test_bank_follows_start():
    """``bank`` is 0 after reset and changes only at START, to the last committed record's
    bank; each committed record flips the load bank, a rejected one does not."""
    rng = random.Random(2)
    steps = [Load(pe0_record(CFG16, rng, 3)),                           # 0: bank 0
             Start(5), Idle(),
             Load(pe0_record(CFG16, rng, 4)),                           # 1: bank 1
             Idle(), Start(5), Idle(),
             Load(pe0_record(CFG16, rng, 5)[:7], "rejected"),          # 2: bank 0, rejected
             Load(pe0_record(CFG16, rng, 2)),                           # 3: bank 0
             Start(5), Idle()]
    trace = simulate(CFG16, steps, rng)
    assert [banks(trace, r, CFG16) for r in range(4)] == [{0}, {1}, {0}, {0}]
    (first, _), (second, _), (third, _) = trace.runs
    assert set(trace.bank[:second]) == {0}
    assert set(trace.bank[second:third]) == {1}
    assert set(trace.bank[third:]) == {0}


@pytest.mark.parametrize("name", CONFIGS)
def test_record_beyond_room_waits_for_run_end(name):
    """A record whose words exceed the room beside the running pass loads up to its first
    word at offset ``room`` during the run, holds it (``busy`` high, ``i.ready`` low once two
    are held) until ``running`` falls, then completes."""
    cfg = CONFIGS[name]
    depth, room = cfg.wmem_depth, 6
    rng = random.Random(3)
    run = 80
    steps = [Load(pe0_record(cfg, rng, depth - room)), Start(run),
             Load(pe0_record(cfg, rng, 12))]
    trace = simulate(cfg, steps, rng)
    (first, last), = trace.runs
    b = trace.record(1)
    # PE 0's two entries and words 0 .. room-1 during the run; word `room` and after, later
    assert [w.left <= last for w in b] == [True] * (2 + room) + [False] * (len(b) - 2 - room)
    held = b[2 + room]
    assert held.sent["word"]["en"] and held.sent["word"]["addr"] == room and held.waited
    # released in the first cycle without running (last + 1), on o in the next
    assert held.left == last + 2
    assert all(trace.busy[held.taken + 1:last + 2])
    assert not any(trace.ready[held.taken + 3:last + 1])
    assert not any(w.left in range(held.taken + 2, last + 2) for w in trace.writes)
    assert last - held.taken > 50           # and it waited that long
    # the words go on round the ring past its end, onto the words the finished run read
    assert pe0_words(trace, 1) == [(depth - room + j) % depth for j in range(12)]
    assert trace.strobes[-1][1:] == ("committed", 1) and trace.strobes[-1][0] > last


def test_second_record_waits_at_its_first_entry():
    """During one run, the next pass's record (fits beside it) loads completely; the record
    after it writes the running pass's directory bank, so it waits at its first entry until
    the run ends, all its words behind it."""
    cfg = CFG16
    rng = random.Random(4)
    run = 200
    steps = [Load(pe0_record(cfg, rng, 6)), Start(run),
             Load(pe0_record(cfg, rng, 4)), Load(pe0_record(cfg, rng, 3))]
    trace = simulate(cfg, steps, rng)
    (first, last), = trace.runs
    assert all(first <= w.left <= last for w in trace.record(1))
    assert [banks(trace, r, cfg) for r in range(3)] == [{0}, {1}, {0}]
    c = trace.record(2)
    assert c[0].waited and c[0].left == last + 2
    assert all(w.left > last for w in c)
    assert all(trace.busy[c[0].taken + 1:last + 1])
    # its words follow the second record's: base 6 + 4
    assert pe0_words(trace, 2) == [10, 11, 12]


def test_rejected_record_keeps_base():
    """A rejected record's span is dropped: the next record starts where it started, and the
    one after that moves the base by its own span only (a 24-word ring, wrapping)."""
    cfg = CFG24
    rng = random.Random(5)
    a = pe0_record(cfg, rng, 20)
    b = pe0_record(cfg, rng, 7)[:2 + 7]        # PE 0's entries and all its 7 words
    c = pe0_record(cfg, rng, 3)
    d = pe0_record(cfg, rng, 6)
    c[0]["entry"]["data"] = (c[0]["entry"]["data"] & ~0x1F) | 24  # start = wmem_depth: an empty
    c[1]["entry"]["data"] = (c[1]["entry"]["data"] & ~0x1F) | 2   # column at the end
    trace = simulate(cfg, [Load(a), Load(b, "rejected"), Load(c), Load(d)], rng)
    assert pe0_words(trace, 0) == list(range(20))
    assert pe0_words(trace, 1) == [20, 21, 22, 23, 0, 1, 2]
    assert pe0_words(trace, 2) == [20, 21, 22]
    assert pe0_words(trace, 3) == [23, 0, 1, 2, 3, 4]
    assert [banks(trace, r, cfg) for r in range(4)] == [{0}, {1}, {1}, {0}]
    assert [w.placed["entry"]["data"] & 0x1F for w in trace.record(2)[:2]] == [20, 22]


def test_beat_with_entry_and_word():
    """Beats carrying a PE's entry and word together: both halves placed (the word in the ring,
    the entry in the load bank with ``start`` moved by ``base``), and either half holds the
    beat while a run goes: the word when its offset reaches the room (the entry alone would
    go), the entry when it is of the running pass's bank (the word alone would go)."""
    cfg = CFG16
    rng = random.Random(6)
    start_mask = (1 << formats.directory_layout(cfg, 0).addr_bits) - 1

    def placed_entry(sent: dict, base: int, bank: int) -> dict:
        entry = sent["entry"]
        start = ((entry["data"] & start_mask) + base) % cfg.wmem_depth
        return {"en": 1, "addr": entry["addr"] + (bank << directory_bank_bit(cfg)),
                "data": (entry["data"] & ~start_mask) | start}

    # the word half holds: the run's record spans 12 words, so 4 are free beside it
    b = pe0_record(cfg, rng, 8, channels=6, paired=True)
    assert all(wr["entry"]["en"] and wr["word"]["en"] for wr in b[:6])
    run = 80
    trace = simulate(cfg, [Load(pe0_record(cfg, rng, 12)), Start(run), Load(b)], rng)
    (first, last), = trace.runs
    beats = trace.record(1)
    assert [w.left <= last for w in beats[:8]] == [True] * 4 + [False] * 4
    held = beats[4]
    assert held.waited and held.left == last + 2
    for j, w in enumerate(beats[:8]):
        assert w.placed["word"] == {**w.sent["word"], "addr": (12 + j) % 16}
        if j < 6:
            assert w.placed["entry"] == placed_entry(w.sent, 12, 1)

    # the entry half holds: the second record of one run writes the running pass's bank
    c = pe0_record(cfg, rng, 3, paired=True)
    trace = simulate(cfg, [Load(pe0_record(cfg, rng, 10)), Start(200),
                           Load(pe0_record(cfg, rng, 2)), Load(c)], rng)
    (first, last), = trace.runs
    assert all(first <= w.left <= last for w in trace.record(1))
    beats = trace.record(2)
    assert beats[0].sent["entry"]["en"] and beats[0].sent["word"]["en"]
    assert beats[0].waited and beats[0].left == last + 2
    assert all(w.left > last for w in beats)
    assert [w.placed["word"]["addr"] for w in beats[:3]] == [12, 13, 14]
    assert [w.placed["entry"] for w in beats[:2]] == [placed_entry(w.sent, 12, 0)
                                                      for w in beats[:2]]


# -- two weight-load ports ------------------------------------------------------------------

#: CFG16 with two weight-load ports: PEs 0..7 on ``i``, 8..15 on ``i1``.
CFG16_2 = replace(CFG16, weight_ports=2)


def two_port_run(cfg: AccelConfig, records: list[tuple[list[dict], str]], runs: dict[int, int],
                 rng: random.Random) -> dict:
    """Send each record's writes on the two ports at once (each port its own PEs' writes, in
    order, with random valid gaps), strobe its outcome once both ports have sent all of it,
    and before record ``r`` in ``runs`` strobe ``start`` (``running`` for ``runs[r]`` cycles).
    Check every output beat against :class:`RingModel`: each port's beats in order, at the
    model's place, never onto the running pass. Returns per port the cycles beats left."""
    dut = WeightRing(cfg)
    model = RingModel(cfg)
    shares = [formats.port_pes(cfg, p) for p in range(cfg.weight_ports)]
    ports = dut.ports()
    left: dict[int, list[int]] = {p: [] for p in range(len(ports))}

    async def bench(ctx):
        inflight = [deque() for _ in ports]
        run_left = 0
        cycle = 0

        async def tick(drives, strobes=()):
            nonlocal run_left, cycle
            for p, (port_i, _) in enumerate(ports):
                if drives[p] is not None:
                    ctx.set(port_i.payload, drives[p])
                ctx.set(port_i.valid, drives[p] is not None)
            for name in ("committed", "rejected", "start"):
                ctx.set(getattr(dut, name), name in strobes)
            ctx.set(dut.running, run_left > 0)
            samples = await ctx.tick().sample(*[x for port_i, port_o in ports
                                                for x in (port_i.ready, port_o.valid,
                                                          port_o.payload)])
            taken = []
            for p in range(len(ports)):
                ready, o_valid, o_payload = samples[2 + 3 * p:5 + 3 * p]
                if o_valid:
                    got = significant(payload_value(o_payload))
                    want = inflight[p].popleft()
                    assert got == want, f"cycle {cycle} port {p}: {got}, expected {want}"
                    if run_left > 0:
                        assert not model.on_run(got), f"cycle {cycle}: {got} lands on the run"
                    left[p].append(cycle)
                taken.append(drives[p] is not None and bool(ready))
            for p, took in enumerate(taken):
                if took:
                    inflight[p].append(model.place(drives[p]))
            if "committed" in strobes:
                model.commit()
            if "rejected" in strobes:
                model.reject()
            if "start" in strobes:
                model.start()
            elif run_left:
                run_left -= 1
            cycle += 1
            return taken

        for r, (writes, outcome) in enumerate(records):
            if r in runs:
                while any(inflight) or run_left:
                    await tick([None] * len(ports))
                await tick([None] * len(ports), ("start",))
                run_left = runs[r]
            queues = [deque(wr for wr in writes if wr["pe"] in share) for share in shares]
            while any(queues):
                drives = [q[0] if q and rng.random() < 0.7 else None for q in queues]
                for p, took in enumerate(await tick(drives)):
                    if took:
                        queues[p].popleft()
            await tick([None] * len(ports))
            await tick([None] * len(ports), (outcome,))
            for _ in range(rng.randint(2, 4)):
                await tick([None] * len(ports))
        for _ in range(1000):
            if not any(inflight) and not run_left:
                break
            await tick([None] * len(ports))
        assert not any(inflight), "beats never left"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return left


@pytest.mark.parametrize("ports", [2, 3, 4])
def test_ports_share_base_and_bank(ports, rng):
    """Two to four ports place their PEs' writes with one ``base`` and bank: a record's span
    is its largest word count over all ports' PEs, so the next record starts past the
    farthest one whichever port wrote it; records load beside a run and wait at its edge on
    every port; a rejected record's words are forgotten on all."""
    seed = int(rng.integers(1 << 31))
    print(f"seed {seed}")
    pyrng = random.Random(seed)
    cfg = replace(CFG16, weight_ports=ports)
    records = []
    for r in range(12):
        counts = word_counts(cfg, pyrng, pyrng.randint(1, cfg.wmem_depth // 2))
        outcome = "rejected" if r % 5 == 4 else "committed"
        records.append((make_record(cfg, pyrng, counts, paired=pyrng.random() < 0.5), outcome))
    left = two_port_run(cfg, records, {2: 150, 6: 40, 9: 300}, pyrng)
    assert all(left.values()), "a port sent nothing"
    # all ports were busy in the same cycles: the loaders' rates add up
    assert set.intersection(*(set(cycles) for cycles in left.values()))


def test_two_ports_span_is_the_farther_port():
    """Port 1's PE with more words than any of port 0's sets the span: the next record's
    words on port 0 start past it."""
    rng = random.Random(7)
    cfg = CFG16_2
    first = [0] * cfg.coords
    first[3], first[12] = 2, 9                 # PE 3 on port 0, PE 12 on port 1
    second = [0] * cfg.coords
    second[0] = 3
    a = make_record(cfg, rng, first, channels=1)
    b = make_record(cfg, rng, second, channels=1)
    model = RingModel(cfg)
    for wr in a:
        model.place(wr)
    model.commit()
    assert model.base == 9
    placed = [model.place(wr) for wr in b if wr["pe"] == 0 and wr["word"]["en"]]
    assert [p["word"]["addr"] for p in placed] == [9, 10, 11]
    two_port_run(cfg, [(a, "committed"), (b, "committed")], {}, rng)
