"""Readers for public rating data sets: MovieLens (100K, 1M, latest) and generic delimited files.

Every reader returns the same three frames, so the landing writer (:mod:`recsys.data.landing`)
and the quality benchmarks need one code path:

* ``ratings``: ``user_id`` (str), ``item_id`` (str), ``rating`` (float64), ``ts`` (Int64 epoch
  seconds; ``<NA>`` where the source has no timestamp);
* ``items``: the item catalog, ``item_id`` (str), ``title`` (str), ``genres`` (list of str),
  ``year`` (Int64), ``tags`` (list of str) — whatever the source has;
* ``users``: user profiles (``user_id`` plus demographic columns), or ``None``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

RATING_COLUMNS = ("user_id", "item_id", "rating", "ts")

# MovieLens 100K genre flags, in file order (u.genre lists the same names; used when it is absent).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
# MovieLens 1M users.dat codes occupation as an integer (README of ml-1m).
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
_YEAR = re.compile(r"\((\d{4})\)\s*$")


class ImportFormatError(ValueError):
    """The source folder or file does not match any known layout."""


def detect_movielens(path: Path | str) -> str:
    """Name the MovieLens layout of ``path``: ``"100k"``, ``"1m"`` or ``"latest"``."""
    path = Path(path)
    if (path / "u.data").is_file():
        return "100k"
    if (path / "ratings.dat").is_file():
        return "1m"
    if (path / "ratings.csv").is_file():
        return "latest"
    raise ImportFormatError(
        f"{path}: not a MovieLens folder (expected u.data, ratings.dat or ratings.csv)"
    )


def read_movielens(path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Read a MovieLens folder (100K, 1M or latest/latest-small, detected from its files).

    Returns ``(ratings, items, users)`` as described in the module docstring; ``users`` is None
    for the ``latest`` layouts, which publish no user profiles.
    """
    path = Path(path)
    kind = detect_movielens(path)
    return {"100k": _read_ml100k, "1m": _read_ml1m, "latest": _read_ml_latest}[kind](path)


def _ratings_frame(user, item, rating, ts) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(user).astype(str).to_numpy(dtype=object),
            "item_id": pd.Series(item).astype(str).to_numpy(dtype=object),
            "rating": pd.to_numeric(pd.Series(rating), errors="coerce").astype("float64").to_numpy(),
            "ts": pd.array(ts, dtype="Int64"),
        }
    )


def _year_from_title(titles: pd.Series) -> pd.Series:
    return titles.str.extract(_YEAR, expand=False).astype("Int64")


