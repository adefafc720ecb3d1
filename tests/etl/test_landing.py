"""Reading a landing partition: every format into one frame; file-level errors name the file."""
from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.etl.landing import LandingError, discover, read_landing


def _folder(tmp_path):
    d = tmp_path / "interactions" / "ds=2024-01-10"
    d.mkdir(parents=True)
    return d


def test_reads_jsonl_gzip_csv_and_typed_parquet(spark, tmp_path):
    d = _folder(tmp_path)
    (d / "a.jsonl").write_text('{"event_id":"j1","user_id":7,"item_id":"i","event_type":"view",'
                               '"ts":"2024-01-10T00:00:00Z","extra":[1]}\n\n{broken\n')
    with gzip.open(d / "b.csv.gz", "wt") as fh:
        fh.write("ts,item_id,user_id,event_type,event_id,value,note\n"
                 "1704844800,i,u,rating,c1,4,hi\nc2,too,few\n")
    pq.write_table(pa.table({"event_id": ["p1"], "user_id": [5], "item_id": ["i"],
                             "event_type": ["view"], "ts": [1704844800000]}), d / "c.parquet")
    (d / "empty.jsonl").write_text("")
    (d / "_SUCCESS").write_text("")
    df, files = read_landing(spark, d)
    assert [f.path.name for f in files] == ["a.jsonl", "b.csv.gz", "c.parquet"]
    got = sorted(((r["source_file"], r["event_id"], r["user_id"], r["ts"], r["value"], r["malformed"])
                  for r in df.collect()), key=str)
    assert got == [
        ("a.jsonl", "j1", "7", "2024-01-10T00:00:00Z", None, False),  # blank line is no record
        ("a.jsonl", None, None, None, None, True),
        ("b.csv.gz", "c1", "u", "1704844800", "4", False),             # columns by header name
        ("b.csv.gz", None, "few", "c2", None, True),                  # too few columns
        ("c.parquet", "p1", "5", "1704844800000", None, False),        # typed columns as text
    ]
    raws = {r["event_id"]: r["raw"] for r in df.collect()}
    assert raws["c1"] == ('{"ts":"1704844800","item_id":"i","user_id":"u","event_type":"rating",'
                          '"event_id":"c1","value":"4","note":"hi"}')


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(LandingError, match="does not exist"):
        discover(tmp_path / "nope")


def test_unknown_format_names_the_file(tmp_path):
    d = _folder(tmp_path)
    (d / "dump.xml").write_text("<x/>")
    with pytest.raises(LandingError, match=r"dump\.xml: unknown file format"):
        discover(d)


def test_csv_missing_contract_columns_names_the_file(tmp_path):
    d = _folder(tmp_path)
    (d / "ok.csv").write_text("event_id,user_id,item_id,event_type,ts\n")
    (d / "bad.csv").write_text("event_id,user,item_id,event_type,ts\ne,u,i,view,1\n")
    with pytest.raises(LandingError, match=r"bad\.csv: columns contradict.*'user_id'"):
        discover(d)


def test_parquet_with_nested_contract_column_names_the_file(tmp_path):
    d = _folder(tmp_path)
    pq.write_table(pa.table({"event_id": ["e"], "user_id": [["u"]], "item_id": ["i"],
                             "event_type": ["view"], "ts": [1]}), d / "n.parquet")
    with pytest.raises(LandingError, match=r"n\.parquet: column 'user_id' has nested type"):
        discover(d)
