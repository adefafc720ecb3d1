"""`recsys forget`: no trace of the user left anywhere in the warehouse, quarantine keeps the
reason without the payload, later raw logs are quarantined as `erased_user`, partitions are
swapped atomically (a kill between rewrites leaves whole partitions), a second run is a no-op,
and the model versions trained on the user's data are tagged for the gate."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from recsys import io
from recsys.data.generator import generate_landing
from recsys.etl import erasures, quality
from recsys.schema import (
    INTERACTIONS,
    QUARANTINE,
    RECOMMENDATIONS,
    RECOMMENDATIONS_ARROW,
    TRAINING_SET,
)

ROOT = Path(__file__).resolve().parents[2]
D1, D2 = "2024-03-01", "2024-03-02"
GONE = "forget-me-7"  # appears on D2 only; no other value contains this text
EVENT = ('{"event_id":"fm-%d","user_id":"%s","item_id":"i%d","event_type":"view",'
         '"ts":"2024-03-02T0%d:00:00Z"}\n')


def _land_user(landing: Path, ds: str, user: str = GONE) -> int:
    """The user's raw rows on ``ds``: 5 good events (one sent twice), one with a bad ts and one
    broken line that still names them. Returns the rows written."""
    lines = [EVENT % (k, user, k, k) for k in range(5)] + [EVENT % (0, user, 0, 0)]
    lines += ['{"event_id":"fm-9","user_id":"%s","item_id":"i1","event_type":"view","ts":"soon"}\n' % user,
              '{"event_id":"fm-10","user_id":"%s","item_id":"i1" oops\n' % user]
    (landing / "interactions" / f"ds={ds}" / "forget.jsonl").write_text("".join(lines))
    users = landing / "users" / f"ds={ds}" / "users.csv"
    text = users.read_text()
    users.write_text(text + ("" if text.endswith("\n") else "\n")
                     + f"{user}," + ",".join("" for _ in text.splitlines()[0].split(",")[1:]) + "\n")
    return len(lines)


def _publish_recommendations(wh: Path, ds: str) -> None:
    """A top-3 table for every user of the day's training set, published as the score step does."""
    from recsys.score.publish import publish
    from recsys.score.staging import pending_path

    ts = pads.dataset(str(io.partition_path(wh, TRAINING_SET, ds) / "user_map")).to_table()
    items = pads.dataset(str(io.partition_path(wh, TRAINING_SET, ds) / "item_map")).to_table()
    users = sorted(ts["user_id"].to_pylist())
    top = items["item_id"].to_pylist()[:3]
    n = len(users) * 3
    table = pa.table({
        "user_id": [u for u in users for _ in range(3)], "rank": pa.array([1, 2, 3] * len(users), pa.int32()),
        "item_id": top * len(users), "score": pa.array(np.tile([3.0, 2.0, 1.0], len(users)), pa.float32()),
        "source": ["model"] * n, "model_name": ["recsys_mf_bpr"] * n, "model_version": ["2"] * n,
        "mlflow_run_id": ["run2"] * n, "because": [[]] * n, "because_reason": ["history"] * n,
        "generated_at": pa.array([dt.datetime(2024, 3, 3, tzinfo=dt.timezone.utc)] * n,
                                 pa.timestamp("us", tz="UTC"))}, schema=RECOMMENDATIONS_ARROW)
    staged = pending_path(wh, ds)
    staged.mkdir(parents=True)
    pq.write_table(table, staged / "part-00000.parquet")
    publish(wh, ds, top_n=10, keep=5)
    # The next run's table, scored but not yet published: staging holds the user too.
    staged.mkdir(parents=True)
    pq.write_table(table, staged / "part-00000.parquet")


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """A warehouse with every table that carries user ids: two cleaned days, two training sets,
    a published and a staged recommendations table, model vectors, the CSV export, and an MLflow
    registry with one version per training set."""
    from mlflow import MlflowClient

    from recsys import tracking
    from recsys.config import load_config
    from recsys.data.training_set import write_training_set
    from recsys.interactions import Interactions
    from recsys.score.vectors import write_vectors
    from recsys.steps.clean import run_clean
    from recsys.steps.export import refresh_exports
    from recsys.steps.features import run_features

    home = tmp_path_factory.mktemp("forget") / "var"
    old = os.environ.get("RECSYS_HOME")
    os.environ["RECSYS_HOME"] = str(home)
    try:
        cfg = load_config(env="local")
        landing, wh = cfg.paths.landing, cfg.paths.warehouse
        generate_landing(landing, D2, 1, seed=5, n_users=40, n_items=30, events_per_day=300,
                         bad_row_rate=0.05, chunk_size=150)
        _land_user(landing, D2)
        run_clean(spark, cfg, D2, landing, wh)
        run_features(spark, cfg, D2, wh)
        # The day before, without the user (pyarrow: Spark is the slow part of this fixture).
        write_training_set(wh, D1, Interactions(np.array([0, 1]), np.array([1, 0]), np.ones(2, np.float32),
                                                n_users=2, n_items=2),
                           np.array(["u1", "u2"]), np.array(["i1", "i2"]))
        _publish_recommendations(wh, D2)
        user_map = pads.dataset(str(io.partition_path(wh, TRAINING_SET, D2) / "user_map")).to_table()
        ids = np.asarray(user_map["user_id"].to_pylist())
        write_vectors(wh, "recsys_mf_bpr", "2", "run2", [(ids, np.ones((len(ids), 4), np.float32))],
                      np.asarray(["i1", "i2"]), np.ones((2, 4), np.float32))
        refresh_exports(wh, home / "exports")
        tracking.setup(cfg)
        client = MlflowClient()
        client.create_registered_model("recsys_mf_bpr")
        for ds in (D1, D2):
            client.create_model_version("recsys_mf_bpr", source=str(home), tags={"ds": ds})
    finally:
        if old is None:
            os.environ.pop("RECSYS_HOME", None)
        else:
            os.environ["RECSYS_HOME"] = old
    return home


