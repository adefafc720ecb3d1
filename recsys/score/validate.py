"""Checks a staged top-N table must pass before it is published.

Structural checks (never skipped): the schema, no nulls or NaN scores, at least one row, one
provenance (model name, version, run id) for the whole table, known ``source`` values, ranks
exactly 1..k per user with k <= top_n, no item twice in a user's list, scores that never rise
with rank, ``because`` lists of at most 3 distinct items other than the row's item and a
``because_reason`` that matches the row's ``source``. Reference checks (skipped by ``--force``):
every active user present, no item the user already interacted with, no item marked unavailable,
every ``because`` item in the user's history. They compare with the day's training set,
which an operator may knowingly overrule (say, an availability feed that is itself wrong).
Report checks (skipped by ``--force`` too): the nightly report (:mod:`recsys.evaluate.beyond`)
must stay within ``publish.report_bounds`` of the previous published day (:func:`check_report`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.schema import (
    BECAUSE_HISTORY,
    BECAUSE_POPULAR,
    BECAUSE_PROFILE,
    MAX_BECAUSE,
    RECOMMENDATIONS_ARROW,
    SOURCE_CONTENT,
    SOURCE_FOLD_IN,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCES,
)

# The `because_reason` each source must carry; only `history` rows may list `because` items.
REASON_OF_SOURCE = {SOURCE_MODEL: BECAUSE_HISTORY, SOURCE_FOLD_IN: BECAUSE_HISTORY,
                    SOURCE_POPULAR: BECAUSE_POPULAR, SOURCE_CONTENT: BECAUSE_PROFILE}

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
    bad = sorted(set(pc.unique(table.column("source")).to_pylist()) - set(SOURCES))
    out.append(Check("source", True, not bad, f"unknown source values {bad}"))
    return out


def _because_flat(table: pa.Table) -> tuple[np.ndarray, pa.Array]:
    """(row of each because element, the elements)."""
    col = table.column("because").combine_chunks()
    return pc.list_parent_indices(col).to_numpy().astype(np.int64), pc.list_flatten(col)


def check_because(table: pa.Table) -> list[Check]:
    """``because``: at most MAX_BECAUSE distinct items, never the row's own item, only on rows
    whose reason is ``history``; ``because_reason`` as the row's ``source`` requires."""
    src, reason = table.column("source").combine_chunks(), table.column("because_reason").combine_chunks()
    keys = list(REASON_OF_SOURCE)
    want = pa.array([REASON_OF_SOURCE[k] for k in keys]).take(pc.index_in(src, value_set=pa.array(keys)))
    wrong = pc.fill_null(pc.not_equal(want, reason), True).to_numpy(zero_copy_only=False)
    first = int(np.flatnonzero(wrong)[0]) if wrong.any() else 0
    out = [Check("because_reason", True, not wrong.any(),
                 f"{int(wrong.sum())} rows whose because_reason does not match their source"
                 + (f", e.g. source {src[first].as_py()!r} with {reason[first].as_py()!r}" if wrong.any() else ""))]
    reason = reason.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(table.column("because").combine_chunks()).to_numpy(zero_copy_only=False)
    rows, values = _because_flat(table)
    codes = values.dictionary_encode().indices.to_numpy().astype(np.int64) if len(values) else rows
    key = np.unique(rows * (int(codes.max()) + 1 if len(codes) else 1) + codes)
    dup_rows = len(key) != len(rows)
    own = np.asarray(pc.equal(values, table.column("item_id").combine_chunks().take(pa.array(rows)))
                     .to_numpy(zero_copy_only=False), bool) if len(rows) else np.zeros(0, bool)
    problems = []
    if (lengths > MAX_BECAUSE).any():
        problems.append(f"{int((lengths > MAX_BECAUSE).sum())} lists longer than {MAX_BECAUSE}")
    if dup_rows:
        problems.append("an item twice in a because list")
    if own.any():
        problems.append(f"{int(own.sum())} rows name their own item as the reason")
    stray = (lengths > 0) & (reason != BECAUSE_HISTORY)
    if stray.any():
        problems.append(f"{int(stray.sum())} rows list because items without reason 'history'")
    out.append(Check("because", True, not problems, "; ".join(problems)))
    return out


