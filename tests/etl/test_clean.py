"""Cleaning rules on literal rows: ts parsing, every quarantine reason, duplicates, bots, weights."""
from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.config import CleanConfig
from recsys.etl import clean
from recsys.etl.landing import OUTPUT_COLUMNS
from recsys.schema import CLEAN_INTERACTIONS

DS = "2024-01-10"
CFG = CleanConfig(
    event_weights={"view": 1.0, "click": 2.0, "purchase": 5.0, "rating": 1.0},
    rating_range=(0.5, 5.0), max_quantity=10, late_tolerance_hours=24, early_tolerance_hours=2,
    bot_max_events_per_day=3, internal_users=("qa",),
)
UTC = dt.timezone.utc


def _raw(spark, rows):
    """Rows of (event_id, user_id, item_id, event_type, value, ts[, malformed]) as landing output."""
    full = [(*r[:6], r[6] if len(r) > 6 else False, "f.jsonl", f"raw{i}", None) for i, r in enumerate(rows)]
    ddl = ", ".join(f"{c} {'boolean' if c == 'malformed' else 'string'}" for c in OUTPUT_COLUMNS)
    return spark.createDataFrame(full, ddl)


@pytest.fixture(scope="module")
def utc(spark):
    spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_parse_ts_accepts_iso_and_epoch_forms(spark, utc):
    noon = dt.datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
    cases = [
        ("2024-01-10T12:00:00Z", noon),
        ("2024-01-10T14:00:00+02:00", noon),
        ("2024-01-10 12:00:00", noon),            # naive means UTC
        ("1704888000", noon),                     # epoch seconds
        ("1704888000000", noon),                  # epoch milliseconds
        ("1704888000.5", noon + dt.timedelta(milliseconds=500)),
        ("yesterday", None), ("NaN", None), ("1e400", None), ("", None), (None, None),
    ]
    df = spark.createDataFrame([(c,) for c, _ in cases], "s string")
    got = [r["t"] for r in df.select(clean.parse_ts(F.col("s")).alias("t")).collect()]
    want = [None if w is None else w.replace(tzinfo=None) for _, w in cases]
    assert got == want


def test_every_reason_in_precedence_order(spark, utc):
    ok = ("e", "u1", "i1", "view", None, "2024-01-10T08:00:00Z")
    rows = [
        ("m", "u1", "i1", "view", None, "2024-01-10T08:00:00Z", True),   # malformed wins
        ("e1", " ", "i1", "view", None, "2024-01-10T08:00:00Z"),
        ("e2", "u1", "bad\titem", "view", None, "2024-01-10T08:00:00Z"),
        ("e3", "u1", "i1", "hover", None, "2024-01-10T08:00:00Z"),
        ("e4", "u1", "i1", "view", None, "soon"),
        ("e5", "u1", "i1", "view", None, "2024-01-08T23:59:59Z"),       # > 24 h late
        ("e6", "u1", "i1", "view", None, "2024-01-11T02:00:00Z"),       # end of early tolerance
        ("e7", "u1", "i1", "rating", "5.5", "2024-01-10T08:00:00Z"),
        ("e8", "u1", "i1", "rating", "abc", "2024-01-10T08:00:00Z"),
        ("e9", "u1", "i1", "purchase", "0", "2024-01-10T08:00:00Z"),
        ("e10", "qa", "i1", "view", None, "2024-01-10T08:00:00Z"),
        ("e11", *ok[1:]),
        ("e12", "u1", "i1", "VIEW ", "junk", "2024-01-09T00:00:00Z"),    # 24 h late: accepted
    ]
    routed = clean.route(_raw(spark, rows), DS, CFG)
    got = {r["event_id"]: r["reason"] for r in routed.collect()}
    assert got == {
        "m": "malformed_row", "e1": "missing_id", "e2": "malformed_id", "e3": "unknown_event_type",
        "e4": "bad_ts", "e5": "ts_out_of_window", "e6": "ts_out_of_window", "e7": "bad_value",
        "e8": "bad_value", "e9": "bad_value", "e10": "internal_user", "e11": None, "e12": None,
    }


def test_duplicates_keep_the_earliest_good_copy(spark, utc):
    rows = [
        ("d", "u1", "i1", "view", None, "2024-01-10T09:00:00Z"),
        ("d", "u1", "i1", "view", None, "2024-01-10T08:00:00Z"),
        ("d", "u1", "i1", "view", None, "garbage"),  # a broken copy never hides a good one
        ("x", "u2", "i2", "click", None, "2024-01-10T10:00:00Z"),
    ]
    routed = clean.route(_raw(spark, rows), DS, CFG)
    got = sorted((r["raw"], r["reason"], r["duplicate"]) for r in routed.collect())
    assert got == [("raw0", None, True), ("raw1", None, False), ("raw2", "bad_ts", False),
                   ("raw3", None, False)]


def test_bot_users_are_quarantined_whole_day(spark, utc):
    bot = [(f"b{i}", "bot", "i1", "view", None, "2024-01-10T08:00:00Z") for i in range(4)]
    human = [(f"h{i}", "ann", "i1", "view", None, "2024-01-10T08:00:00Z") for i in range(3)]
    routed = clean.route(_raw(spark, bot + human), DS, CFG)
    got = {(r["user_id"], r["reason"]) for r in routed.collect()}
    assert got == {("bot", "bot_user"), ("ann", None)}