@pytest.fixture()
def home(built, tmp_path, monkeypatch):
    """A private copy of the built warehouse (and MLflow store) for one test."""
    src = built
    dst = tmp_path / "var"
    shutil.copytree(src, dst)
    monkeypatch.setenv("RECSYS_HOME", str(dst))
    monkeypatch.delenv(erasures.KEY_ENV, raising=False)
    return dst


@pytest.fixture()
def cfg(home):
    from recsys.config import load_config

    return load_config(env="local")


def traces(root: Path, user: str) -> list[str]:
    """Every file under ``root`` with the user in it: any string value of any column of a
    Parquet file (lists included) containing the id, or the id in any other file's text."""
    found = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            for name in t.column_names:
                col = t[name]
                while pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                    col = pc.list_flatten(col)
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    if pc.any(pc.fill_null(pc.match_substring(col, user), False)).as_py():
                        found.append(f"{f}:{name}")
                elif pa.types.is_binary(col.type):
                    if any(user.encode() in v for v in col.to_pylist() if v):
                        found.append(f"{f}:{name}")
        elif user.encode() in f.read_bytes():
            found.append(str(f))
    return found


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _forget(cfg, users):
    from recsys.steps.forget import forget_users

    return forget_users(cfg, users)


def test_the_walk_finds_the_user_in_every_table_before_forget(cfg):
    """The check below can fail: before forget the user is in each table that carries ids."""
    found = traces(cfg.paths.warehouse, GONE)
    tables = {Path(f.split(":")[0]).relative_to(cfg.paths.warehouse).parts[0] for f in found}
    assert {"interactions", "quarantine", "users", "training_set", "recommendations",
            "model_vectors", "_staging"} <= tables
    assert traces(cfg.paths.home / "exports", GONE)


def test_after_forget_no_trace_of_the_user_is_left_in_the_warehouse(cfg):
    wh = cfg.paths.warehouse
    report = _forget(cfg, [f"  {GONE} "])  # trimmed as the clean step trims
    assert report.traces == []
    assert traces(wh, GONE) == []
    assert traces(cfg.paths.home / "exports", GONE) == []
    assert report.tombstoned == 1 and report.rows_removed[INTERACTIONS] == 5
    # Everything else is still there and readable, every partition complete.
    from recsys.data.training_set import load_training_set
    from recsys.score.publish import verify_partition

    ts = load_training_set(wh, D2)
    assert GONE not in set(ts.user_ids) and len(ts.user_ids) > 30
    assert ts.interactions.user_idx.max() == len(ts.user_ids) - 1
    assert verify_partition(io.partition_path(wh, RECOMMENDATIONS, D2))
    manifest = json.loads((io.partition_path(wh, RECOMMENDATIONS, D2) / "_manifest.json").read_text())
    assert manifest["user_count"] == len(ts.user_ids) and manifest["row_count"] == 3 * len(ts.user_ids)
    # The books still balance, with the removed rows counted as erased.
    summary = json.loads((io.partition_path(wh, INTERACTIONS, D2) / quality.DQ_SUMMARY_FILE).read_text())
    quality.reconcile(summary)
    clean = pads.dataset(str(io.partition_path(wh, INTERACTIONS, D2))).to_table()
    assert summary["clean"] == clean.num_rows and summary["erased"] == 5
    assert summary["distinct_users"] == len(set(clean["user_id"].to_pylist()))
    assert json.loads((io.partition_path(wh, TRAINING_SET, D2) / quality.DQ_SUMMARY_FILE).read_text()) == summary
    # The tombstone holds a keyed hash, not the id, and only the key recognises it.
    tomb = erasures.read_erasures(wh, cfg.paths.home)
    assert tomb.user_keys == {erasures.user_key(tomb.key, GONE)}
    assert erasures.user_key("another key", GONE) not in tomb.user_keys


