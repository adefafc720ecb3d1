"""The nightly DAG on a real Spark standalone cluster, compared with a local-mode run (issue 11).

The cluster is the session fixture of tests/e2e/conftest.py (a master and 2 workers of 1 core).
The same generated day goes through:

* **the cluster run**: the real DAG ``recsys_nightly`` with ``airflow dags test`` (as
  ``make demo`` runs it), unchanged; only configuration and the Airflow connection differ from
  local mode: ``AIRFLOW_CONN_SPARK_DEFAULT`` is the cluster (clean and build_features are
  ``spark-submit --master spark://...``), ``RECSYS_ENV=standalone`` points the score step's
  Spark (``score.engine: spark``) and ``als_spark``'s training at it, and ``train.processes: 2``
  trains the torch family (``mf_bpr``) as 2 DDP ranks under torchrun;
* **the local reference**: the same job entry points in this process, Spark in ``local[2]``, one
  training process, ``als_spark`` only.

The published family is ``als_spark`` (``score.model``): ALS with a fixed seed and the same
blocks is deterministic, so the published tables must hold the same users and the same items at
every rank; scores agree to 1e-4 (relative; the sums of the normal equations may be added in
another order when shuffle blocks arrive in another order). ``mf_bpr`` trained with 2 ranks is
not compared with 1 rank here (data-parallel SGD sees other batches; tests/steps/test_train_ddp.py
bounds its validation NDCG). Then a worker is killed in the middle of Spark scoring, and the
Spark ranking metrics run on the cluster.

Everything the tests start is stopped when they end or fail: the DAG run (``airflow dags test``,
its spark-submit drivers, torchrun ranks) runs in its own process group, killed on the way out;
the cluster fixture stops the cluster.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from recsys.schema import RECOMMENDATIONS, STAGING
from recsys.score.staging import pending_path
from tests.e2e._cluster import (
    DS,
    ROOT,
    Cluster,
    finish_job,
    job_env,
    kill_worker_during,
    spark_submit,
    start_job,
)

EPOCHS = 2
TOP_N = 5
PUBLISHED = "als_spark"
DAG_TIMEOUT_S = 1200
# Settings both runs share: Spark scoring of the deterministic family; small and quick.
COMMON = {"score": {"engine": "spark", "model": PUBLISHED},
          "models": {"als_spark": {"factors": 16}, "mf_bpr": {"factors": 16}}}
KEY = ["user_id", "rank"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(DAG_TIMEOUT_S + 300)]


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _conf_dir(where: Path, env: str, extra: dict) -> Path:
    """A copy of conf/ whose ``env/<env>.yaml`` has ``extra`` merged in (what a deployment edits)."""
    conf = where / f"conf-{env}"
    shutil.copytree(ROOT / "conf", conf)
    path = conf / "env" / f"{env}.yaml"
    path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()) or {}, extra)))
    return conf


def _published(warehouse: Path) -> pd.DataFrame:
    part = warehouse / RECOMMENDATIONS / f"ds={DS}"
    assert (part / "_SUCCESS").exists(), f"nothing published at {part}"
    return pq.read_table(part).to_pandas().sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(spark, landing, tmp_path_factory) -> Path:
    """The reference: clean, features, train (als_spark), evaluate, score, publish in local mode
    (this process, ``local[2]``); returns its warehouse."""
    from jobs import build_features, clean_interactions, evaluate, publish, score, train

    home = tmp_path_factory.mktemp("local-home")
    conf = _conf_dir(home, "local", COMMON)
    common = ["--ds", DS, "--env", "local", "--conf-dir", str(conf),
              # The shared test session's value, so that these runs leave it as they found it.
              "--set", 'spark.conf.spark.sql.shuffle.partitions="2"']
    saved = os.environ.get("RECSYS_HOME")
    os.environ["RECSYS_HOME"] = str(home)
    try:
        assert clean_interactions.main([*common, "--master", "local[2]", "--landing", str(landing)]) == 0
        assert build_features.main([*common, "--master", "local[2]"]) == 0
        assert train.main([*common, "--models", PUBLISHED, "--epochs", str(EPOCHS)]) == 0
        assert evaluate.main([*common, "--models", PUBLISHED]) == 0
        assert score.main([*common, "--set", f"score.top_n={TOP_N}"]) == 0
        assert publish.main([*common, "--set", f"score.top_n={TOP_N}"]) == 0
    finally:
        if saved is None:
            os.environ.pop("RECSYS_HOME", None)
        else:
            os.environ["RECSYS_HOME"] = saved
    return home / "warehouse"


class DagRun:
    """``airflow dags test recsys_nightly`` on the cluster: its environment and warehouse."""

    def __init__(self, cluster: Cluster) -> None:
        from recsys.localenv import airflow_env, ensure_db

        self.cluster = cluster
        self.home = cluster.home  # its landing/ is the generated day (conftest `landing`)
        self.conf = _conf_dir(self.home, "standalone", _merge(COMMON, {
            "spark": {"master": cluster.url},  # the fixture's port (7077 when it was free)
            "train": {"processes": 2},
        }))
        # Only configuration and the connection differ from `make demo`'s local run.
        self.env = airflow_env(self.home, ROOT, base=job_env(cluster))
        self.env.update({"AIRFLOW_CONN_SPARK_DEFAULT": f"{cluster.url}?deploy-mode=client",
                         "RECSYS_ENV": "standalone", "RECSYS_CONF": str(self.conf),
                         "RECSYS_DEADLINE_MINUTES": "0", "OMP_NUM_THREADS": "1"})
        ensure_db(self.env)
        self.warehouse = self.home / "warehouse"

    def run(self, conf: dict) -> str:
        """Run the DAG for DS; return its log. Its process group is killed on any way out."""
        cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", "recsys_nightly", DS,
               "--conf", json.dumps(conf)]
        before = self.cluster.app_ids()
        proc, log, fh = start_job(self.cluster, "dag-cluster", cmd, self.env)
        try:
            text = finish_job(proc, log, fh, timeout=DAG_TIMEOUT_S)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # spark-submit drivers, torchrun ranks left over
            except ProcessLookupError:
                pass
            fh.close()
        failed = [line for line in text.splitlines() if "state=failed" in line or "FAILED" in line]
        assert not failed, "\n".join(failed[:20]) + "\n" + text[-4000:]
        self.apps = self.cluster.app_ids() - before
        return text


@pytest.fixture(scope="module")
def dag_run(cluster, landing, local_run) -> DagRun:
    # local_run first: the cluster starts in the background meanwhile.
    cluster.ensure_workers()
    run = DagRun(cluster)
    t0 = time.monotonic()
    run.log = run.run({"ds": DS, "models": ["mf_bpr", PUBLISHED], "top_n": TOP_N, "epochs": EPOCHS})
    print(f"\nnightly DAG on the cluster: {time.monotonic() - t0:.0f} s; load {os.getloadavg()}",
          file=sys.stderr)
    return run


def test_nightly_dag_on_the_cluster_publishes_the_local_table(dag_run, local_run):
    got, want = _published(dag_run.warehouse), _published(local_run)
    # Same users, the same items at every rank, from the same family.
    assert len(want) > 0 and set(got.model_name) == set(want.model_name) == {f"recsys_{PUBLISHED}"}
    pd.testing.assert_frame_equal(got[["user_id", "rank", "item_id", "source"]],
                                  want[["user_id", "rank", "item_id", "source"]])
    np.testing.assert_allclose(got.score.to_numpy(), want.score.to_numpy(), rtol=1e-4, atol=1e-6)

    # Every Spark step ran as an application of the cluster: clean, build_features (spark-submit
    # through spark_default), als_spark's training and the scoring (RECSYS_ENV=standalone).
    names = {a["name"] for a in dag_run.cluster.state()["completedapps"] if a["id"] in dag_run.apps}
    assert names == {"recsys-clean", "recsys-features", "recsys-train-als_spark", "recsys-score"}, names
    for app in dag_run.apps:
        assert sum(dag_run.cluster.tasks_by_worker(app).values()) > 0, f"{app}: no task on the workers"

    # mf_bpr trained as 2 data-parallel ranks, its version registered once (by rank 0).
    from mlflow import MlflowClient

    store = f"sqlite:///{dag_run.home / 'mlflow' / 'mlflow.db'}"  # conf/base.yaml's, under its RECSYS_HOME
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = client.search_model_versions("name='recsys_mf_bpr'")
    assert len(versions) == 1
    lineage = client.download_artifacts(versions[0].run_id, "lineage.json", str(dag_run.home))
    assert json.loads(Path(lineage).read_text())["processes"] == 2


def test_worker_killed_mid_spark_scoring_the_output_is_unchanged(dag_run):
    """`RECSYS_ENV=standalone python -m jobs.score` again (a rerun of the published day: the same
    version); worker 1's JVM gets SIGKILL once the scoring tasks are being set up and its
    executor runs a task. The driver re-runs the lost tasks on the other executor; the staged
    table equals the published one (undisturbed)."""
    cluster = dag_run.cluster
    cluster.ensure_workers()
    wh = dag_run.warehouse
    staging = wh / STAGING / RECOMMENDATIONS
    pending = pending_path(wh, DS)
    shutil.rmtree(pending, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.score", "--ds", DS, "--set", f"score.top_n={TOP_N}"]
    before = cluster.app_ids()
    t0 = time.monotonic()
    proc, log, fh = start_job(cluster, "killed-score", cmd, dag_run.env)
    try:
        # The tasks' folder exists from just before the scoring job starts until the table is done.
        app, killed_at = kill_worker_during(
            cluster, proc, before, lambda app: any(staging.glob(f"ds={DS}.*/_tasks")))
        assert not pending.exists(), "the kill landed after scoring had finished"
        text = finish_job(proc, log, fh)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        fh.close()
    print(f"\nworker 1 killed {killed_at:.1f} s into scoring; done after {time.monotonic() - t0:.1f} s; "
          f"load {os.getloadavg()}", file=sys.stderr)
    assert re.search(r"Lost executor \d+ on 127\.0\.0\.1", text), text[-3000:]
    assert cluster.tasks_by_worker(app)[2] > 0
    got = pq.read_table(pending).to_pandas().sort_values(KEY).reset_index(drop=True)
    want = _published(wh)
    cols = ["user_id", "rank", "item_id", "score", "source", "model_name", "model_version", "mlflow_run_id"]
    pd.testing.assert_frame_equal(got[cols], want[cols])  # generated_at: when it was scored
    assert not list(staging.glob(f"ds={DS}.*/_tasks")), "failed attempts' files left behind"
    cluster.ensure_workers()


def test_spark_metrics_on_the_cluster_equal_local(dag_run, spark):
    """ranking_metrics_spark of the published table, on the cluster (spark-submit) and here."""
    wh = dag_run.warehouse
    table = _published(wh)
    # Relevant pairs with hits at several ranks and misses: every other user's rank-2 and rank-4
    # items, and for every user one item it was not recommended (its seen items are excluded).
    users = np.sort(table.user_id.unique())
    hits = table[table.user_id.isin(users[::2]) & table["rank"].isin([2, 4])][["user_id", "item_id"]]
    miss = pd.DataFrame({"user_id": users, "item_id": "never-recommended"})
    relevant = dag_run.home / "relevant"
    shutil.rmtree(relevant, ignore_errors=True)
    relevant.mkdir()
    pq.write_table(pa.Table.from_pandas(pd.concat([hits, miss]), preserve_index=False),
                   relevant / "part-0.parquet")
    recs = wh / RECOMMENDATIONS / f"ds={DS}"
    cluster = dag_run.cluster
    cluster.ensure_workers()
    proc, log, fh = start_job(cluster, "metrics", [
        spark_submit(), "--master", cluster.url, str(ROOT / "tests" / "e2e" / "_spark_metrics_job.py"),
        str(recs), str(relevant), "3"], dag_run.env)
    text = finish_job(proc, log, fh)
    on_cluster = json.loads(re.search(r"^METRICS (.*)$", text, re.M).group(1))

    from recsys.evaluate.spark_metrics import ranking_metrics_spark

    local = ranking_metrics_spark(spark.read.parquet(str(recs)), spark.read.parquet(str(relevant)), 3)
    assert on_cluster.keys() == local.keys()
    assert 0 < local["hit_rate@3"] < 1 and 0 < local["ndcg@3"] < 1
    for key, value in local.items():
        assert on_cluster[key] == pytest.approx(value, rel=1e-12), key