@dataclasses.dataclass
class _Coded:
    """The list columns with ids as integer codes, sorted by (user, rank): cheap to check."""

    users: pa.Array  # dictionary of user ids (code -> id)
    items: pa.Array
    user: np.ndarray  # int64 codes per row
    item: np.ndarray
    rank: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, table: pa.Table) -> "_Coded":
        u = table.column("user_id").combine_chunks().dictionary_encode()
        i = table.column("item_id").combine_chunks().dictionary_encode()
        user = u.indices.to_numpy().astype(np.int64)
        rank = table.column("rank").to_numpy().astype(np.int64)
        order = np.lexsort((rank, user))
        return cls(u.dictionary, i.dictionary, user[order],
                   i.indices.to_numpy().astype(np.int64)[order], rank[order],
                   table.column("score").to_numpy()[order])

    def ids(self, mask: np.ndarray, n: int = 1) -> tuple[list, list]:
        rows = np.flatnonzero(mask)[:n]
        return (self.users.take(pa.array(self.user[rows])).to_pylist(),
                self.items.take(pa.array(self.item[rows])).to_pylist())

    def example(self, mask: np.ndarray, with_item: bool = False) -> str:
        if not mask.any():
            return ""
        users, items = self.ids(mask)
        return f", e.g. user {users[0]!r}" + (f" item {items[0]!r}" if with_item else "")


def check_lists(c: _Coded, top_n: int) -> list[Check]:
    """Per-user list shape: ranks 1..k (k <= top_n), no duplicate items, non-increasing scores."""
    out = []
    same_user = np.r_[False, c.user[1:] == c.user[:-1]]
    starts = np.flatnonzero(~same_user)
    pos = np.arange(len(c.user)) - np.repeat(starts, np.diff(np.r_[starts, len(c.user)])) + 1
    bad = (c.rank != pos) | (c.rank > top_n)
    out.append(Check("ranks", True, not bad.any(),
                     f"{int(bad.sum())} rows whose rank is not 1..k with k <= top_n={top_n}"
                     + c.example(bad)))
    key = c.user * max(len(c.items), 1) + c.item
    order = np.argsort(key, kind="stable")
    dup = np.zeros(len(key), bool)
    dup[order[1:][key[order][1:] == key[order][:-1]]] = True
    out.append(Check("duplicate_items", True, not dup.any(),
                     f"{int(dup.sum())} items appear twice in a user's list" + c.example(dup, True)))
    rising = same_user & np.r_[False, c.score[1:] > c.score[:-1]]
    out.append(Check("scores_non_increasing", True, not rising.any(),
                     f"{int(rising.sum())} rows score higher than the rank above them"
                     + c.example(rising)))
    return out


def _codes(values: np.ndarray, dictionary: pa.Array) -> np.ndarray:
    """Codes of ``values`` in ``dictionary``; -1 where absent."""
    idx = pc.index_in(pa.array(np.asarray(values).astype(str)), value_set=dictionary)
    return idx.fill_null(-1).to_numpy().astype(np.int64)


def check_because_history(table: pa.Table, ref: Reference) -> Check:
    """Every ``because`` item is in the user's history (the day's seen pairs)."""
    rows, values = _because_flat(table)
    users = table.column("user_id").combine_chunks().take(pa.array(rows, pa.int64()))
    pairs = pc.binary_join_element_wise(users, values.cast(pa.string()), "\x1f")
    seen = pc.binary_join_element_wise(pa.array(np.asarray(ref.seen_users).astype(str)),
                                       pa.array(np.asarray(ref.seen_items).astype(str)), "\x1f")
    outside = ~pc.is_in(pairs, value_set=seen).to_numpy(zero_copy_only=False) if len(rows) else np.zeros(0, bool)
    msg = ""
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        msg = (f"{int(outside.sum())} because items are not in the user's history, e.g. user "
               f"{users[i].as_py()!r} item {values[i].as_py()!r}")
    return Check("because_in_history", False, not outside.any(), msg)