def test_quarantine_keeps_the_reason_but_not_the_payload(cfg):
    part = io.partition_path(cfg.paths.warehouse, QUARANTINE, D2)
    before = pads.dataset(str(part)).to_table().to_pylist()
    mine = [r for r in before if r["raw"] and GONE in r["raw"]]
    assert sorted(r["reason"] for r in mine) == ["bad_ts", "malformed_row"]
    _forget(cfg, [GONE])
    after = pads.dataset(str(part)).to_table().to_pylist()
    assert len(after) == len(before)
    assert sorted(r["reason"] for r in after) == sorted(r["reason"] for r in before)
    blanked = [r for r in after if r["raw"] is None]
    assert sorted((r["reason"], r["source_file"]) for r in blanked) == \
        sorted((r["reason"], r["source_file"]) for r in mine)
    assert [r for r in after if r["raw"] is not None] == [r for r in before if r not in mine]


def test_later_raw_logs_of_the_user_are_quarantined_as_erased_user(spark, cfg, built):
    from recsys.bench import duck_clean
    from recsys.steps.clean import run_clean

    wh, landing = cfg.paths.warehouse, cfg.paths.landing
    _forget(cfg, [GONE])
    # The user's logs arrive again (the day is re-run, and a new file lands for it).
    _land_user(landing, D2)
    summary = run_clean(spark, cfg, D2, landing, wh)
    # 8 rows: all but the broken line (malformed_row comes first: its user id cannot be read).
    assert summary["reasons"]["erased_user"] == 7
    quality.reconcile(summary)
    clean = pads.dataset(str(io.partition_path(wh, INTERACTIONS, D2))).to_table()
    assert GONE not in clean["user_id"].to_pylist()
    q = pads.dataset(str(io.partition_path(wh, QUARANTINE, D2))).to_table().to_pylist()
    erased = [r for r in q if r["reason"] == "erased_user"]
    assert len(erased) == 7 and all(r["raw"] is None and r["raw_b64"] is None for r in erased)
    assert {r["source_file"] for r in erased} == {"forget.jsonl"}
    # The DuckDB engine files the same rows the same way.
    tomb = erasures.read_erasures(wh, cfg.paths.home)
    duck = duck_clean.clean(landing / "interactions" / f"ds={D2}", cfg.paths.home / "duck", D2,
                            cfg.clean, erasures=tomb)
    assert duck["books"] == {k: summary[k] for k in ("raw", "clean", "duplicates", "quarantined")}
    assert duck["reasons"] == {k: v for k, v in summary["reasons"].items() if v}
    raw = pq.read_table(cfg.paths.home / "duck" / "quarantine.parquet").to_pylist()
    assert all(r["raw"] is None for r in raw if r["reason"] == "erased_user")
    # Only the malformed line still names the user: forget again blanks it.
    assert len([f for f in traces(wh, GONE) if "quarantine" in f]) == 1
    _forget(cfg, [GONE])
    assert traces(wh, GONE) == []


def test_clean_refuses_to_run_without_the_key_the_tombstone_was_made_with(spark, cfg):
    from recsys.steps.clean import run_clean

    _forget(cfg, [GONE])
    erasures.key_path(cfg.paths.home).unlink()
    with pytest.raises(erasures.ErasureKeyError, match="no erasure key"):
        run_clean(spark, cfg, D2, cfg.paths.landing, cfg.paths.warehouse)
    os.environ[erasures.KEY_ENV] = "not the key"
    try:
        with pytest.raises(erasures.ErasureKeyError, match="not the one"):
            run_clean(spark, cfg, D2, cfg.paths.landing, cfg.paths.warehouse)
    finally:
        del os.environ[erasures.KEY_ENV]


def test_a_second_forget_changes_nothing(cfg):
    _forget(cfg, [GONE])
    before = _snapshot(cfg.paths.warehouse)
    report = _forget(cfg, [GONE])
    assert (report.tombstoned, report.partitions, report.rows_removed, report.versions_tagged) == (0, {}, {}, [])
    assert _snapshot(cfg.paths.warehouse) == before


