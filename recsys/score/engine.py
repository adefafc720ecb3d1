"""Score every user of a training set with a model bundle and write the top-N table to staging.

Ids, not indices, connect the two: the training set of ``ds`` has its own dense indices and the
model (a :class:`~recsys.models.bundle.ModelBundle`) has those of the day it was trained, so
users and items are matched by id. Users unknown to the model but with history are folded in
(:mod:`recsys.score.foldin`, ``source = fold_in``) when the family allows it; the others (no
history, or a family without fold-in) get a cold-start list. Every model and fold-in row carries
``because`` (:mod:`recsys.score.reasons`), computed per block with the top-N. Rows come out
sorted by ``user_id``, then ``rank``.

Staging contract (what ``recsys publish`` looks for): see :mod:`recsys.score.staging`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from recsys import io
from recsys.config import ScoreConfig
from recsys.interactions import Interactions
from recsys.models.base import Recommender
from recsys.schema import RECOMMENDATIONS
from recsys.score import coldstart, foldin, reasons
from recsys.score._sink import (
    CONTENT,
    FOLD_IN,
    MODEL,
    POPULAR,
    BatchBuilder,
    Block,
    ParquetSink,
    Provenance,
)
from recsys.score.rules import Rules
from recsys.score.staging import SCORING_INFO, pending_path
from recsys.score.topn import block_mask_coords, make_scorer

__all__ = ["Provenance", "pending_path", "stage", "write_topn", "iter_blocks"]

log = logging.getLogger(__name__)

DATA_FILE = "part-00000.parquet"


class ScoringData(Protocol):
    """What scoring needs from a training set (``recsys.data.training_set.TrainingSet``)."""

    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_available: np.ndarray | None


class Bundle(Protocol):
    """A fitted model with the id maps it was trained with (``recsys.models.bundle.ModelBundle``)."""

    model: Recommender
    user_ids: np.ndarray
    item_ids: np.ndarray

    def user_index(self, ids: np.ndarray) -> np.ndarray: ...
    def item_index(self, ids: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass
class Plan:
    """Index translations between the day's training set and the model, computed once."""

    order: np.ndarray  # training-set users, sorted by id
    model_user: np.ndarray  # per training-set user: model user_idx or -1
    warm: np.ndarray  # bool per training-set user: scored by the model
    seen: Any  # training-set CSR (users x items)
    seen_cols: np.ndarray  # per training-set item: scored column of the model's scorer, or -1
    scored_items: np.ndarray | None  # model items that may be recommended (None = all)
    available: np.ndarray | None  # per training-set item


def make_plan(bundle: Bundle, data: ScoringData, options: ScoreConfig, col_map) -> Plan:
    """Translate ids once; ``col_map`` maps model items to the scorer's columns (None = same)."""
    seen = data.interactions.csr("ones")
    model_user = bundle.user_index(data.user_ids)
    warm = (model_user >= 0) & (np.diff(seen.indptr) > 0)
    model_item = bundle.item_index(data.item_ids)
    seen_cols = model_item if col_map is None else np.where(model_item >= 0, col_map[model_item], -1)
    return Plan(order=np.argsort(np.asarray(data.user_ids).astype(str), kind="stable"),
                model_user=model_user, warm=warm, seen=seen, seen_cols=seen_cols,
                scored_items=None, available=_available(data, options))


def _available(data: ScoringData, options: ScoreConfig) -> np.ndarray | None:
    if not options.exclude_unavailable or data.item_available is None:
        return None
    return np.asarray(data.item_available, bool)


def scored_items(bundle: Bundle, data: ScoringData, options: ScoreConfig) -> np.ndarray | None:
    """Model items that may be recommended: all but those today's catalog marks unavailable."""
    available = _available(data, options)
    if available is None or available.all():
        return None
    gone = bundle.item_index(np.asarray(data.item_ids)[~available])
    keep = np.ones(len(bundle.item_ids), bool)
    keep[gone[gone >= 0]] = False
    return np.flatnonzero(keep)


