"""Where scoring leaves a finished table for ``publish`` (kept free of torch so publish stays light).

A scoring attempt writes ``<warehouse>/_staging/recommendations/ds=<ds>.<token>/`` and, when
complete, renames it whole to ``ds=<ds>.pending``; publish reads only the ``pending`` folder.
"""
from __future__ import annotations

from pathlib import Path

from recsys import io
from recsys.schema import RECOMMENDATIONS, STAGING

PENDING = "pending"
SCORING_INFO = "_scoring.json"


def pending_path(warehouse: Path | str, ds: str) -> Path:
    """Where a finished, not yet published scoring run of ``ds`` waits for ``publish``."""
    io.parse_ds(ds)
    return Path(warehouse) / STAGING / RECOMMENDATIONS / f"ds={ds}.{PENDING}"
