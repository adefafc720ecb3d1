"""Publish computes the nightly report, writes it into the manifest and refuses a table whose
coverage or overlap leaves ``publish.report_bounds`` relative to the previous day (``force``
overrides)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recsys import io
from recsys.config import ReportBounds
from recsys.evaluate.beyond import ReportInputs
from recsys.score.publish import MANIFEST, publish, published_manifest
from recsys.score.validate import TableRejected
from tests.test_publish import REF, stage, table

D1, D2 = "2024-03-02", "2024-03-03"
INPUTS = ReportInputs(item_ids=np.array([f"i{k}" for k in range(10)]), popularity=np.arange(10) / 10)
# Day 1 recommends i1, i3, i4: coverage 3/10.
DAY1 = [("u1", 1, "i3", 0.9, "model"), ("u1", 2, "i4", 0.5, "model"),
        ("u2", 1, "i1", 0.8, "model"), ("u2", 2, "i3", 0.8, "model"),
        ("u3", 1, "i1", 7.0, "popular"), ("u3", 2, "i3", 5.0, "popular")]
# Day 2 recommends i5..i8 to every user: coverage 4/10 (+33%), no overlap with day 1.
DAY2 = [(u, r, f"i{4 + r + (u == 'u2') * 2}", 1.0 / r, "model") for u in ("u1", "u2", "u3") for r in (1, 2)]
# Day 2': the same lists as day 1 but for one item: coverage 4/10, overlap high.
NEAR = [("u1", 1, "i3", 0.9, "model"), ("u1", 2, "i4", 0.5, "model"),
        ("u2", 1, "i1", 0.8, "model"), ("u2", 2, "i0", 0.7, "model"),
        ("u3", 1, "i1", 7.0, "popular"), ("u3", 2, "i3", 5.0, "popular")]


def pub(warehouse, ds, **kw):
    return publish(warehouse, ds, top_n=2, keep=5, reference=REF, report_inputs=INPUTS, **kw)


def test_manifest_carries_the_report(tmp_path):
    stage(tmp_path, D1, table(DAY1))
    m1 = pub(tmp_path, D1)
    on_disk = json.loads((io.partition_path(tmp_path, "recommendations", D1) / MANIFEST).read_text())
    assert on_disk["report"] == m1["report"]
    r = m1["report"]
    assert (r["catalog_coverage"], r["items_recommended"], r["catalog_items"]) == (0.3, 3, 10)
    assert r["source_share"] == {"model": pytest.approx(2 / 3), "popular": pytest.approx(1 / 3)}
    assert r["overlap"] is None and r["previous_ds"] is None
    stage(tmp_path, D2, table(NEAR))
    r2 = pub(tmp_path, D2, bounds=ReportBounds(max_coverage_change=0.5))["report"]
    assert r2["previous_ds"] == D1 and r2["overlap_users"] == 3
    assert r2["overlap"] == pytest.approx((1 + 1 / 3 + 1) / 3)  # u2: {i1,i3} vs {i1,i0}
    assert {"name": "report_coverage", "ok": True, "skipped": False} in published_manifest(tmp_path, D2)["checks"]


def test_coverage_jump_is_refused_and_force_publishes_it(tmp_path):
    stage(tmp_path, D1, table(DAY1))
    pub(tmp_path, D1)
    stage(tmp_path, D2, table(DAY2))
    bounds = ReportBounds(max_coverage_change=0.2)
    with pytest.raises(TableRejected, match=r"report_coverage: catalog coverage 0.4000 vs 0.3000 .* a 33% change"):
        pub(tmp_path, D2, bounds=bounds)
    assert published_manifest(tmp_path, D2) is None  # nothing published, the table stays staged
    assert pub(tmp_path, D2, bounds=ReportBounds(max_coverage_change=0.5))["forced"] is False  # within 50%
    stage(tmp_path, D2, table(DAY2))
    m = pub(tmp_path, D2, bounds=bounds, force=True)
    assert m["forced"] is True
    assert {"name": "report_coverage", "ok": False, "skipped": True} in m["checks"]


def test_overlap_drop_is_refused_and_force_publishes_it(tmp_path):
    stage(tmp_path, D1, table(DAY1))
    pub(tmp_path, D1)
    bounds = ReportBounds(min_overlap=0.5)
    stage(tmp_path, D2, table(NEAR))  # overlap 0.78: passes
    assert pub(tmp_path, D2, bounds=bounds)["report"]["overlap"] > 0.5
    stage(tmp_path, D2, table(DAY2))  # nothing in common with D1 (D2 itself is not "previous")
    with pytest.raises(TableRejected, match=r"report_overlap: mean overlap with the lists of ds=2024-03-02 is 0.0000"):
        pub(tmp_path, D2, bounds=bounds)
    assert published_manifest(tmp_path, D2)["report"]["overlap"] > 0.5  # the live day is unchanged
    m = pub(tmp_path, D2, bounds=bounds, force=True)
    assert m["report"]["overlap"] == 0.0
    assert {"name": "report_overlap", "ok": False, "skipped": True} in m["checks"]


def test_first_day_and_unset_bounds_pass(tmp_path):
    stage(tmp_path, D1, table(DAY1))
    m = pub(tmp_path, D1, bounds=ReportBounds(max_coverage_change=0.01, min_overlap=0.99))
    assert {c["name"]: c["ok"] for c in m["checks"]}["report_overlap"] is True  # nothing to compare
    stage(tmp_path, D2, table(DAY2))
    assert pub(tmp_path, D2)["report"]["overlap"] == 0.0  # no bounds: reported, never refused
