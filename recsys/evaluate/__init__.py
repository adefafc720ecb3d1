"""Evaluation: splits, metrics, protocols, the champion/challenger gate, the quality benchmark.

Public names are re-exported lazily so that ``import recsys.evaluate.metrics`` (numpy only) or
``recsys.evaluate.spark_metrics`` does not pull in torch through the model contract.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "GateDecision": "recsys.evaluate.gate",
    "decide": "recsys.evaluate.gate",
    "evaluate_model": "recsys.evaluate.protocol",
    "sampled_protocol": "recsys.evaluate.protocol",
    "ranking_metrics": "recsys.evaluate.metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
