"""MovieLens and delimited importers on tiny hand-written folders in each published layout."""
from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.importers import (
    ImportFormatError,
    detect_movielens,
    read_delimited,
    read_movielens,
)


def _ml100k(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t891717742\n2\t20\t5\t878887116\n")
    flags_toy = "|".join(["0"] * 3 + ["1", "1", "1"] + ["0"] * 13)  # Animation, Children's, Comedy
    flags_war = "|".join(["0"] * 17 + ["1", "0"])  # War
    (tmp_path / "u.item").write_bytes(
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{flags_toy}\n"
        f"20|Caf\xe9 (1968)|||http://y|{flags_war}\n".encode("latin-1")
    )
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|04043\n")
    return tmp_path


def test_ml100k_ratings_items_users(tmp_path):
    ratings, items, users = read_movielens(_ml100k(tmp_path))
    assert detect_movielens(tmp_path) == "100k"
    assert ratings.to_dict("list") == {
        "user_id": ["1", "2", "2"],
        "item_id": ["10", "10", "20"],
        "rating": [4.0, 3.0, 5.0],
        "ts": [881250949, 891717742, 878887116],
    }
    assert items["genres"].tolist() == [["Animation", "Children's", "Comedy"], ["War"]]
    # No release date for item 20: the year comes from the title; latin-1 decoded.
    assert items["year"].tolist() == [1995, 1968]
    assert items["title"].tolist()[1] == "Caf\xe9 (1968)"
    assert users["zip"].tolist() == ["85711", "04043"]  # zip codes keep leading zeros
    assert users["user_id"].tolist() == ["1", "2"]


def test_ml1m_layout(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew (1975)::Drama\n661::Peach (1996)::Animation|Musical\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n")
    ratings, items, users = read_movielens(tmp_path)
    assert ratings["item_id"].tolist() == ["1193", "661"]
    assert ratings["ts"].tolist() == [978300760, 978302109]
    assert items["genres"].tolist() == [["Drama"], ["Animation", "Musical"]]
    assert items["year"].tolist() == [1975, 1996]
    assert users.iloc[0].to_dict() == {
        "user_id": "1", "gender": "F", "age": 1, "occupation": "K-12 student", "zip": "48067"}


def test_ml_latest_layout_with_tags(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n3,Blank,(no genres listed)\n')
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,Pixar,1\n3,1,pixar ,2\n3,1,fun,2\n")
    ratings, items, users = read_movielens(tmp_path)
    assert users is None
    assert ratings["rating"].tolist() == [4.0, 3.5]
    assert items["genres"].tolist() == [["Adventure", "Animation"], []]
    assert items["tags"].tolist() == [["fun", "pixar"], []]
    assert items["year"].tolist()[0] == 1995
    assert pd.isna(items["year"].tolist()[1])


def test_unknown_folder_names_expected_files(tmp_path):
    with pytest.raises(ImportFormatError, match="u.data, ratings.dat or ratings.csv"):
        read_movielens(tmp_path)


def test_delimited_with_mapping_and_mixed_timestamps(tmp_path):
    f = tmp_path / "r.tsv"
    f.write_text("customer\tsku\tstars\twhen\nA\tx\t5\t1700000000\nB\tx\t4\t1700000000000\n"
                 "C\ty\t3\t2023-11-14T22:13:20Z\nD\ty\t2\tnot-a-time\n")
    ratings, items, users = read_delimited(
        f, {"user_id": "customer", "item_id": "sku", "rating": "stars", "ts": "when"})
    assert ratings["user_id"].tolist() == ["A", "B", "C", "D"]
    assert ratings["ts"].tolist()[:3] == [1700000000] * 3
    assert pd.isna(ratings["ts"].tolist()[3])
    assert items["item_id"].tolist() == ["x", "y"]
    assert users is None


def test_delimited_without_timestamps_still_imports(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("user_id,item_id,rating\n1,2,3.5\n")
    ratings, _, _ = read_delimited(f)
    assert ratings["rating"].tolist() == [3.5]
    assert ratings["ts"].isna().all()


def test_delimited_missing_column_is_named(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("u,i,r\n1,2,3\n")
    with pytest.raises(ImportFormatError, match="user_id \\(column 'user_id'\\)"):
        read_delimited(f)


def test_write_landing_partitions_by_utc_day_and_fills_missing_ts(tmp_path):
    import pyarrow.parquet as pq

    from recsys.data.landing import write_landing

    ratings = pd.DataFrame({"user_id": ["1", "2", "3"], "item_id": ["a", "a", "b"],
                            "rating": [4.0, 2.5, 5.0],
                            "ts": pd.array([1704844799, 1704844800, None], dtype="Int64")})
    items = pd.DataFrame({"item_id": ["a", "b"], "genres": [["x"], []]})
    report = write_landing(tmp_path, ratings, items, None, default_ds="2024-02-01")
    days = sorted(p.name for p in (tmp_path / "interactions").iterdir())
    assert days == ["ds=2024-01-09", "ds=2024-01-10", "ds=2024-02-01"]
    t = pq.read_table(tmp_path / "interactions" / "ds=2024-02-01" / "imported.parquet").to_pylist()
    assert t == [{"event_id": "r2", "user_id": "3", "item_id": "b", "event_type": "rating",
                  "value": 5.0, "ts": 1706788800}]
    assert (tmp_path / "items" / "ds=2024-02-01" / "items.jsonl").exists()
    assert report["events"] == 3 and report["users"] == 0
