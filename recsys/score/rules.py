"""Business rules on item attributes, applied to the scores before the top-N is cut.

The rules are declared in the configuration (``score.rules``, :class:`recsys.config.RulesConfig`,
validated when it loads) and evaluated on the clean ``items`` catalog (the newest partition at or
before ``ds``; :func:`read_catalog`):

* **exclude**: items matching a condition are never recommended (nor in the popular fallback);
* **adjust**: matching items' scores become ``score * multiply + add`` (boost or bury; several
  matching rules multiply their factors and sum their terms);
* **cap**: at most ``max`` items per value of a categorical attribute in one list (an item with
  the genres Action and Comedy counts once for each). Each user's best ``top_n * pool_factor``
  candidates (after exclusion and adjustment) are walked greedily, best first, keeping an item
  when none of its categories is full; a user whose list is still short while the pool was full
  is walked again over the whole catalog, so every list has ``top_n`` items whenever that many
  satisfy the rules.

A condition on a missing value (an item absent from the catalog, a null attribute) never matches.

:class:`Rules` holds the configuration and the catalog; :meth:`Rules.bind` turns them into
:class:`ItemRules`, arrays over one item index space (a model's items), which the scorers of
:mod:`recsys.score.topn` apply in :meth:`ItemRules.top_n`: the single-node and the Spark engine
share them (the Spark engine broadcasts the bound rules to its tasks).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

from recsys import io
from recsys.config import CATALOG_ATTRIBUTES, RuleCondition, RulesConfig
from recsys.models.base import top_n
from recsys.schema import ITEMS


class MissingCatalog(LookupError):
    """Rules are configured but there is no item catalog to evaluate them on."""


def read_catalog(warehouse: Path | str, ds: str) -> tuple[str, pa.Table] | None:
    """(partition ds, table) of the newest clean ``items`` partition at or before ``ds``, or None."""
    days = [d for d in io.list_partitions(warehouse, ITEMS) if d <= ds]
    if not days:
        return None
    folder = io.partition_path(warehouse, ITEMS, days[-1])
    files = sorted(str(p) for p in folder.glob("*.parquet") if not p.name.startswith(("_", ".")))
    return days[-1], pads.dataset(files, format="parquet").to_table()


def _positions(catalog: pa.Table, item_ids: np.ndarray) -> np.ndarray:
    """Per item of ``item_ids``: its row in ``catalog``, -1 when the catalog does not list it."""
    ids = pa.array(np.asarray(item_ids).astype(str))
    return pc.index_in(ids, value_set=catalog.column("item_id").combine_chunks()) \
        .fill_null(-1).to_numpy().astype(np.int64)


def _list_hits(col: pa.ChunkedArray, values: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose list holds any of ``values``, rows whose list is not null)."""
    arr = col.combine_chunks()
    flat, parent = pc.list_flatten(arr), pc.list_parent_indices(arr)
    hit = pc.is_in(flat, value_set=pa.array(values, flat.type)).fill_null(False).to_numpy(zero_copy_only=False)
    any_hit = np.zeros(len(arr), bool)
    any_hit[parent.to_numpy()[hit]] = True
    return any_hit, arr.is_valid().to_numpy(zero_copy_only=False)


def matches(catalog: pa.Table, cond: RuleCondition) -> np.ndarray:
    """Bool per catalog row: the row satisfies ``cond`` (never where the value is missing)."""
    col = catalog.column(cond.attribute)
    kind = CATALOG_ATTRIBUTES[cond.attribute]
    if kind == "list":
        values = (cond.value,) if isinstance(cond.value, str) else tuple(cond.value)
        any_hit, valid = _list_hits(col, values)
        return any_hit if cond.op in ("contains", "contains_any") else valid & ~any_hit
    if kind == "number":
        col = pc.cast(col, pa.float64())
        value = tuple(float(v) for v in cond.value) if isinstance(cond.value, tuple) else float(cond.value)
    else:
        value = cond.value
    if cond.op in ("in", "not_in"):
        hit = pc.is_in(col, value_set=pa.array(value, col.type))
        out = hit if cond.op == "in" else pc.and_(pc.invert(hit), pc.is_valid(col))
    else:
        fn = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
              ">": pc.greater, ">=": pc.greater_equal}[cond.op]
        out = fn(col, pa.scalar(value, col.type))
    return pc.fill_null(out, False).to_numpy(zero_copy_only=False).astype(bool)