def test_model_versions_trained_on_the_user_are_tagged(cfg):
    from mlflow import MlflowClient

    from recsys import tracking

    report = _forget(cfg, [GONE])
    assert report.versions_tagged == ["recsys_mf_bpr v2"]  # trained on D2; v1 (D1) never saw them
    client = MlflowClient()
    tags = {v: client.get_model_version("recsys_mf_bpr", v).tags for v in ("1", "2")}
    assert tags["2"][tracking.ERASED_PENDING_TAG] == "true"
    assert tracking.ERASED_PENDING_TAG not in tags["1"]
    assert tracking.erased_data_pending(cfg, "mf_bpr", "2")
    assert not tracking.erased_data_pending(cfg, "mf_bpr", "1")


def test_gate_replaces_a_champion_trained_on_erased_data():
    """Regression guard: a worse challenger would keep the champion, unless the champion holds
    erased users' data; a challenger without a finite metric never replaces it."""
    from recsys.evaluate.gate import decide

    champ, worse = {"ndcg@10": 0.5}, {"ndcg@10": 0.1}
    assert not decide(champ, worse, "ndcg@10", 0.02).promote
    d = decide(champ, worse, "ndcg@10", 0.02, champion_erased=True)
    assert d.promote and "erased" in d.reason
    assert not decide(champ, {"ndcg@10": float("nan")}, "ndcg@10", 0.02, champion_erased=True).promote


class _Killed(BaseException):
    """Stands for SIGKILL in-process: nothing below the fault point runs, no handler catches it."""


def _check_whole_partitions(wh: Path, rewritten_expected: int, old_rows: dict) -> None:
    from recsys.score.publish import verify_partition

    for table in ("interactions", "quarantine", "users", "training_set", "recommendations"):
        for ds in (D1, D2):
            part = io.partition_path(wh, table, ds)
            if part.exists():
                assert io.is_complete(part), part
    rewritten = [p for p, n in old_rows.items() if pads.dataset(str(p)).to_table().num_rows != n]
    assert len(rewritten) == rewritten_expected
    for p in old_rows:
        quality.reconcile(json.loads((p / quality.DQ_SUMMARY_FILE).read_text()))
    assert verify_partition(io.partition_path(wh, RECOMMENDATIONS, D2))
    assert traces(wh, GONE)  # not done yet


def _rows(wh: Path) -> dict:
    return {p: pads.dataset(str(p)).to_table().num_rows for p in sorted((wh / INTERACTIONS).glob("ds=*"))}


@pytest.mark.parametrize("fault, rewritten", [("staged_complete", 0), ("exchanged", 1)])
def test_a_forget_stopped_between_writes_leaves_whole_partitions_and_a_rerun_finishes(
        cfg, monkeypatch, fault, rewritten):
    """Stopped before the first swap and right after it: every partition is complete and either
    the old or the new one (books balanced, manifest checksums valid); a rerun finishes."""
    wh = cfg.paths.warehouse
    old = _rows(wh)

    def fault_at(step):
        if step == fault:
            raise _Killed(step)
    real = io._fault
    monkeypatch.setattr(io, "_fault", fault_at)
    with pytest.raises(_Killed):
        _forget(cfg, [GONE])
    _check_whole_partitions(wh, rewritten, old)
    monkeypatch.setattr(io, "_fault", real)
    assert _forget(cfg, [GONE]).traces == []
    assert traces(wh, GONE) == []


