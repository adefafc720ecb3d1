"""Hostile landing files never fail the day and never vanish: every record ends clean or in
quarantine with a reason (one row per file where the file itself is unreadable), the books
balance, and the quarantine table stays readable by DuckDB and pyarrow.

Each test is named after the defect it pins (each failed on the code before the fix).
"""
from __future__ import annotations

import base64
import decimal
import gzip
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys import io
from recsys.steps.clean import run_clean

DS = "2024-01-10"
TS = f"{DS}T08:00:00Z"
HEADER = "event_id,user_id,item_id,event_type,value,ts\n"


def _json(eid, **fields) -> str:
    record = {"event_id": eid, "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": TS}
    return json.dumps({**record, **fields}, ensure_ascii=False)


def _lines(*records: str) -> bytes:
    return "".join(r + "\n" for r in records).encode()


def _parquet(**columns) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def _day(spark, config, tmp_path, files: dict[str, bytes]):
    """Run the clean step on ``files``; return (summary, clean rows, quarantine rows)."""
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    folder = landing / "interactions" / f"ds={DS}"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    summary = run_clean(spark, config, DS, landing, wh)
    assert summary["raw"] == summary["clean"] + summary["duplicates"] + summary["quarantined"]
    assert sum(f["raw"] for f in summary["files"]) == summary["raw"]
    clean = pq.read_table(io.partition_path(wh, "interactions", DS)).to_pylist()
    qdir = io.partition_path(wh, "quarantine", DS)
    quarantine = pq.read_table(qdir).to_pylist()  # pyarrow validates UTF-8
    glob = str(qdir / "*.parquet").replace("'", "''")
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall() == [(len(quarantine),)]
    assert len(quarantine) == summary["quarantined"] and len(clean) == summary["clean"]
    return summary, clean, quarantine


def _reasons(quarantine) -> list[tuple[str, str]]:
    return sorted((q["source_file"], q["reason"]) for q in quarantine)


# -- the eight reported defects ---------------------------------------------------------------

def test_csv_with_utf8_bom_no_longer_fails_the_day(spark, config, tmp_path):
    data = ("\ufeff" + HEADER + f"c1,u1,i1,view,,{TS}\n").encode()
    summary, clean, _ = _day(spark, config, tmp_path, {"bom.csv": data})
    assert [r["event_id"] for r in clean] == ["c1"] and summary["quarantined"] == 0


