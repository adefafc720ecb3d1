"""The nightly report: beyond-accuracy metrics of a published top-N table (numpy + pyarrow only).

Each metric takes the table's columns and what the day's training set says about the catalog
(:class:`ReportInputs`); :func:`nightly_report` computes them all into one JSON-able dict, which
the publish step writes into the partition's ``_manifest.json`` (key ``report``), checks against
``publish.report_bounds`` and logs to MLflow. Definitions (docs/models.md, "The nightly report"):

* ``catalog_coverage``: distinct recommended items / items that may be recommended (the
  training set's catalog, less the items marked unavailable) (:func:`recsys.metrics.catalog_coverage`);
* ``gini``: Gini coefficient of how often each of those items is recommended (0: every item
  equally often; close to 1: a few items fill every list);
* ``intra_list_diversity``: per user, the mean cosine distance (1 - cosine similarity) between
  the item-feature vectors of every pair in the list, averaged over users; the genre columns
  (``genre_*``) of the training set's item features when there are any, else all of them; None
  without item features. Items with an all-zero vector are left out of the pairs;
* ``novelty_bits``: mean self-information of the recommended items in bits, -log2 p(i), p(i) the
  share of the training set's users who interacted with item i (an item nobody interacted with
  counts as the least popular one that somebody did); ``mean_popularity``: the mean p(i) over all
  rows (popularity bias, ARP). The same definitions as the evaluate step's ``novelty@k`` and
  ``arp@k`` (:mod:`recsys.metrics`);
* ``source_share``: the share of users whose list comes from each ``source``;
* ``overlap``: the Jaccard similarity of each user's item set with the previous published day's,
  averaged over the users present in both tables (None without a previous day).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys import metrics


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """What the report needs from the day's training set, by item id."""

    item_ids: np.ndarray  # the catalog, position = item_idx
    popularity: np.ndarray  # per item: share of the training set's users who interacted with it
    recommendable: np.ndarray | None = None  # bool per item (available); None = all
    features: np.ndarray | None = None  # float (n_items, d) for intra-list diversity
    feature_set: str | None = None  # which columns ``features`` holds (for the report)

    @classmethod
    def from_training_set(cls, ts, feature_names: list[str] | None = None) -> "ReportInputs":
        """From a :class:`recsys.data.training_set.TrainingSet`; ``feature_names`` names the
        columns of its item-feature matrix (then only ``genre_*`` columns are used if present)."""
        inter = ts.interactions
        feats, which = inter.item_features, None
        if feats is not None and feats.shape[1]:
            which = "all item features"
            if feature_names is not None:
                genre = [j for j, name in enumerate(feature_names) if name.startswith("genre_")]
                if genre:
                    feats, which = feats[:, genre], "genre_*"
        else:
            feats = None
        return cls(np.asarray(ts.item_ids).astype(str), metrics.item_popularity(inter.csr("ones")),
                   None if ts.item_available is None else np.asarray(ts.item_available, bool),
                   feats, which)


def _positions(ids: pa.Array | pa.ChunkedArray, catalog: np.ndarray) -> np.ndarray:
    """Position of each id in ``catalog`` (-1 when absent)."""
    return pc.index_in(ids, value_set=pa.array(catalog)).fill_null(-1).to_numpy().astype(np.int64)


def _user_codes(table: pa.Table) -> np.ndarray:
    return table.column("user_id").combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)


