"""The champion/challenger gate: a pure decision, no MLflow in here.

``recsys.tracking`` evaluates the challenger and the current champion on the same held-out data,
calls :func:`decide`, moves the ``champion`` alias when told to, and logs the decision.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math

# Metrics where a smaller value is better; everything else (ndcg@k, map@k, ...) is higher-better.
LOWER_IS_BETTER = ("rmse", "mae")


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """Whether to promote the challenger, why, and the two values compared."""

    promote: bool
    reason: str
    champion_value: float | None
    challenger_value: float | None


def lower_is_better(metric: str) -> bool:
    """True for error metrics (``rmse``, ``mae``, ``rmse@...``)."""
    return metric.split("@")[0].lower() in LOWER_IS_BETTER


def decide(
    champion: dict[str, float] | None,
    challenger: dict[str, float],
    metric: str,
    tolerance: float,
    *,
    champion_ds: str | None = None,
    challenger_ds: str | None = None,
    force_promote: bool = False,
    champion_erased: bool = False,
) -> GateDecision:
    """Promote the challenger unless it is worse than the champion by more than ``tolerance``,
    or was trained on older data than the champion.

    ``tolerance`` is absolute, in the metric's own units. With no champion (the first run of a
    family), or a champion that never recorded ``metric``, the challenger is promoted. A
    challenger without a finite value for ``metric`` is never promoted.

    ``champion_ds`` / ``challenger_ds`` are the logical dates of the data each was trained on
    (the versions' ``ds`` tags). A challenger trained on an earlier ``ds`` than the champion (a
    backfill of a past day) is never promoted, whatever its metrics, unless ``force_promote``;
    ``force_promote`` lifts only that rule, the metric comparison still applies. An unknown
    ``ds`` (None or not ``YYYY-MM-DD``) does not trigger the rule.

    ``champion_erased``: the champion was trained on data of a user erased since (``recsys
    forget`` tagged it); the caller passes it only for a challenger without that tag. Such a
    challenger is promoted whatever the comparison or the dates, provided it has a finite value
    for ``metric``: a model holding erased users' data is never kept once a clean one exists.
    """
    on_metrics = _decide_on_metrics(champion, challenger, metric, tolerance)
    if champion is not None and champion_erased:
        value = challenger.get(metric)
        if value is not None and math.isfinite(float(value)):
            return dataclasses.replace(on_metrics, promote=True, reason=(
                "the champion was trained on data of users erased since (tag "
                "erased_users_pending): the challenger, trained without them, replaces it "
                f"whatever the metrics. On metrics alone: {on_metrics.reason}"))
    if champion is None or not _older(challenger_ds, champion_ds):
        return on_metrics
    if force_promote:
        return dataclasses.replace(on_metrics, reason=(
            f"--force-promote: challenger trained on ds={challenger_ds}, older than the champion's "
            f"ds={champion_ds}, judged on metrics alone: {on_metrics.reason}"))
    return dataclasses.replace(on_metrics, promote=False, reason=(
        f"challenger was trained on ds={challenger_ds}, older data than the champion "
        f"(ds={champion_ds}): a model trained on older data never replaces one trained on newer "
        f"data (--force-promote overrides); keeping the champion. On metrics alone: "
        f"{on_metrics.reason}"))


def _older(a: str | None, b: str | None) -> bool:
    """True when both are ``YYYY-MM-DD`` dates and ``a`` is before ``b``."""
    try:
        return dt.date.fromisoformat(str(a)) < dt.date.fromisoformat(str(b))
    except ValueError:
        return False


def _decide_on_metrics(
    champion: dict[str, float] | None,
    challenger: dict[str, float],
    metric: str,
    tolerance: float,
) -> GateDecision:
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    new = challenger.get(metric)
    if new is None or not math.isfinite(float(new)):
        return GateDecision(False, f"challenger has no finite {metric} ({new!r}); keeping the champion",
                            _value(champion, metric), new)
    new = float(new)
    if champion is None:
        return GateDecision(True, f"no champion yet: first run of this family promotes "
                                  f"({metric}={new:.4f})", None, new)
    old = _value(champion, metric)
    if old is None or not math.isfinite(old):
        return GateDecision(True, f"champion has no finite {metric}; promoting the challenger "
                                  f"({metric}={new:.4f})", old, new)
    # How much worse the challenger is, in the metric's direction (positive = worse).
    worse_by = (new - old) if lower_is_better(metric) else (old - new)
    if worse_by > tolerance:
        return GateDecision(False, f"challenger {metric}={new:.4f} is worse than champion "
                                   f"{old:.4f} by {worse_by:.4f} > tolerance {tolerance}; "
                                   f"keeping the champion", old, new)
    return GateDecision(True, f"challenger {metric}={new:.4f} vs champion {old:.4f} "
                              f"(within tolerance {tolerance}); promoting", old, new)


def _value(metrics: dict[str, float] | None, metric: str) -> float | None:
    if metrics is None or metrics.get(metric) is None:
        return None
    return float(metrics[metric])