class _ColdStart:
    """Cold-start lists, in the training set's item space (offset into the output vocabulary)."""

    def __init__(self, bundle: Bundle, data: ScoringData, plan: Plan, n: int,
                 items: np.ndarray | None, offset: int) -> None:
        self.n, self.offset, self.seen = n, offset, plan.seen
        cold = ~plan.warm
        nnz = np.diff(plan.seen.indptr)
        longest = int(nnz[cold].max()) if cold.any() else 0
        self.pop_items, self.pop_scores = coldstart.popular_items(
            data.interactions, n + longest, plan.available)
        feats = data.interactions.user_features
        self.content = (bundle.model if coldstart.supports_content(bundle.model)
                        and feats is not None else None)
        self.features, self.items = feats, items

    @classmethod
    def from_parts(cls, seen, pop_items: np.ndarray, pop_scores: np.ndarray, content: Recommender | None,
                   features: np.ndarray | None, items: np.ndarray | None, n: int, offset: int) -> "_ColdStart":
        """The same lists from parts computed elsewhere (the Spark engine: only the cold users'
        rows of ``seen``/``features``, the popular list counted by Spark, ``n + longest`` long)."""
        self = cls.__new__(cls)
        self.n, self.offset, self.seen = n, offset, seen
        self.pop_items, self.pop_scores = pop_items, pop_scores
        self.content = (content if content is not None and features is not None
                        and coldstart.supports_content(content) else None)
        self.features, self.items = features, items
        return self

    def fill(self, users: np.ndarray, out_items, out_scores, out_source) -> None:
        """Write the cold users' rows (positions ``users`` of the training set) in place."""
        nnz = np.diff(self.seen.indptr)[users]
        fresh = nnz == 0
        out_items[:] = -1
        out_scores[:] = -np.inf
        out_source[:] = POPULAR
        if self.content is not None and fresh.any():
            # No history but features: the hybrid model's content-based lists, in one product.
            it, sc = coldstart.content_topn(self.content, self.features[users[fresh]], self.n, self.items)
            out_items[fresh], out_scores[fresh], out_source[fresh] = it, sc, CONTENT
        elif fresh.any():
            top = self.pop_items[: self.n]
            out_items[fresh] = np.where(top >= 0, top + self.offset, -1)
            out_scores[fresh] = self.pop_scores[: self.n]
        # Users with history the model does not know (it was trained on an older day): the
        # popular list minus what they have seen. Rare, so a loop is fine.
        for j in np.flatnonzero(~fresh):
            u = users[j]
            seen = self.seen.indices[self.seen.indptr[u]:self.seen.indptr[u + 1]]
            keep = ~np.isin(self.pop_items, seen) & (self.pop_items >= 0)
            it, sc = self.pop_items[keep][: self.n], self.pop_scores[keep][: self.n]
            out_items[j, : len(it)] = it + self.offset
            out_scores[j, : len(it)] = sc


def iter_blocks(bundle: Bundle, data: ScoringData, options: ScoreConfig,
                device: torch.device, candidates: Recommender | None = None,
                because: bool = True, fold_in: bool = True, rules: Rules | None = None):
    """Yield :class:`Block` s over all training-set users in id order.

    Item positions index ``concat(bundle.item_ids, data.item_ids)``: model and fold-in rows use
    the model's items, cold-start rows the training set's (offset by the model's catalog size).
    ``because=False`` / ``fold_in=False`` leave the reasons out / send new users to the fallback
    (the scoring benchmark measures the cost of ``because`` that way). ``rules``: business rules
    (:mod:`recsys.score.rules`); their exclusions hold for every row (model, fold-in and the
    popular fallback), their boosts and caps for model rows.
    """
    items = scored_items(bundle, data, options)
    bound = None if rules is None else rules.bind(bundle.item_ids)
    if bound is not None:
        items = bound.restrict(items)
    scorer = make_scorer(bundle.model, options, device, items, candidates, rules=bound)
    plan = make_plan(bundle, data, options, scorer.col_map)
    if rules is not None:
        plan.available = rules.allowed(data.item_ids, plan.available)
    n = options.top_n
    support = reasons.support_for(bundle.model) if because else None
    fold = foldin.FoldIn.for_model(bundle.model, items) if fold_in else None
    day_to_model = bundle.item_index(data.item_ids)
    cold = _ColdStart(bundle, data, plan, n, items, offset=len(bundle.item_ids))
    if fold is not None:  # users the model does not know but with history: folded in, not cold
        plan.warm = plan.warm | ((plan.model_user < 0) & (np.diff(plan.seen.indptr) > 0))
    for start in range(0, len(plan.order), options.block_size):
        users = plan.order[start:start + options.block_size]
        out_items = np.full((len(users), n), -1, np.int64)
        out_scores = np.full((len(users), n), -np.inf, np.float32)
        source = np.full(len(users), MODEL, np.int8)
        why = np.full((len(users), n, reasons.MAX_BECAUSE), -1, np.int64) if support is not None else None
        warm = plan.warm[users]
        new = warm & (plan.model_user[users] < 0)
        if new.any():  # fold-in; those with no history item the model knows go cold below
            ok, it, sc, wh = foldin.fold_in_block(fold, support, plan.seen, users[new], day_to_model,
                                                  plan.seen_cols, n, options.exclude_seen)
            pos = np.flatnonzero(new)
            out_items[pos[ok]], out_scores[pos[ok]], source[pos[ok]] = it, sc, FOLD_IN
            if why is not None:
                why[pos[ok]] = wh
            warm = warm.copy()
            warm[pos] = False  # folded in, or left to the cold-start lists below
        if warm.any():
            rows = users[warm]
            if options.exclude_seen:
                r, c = block_mask_coords(plan.seen.indptr, plan.seen.indices, rows, plan.seen_cols)
            else:
                r = c = np.empty(0, np.int64)
            out_items[warm], out_scores[warm] = scorer.topn(plan.model_user[rows], n, r, c)
            if support is not None:
                hr, hi, _ = foldin.history(plan.seen, rows, day_to_model)
                why[warm] = reasons.because(support, hr, hi, out_items[warm],
                                             may_overlap=not options.exclude_seen)
        cold_rows = ~warm & (source != FOLD_IN)
        if cold_rows.any():
            sub_i, sub_s, sub_src = out_items[cold_rows], out_scores[cold_rows], source[cold_rows]
            cold.fill(users[cold_rows], sub_i, sub_s, sub_src)
            out_items[cold_rows], out_scores[cold_rows], source[cold_rows] = sub_i, sub_s, sub_src
        yield Block(users=users, items=out_items, scores=out_scores, source=source, because=why)