@pytest.mark.slow
def test_a_sigkilled_forget_leaves_whole_partitions_and_a_rerun_finishes(cfg):
    """The same with a real SIGKILL of ``python -m jobs.forget`` right after the first swap."""
    wh = cfg.paths.warehouse
    old = _rows(wh)
    env = {**os.environ, io.FAULT_ENV: "exchanged"}
    proc = subprocess.run([sys.executable, "-m", "jobs.forget", "--user", GONE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    _check_whole_partitions(wh, 1, old)
    proc = subprocess.run([sys.executable, "-m", "jobs.forget", "--user", GONE], cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if k != io.FAULT_ENV},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["traces"] == []
    assert traces(wh, GONE) == []


def test_forget_refuses_no_users(cfg):
    from recsys.steps.forget import forget_users

    with pytest.raises(ValueError, match="no user"):
        forget_users(cfg, [])
    with pytest.raises(ValueError, match="not a user id"):
        forget_users(cfg, ["   "])


def _group_training_set(wh: Path, ds: str, seed: int = 0) -> None:
    """Users of group g interacted with 7 of the 10 items of group g (as tests/steps/test_gate_flow)."""
    from recsys.data.training_set import write_training_set
    from recsys.interactions import Interactions

    rng = np.random.default_rng(seed)
    rows = []
    for g in range(3):
        for k in range(20):
            items = g * 10 + rng.choice(10, 7, replace=False)
            rows += [(g * 20 + k, int(i), 1_700_000_000 + t) for t, i in enumerate(items)]
    u, i, t = map(np.array, zip(*rows))
    write_training_set(wh, ds, Interactions(u, i, np.ones(len(u), np.float32), n_users=60, n_items=30,
                                            ts=t),
                       np.array([f"user{x:03d}" for x in range(60)]), np.array([f"item{x:03d}" for x in range(30)]))


@pytest.mark.slow
def test_next_nightly_gate_replaces_a_champion_trained_on_erased_data(recsys_home):
    """A deliberately worse challenger is not promoted (tests/steps/test_gate_flow) — unless the
    champion was trained on the data of a user forgotten since: then the new version, trained
    without them, replaces it."""
    from recsys import tracking
    from recsys.config import load_config
    from recsys.steps.evaluate import evaluate_families
    from recsys.steps.forget import forget_users
    from recsys.steps.train import train_families

    small = {"models.mf_bpr.factors": 8, "models.mf_bpr.batch_size": 256}
    good = load_config(overrides={**small, "models.mf_bpr.lr": 0.05})
    wh = good.paths.warehouse
    _group_training_set(wh, D1)
    (v1,) = train_families(good, D1, ["mf_bpr"], epochs=15, progress=False)
    assert evaluate_families(good, D1, ["mf_bpr"])["mf_bpr"].promote

    assert forget_users(good, ["user007"]).versions_tagged == [f"recsys_mf_bpr v{v1.version}"]
    _group_training_set(wh, D2)  # the next day's training set, built without the user
    forget_users(good, ["user007"])  # (the generated set has them: the clean step would not)
    bad = load_config(overrides={**small, "models.mf_bpr.lr": 1e-9})
    (v2,) = train_families(bad, D2, ["mf_bpr"], epochs=1, progress=False)
    decision = evaluate_families(bad, D2, ["mf_bpr"])["mf_bpr"]
    assert decision.promote and "erased" in decision.reason, decision.reason
    assert decision.champion_value > decision.challenger_value + bad.evaluate.tolerance
    assert tracking.champion_version(bad, "mf_bpr") == v2.version
    assert not tracking.erased_data_pending(bad, "mf_bpr", v2.version)


@pytest.mark.slow
def test_forget_redacts_the_model_bundles_in_the_mlflow_store(recsys_home):
    """Issue 15: forget left the erased user's id and learned vector in every registered
    version's bundle in the MLflow artifact store. It now rewrites them: the version loads, serves
    every other user as before, no longer knows the user, and no file of the store names them."""
    from recsys import tracking
    from recsys.config import load_config
    from recsys.steps.forget import _local_dir, forget_users
    from recsys.steps.train import train_families

    cfg = load_config(overrides={"models.mf_bpr.factors": 8, "models.mf_bpr.batch_size": 256})
    _group_training_set(cfg.paths.warehouse, D1)
    (v1,) = train_families(cfg, D1, ["mf_bpr"], epochs=3, progress=False)
    old = tracking.load_version(cfg, "mf_bpr", v1.version).bundle
    store = _local_dir(cfg.mlflow.artifact_location)
    assert traces(store, "user007")  # the bundle's user map names the user before forget

    report = forget_users(cfg, ["user007"])
    assert report.versions_redacted == [f"recsys_mf_bpr v{v1.version}"] and report.traces == []
    assert traces(store, "user007") == []
    new = tracking.load_version(cfg, "mf_bpr", v1.version).bundle
    assert new.user_index(np.array(["user007", "user008"])).tolist() == [-1, 8]
    keep = np.setdiff1d(np.arange(60), [7])
    np.testing.assert_array_equal(new.model.score_users(keep), old.model.score_users(keep))
    v7 = new.model.user_vectors()[7]  # mf_bpr's user vector: its factors, then 1 (the item bias)
    assert old.model.user_vectors()[7][:-1].any() and not v7[:-1].any() and v7[-1] == 1
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version("recsys_mf_bpr", v1.version).tags
    assert tracking.ERASED_REDACTED_TAG in tags and tags[tracking.ERASED_PENDING_TAG] == "true"
    assert forget_users(cfg, ["user007"]).versions_redacted == []  # a second run finds nothing left