def _read_ml100k(path: Path):
    raw = pd.read_csv(path / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    ratings = _ratings_frame(raw.u, raw.i, raw.r, raw.t)
    genre_file = path / "u.genre"
    genres = ML100K_GENRES
    if genre_file.is_file():
        g = pd.read_csv(genre_file, sep="|", header=None, names=["name", "idx"], encoding="latin-1")
        genres = tuple(g.dropna().sort_values("idx")["name"])
    cols = ["item_id", "title", "release", "video_release", "url", *genres]
    it = pd.read_csv(path / "u.item", sep="|", header=None, names=cols, encoding="latin-1")
    flags = it[list(genres)].fillna(0).to_numpy(dtype=bool)
    names = np.array(genres, dtype=object)
    items = pd.DataFrame(
        {
            "item_id": it["item_id"].astype(str),
            "title": it["title"].fillna("").astype(str),
            "genres": [list(names[row]) for row in flags],
            "year": pd.to_datetime(it["release"], format="%d-%b-%Y", errors="coerce").dt.year.astype("Int64"),
        }
    )
    items["year"] = items["year"].fillna(_year_from_title(items["title"]))
    users = None
    if (path / "u.user").is_file():
        u = pd.read_csv(path / "u.user", sep="|", header=None,
                        names=["user_id", "age", "gender", "occupation", "zip"], dtype={"zip": str})
        u["user_id"] = u["user_id"].astype(str)
        users = u
    return ratings, items, users


def _read_dat(file: Path, names: list[str]) -> pd.DataFrame:
    # "::" is a multi-character separator: the python engine is needed; the files are latin-1.
    return pd.read_csv(file, sep="::", header=None, names=names, engine="python",
                       encoding="latin-1", dtype=str)


def _read_ml1m(path: Path):
    raw = _read_dat(path / "ratings.dat", ["u", "i", "r", "t"])
    ratings = _ratings_frame(raw.u, raw.i, raw.r, pd.to_numeric(raw.t))
    it = _read_dat(path / "movies.dat", ["item_id", "title", "genres"])
    items = pd.DataFrame(
        {
            "item_id": it["item_id"],
            "title": it["title"],
            "genres": it["genres"].fillna("").str.split("|").map(lambda g: [x for x in g if x]),
            "year": _year_from_title(it["title"]),
        }
    )
    users = None
    if (path / "users.dat").is_file():
        u = _read_dat(path / "users.dat", ["user_id", "gender", "age", "occupation", "zip"])
        u["age"] = pd.to_numeric(u["age"]).astype("Int64")
        occ = pd.to_numeric(u["occupation"], errors="coerce")
        u["occupation"] = occ.map(lambda o: ML1M_OCCUPATIONS[int(o)] if pd.notna(o) and 0 <= o < len(ML1M_OCCUPATIONS) else "other")
        users = u
    return ratings, items, users


def _read_ml_latest(path: Path):
    raw = pd.read_csv(path / "ratings.csv", dtype={"userId": str, "movieId": str})
    ratings = _ratings_frame(raw.userId, raw.movieId, raw.rating, raw.timestamp)
    it = pd.read_csv(path / "movies.csv", dtype={"movieId": str})
    genres = it["genres"].fillna("").str.split("|")
    items = pd.DataFrame(
        {
            "item_id": it["movieId"],
            "title": it["title"].fillna(""),
            # "(no genres listed)" is the file's way of saying none.
            "genres": genres.map(lambda g: [x for x in g if x and not x.startswith("(")]),
            "year": _year_from_title(it["title"].fillna("")),
        }
    )
    tags_file = path / "tags.csv"
    if tags_file.is_file():
        tags = pd.read_csv(tags_file, dtype={"movieId": str, "tag": str}).dropna(subset=["tag"])
        tags["tag"] = tags["tag"].str.strip().str.lower()
        per_item = tags.groupby("movieId")["tag"].agg(lambda s: sorted(set(s)))
        items["tags"] = items["item_id"].map(per_item).map(lambda t: t if isinstance(t, list) else [])
    return ratings, items, None


def read_delimited(
    path: Path | str,
    columns: Mapping[str, str] | None = None,
    *,
    sep: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Read a delimited ratings file with a header row.

    ``columns`` maps the contract names (``user_id``, ``item_id``, ``rating``, optional ``ts``)
    to the file's column names, e.g. ``{"user_id": "customer", "item_id": "sku"}``; unmapped
    names are looked up as-is. ``sep`` defaults to sniffing (comma, tab, semicolon, pipe).
    ``ts`` may be epoch seconds/milliseconds or ISO-8601; without a ``ts`` column it is ``<NA>``.
    Returns ``(ratings, items, None)`` where ``items`` lists the distinct item ids.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    mapping = {c: c for c in RATING_COLUMNS}
    mapping.update(columns or {})
    raw = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", dtype=str)
    missing = [k for k in ("user_id", "item_id", "rating") if mapping[k] not in raw.columns]
    if missing:
        wanted = ", ".join(f"{k} (column {mapping[k]!r})" for k in missing)
        raise ImportFormatError(f"{path}: missing {wanted}; header is {list(raw.columns)}")
    ts = _parse_ts(raw[mapping["ts"]]) if mapping["ts"] in raw.columns else pd.array(
        [pd.NA] * len(raw), dtype="Int64")
    ratings = _ratings_frame(raw[mapping["user_id"]], raw[mapping["item_id"]],
                             raw[mapping["rating"]], ts)
    ratings = ratings.dropna(subset=["user_id", "item_id"]).reset_index(drop=True)
    items = pd.DataFrame({"item_id": sorted(ratings["item_id"].unique())})
    return ratings, items, None


def _parse_ts(values: pd.Series) -> pd.arrays.IntegerArray:
    """Epoch seconds from epoch seconds, epoch milliseconds or ISO-8601 strings (NA if none)."""
    num = pd.to_numeric(values, errors="coerce")
    # Epoch milliseconds are > 1e11 for any date after 1973; seconds stay below until year 5138.
    secs = np.where(num.abs() > 1e11, num / 1000.0, num)
    out = pd.Series(secs, index=values.index)
    iso = num.isna() & values.notna()
    if iso.any():
        parsed = pd.to_datetime(values[iso], errors="coerce", utc=True, format="ISO8601")
        out[iso] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return pd.array(np.floor(out.to_numpy(dtype=float, na_value=np.nan)), dtype="Int64") if len(out) else pd.array([], dtype="Int64")