def _categories(catalog: pa.Table, attribute: str) -> tuple[np.ndarray, np.ndarray, list]:
    """(catalog row, category code) pairs of a list or string attribute, and the category values."""
    col = catalog.column(attribute).combine_chunks()
    if CATALOG_ATTRIBUTES[attribute] == "list":
        rows, values = pc.list_parent_indices(col).to_numpy(), pc.list_flatten(col)
    else:
        rows, values = np.arange(len(col)), col
    enc = values.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    rows, codes = rows[valid].astype(np.int64), codes[valid].astype(np.int64)
    # One membership per (row, category), even if a list repeats a value.
    pairs = np.unique(np.stack([rows, codes], axis=1), axis=0) if len(rows) else np.empty((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1], enc.dictionary.to_pylist()


@dataclasses.dataclass(frozen=True)
class Rules:
    """The configured rules and the catalog they are evaluated on (``catalog_ds``: its partition)."""

    config: RulesConfig
    catalog: pa.Table
    catalog_ds: str | None = None

    @classmethod
    def load(cls, config: RulesConfig, warehouse: Path | str, ds: str) -> "Rules | None":
        """The rules of ``config`` over the warehouse's catalog as of ``ds``; None when none are
        configured. Raises :class:`MissingCatalog` when rules are configured and no catalog exists."""
        if not config.active:
            return None
        found = read_catalog(warehouse, ds)
        if found is None:
            raise MissingCatalog(
                f"score.rules are configured but the warehouse has no clean `{ITEMS}` partition at "
                f"or before ds={ds} to read item attributes from; land an item catalog "
                f"(landing/{ITEMS}/ds=D/) and run the clean step, or remove score.rules")
        return cls(config, found[1], found[0])

    def bind(self, item_ids: np.ndarray) -> "ItemRules":
        """The rules as arrays over ``item_ids`` (position = item index)."""
        cfg, n = self.config, len(item_ids)
        row = _positions(self.catalog, item_ids)
        listed = row >= 0

        def per_item(mask_rows: np.ndarray) -> np.ndarray:
            out = np.zeros(n, bool)
            out[listed] = mask_rows[row[listed]]
            return out

        excluded = np.zeros(n, bool)
        for rule in cfg.exclude:
            excluded |= per_item(matches(self.catalog, rule))
        multiply = np.ones(n, np.float32)
        add = np.zeros(n, np.float32)
        for rule in cfg.adjust:
            hit = per_item(matches(self.catalog, rule))
            multiply[hit] *= rule.multiply
            add[hit] += rule.add
        members, cap_max, names = None, None, []
        if cfg.cap:
            item_of_row = np.full(self.catalog.num_rows, -1, np.int64)
            item_of_row[row[listed]] = np.flatnonzero(listed)
            all_items, all_cats, caps = [], [], []
            for rule in cfg.cap:
                rows, codes, values = _categories(self.catalog, rule.attribute)
                items = item_of_row[rows]
                all_items.append(items[items >= 0])
                all_cats.append(codes[items >= 0] + len(caps))  # categories of all caps, one space
                caps += [rule.max] * len(values)
                names += [f"{rule.attribute}={v}" for v in values]
            items, cats = np.concatenate(all_items), np.concatenate(all_cats)
            order = np.argsort(items, kind="stable")
            items, cats = items[order], cats[order]
            # slot of each (item, category) pair within its item's row of `members`
            starts = np.searchsorted(items, items, side="left")
            slot = np.arange(len(items)) - starts
            members = np.full((n, int(slot.max(initial=-1)) + 1 or 1), -1, np.int64)
            members[items, slot] = cats
            cap_max = np.asarray(caps, np.int64)
        return ItemRules(
            excluded=excluded if excluded.any() else None,
            multiply=multiply if (multiply != 1).any() else None,
            add=add if (add != 0).any() else None,
            members=members, cap_max=cap_max, categories=tuple(names),
            pool_factor=cfg.pool_factor)

    def allowed(self, item_ids: np.ndarray, available: np.ndarray | None) -> np.ndarray | None:
        """``available`` (bool per item of ``item_ids``, None = all) minus the excluded items:
        what the popular fallback may recommend."""
        bound = self.bind(item_ids)
        if bound.excluded is None:
            return available
        base = np.ones(len(item_ids), bool) if available is None else np.asarray(available, bool)
        return base & ~bound.excluded


@dataclasses.dataclass(frozen=True)
class ItemRules:
    """Rules over one item index space; picklable (the Spark engine broadcasts it).

    ``members[i]``: the cap categories of item ``i`` (-1 padded); ``cap_max[c]``: how many items
    of category ``c`` one list may hold.
    """

    excluded: np.ndarray | None
    multiply: np.ndarray | None
    add: np.ndarray | None
    members: np.ndarray | None
    cap_max: np.ndarray | None
    categories: tuple[str, ...]
    pool_factor: int

    def restrict(self, items: np.ndarray | None) -> np.ndarray | None:
        """The scored items (None = all) minus the excluded ones: excluded items are never scored."""
        if self.excluded is None:
            return items
        if items is None:
            return np.flatnonzero(~self.excluded)
        items = np.asarray(items, np.int64)
        return items[~self.excluded[items]]

    def _adjust(self, scores: torch.Tensor, col_items: np.ndarray) -> torch.Tensor:
        """Excluded items to -inf, then ``score * multiply + add`` (in place where possible)."""
        safe = np.maximum(col_items, 0)  # -1 cells (no candidate) are -inf already
        dev = scores.device
        if self.excluded is not None:
            scores.masked_fill_(torch.from_numpy(self.excluded[safe]).to(dev), -torch.inf)
        if self.multiply is not None:
            scores.mul_(torch.from_numpy(self.multiply[safe]).to(dev))
        if self.add is not None:
            scores.add_(torch.from_numpy(self.add[safe]).to(dev))
        return scores

    def _greedy(self, pos: np.ndarray, vals: np.ndarray, col_items: np.ndarray, n: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walk each row's candidates (column positions ``pos``, best first) and keep an item when
        none of its categories is full. Returns (positions, scores, kept count) per row."""
        b, pool = pos.shape
        out_pos = np.full((b, n), -1, np.int64)
        out_vals = np.full((b, n), -np.inf, np.float32)
        filled = np.zeros(b, np.int64)
        counts = np.zeros((b, len(self.cap_max) + 1), np.int64)  # last column: "no category"
        limit = np.r_[self.cap_max, np.iinfo(np.int64).max]
        rows_all = np.arange(b)
        for j in range(pool):
            p = pos[:, j]
            live = (p >= 0) & (filled < n)
            if not live.any():
                break
            rows = rows_all[live]
            items = col_items[p[rows]] if col_items.ndim == 1 else col_items[rows, p[rows]]
            cats = self.members[items]  # (r, width), -1 padded
            cats = np.where(cats >= 0, cats, len(self.cap_max))
            ok = (counts[rows[:, None], cats] < limit[cats]).all(axis=1)
            keep, kc = rows[ok], cats[ok]
            out_pos[keep, filled[keep]] = p[keep]
            out_vals[keep, filled[keep]] = vals[keep, j]
            filled[keep] += 1
            real = kc < len(self.cap_max)
            np.add.at(counts, (np.broadcast_to(keep[:, None], kc.shape)[real], kc[real]), 1)
        return out_pos, out_vals, filled

    def top_n(self, scores: torch.Tensor, n: int, mask_rows: np.ndarray | None = None,
              mask_cols: np.ndarray | None = None, items: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`recsys.models.base.top_n` with the rules applied before the cut.

        ``items`` maps the columns of ``scores`` to item indices: None (column = item), one row
        for all users (m,), or one per user (b, m) with -1 where there is no candidate (the
        re-ranking scorer). Returns (items, scores) like ``top_n``.
        """
        b, m = scores.shape
        if mask_rows is not None and len(mask_rows):
            scores[torch.from_numpy(mask_rows).to(scores.device),
                   torch.from_numpy(mask_cols).to(scores.device)] = -torch.inf
        col_items = np.arange(m, dtype=np.int64) if items is None else np.asarray(items, np.int64)
        scores = self._adjust(scores, col_items)
        if self.cap_max is None:
            pos, vals = top_n(scores, n)
        else:
            pool = min(m, n * self.pool_factor)
            cand, cand_vals = top_n(scores, pool)
            pos, vals, filled = self._greedy(cand, cand_vals, col_items, n)
            # Short lists whose pool was full of candidates: more items may fit further down.
            short = np.flatnonzero((filled < n) & (cand[:, -1] >= 0)) if pool < m else []
            if len(short):
                idx = torch.from_numpy(short).to(scores.device)
                cand, cand_vals = top_n(scores.index_select(0, idx), m)
                sub_items = col_items if col_items.ndim == 1 else col_items[short]
                pos[short], vals[short], _ = self._greedy(cand, cand_vals, sub_items, n)
        if col_items.ndim == 1:
            out = np.where(pos >= 0, col_items[np.maximum(pos, 0)], -1)
        else:
            out = np.where(pos >= 0, np.take_along_axis(col_items, np.maximum(pos, 0), axis=1), -1)
        return out, vals
