"""Checks a staged top-N table must pass before it is published.

Structural checks (never skipped): the schema, no nulls or NaN scores, at least one row, one
provenance (model name, version, run id) for the whole table, known ``source`` values, ranks
exactly 1..k per user with k <= top_n, no item twice in a user's list, scores that never rise
with rank. Reference checks (skipped by ``--force``): every active user present, no item the user
already interacted with, no item marked unavailable. They compare with the day's training set,
which an operator may knowingly overrule (say, an availability feed that is itself wrong).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.schema import RECOMMENDATIONS_ARROW, SOURCE_CONTENT, SOURCE_MODEL, SOURCE_POPULAR

PROVENANCE = ("model_name", "model_version", "mlflow_run_id", "generated_at")


@dataclasses.dataclass(frozen=True)
class Reference:
    """What the table is checked against: the day's training set, by id."""

    active_users: np.ndarray  # user ids that must each have a list
    seen_users: np.ndarray | None = None  # seen (user id, item id) pairs, aligned arrays
    seen_items: np.ndarray | None = None
    unavailable_items: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    structural: bool
    ok: bool
    message: str = ""
    skipped: bool = False


class TableRejected(ValueError):
    """The staged table failed validation; ``checks`` holds every result."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        bad = [c for c in checks if not c.ok and not c.skipped]
        super().__init__("table rejected:\n" + "\n".join(f"  - {c.name}: {c.message}" for c in bad))


def _example(users: np.ndarray, extra: np.ndarray | None = None) -> str:
    if not len(users):
        return ""
    shown = f"user {users[0]!r}" + (f" item {extra[0]!r}" if extra is not None else "")
    return f", e.g. {shown}"


def check_schema(table: pa.Table) -> Check:
    want = [(f.name, f.type) for f in RECOMMENDATIONS_ARROW]
    got = [(f.name, f.type) for f in table.schema if f.name != "ds"]
    if got == want:
        return Check("schema", True, True)
    return Check("schema", True, False,
                 f"expected {', '.join(f'{n}:{t}' for n, t in want)}; "
                 f"got {', '.join(f'{n}:{t}' for n, t in got)}")


def check_values(table: pa.Table) -> list[Check]:
    """Nulls, NaN scores, emptiness, provenance and source values."""
    out = []
    nulls = [f"{c} ({table.column(c).null_count})" for c in table.column_names
             if table.column(c).null_count]
    nan = int(pc.sum(pc.is_nan(table.column("score"))).as_py() or 0) if table.num_rows else 0
    msg = "; ".join(filter(None, [nulls and f"nulls in {', '.join(nulls)}", nan and f"{nan} NaN scores"]))
    out.append(Check("nulls", True, not msg, msg))
    out.append(Check("not_empty", True, table.num_rows > 0, "the table has no rows"))
    prov = {c: pc.unique(table.column(c)).to_pylist() for c in PROVENANCE}
    many = {c: v for c, v in prov.items() if len(v) > 1}
    out.append(Check("provenance", True, not many,
                     f"more than one value in {', '.join(f'{c}={v[:3]}' for c, v in many.items())}"))
    known = {SOURCE_MODEL, SOURCE_POPULAR, SOURCE_CONTENT}
    bad = sorted(set(pc.unique(table.column("source")).to_pylist()) - known)
    out.append(Check("source", True, not bad, f"unknown source values {bad}"))
    return out


def check_lists(df: pd.DataFrame, top_n: int) -> list[Check]:
    """Per-user list shape: ranks 1..k (k <= top_n), no duplicate items, non-increasing scores."""
    out = []
    df = df.sort_values(["user_id", "rank"], kind="stable")
    user = df["user_id"].to_numpy()
    rank = df["rank"].to_numpy()
    pos = df.groupby("user_id", sort=False).cumcount().to_numpy() + 1
    bad = (rank != pos) | (rank > top_n)
    out.append(Check("ranks", True, not bad.any(),
                     f"{int(bad.sum())} rows whose rank is not 1..k with k <= top_n={top_n}"
                     + _example(user[bad])))
    dup = df.duplicated(["user_id", "item_id"]).to_numpy()
    out.append(Check("duplicate_items", True, not dup.any(),
                     f"{int(dup.sum())} items appear twice in a user's list"
                     + _example(user[dup], df["item_id"].to_numpy()[dup])))
    score = df["score"].to_numpy()
    same_user = np.r_[False, user[1:] == user[:-1]]
    rising = same_user & np.r_[False, score[1:] > score[:-1]]
    out.append(Check("scores_non_increasing", True, not rising.any(),
                     f"{int(rising.sum())} rows score higher than the rank above them"
                     + _example(user[rising])))
    return out


def check_reference(df: pd.DataFrame, ref: Reference) -> list[Check]:
    """Active users present; no seen items; no unavailable items."""
    out = []
    missing = np.setdiff1d(np.asarray(ref.active_users).astype(str), df["user_id"].unique())
    out.append(Check("active_users", False, not len(missing),
                     f"{len(missing)} active users have no recommendations" + _example(missing)))
    if ref.seen_users is not None:
        pairs = pd.MultiIndex.from_arrays([df["user_id"], df["item_id"]])
        seen = pd.MultiIndex.from_arrays([np.asarray(ref.seen_users).astype(str),
                                          np.asarray(ref.seen_items).astype(str)])
        hit = pairs.isin(seen)
        out.append(Check("seen_items", False, not hit.any(),
                         f"{int(hit.sum())} recommended items were already seen by the user"
                         + _example(df["user_id"].to_numpy()[hit], df["item_id"].to_numpy()[hit])))
    if ref.unavailable_items is not None:
        hit = df["item_id"].isin(np.asarray(ref.unavailable_items).astype(str)).to_numpy()
        out.append(Check("unavailable_items", False, not hit.any(),
                         f"{int(hit.sum())} recommended items are marked unavailable"
                         + _example(df["user_id"].to_numpy()[hit], df["item_id"].to_numpy()[hit])))
    return out


def validate(table: pa.Table, top_n: int, reference: Reference | None = None,
             force: bool = False) -> list[Check]:
    """Run every check; raise :class:`TableRejected` on any failure not skipped by ``force``."""
    checks = [check_schema(table)]
    if checks[0].ok:
        checks += check_values(table)
    if all(c.ok for c in checks):
        df = table.select(["user_id", "rank", "item_id", "score"]).to_pandas()
        checks += check_lists(df, top_n)
        if reference is not None:
            checks += [dataclasses.replace(c, skipped=force and not c.ok)
                       for c in check_reference(df, reference)]
    if any(not c.ok and not c.skipped for c in checks):
        raise TableRejected(checks)
    return checks
