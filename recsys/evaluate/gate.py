"""The champion/challenger gate: a pure decision, no MLflow in here.

``recsys.tracking`` evaluates the challenger and the current champion on the same held-out data,
calls :func:`decide`, moves the ``champion`` alias when told to, and logs the decision.
"""
from __future__ import annotations

import dataclasses
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
) -> GateDecision:
    """Promote the challenger unless it is worse than the champion by more than ``tolerance``.

    ``tolerance`` is absolute, in the metric's own units. With no champion (the first run of a
    family), or a champion that never recorded ``metric``, the challenger is promoted. A
    challenger without a finite value for ``metric`` is never promoted.
    """
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