def test_clean_rows_types_weights_and_values(spark, utc):
    rows = [
        ("a", "u1", "i1", "rating", "4.5", "1704888000"),
        ("b", "u1", "i2", "purchase", "2", "1704888000000"),
        ("c", "u2", "i1", "view", "7", "2024-01-10T12:00:00Z"),  # a view's value is noise
        ("d", "u2", "i1", "purchase", None, "2024-01-10T12:00:00Z"),
    ]
    out = clean.clean_rows(clean.route(_raw(spark, rows), DS, CFG))
    noon = dt.datetime(2024, 1, 10, 12)
    expected = spark.createDataFrame([
        ("a", "u1", "i1", "rating", 4.5, 4.5, noon),
        ("b", "u1", "i2", "purchase", 2.0, 5.0, noon),
        ("c", "u2", "i1", "view", None, 1.0, noon),
        ("d", "u2", "i1", "purchase", None, 5.0, noon),
    ], CLEAN_INTERACTIONS)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_quarantine_rows_keep_reason_file_and_raw(spark, utc):
    rows = [("a", "u1", "i1", "hover", None, "1704888000")]
    out = clean.quarantine_rows(clean.route(_raw(spark, rows), DS, CFG)).collect()
    assert [tuple(r) for r in out] == [("unknown_event_type", "f.jsonl", "raw0", None)]


def test_erased_users_are_quarantined_first_without_payload(spark, utc):
    """The tombstone's keyed hash, matched on the canonical id: `erased_user` comes before every
    row rule (so a bad ts does not keep the payload), other users and other keys are untouched."""
    from recsys.etl.erasures import Erasures, user_key

    gone = Erasures(key="k1", user_keys=frozenset({user_key("k1", "42"), user_key("k1", "ann")}))
    rows = [
        ("a", " 42.0 ", "i1", "view", None, "2024-01-10T08:00:00Z"),   # canonical: 42
        ("b", "ann", "i1", "view", None, "soon"),                      # would be bad_ts
        ("c", "ann", "i1", "view", None, "2024-01-10T08:00:00Z", True),  # malformed, id readable
        ("d", "420", "i1", "view", None, "2024-01-10T08:00:00Z"),
        ("e", "bob", "i1", "view", None, "2024-01-10T08:00:00Z"),
    ]
    routed = clean.route(_raw(spark, rows), DS, CFG, gone)
    assert {r["event_id"]: r["reason"] for r in routed.collect()} == {
        "a": "erased_user", "b": "erased_user", "c": "erased_user", "d": None, "e": None}
    assert [tuple(r) for r in clean.quarantine_rows(routed).collect()] == \
        [("erased_user", "f.jsonl", None, None)] * 3
    # The same rows under another key: nobody is recognised.
    other = Erasures(key="k2", user_keys=gone.user_keys)
    assert {r["reason"] for r in clean.route(_raw(spark, rows), DS, CFG, other).collect()} == \
        {None, "bad_ts", "malformed_row"}


def test_default_id_pattern_takes_opaque_unicode_ids_and_config_agrees(spark, utc):
    import re

    import yaml

    from recsys.config import DEFAULT_CONF_DIR

    base = yaml.safe_load((DEFAULT_CONF_DIR / "base.yaml").read_text())["clean"]["id_pattern"]
    assert base == CleanConfig.model_fields["id_pattern"].default
    re.compile(base)  # main's configuration compiles it with Python's re (no \p{...} there)
    cfg = CFG.model_copy(update={"id_pattern": base})
    ok = ["用户_42", "item with spaces", "a" * 128, "😀" * 128, "u-1:x@y/z+w.v"]
    bad = ["a" * 129, "u1\n", "\tu1", "u\x00", "u\x7f1", "u\x851", "\u00a0u1", "u1\u00a0", "u1\u0085"]
    rows = [(f"e{i}", f"u{i}", item, "view", None, "2024-01-10T08:00:00Z") for i, item in enumerate(ok + bad)]
    got = {r["item_id"]: r["reason"] for r in clean.route(_raw(spark, rows), DS, cfg).collect()}
    assert got == {**{i: None for i in ok}, **{i: "malformed_id" for i in bad}}


def test_canonical_id_is_the_same_in_spark_and_duckdb(spark):
    import duckdb

    values = ["42.0", "42", "042", "042.000", "+42.0", "-42.0", "-0.0", "4.2e1", "4.2E+1", "1.2345678E7",
              "1e+20", "1.0E20", "4.5", "-42.50", "4.25e1", "1e20", "12e4", "1e-5", "4200e-2", ".5e1", "5.",
              "1.00000000000000001e1", "1.2345678901234568E29", "u42", "", "用户_42", " 42.0 ", "4.2.0", "0x1A"]
    df = spark.createDataFrame([(v,) for v in values], "s string")
    got = {r["s"]: r["c"] for r in df.select("s", F.expr(clean.canonical_id_sql("trim(s)")).alias("c")).collect()}
    con = duckdb.connect()
    con.execute("CREATE TABLE t (s VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    duck = dict(con.execute(f"SELECT s, {clean.canonical_id_sql('trim(s)', 'regexp_matches')} FROM t").fetchall())
    assert got == duck
    assert {v: got[v] for v in ("42.0", "042.000", "+42.0", "-0.0", "4.2e1", "1.2345678E7", "1e+20")} == {
        "42.0": "42", "042.000": "42", "+42.0": "42", "-0.0": "0", "4.2e1": "42",
        "1.2345678E7": "12345678", "1e+20": "100000000000000000000"}
    # Left as sent: non-integral, plain integers, possible hex ids, negative exponents, non-numbers.
    for v in ("4.5", "-42.50", "4.25e1", "042", "12e4", "1e-5", "4200e-2", "1.00000000000000001e1", "u42"):
        assert got[v] == v