def catalog_coverage(item_pos: np.ndarray, recommendable: np.ndarray) -> tuple[float, int, int]:
    """(coverage, recommended items, catalog items): ``item_pos`` are the rows' catalog positions;
    only items that may be recommended count, on both sides."""
    total = int(recommendable.sum())
    pos = item_pos[item_pos >= 0]
    pos = pos[recommendable[pos]]
    covered = len(np.unique(pos))
    return (metrics.catalog_coverage(pos[:, None], total, 1) if total else 0.0), covered, total


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0 = equal; (n-1)/n = one item takes all)."""
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def intra_list_diversity(users: np.ndarray, item_pos: np.ndarray, features: np.ndarray) -> float | None:
    """Mean over users of the mean pairwise cosine distance within their list.

    Per user with unit vectors f_1..f_m: the sum of the pairs' similarities is
    (|sum f|^2 - m) / 2, so no pair is materialized. Users with fewer than two items that have a
    non-zero feature vector are left out; None when no user is left.
    """
    norms = np.linalg.norm(features, axis=1)
    ok = (item_pos >= 0)
    ok[ok] = norms[item_pos[ok]] > 0
    if not ok.any():
        return None
    u, pos = users[ok], item_pos[ok]
    unit = features[pos] / norms[pos, None]
    n_users = int(users.max()) + 1
    sums = np.zeros((n_users, features.shape[1]))
    np.add.at(sums, u, unit)
    m = np.bincount(u, minlength=n_users).astype(np.float64)
    keep = m >= 2
    if not keep.any():
        return None
    pair_sim = ((sums[keep] ** 2).sum(axis=1) - m[keep]) / 2
    mean_sim = pair_sim / (m[keep] * (m[keep] - 1) / 2)
    return float(np.mean(1.0 - mean_sim))


def novelty(item_pos: np.ndarray, popularity: np.ndarray) -> tuple[float | None, float | None]:
    """(mean self-information in bits, mean popularity) over the rows whose item is in the
    catalog (:func:`recsys.metrics.novelty`, :func:`recsys.metrics.average_popularity`); None
    without such rows."""
    rows = item_pos[item_pos >= 0][:, None]
    if not len(rows):
        return None, None
    return metrics.novelty(rows, popularity, 1), metrics.average_popularity(rows, popularity, 1)


def source_share(table: pa.Table) -> dict[str, float]:
    """Share of users per ``source`` (each user's list has one source)."""
    per = table.group_by("source").aggregate([("user_id", "count_distinct")])
    counts = dict(zip(per.column("source").to_pylist(), per.column("user_id_count_distinct").to_pylist()))
    total = sum(counts.values())
    return {k: counts[k] / total for k in sorted(counts)} if total else {}


def overlap(today: pa.Table, previous: pa.Table) -> tuple[float | None, int]:
    """(mean Jaccard of users' item sets with ``previous``, users in both tables)."""
    users = pa.chunked_array([today.column("user_id"), previous.column("user_id")]).combine_chunks() \
        .dictionary_encode().indices.to_numpy().astype(np.int64)
    items = pa.chunked_array([today.column("item_id"), previous.column("item_id")]).combine_chunks() \
        .dictionary_encode().indices.to_numpy().astype(np.int64)
    n = today.num_rows
    width = int(items.max()) + 1 if len(items) else 1
    key_t = np.unique(users[:n] * width + items[:n])
    key_p = np.unique(users[n:] * width + items[n:])
    size_t = np.bincount(key_t // width, minlength=int(users.max(initial=0)) + 1)
    size_p = np.bincount(key_p // width, minlength=len(size_t))
    both = np.intersect1d(key_t, key_p, assume_unique=True)
    inter = np.bincount(both // width, minlength=len(size_t))
    common = (size_t > 0) & (size_p > 0)
    if not common.any():
        return None, 0
    jac = inter[common] / (size_t[common] + size_p[common] - inter[common])
    return float(jac.mean()), int(common.sum())


def nightly_report(table: pa.Table, inputs: ReportInputs, previous: pa.Table | None = None,
                   previous_ds: str | None = None) -> dict:
    """Every metric of the module docstring for ``table`` (the published schema), as plain values."""
    item_pos = _positions(table.column("item_id"), inputs.item_ids)
    recommendable = (np.ones(len(inputs.item_ids), bool) if inputs.recommendable is None
                     else inputs.recommendable)
    coverage, covered, total = catalog_coverage(item_pos, recommendable)
    counts = np.bincount(item_pos[item_pos >= 0], minlength=len(inputs.item_ids))[recommendable]
    bits, pop = novelty(item_pos, inputs.popularity)
    ild = None
    if inputs.features is not None and table.num_rows:
        ild = intra_list_diversity(_user_codes(table), item_pos, inputs.features)
    ov, ov_users = (None, 0) if previous is None else overlap(table, previous)
    return {
        "catalog_coverage": coverage, "items_recommended": covered, "catalog_items": total,
        "gini": gini(counts),
        "intra_list_diversity": ild, "diversity_features": inputs.feature_set if ild is not None else None,
        "novelty_bits": bits, "mean_popularity": pop,
        "source_share": source_share(table),
        "overlap": ov, "overlap_users": ov_users, "previous_ds": previous_ds,
    }


# The report's numeric metrics that are plotted and logged over days.
SERIES = ("catalog_coverage", "gini", "intra_list_diversity", "novelty_bits", "mean_popularity", "overlap")