def check_reference(c: _Coded, ref: Reference) -> list[Check]:
    """Active users present; no seen items; no unavailable items."""
    out = []
    active = np.asarray(ref.active_users).astype(str)
    missing = active[_codes(active, c.users) < 0]
    out.append(Check("active_users", False, not len(missing),
                     f"{len(missing)} active users have no recommendations"
                     + (f", e.g. user {str(missing[0])!r}" if len(missing) else "")))
    if ref.seen_users is not None:
        su, si = _codes(ref.seen_users, c.users), _codes(ref.seen_items, c.items)
        known = (su >= 0) & (si >= 0)
        width = max(len(c.items), 1)
        hit = np.isin(c.user * width + c.item, su[known] * width + si[known])
        out.append(Check("seen_items", False, not hit.any(),
                         f"{int(hit.sum())} recommended items were already seen by the user"
                         + c.example(hit, True)))
    if ref.unavailable_items is not None:
        gone = _codes(ref.unavailable_items, c.items)
        hit = np.isin(c.item, gone[gone >= 0])
        out.append(Check("unavailable_items", False, not hit.any(),
                         f"{int(hit.sum())} recommended items are marked unavailable"
                         + c.example(hit, True)))
    return out


def check_report(report: dict, previous: dict | None, max_coverage_change: float | None = None,
                 min_overlap: float | None = None) -> list[Check]:
    """The report against the previous published day's (``previous``: its manifest's report).

    ``report_coverage``: catalog coverage may change by at most ``max_coverage_change`` relative
    to the previous day's; ``report_overlap``: the mean Jaccard overlap with the previous day's
    lists may not fall below ``min_overlap``. A bound set to None, or no previous day to compare
    with, passes.
    """
    out = []
    if max_coverage_change is not None:
        cov = report.get("catalog_coverage")
        prev = (previous or {}).get("catalog_coverage")
        ok, msg = True, ""
        if cov is not None and prev:
            change = abs(cov - prev) / prev
            ok = change <= max_coverage_change
            msg = (f"catalog coverage {cov:.4f} vs {prev:.4f} on ds={report.get('previous_ds')}: "
                   f"a {change:.0%} change, more than publish.report_bounds.max_coverage_change="
                   f"{max_coverage_change:.0%}")
        out.append(Check("report_coverage", False, ok, msg))
    if min_overlap is not None:
        ov = report.get("overlap")
        ok = ov is None or ov >= min_overlap
        out.append(Check("report_overlap", False, ok,
                         "" if ok else f"mean overlap with the lists of ds={report.get('previous_ds')} is "
                         f"{ov:.4f}, below publish.report_bounds.min_overlap={min_overlap}"))
    return out


def validate(table: pa.Table, top_n: int, reference: Reference | None = None,
             force: bool = False, extra: list[Check] = ()) -> list[Check]:
    """Run every check; raise :class:`TableRejected` on any failure not skipped by ``force``.

    ``extra``: further non-structural results (the report checks), skipped by ``force`` too.
    """
    checks = [check_schema(table)]
    if checks[0].ok:
        checks += check_values(table)
    if all(c.ok for c in checks):
        coded = _Coded.of(table)
        checks += check_lists(coded, top_n) + check_because(table)
        if reference is not None:
            ref_checks = check_reference(coded, reference)
            if reference.seen_users is not None:
                ref_checks.append(check_because_history(table, reference))
            checks += [dataclasses.replace(c, skipped=force and not c.ok) for c in ref_checks]
        checks += [dataclasses.replace(c, skipped=force and not c.ok) for c in extra]
    if any(not c.ok and not c.skipped for c in checks):
        raise TableRejected(checks)
    return checks
