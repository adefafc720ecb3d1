"""Reading a landing partition: every format into one frame; file-level errors name the file."""
from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.etl.landing import (
    LandingError,
    csv_header,
    discover,
    gzip_damage,
    read_landing,
)


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
    # Empty files are listed (so the books show them) but nothing is read from them.
    assert [(f.path.name, f.empty) for f in files] == [
        ("a.jsonl", False), ("b.csv.gz", False), ("c.parquet", False), ("empty.jsonl", True)]
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


def test_unknown_format_is_an_unreadable_file_not_an_error(tmp_path):
    d = _folder(tmp_path)
    (d / "dump.xml").write_text("<x/>")
    (d / "p.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    [xml, pgz] = discover(d)
    assert (xml.lost_reason, xml.readable) == ("unreadable_file", False)
    assert "unknown file format" in xml.detail
    assert pgz.lost_reason == "unreadable_file" and "gzip around Parquet" in pgz.detail


def test_csv_missing_contract_columns_is_bad_columns(tmp_path):
    d = _folder(tmp_path)
    (d / "ok.csv").write_text("event_id,user_id,item_id,event_type,ts\n")
    (d / "bad.csv").write_text("event_id,user,item_id,event_type,ts\ne,u,i,view,1\n")
    bad, ok = discover(d)
    assert (bad.rows_reason, bad.readable) == ("bad_columns", True)
    assert "missing contract columns ['user_id']" in bad.detail
    assert ok.rows_reason is None


def test_parquet_with_nested_contract_column_is_bad_columns(tmp_path):
    d = _folder(tmp_path)
    pq.write_table(pa.table({"event_id": ["e"], "user_id": [["u"]], "item_id": ["i"],
                             "event_type": ["view"], "ts": [1]}), d / "n.parquet")
    [f] = discover(d)
    assert f.rows_reason == "bad_columns" and "nested type ['user_id']" in f.detail


def test_gzip_damage_tells_sound_truncated_corrupt_and_not_gzip(tmp_path):
    body = "".join(f'{{"event_id":"e{i}","pad":"{i * 7919 % 10007}"}}\n' for i in range(20000)).encode()
    whole = gzip.compress(body)
    cases = {
        "sound.gz": whole,
        "members.gz": gzip.compress(b"a\n") + gzip.compress(b"b\n"),  # concatenated members are fine
        "nothing.gz": gzip.compress(b""),
        "truncated.gz": whole[: len(whole) // 2],
        "corrupt.gz": whole[: len(whole) // 2] + bytes(64) + whole[len(whole) // 2 + 64:],
        "plain.gz": body[:100],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    got = {name: gzip_damage(tmp_path / name) for name in cases}
    assert got["sound.gz"] is None and got["members.gz"] is None and got["nothing.gz"] is None
    assert got["truncated.gz"][0] == "truncated_file" and "ends early" in got["truncated.gz"][1]
    assert got["corrupt.gz"][0] == "truncated_file" and "corrupt" in got["corrupt.gz"][1]
    assert got["plain.gz"] == ("unreadable_file", "not a gzip file")


def test_csv_header_skips_bom_and_blank_lines_as_spark_does(tmp_path):
    (tmp_path / "a.csv").write_bytes("\ufeff\n  \r\nevent_id, user_id\r\ne,u\r\n".encode())
    assert csv_header(tmp_path / "a.csv") == ("event_id", "user_id")