def write_topn(bundle: Bundle, data: ScoringData, provenance: Provenance, out_dir: Path,
               options: ScoreConfig, device: torch.device = torch.device("cpu"),
               candidates: Recommender | None = None,
               on_block: Callable[[int, int], None] | None = None,
               because: bool = True, fold_in: bool = True,
               rules: Rules | None = None) -> dict[str, Any]:
    """Score all users of ``data`` and write one Parquet file into ``out_dir``; return a summary.

    ``on_block(done_users, total_users)`` is called after each block is handed to the writer.
    ``because``/``fold_in``: see :func:`iter_blocks`.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = np.concatenate([np.asarray(bundle.item_ids).astype(str),
                            np.asarray(data.item_ids).astype(str)])
    builder = BatchBuilder(data.user_ids, vocab, provenance)
    by_source = np.zeros(4, np.int64)
    done = 0
    with ParquetSink(out_dir / DATA_FILE, builder) as sink:
        for block in iter_blocks(bundle, data, options, device, candidates, because, fold_in, rules):
            has_rows = (block.items >= 0).any(axis=1)
            by_source += np.bincount(block.source[has_rows], minlength=4)
            sink.put(block)
            done += len(block.users)
            if on_block is not None:
                on_block(done, len(data.user_ids))
    rows = sink.rows
    return {"rows": rows, "users": int(by_source.sum()), "users_model": int(by_source[MODEL]),
            "users_popular": int(by_source[POPULAR]), "users_content": int(by_source[CONTENT]),
            "users_fold_in": int(by_source[FOLD_IN]), "seconds": round(time.perf_counter() - t0, 3), "device": str(device),
            "options": options.model_dump()}


def stage(warehouse: Path | str, ds: str, write: Callable[[Path], dict[str, Any]]) -> Path:
    """Run ``write(folder)`` into a fresh staging folder, then rename it to :func:`pending_path`.

    Leftovers of earlier attempts (killed runs, an unpublished pending table) are removed first;
    the live partition is never touched.
    """
    io.clear_staging(warehouse, RECOMMENDATIONS, ds)
    tmp = io.staging_path(warehouse, RECOMMENDATIONS, ds)
    tmp.mkdir(parents=True)
    info = write(tmp)
    (tmp / SCORING_INFO).write_text(json.dumps({"ds": ds, **info}, indent=2, default=str))
    pending = pending_path(warehouse, ds)
    os.rename(tmp, pending)
    log.info("staged %s rows for %s users at %s", info.get("rows"), info.get("users"), pending)
    return pending