def test_truncated_gzip_no_longer_fails_the_day_and_its_lost_tail_is_counted(spark, config, tmp_path):
    body = gzip.compress(_lines(*[_json(f"t{i}", pad=f"{i * 7919 % 10007}") for i in range(3000)]))
    files = {"cut.jsonl.gz": body[: len(body) // 2], "ok.jsonl": _lines(_json("ok"))}
    summary, clean, quarantine = _day(spark, config, tmp_path, files)
    kept = {r["event_id"] for r in clean}
    assert "ok" in kept and 0 < len(kept - {"ok"}) < 3000  # the rows before the damage
    [lost] = quarantine
    assert (lost["source_file"], lost["reason"]) == ("cut.jsonl.gz", "truncated_file")
    assert "ends early" in lost["raw"]
    assert summary["reasons"]["truncated_file"] == 1


def test_parquet_with_user_id_and_USER_ID_no_longer_fails_the_day(spark, config, tmp_path):
    # Rule: the exact-case contract name wins; the other column is kept in raw.
    data = _parquet(event_id=["p1"], user_id=["u1"], USER_ID=["U9"], item_id=["i1"],
                    event_type=["view"], ts=[TS])
    summary, clean, _ = _day(spark, config, tmp_path, {"case.parquet": data})
    assert [(r["event_id"], r["user_id"]) for r in clean] == [("p1", "u1")]
    assert spark.conf.get("spark.sql.caseSensitive") == "false"  # the session is put back


def test_backtick_in_a_column_name_no_longer_fails_the_day(spark, config, tmp_path):
    csv = f"event_id,user_id,item_id,event_type,ts,we`ird\nc1,u1,i1,view,{TS},x\n".encode()
    par = _parquet(event_id=["p1"], user_id=["u1"], item_id=["i1"], event_type=["view"], ts=[TS],
                   **{"we`ird": ["x"], "a.b": ["y"]})
    summary, clean, _ = _day(spark, config, tmp_path, {"a.csv": csv, "b.parquet": par})
    assert sorted(r["event_id"] for r in clean) == ["c1", "p1"]


def test_two_json_objects_on_one_line_no_longer_lose_the_second(spark, config, tmp_path):
    summary, clean, quarantine = _day(spark, config, tmp_path,
                                      {"a.jsonl": _lines(_json("a") + _json("b"), _json("c"))})
    assert [r["event_id"] for r in clean] == ["c"]
    assert [(q["reason"], q["raw"]) for q in quarantine] == [("malformed_row", _json("a") + _json("b"))]


def test_integral_float_user_id_no_longer_splits_one_user_in_two(spark, config, tmp_path):
    jsonl = ('{"event_id":"j1","user_id":42.0,"item_id":"i1","event_type":"view","ts":"%s"}\n'
             '{"event_id":"j2","user_id":42,"item_id":"i1","event_type":"view","ts":"%s"}\n'
             '{"event_id":"j3","user_id":4.2e1,"item_id":"i1","event_type":"view","ts":"%s"}\n'
             '{"event_id":"j4","user_id":"42.0","item_id":"i1","event_type":"view","ts":"%s"}\n'
             '{"event_id":"j5","user_id":4.5,"item_id":"i1","event_type":"view","ts":"%s"}\n'
             % ((TS,) * 5)).encode()
    csv = (HEADER + f"c1,4.2e1,i1,view,,{TS}\nc2,-0.0,7.000,view,,{TS}\nc3,042,i1,view,,{TS}\n").encode()
    par = _parquet(event_id=["p1", "p2"], user_id=pa.array([42.0, 12345678.0]),
                   item_id=pa.array([decimal.Decimal("7.000")] * 2, pa.decimal128(10, 3)),
                   event_type=["view"] * 2, ts=[TS] * 2)
    _, clean, _ = _day(spark, config, tmp_path, {"a.jsonl": jsonl, "b.csv": csv, "c.parquet": par})
    users = {r["event_id"]: r["user_id"] for r in clean}
    assert users == {"j1": "42", "j2": "42", "j3": "42", "j4": "42", "c1": "42", "p1": "42",
                     "j5": "4.5", "c2": "0", "c3": "042", "p2": "12345678"}
    assert {r["item_id"] for r in clean if r["event_id"] in ("c2", "p1")} == {"7"}


def test_invalid_utf8_no_longer_makes_the_quarantine_unreadable(spark, config, tmp_path):
    bad_line = b'{"event_id":"x\xff","user_id":"u1","item_id":"i1","event_type":"view","ts":"' + TS.encode() + b'"}'
    files = {
        "a.jsonl": _lines(_json("ok")) + bad_line + b"\n",
        "b.csv": HEADER.encode() + "c1,Jos\xe9,i1,view,,".encode("latin-1") + TS.encode() + b"\n",
        "c.parquet": _parquet(event_id=["p1"], user_id=pa.array([b"u\xff"], pa.binary()),
                              item_id=["i1"], event_type=["view"], ts=[TS]),
    }
    summary, clean, quarantine = _day(spark, config, tmp_path, files)
    assert [r["event_id"] for r in clean] == ["ok"]
    assert _reasons(quarantine) == [("a.jsonl", "bad_encoding"), ("b.csv", "bad_encoding"),
                                    ("c.parquet", "bad_encoding")]
    by_file = {q["source_file"]: q for q in quarantine}
    # The original bytes survive in raw_b64; raw is valid UTF-8 with U+FFFD in their place.
    assert base64.b64decode(by_file["a.jsonl"]["raw_b64"]) == bad_line
    assert by_file["a.jsonl"]["raw"] == bad_line.decode("utf-8", errors="replace")
    assert by_file["b.csv"]["raw_b64"] is None  # the CSV reader already replaced the byte
    assert "\ufffd" in by_file["b.csv"]["raw"]


def test_opaque_unicode_ids_are_no_longer_malformed_id(spark, config, tmp_path):
    data = _lines(_json("e1", user_id="用户_42"), _json("e2", item_id="item with spaces"),
                  _json("e3", user_id="u1\n"), _json("e4", user_id="\tu1"), _json("e5", item_id="i\u00a0"),
                  _json("e6", user_id="x" * 129))
    _, clean, quarantine = _day(spark, config, tmp_path, {"a.jsonl": data})
    assert sorted((r["event_id"], r["user_id"], r["item_id"]) for r in clean) == [
        ("e1", "用户_42", "i1"), ("e2", "u1", "item with spaces")]
    # Control characters (a trailing newline too), edge whitespace and 129 characters are not ids.
    assert [q["reason"] for q in quarantine] == ["malformed_id"] * 4


# -- more hostile inputs ----------------------------------------------------------------------

def test_unreadable_files_no_longer_fail_the_day_one_row_each(spark, config, tmp_path):
    files = {
        "fake.jsonl.gz": _lines(_json("g1")),                         # named .gz, not gzip
        "dump.avro": b"Obj\x01",                                       # unknown extension
        "junk.parquet": b"hello, not parquet",                         # not Parquet
        "p.parquet.gz": gzip.compress(_parquet(event_id=["x"])),       # gzip around Parquet
        "ns.parquet": _parquet(event_id=["n1"], user_id=["u1"], item_id=["i1"], event_type=["view"],
                               ts=pa.array([1704873600 * 10**9], pa.timestamp("ns", tz="UTC"))),
        "ok.jsonl": _lines(_json("ok")),
    }
    summary, clean, quarantine = _day(spark, config, tmp_path, files)
    assert [r["event_id"] for r in clean] == ["ok"]
    assert _reasons(quarantine) == [(n, "unreadable_file") for n in
                                    ("dump.avro", "fake.jsonl.gz", "junk.parquet", "ns.parquet", "p.parquet.gz")]
    assert "(1 rows)" in {q["source_file"]: q["raw"] for q in quarantine}["ns.parquet"]


def test_header_contradicting_the_contract_no_longer_fails_the_day(spark, config, tmp_path):
    files = {
        "missing.csv": f"event_id,user,item_id,event_type,ts\nm1,u1,i1,view,{TS}\nm2,u1,i1,view,{TS}\n".encode(),
        "dupes.csv": f"event_id,user_id,item_id,event_type,ts,ts\nd1,u1,i1,view,{TS},x\n".encode(),
        "nested.parquet": _parquet(event_id=["n1"], user_id=[["u1"]], item_id=["i1"],
                                   event_type=["view"], ts=[TS]),
    }
    summary, clean, quarantine = _day(spark, config, tmp_path, files)
    assert clean == [] and summary["reasons"]["bad_columns"] == 4  # every row, with its raw
    assert {json.loads(q["raw"]).get("event_id") for q in quarantine} == {"m1", "m2", "d1", "n1"}


def test_reserved_column_names_no_longer_fail_the_day(spark, config, tmp_path):
    csv = ("event_id,user_id,item_id,event_type,ts,source_file,raw,_corrupt_record,_metadata,malformed\n"
           f"c1,u1,i1,view,{TS},s,r,c,m,true\n").encode()
    par = _parquet(event_id=["p1"], user_id=["u1"], item_id=["i1"], event_type=["view"], ts=[TS],
                   _metadata=["m"], source_file=["s"])
    summary, clean, _ = _day(spark, config, tmp_path, {"a.csv": csv, "b.parquet": par})
    assert sorted(r["event_id"] for r in clean) == ["c1", "p1"]
    assert [f["raw"] for f in summary["files"]] == [1, 1]


def test_trailing_text_after_a_json_object_is_no_longer_dropped(spark, config, tmp_path):
    data = _lines(_json("t1") + " xyz", _json("t2") + "}", _json("t3") + "," + _json("t4"),
                  _json("t5") + "  ", "\ufeff" + _json("t6"))
    _, clean, quarantine = _day(spark, config, tmp_path, {"a.jsonl": data})
    assert sorted(r["event_id"] for r in clean) == ["t5", "t6"]  # trailing spaces and a BOM are fine
    assert [q["reason"] for q in quarantine] == ["malformed_row"] * 3


@pytest.mark.parametrize("name", ["with space.jsonl", "a%20b+c#d.jsonl"])
def test_file_names_spark_url_encodes_no_longer_fail_the_books(spark, config, tmp_path, name):
    summary, clean, _ = _day(spark, config, tmp_path, {name: _lines(_json("f1"))})
    assert summary["files"] == [{"file": name, "format": "json", "raw": 1, "quarantined": 0}]


def test_csv_with_blank_lines_before_the_header_no_longer_vanishes(spark, config, tmp_path):
    data = ("\n  \n" + HEADER + f"c1,u1,i1,view,,{TS}\n").encode()
    summary, clean, _ = _day(spark, config, tmp_path, {"a.csv": data})
    assert [r["event_id"] for r in clean] == ["c1"]


def test_empty_files_are_listed_in_the_books_and_read_nothing(spark, config, tmp_path):
    files = {"a.parquet": b"", "b.jsonl": b"", "c.csv": HEADER.encode(), "d.csv.gz": gzip.compress(b""),
             "e.jsonl": _lines(_json("ok"))}
    summary, clean, quarantine = _day(spark, config, tmp_path, files)
    assert [(f["file"], f["raw"]) for f in summary["files"]] == [
        ("a.parquet", 0), ("b.jsonl", 0), ("c.csv", 0), ("d.csv.gz", 0), ("e.jsonl", 1)]
    assert len(clean) == 1 and quarantine == []
