"""sw/config.py: AccelConfig validation, JSON round trip, and derived widths by brute force."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from sw.config import SCHEMA_VERSION, AccelConfig, ConfigError, signed_bits

SEED = 7


@pytest.mark.parametrize("field, value, allowed", [
    ("tile", 3, "one of 2, 4"),
    ("act_bits", 1, "an integer in [2, 16]"),
    ("wgt_bits", 17, "an integer in [2, 16]"),
    ("acc_bits", True, "an integer in [8, 48]"),
    ("acc_bits", 32.0, "an integer in [8, 48]"),
    ("c_max", 0, "an integer in [1, 4096]"),
    ("fifo_depth", 24, "a power of two"),
    ("tiles_in_flight", 1, "an integer in [2, 8]"),
    ("overflow", "clip", "one of wrap, saturate"),
    ("shift_bits", 9, "an integer in [1, 8]"),
    ("weight_ports", 5, "an integer in [1, 4]"),
    ("lanes", 0, "an integer in [1, 64]"),
    ("lanes", (1, 2, 3), "one integer in [1, 64], or 16 of them (one per Winograd coordinate "
                         "of F(2,3))"),
])
def test_validation_error_names_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ConfigError) as err:
        AccelConfig(**{field: value})
    assert str(err.value) == f"AccelConfig.{field}: {value!r} is not allowed; expected {allowed}"


def test_lanes_list_becomes_tuple_and_per_coord():
    cfg = AccelConfig(tile=2, lanes=list(range(1, 17)))
    assert cfg.lanes == tuple(range(1, 17))
    assert cfg.lanes_per_coord[5] == 6
    assert cfg.multipliers == sum(range(1, 17))
    assert AccelConfig(tile=4, lanes=3).multipliers == 36 * 3


@pytest.mark.parametrize("cfg", [
    AccelConfig(),
    AccelConfig(tile=4, act_bits=6, wgt_bits=5, acc_bits=20, overflow="saturate",
                lanes=tuple([1, 2] * 18), c_max=64, k_max=32, w_max=40),
])
def test_json_round_trip(cfg):
    text = cfg.to_json()
    back = AccelConfig.from_json(text, "winnow.json")
    assert back == cfg
    assert back.to_json() == text
    data = json.loads(text)
    assert data["derived"]["v_bits"] == cfg.v_bits
    assert data["derived"]["BT"] == cfg.BT.tolist()


def test_from_dict_errors_name_the_source():
    good = AccelConfig().to_dict()
    with pytest.raises(ConfigError, match="^cfg.json: expected a JSON object, got list$"):
        AccelConfig.from_dict([], "cfg.json")
    with pytest.raises(ConfigError, match="^cfg.json: schema 99 is not supported"):
        AccelConfig.from_dict({**good, "schema": 99}, "cfg.json")
    with pytest.raises(ConfigError, match="^cfg.json: unknown field\\(s\\) lane, speed; known"):
        AccelConfig.from_dict({**good, "lane": 1, "speed": 2}, "cfg.json")
    with pytest.raises(ConfigError,
                       match="^cfg.json: AccelConfig.tile: 6 is not allowed; expected one of"):
        AccelConfig.from_dict({**good, "tile": 6, "derived": None}, "cfg.json")
    stale = {**good, "derived": {**good["derived"], "v_bits": 3}}
    with pytest.raises(ConfigError, match="'derived' section does not match"):
        AccelConfig.from_dict(stale, "cfg.json")
    with pytest.raises(ConfigError, match="^x.json: not valid JSON"):
        AccelConfig.from_json("{", "x.json")


def test_load_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"^{missing}: cannot read"):
        AccelConfig.load(missing)


def test_signed_bits():
    assert [signed_bits(lo, hi) for lo, hi in [(0, 0), (-1, 0), (-2, 1), (-128, 127),
                                               (-129, 0), (0, 128)]] == [1, 1, 2, 8, 9, 9]


def _corner_range(mat: np.ndarray, lo: int, hi: int, exhaustive: bool) -> tuple[int, int]:
    """Range of ``mat X matᵀ`` over the box ``[lo, hi]^(n×n)``, by evaluating corners.

    A linear map reaches its extremes at corners. For small n every corner is tried; otherwise
    each output's extreme corner (chosen by coefficient signs) plus many random corners.
    """
    n = mat.shape[1]
    if exhaustive:
        bits = np.array(list(itertools.product((lo, hi), repeat=n * n)), dtype=np.int64)
        X = bits.reshape(-1, n, n)
    else:
        rng = np.random.default_rng(SEED)
        X = [np.where(rng.integers(0, 2, size=(4096, n, n)) == 1, hi, lo)]
        for r in range(mat.shape[0]):
            for s in range(mat.shape[0]):
                coef = np.outer(mat[r], mat[s])
                X.append(np.where(coef > 0, hi, lo)[None])
                X.append(np.where(coef > 0, lo, hi)[None])
        X = np.concatenate(X)
    Y = np.einsum("ij,bjk,lk->bil", mat, X, mat)
    return int(Y.min()), int(Y.max())


@pytest.mark.parametrize("tile, act_bits", [(2, 8), (2, 4), (4, 8), (4, 3)])
def test_v_range_brute_force(tile, act_bits):
    cfg = AccelConfig(tile=tile, act_bits=act_bits)
    assert cfg.v_range == _corner_range(cfg.BT, *cfg.act_range, exhaustive=tile == 2)
    assert cfg.v_bits == signed_bits(*cfg.v_range)
    if (tile, act_bits) == (2, 8):
        assert cfg.v_range == (-512, 510) and cfg.v_bits == 10


@pytest.mark.parametrize("tile, acc_bits", [(2, 32), (4, 24), (2, 16)])
def test_y_range_brute_force(tile, acc_bits):
    cfg = AccelConfig(tile=tile, acc_bits=acc_bits)
    assert cfg.y_range == _corner_range(cfg.AT, *cfg.m_range, exhaustive=False)
    assert cfg.y_bits == signed_bits(*cfg.y_range)


@pytest.mark.parametrize("acc_bits, m_bits", [(32, 24), (24, 24), (16, 16), (8, 8)])
def test_drained_accumulators_are_the_narrower_of_acc_bits_and_the_exact_sum(acc_bits, m_bits):
    cfg = AccelConfig(acc_bits=acc_bits)          # int8, c_max 64: the exact sum needs 24 bits
    assert cfg.exact_sum_bits == 24
    assert cfg.m_bits == m_bits and cfg.m_range == (-(1 << (m_bits - 1)), (1 << (m_bits - 1)) - 1)


@pytest.mark.parametrize("tile, wgt_bits", [(2, 8), (4, 6)])
def test_product_and_sum_bits_brute_force(tile, wgt_bits):
    cfg = AccelConfig(tile=tile, wgt_bits=wgt_bits, c_max=100)
    vs = np.arange(cfg.v_range[0], cfg.v_range[1] + 1)
    ws = np.arange(cfg.wgt_range[0], cfg.wgt_range[1] + 1)
    products = np.outer(ws, vs)
    assert cfg.product_bits == signed_bits(int(products.min()), int(products.max()))
    worst = cfg.c_max * max(abs(int(products.min())), int(products.max()))
    assert signed_bits(-worst, worst) <= cfg.exact_sum_bits
    assert AccelConfig(tile=tile, wgt_bits=wgt_bits, c_max=1).exact_sum_bits == cfg.product_bits


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_acc_internal_bits_hold_the_exact_sum(overflow):
    narrow = AccelConfig(acc_bits=16, overflow=overflow)
    assert narrow.acc_internal_bits == narrow.exact_sum_bits > 16
    wide = AccelConfig(acc_bits=48, overflow=overflow)
    assert wide.acc_internal_bits == wide.exact_sum_bits == 24


@pytest.mark.parametrize("text, problem", [
    (b"\xff\xfe{}", "not a winnow.json: not UTF-8 text (byte 0 is b'\\xff')"),
    (b"[" * 100000, "not valid JSON (nested too deeply)"),
    (b'{"schema": %d, "tile": ' % SCHEMA_VERSION + b"9" * 5000 + b"}",
     "not valid JSON (Exceeds the limit"),
    (b"[1, 2]", "expected a JSON object, got list"),
])
def test_load_refuses_malformed_files(tmp_path, text, problem):
    """Found by tests/test_fuzz.py: these were tracebacks (UnicodeDecodeError, RecursionError,
    ValueError)."""
    path = tmp_path / "winnow.json"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        AccelConfig.load(path)
    assert str(info.value).startswith(f"{path}: {problem}")


def test_missing_field_or_schema_is_refused_not_defaulted():
    good = AccelConfig(tile=4, acc_bits=24).to_dict()
    for name in ("acc_bits", "lanes", "overflow"):
        partial = {k: v for k, v in good.items() if k != name}
        with pytest.raises(ConfigError, match=f"^hw.json: missing field\\(s\\) {name};"):
            AccelConfig.from_dict(partial, "hw.json")
    with pytest.raises(ConfigError, match="^hw.json: no 'schema' field"):
        AccelConfig.from_dict({k: v for k, v in good.items() if k != "schema"}, "hw.json")
    # The previous version (schema 2 had no stream_values) and the next are refused, as are
    # the right number in another JSON type.
    for schema in (SCHEMA_VERSION - 1, SCHEMA_VERSION + 1, str(SCHEMA_VERSION),
                   float(SCHEMA_VERSION), True, None):
        with pytest.raises(ConfigError, match="is not supported"):
            AccelConfig.from_dict({**good, "schema": schema}, "hw.json")
    # 'derived' is checked when present, never required: it is recomputed from the fields.
    assert AccelConfig.from_dict({k: v for k, v in good.items() if k != "derived"}) == \
        AccelConfig(tile=4, acc_bits=24)


def test_wrong_types_are_refused():
    good = AccelConfig().to_dict()
    for name, value in (("tile", 2.0), ("tile", True), ("overflow", ["wrap"]),
                        ("lanes", 4.0), ("acc_bits", "32")):
        with pytest.raises(ConfigError, match=f"AccelConfig.{name}: "):
            AccelConfig.from_dict({**good, name: value, "derived": None})
    with pytest.raises(ConfigError, match=r"unknown field\(s\) '\\x1e'"):
        AccelConfig.from_dict({**good, "\x1e": 1})
