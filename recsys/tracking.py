"""Everything that talks to MLflow: tracking runs, logging models, the registry and its aliases.

This is the only module that imports mlflow. The training loop returns metrics; this module logs
them. Registered models are named ``<prefix><family>`` (e.g. ``recsys_mf_bpr``); the alias
``champion`` marks the version that scoring uses. Metric names, the experiment's saved runs view
and the versions' descriptions are chosen for what the MLflow UI shows (docs/mlflow.md).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
import time
import warnings
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.exceptions import MlflowException

from recsys.config import Config
from recsys.interactions import Interactions
from recsys.models.base import FitOptions
from recsys.models.bundle import ModelBundle
from recsys.models.registry import build_model

log = logging.getLogger(__name__)

CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle"
# The file MLflow logs as each version's model ("models from code"): it builds a RecsysPyfunc
# from this package when a version loads, so no pickled object is ever stored or unpickled.
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


@dataclasses.dataclass
class LoadedModel:
    """A registered model version, loaded for scoring or evaluation."""

    bundle: ModelBundle
    name: str  # registered model name
    version: str
    run_id: str

    @property
    def model(self):
        return self.bundle.model

    @property
    def family(self) -> str:
        return self.bundle.model.name


@dataclasses.dataclass
class TrainResult:
    name: str
    version: str
    run_id: str
    history: list[dict[str, float]]
    seconds: float


class RecsysPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of a model bundle: predict() scores (user_id, item_id) pairs.

    ``models:/<name>@champion`` loads through this class; unknown users or items score NaN.
    It is logged as code (:data:`PYFUNC_CODE`), never pickled.
    """

    def load_context(self, context) -> None:
        self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input, params=None):
        u = self.bundle.user_index(model_input["user_id"].to_numpy())
        i = self.bundle.item_index(model_input["item_id"].to_numpy())
        known = (u >= 0) & (i >= 0)
        out = np.full(len(model_input), np.nan, dtype=np.float32)
        if known.any():
            out[known] = self.bundle.model.score(u[known], i[known])
        return pd.Series(out, name="score")


# --- metric names: what the MLflow UI shows first -------------------------------------------
# The run page groups a run's charts into sections named by the part of the metric name before
# the last "/", shows those sections in alphabetical order and then the metrics without a "/"
# ("Model metrics"); inside a section the charts are alphabetical. So the learning curve is
# logged under ``fit/`` (first section; ``fit/loss`` its first chart, ``fit/val_ndcg_at_10``
# beside it) and everything else under sections that sort after it.
FIT = "fit"  # per epoch: loss, validation metrics (val_*), training error (train_*)
THROUGHPUT = "throughput"  # per epoch: samples, epoch_seconds, samples_per_second
HOLDOUT = "holdout"  # the gate: the challenger on the held-out slice of its day
CHAMPION_ON_HOLDOUT = "holdout/champion"  # the gate: the champion on the same slice
QUALITY = "quality"  # the training set's data-quality summary (numbers of _dq_summary.json)
TRAIN_SECONDS = "train_seconds"  # wall time of the whole fit


def metric_key(name: str, section: str = "") -> str:
    """The MLflow metric name for ``name`` (e.g. ``ndcg@10``) in ``section`` (e.g. ``holdout``).

    MLflow metric names cannot hold "@": ``ndcg@10`` becomes ``ndcg_at_10``, so
    ``metric_key("ndcg@10", HOLDOUT) == "holdout/ndcg_at_10"``.
    """
    name = name.replace("@", "_at_")
    return f"{section}/{name}" if section else name


def epoch_section(name: str) -> str:
    """:data:`FIT` for what a learning curve draws (loss, ``val_*``, ``train_*``), else
    :data:`THROUGHPUT`."""
    return FIT if name == "loss" or name.startswith(("val_", "train_")) else THROUGHPUT


def _metrics(values: dict[str, Any], section: str = "") -> dict[str, float]:
    return {metric_key(k, section): float(v) for k, v in values.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


def _epoch_metrics(values: dict[str, float]) -> dict[str, float]:
    return {metric_key(k, epoch_section(k)): float(v) for k, v in values.items()}


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "user_id"), ColSpec("string", "item_id")]),
                          outputs=Schema([ColSpec("float", "score")]))


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store; create the experiment if needed. Returns its id."""
    uri = cfg.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is not None:
        if exp.artifact_location.removeprefix("file://").rstrip("/") != cfg.mlflow.artifact_location.rstrip("/"):
            # MLflow cannot move an experiment's artifact root once it exists.
            log.warning("experiment %s keeps its artifacts under %s, not the configured %s",
                        cfg.mlflow.experiment, exp.artifact_location, cfg.mlflow.artifact_location)
        _ensure_runs_view(cfg, exp.experiment_id, exp.tags or {})
        return exp.experiment_id
    Path(cfg.mlflow.artifact_location).mkdir(parents=True, exist_ok=True) if "://" not in cfg.mlflow.artifact_location else None
    try:
        experiment_id = mlflow.create_experiment(cfg.mlflow.experiment,
                                                 artifact_location=cfg.mlflow.artifact_location)
    except MlflowException:  # created concurrently by a parallel task
        exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
        _ensure_runs_view(cfg, exp.experiment_id, exp.tags or {})
        return exp.experiment_id
    _ensure_runs_view(cfg, experiment_id, {})
    return experiment_id


# --- the runs list's columns: a saved view of the experiment ---------------------------------
# MLflow 3's runs table shows no metric column until a person picks them, and it keeps that
# choice in the browser only. What it does read from the server is a saved view: an experiment
# tag ``mlflow.sharedViewState.<id>`` holding {"name", "createdAt", "state"}, where ``state`` is
# the page's serialized view (``selectedColumns`` as ``metrics.`<name>``` etc.). The runs page
# lists it under its saved views, and ``#/experiments/<id>/runs?viewStateShareKey=<id>`` opens
# the page with it applied.
RUNS_VIEW_ID = "ranking-metrics"
RUNS_VIEW_NAME = "Ranking metrics"
_VIEW_TAG_PREFIX = "mlflow.sharedViewState."


def runs_view_columns(cfg: Config) -> list[str]:
    """The metric names the experiment's saved view shows as columns, gate metric first."""
    k = cfg.evaluate.k
    holdout = [metric_key(cfg.evaluate.metric, HOLDOUT)]
    holdout += [m for m in (metric_key(f"{name}@{k}", HOLDOUT) for name in ("ndcg", "precision", "recall"))
                if m not in holdout]
    return [*holdout, metric_key("val_ndcg@10", FIT), TRAIN_SECONDS]


def runs_view_state(cfg: Config) -> dict[str, Any]:
    """The experiment page's view state the saved view holds: the columns of
    :func:`runs_view_columns` and the tags ``ds`` and ``gate``, the newest run first."""
    columns = [f"metrics.`{m}`" for m in runs_view_columns(cfg)]
    columns += [f"tags.`{t}`" for t in ("ds", "gate")]
    return {"selectedColumns": columns, "orderByKey": "attributes.start_time", "orderByAsc": False}


def runs_view_url(base: str, experiment_id: str) -> str:
    """The runs list of the experiment with the saved view applied, on the MLflow UI at ``base``."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_ID}"


def _ensure_runs_view(cfg: Config, experiment_id: str, tags: dict[str, str]) -> None:
    key = _VIEW_TAG_PREFIX + RUNS_VIEW_ID
    state = json.dumps(runs_view_state(cfg), sort_keys=True)
    try:
        current = json.loads(tags[key])
        if current.get("state") == state and current.get("name") == RUNS_VIEW_NAME:
            return
    except (KeyError, ValueError, AttributeError):
        pass
    envelope = {"name": RUNS_VIEW_NAME, "createdAt": int(time.time() * 1000), "state": state}
    try:
        MlflowClient().set_experiment_tag(experiment_id, key, json.dumps(envelope))
    except MlflowException as exc:  # a parallel task writing it too; the next setup writes it
        log.warning("could not save the runs view %r of experiment %s: %s", RUNS_VIEW_NAME,
                    experiment_id, exc)


def _learning_curve(history: list[dict[str, float]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h.get("loss", np.nan) for h in history], marker="o", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val_keys = [k for k in (history[0] if history else {}) if k.startswith("val_")]
    if val_keys:
        ax2 = ax.twinx()
        for key in val_keys:
            ax2.plot([h.get(key, np.nan) for h in history], linestyle="--", label=key)
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title("learning curve")
    fig.tight_layout()
    return fig


def _log_learning_curve(history: list[dict[str, float]]) -> None:
    import matplotlib.pyplot as plt

    figure = _learning_curve(history)
    try:
        mlflow.log_figure(figure, "learning_curve.png")
    finally:
        plt.close(figure)  # pyplot keeps every open figure alive otherwise


def train_and_log(
    cfg: Config,
    family: str,
    train: Interactions,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    *,
    ds: str,
    options: FitOptions,
    lineage: dict[str, Any] | None = None,
    dq_summary: dict | None = None,
) -> TrainResult:
    """Fit ``family`` on ``train`` inside an MLflow run and register the model version.

    Logs params, per-epoch metrics, a learning curve, lineage and the data-quality summary;
    registers the bundle under ``<prefix><family>`` with version tags ``ds`` and ``family``.
    The run goes to the configured experiment; a run of the same (family, ds) that a killed
    attempt left RUNNING is marked FAILED first.
    """
    experiment_id = setup(cfg)
    name = cfg.mlflow.registered_name(family)
    params = cfg.model_params(family)
    model = build_model(family, cfg.model(family))
    _fail_abandoned_runs(experiment_id, family, ds)
    t0 = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{family}-{ds}") as run:
        mlflow.set_tags({"ds": ds, "family": family, "step": "train"})
        mlflow.log_params({**{f"model.{k}": v for k, v in params.items()}, "ds": ds,
                           "seed": options.seed, "device": str(options.device),
                           "epochs_override": options.epochs, "n_users": train.n_users,
                           "n_items": train.n_items, "n_interactions": len(train)})
        dataset, input_tags = training_dataset(train, ds, lineage)
        mlflow.log_input(dataset, context="training", tags=input_tags)
        if lineage:
            mlflow.log_dict(lineage, "lineage.json")
        if dq_summary:
            mlflow.log_dict(dq_summary, "dq_summary.json")
            mlflow.log_metrics(_metrics(dq_summary, QUALITY))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(_epoch_metrics(metrics), step=epoch)
            if options.on_epoch is not None:
                options.on_epoch(epoch, metrics)

        model.fit(train, dataclasses.replace(options, on_epoch=on_epoch))
        seconds = time.perf_counter() - t0
        history = list(getattr(model, "history", []) or [])
        mlflow.log_metric(TRAIN_SECONDS, seconds)
        if history:
            _log_learning_curve(history)
        bundle = ModelBundle(model, user_ids, item_ids, meta={"ds": ds, "run_id": run.info.run_id})
        with tempfile.TemporaryDirectory() as tmp:
            folder = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={BUNDLE_ARTIFACT: str(folder)},
                registered_model_name=name,
                signature=_signature(),
                pip_requirements=[f"torch=={package_version('torch').split('+')[0]}", "numpy", "pandas",
                                  "pyarrow", "scipy"],
            )
        version = str(info.registered_model_version)
        client = MlflowClient()
        client.set_model_version_tag(name, version, "ds", ds)
        client.set_model_version_tag(name, version, "family", family)
        log.info("trained %s v%s in %.1fs (run %s)", name, version, seconds, run.info.run_id)
    return TrainResult(name=name, version=version, run_id=run.info.run_id, history=history, seconds=seconds)


def training_dataset(train: Interactions, ds: str, lineage: dict[str, Any] | None = None):
    """The rows a version is fitted on as an MLflow dataset, and the tags of its run input.

    Its source is the training-set partition it came from (``lineage["path"]``, the warehouse
    folder ``training_set/ds=D``: a local path or a URI); MLflow computes its digest from the
    rows and its profile (row count) and schema from the frame. The input tags say the day and
    how the partition's rows were split (``rows``, ``train_rows``, ``validation_rows``).
    """
    lineage = lineage or {}
    frame = pd.DataFrame({"user_idx": train.user_idx, "item_idx": train.item_idx,
                          "weight": train.weight})
    if train.rating is not None:
        frame["rating"] = train.rating
    raw = str(lineage.get("path") or f"training_set/ds={ds}")
    if "://" not in raw:
        raw = str(Path(raw).absolute())  # a path, not a file: URI, which would escape "=" as %3D
    with warnings.catch_warnings():  # "file" and "" name the same local source: not ambiguous
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(raw)
    dataset = mlflow.data.from_pandas(frame, source=source, name=f"training_set@{ds}")
    tags = {"ds": ds, "train_rows": str(len(train))}
    tags.update({k: str(lineage[k]) for k in ("rows", "validation_rows") if k in lineage})
    return dataset, tags


def _fail_abandoned_runs(experiment_id: str, family: str, ds: str) -> list[str]:
    """Mark FAILED every train run of (family, ds) still RUNNING: an earlier attempt was killed.

    A killed process never ends its run, which would otherwise show RUNNING forever. Airflow
    runs one attempt of a (family, ds) task at a time, so such a run has no live owner.
    """
    client = MlflowClient()
    stale = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.ds = '{ds}' AND tags.family = '{family}' AND tags.step = 'train' "
                       "AND attributes.status = 'RUNNING'"),
    )
    for old in stale:
        client.set_tag(old.info.run_id, "failed_reason",
                       "left RUNNING by a train attempt that was killed before it finished; "
                       f"marked FAILED when the next attempt for {family} {ds} started")
        client.set_terminated(old.info.run_id, "FAILED")
        log.warning("run %s (%s, %s) was left RUNNING by a killed attempt: marked FAILED",
                    old.info.run_id, family, ds)
    return [old.info.run_id for old in stale]


def _load(name: str, mv) -> LoadedModel:
    path = mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}")
    bundle_dir = next(Path(path).rglob(f"{BUNDLE_ARTIFACT}/model.pt")).parent
    return LoadedModel(ModelBundle.load(bundle_dir), name=name, version=str(mv.version), run_id=mv.run_id)


def load_model(cfg: Config, family: str, alias: str = CHAMPION) -> LoadedModel:
    """The version of ``family`` that ``alias`` points to. Clear error if there is none."""
    setup(cfg)
    name = cfg.mlflow.registered_name(family)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise LookupError(f"no version of {name} has the alias {alias!r}; train and evaluate first") from exc
    return _load(name, mv)


def load_version(cfg: Config, family: str, version: str) -> LoadedModel:
    setup(cfg)
    name = cfg.mlflow.registered_name(family)
    return _load(name, MlflowClient().get_model_version(name, str(version)))


def load_model_uri(uri: str, cfg: Config | None = None) -> LoadedModel:
    """Load ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a local bundle folder."""
    if not uri.startswith("models:/"):
        return LoadedModel(ModelBundle.load(uri), name=Path(uri).name, version="local", run_id="")
    if cfg is not None:
        setup(cfg)
    ref = uri.removeprefix("models:/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return _load(name, client.get_model_version_by_alias(name, alias))
    name, version = ref.rsplit("/", 1)
    return _load(name, client.get_model_version(name, version))


def latest_version_for_ds(cfg: Config, family: str, ds: str) -> str | None:
    """The newest version of ``family`` trained for ``ds`` (the challenger), or None."""
    setup(cfg)
    name = cfg.mlflow.registered_name(family)
    try:
        versions = MlflowClient().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    mine = [int(v.version) for v in versions if (v.tags or {}).get("ds") == ds]
    return str(max(mine)) if mine else None


def champion_version(cfg: Config, family: str) -> str | None:
    setup(cfg)
    try:
        return str(MlflowClient().get_model_version_by_alias(cfg.mlflow.registered_name(family), CHAMPION).version)
    except MlflowException:
        return None


def record_gate(
    cfg: Config,
    family: str,
    challenger: LoadedModel,
    champion: LoadedModel | None,
    decision: Any,
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    *,
    ds: str | None = None,
    champion_ds: str | None = None,
) -> None:
    """Log the comparison to the challenger's run and version; move ``champion`` if promoted.

    The run gets the metrics (``holdout/<metric>``, ``holdout/champion/<metric>``), ``gate.json``
    and the tag ``gate``. The version gets the tags ``gate`` and ``gate.*`` (metric, both values,
    tolerance, champion version, holdout day) and a markdown description that says the same: the
    model version page in the MLflow UI shows it. ``ds`` is the day whose held-out slice both
    were scored on (the challenger's training day), ``champion_ds`` the champion's training day;
    either is read from the version's ``ds`` tag when not given.
    """
    client = MlflowClient()
    verdict = "promoted" if decision.promote else "rejected"
    if ds is None:
        ds = client.get_model_version(challenger.name, challenger.version).tags.get("ds")
    if champion is not None and champion_ds is None:
        champion_ds = client.get_model_version(champion.name, champion.version).tags.get("ds")
    payload = {
        "promote": bool(decision.promote),
        "reason": decision.reason,
        "metric": cfg.evaluate.metric,
        "tolerance": cfg.evaluate.tolerance,
        "holdout_ds": ds,
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else None,
        "champion_ds": champion_ds,
        "challenger": challenger_metrics,
        "champion": champion_metrics,
    }
    description = gate_description(payload, decision)
    with mlflow.start_run(run_id=challenger.run_id):
        mlflow.log_metrics(_metrics(challenger_metrics, HOLDOUT))
        if champion_metrics:
            mlflow.log_metrics(_metrics(champion_metrics, CHAMPION_ON_HOLDOUT))
        mlflow.log_dict(payload, "gate.json")
        mlflow.set_tags({"gate": verdict, "mlflow.note.content": description})
    tags = {"gate": verdict, "gate.metric": cfg.evaluate.metric,
            "gate.tolerance": str(cfg.evaluate.tolerance), "gate.holdout_ds": str(ds),
            "gate.challenger_value": _fmt(decision.challenger_value),
            "gate.champion_value": _fmt(decision.champion_value),
            "gate.champion_version": champion.version if champion else "none"}
    for key, value in tags.items():
        client.set_model_version_tag(challenger.name, challenger.version, key, value)
    client.update_model_version(challenger.name, challenger.version, description=description)
    if decision.promote:
        client.set_registered_model_alias(challenger.name, CHAMPION, challenger.version)
    log.info("gate %s: %s", family, json.dumps(payload))


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{float(value):.4f}"


def gate_description(payload: dict[str, Any], decision: Any) -> str:
    """The gate's decision as markdown, for the model version page (and the run's description)."""
    metric, ds = payload["metric"], payload["holdout_ds"]
    verdict = "promoted to champion" if decision.promote else "rejected, the champion stays"
    champion = (f"v{payload['champion_version']} | ds={payload['champion_ds']} | "
                f"{_fmt(decision.champion_value)}" if payload["champion_version"] else
                "none yet | | ")
    return "\n".join([
        f"**Gate: {verdict}.** {metric} on the held-out slice of ds={ds}, "
        f"tolerance {payload['tolerance']} (absolute).",
        "",
        f"| | version | trained on | {metric} |",
        "|---|---|---|---|",
        f"| challenger | v{payload['challenger_version']} | ds={ds} | {_fmt(decision.challenger_value)} |",
        f"| champion | {champion} |",
        "",
        f"Reason: {decision.reason}",
    ])


# --- versions by training date: which version served, or could have served, a day --------------

@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """A registered version and the tags the pipeline sets on it (nothing is downloaded)."""

    name: str
    version: str
    run_id: str
    ds: str | None  # tag ``ds``: the logical date of the training set it was fitted on
    gate: str | None  # tag ``gate``: ``promoted`` or ``rejected`` once the gate has seen it


def _version_info(mv) -> VersionInfo:
    tags = mv.tags or {}
    return VersionInfo(name=mv.name, version=str(mv.version), run_id=mv.run_id,
                       ds=tags.get("ds"), gate=tags.get("gate"))


def version_info(cfg: Config, family: str, version: str) -> VersionInfo | None:
    """Tags of version ``version`` of ``family``; None if the registry does not have it."""
    setup(cfg)
    try:
        return _version_info(MlflowClient().get_model_version(cfg.mlflow.registered_name(family),
                                                              str(version)))
    except MlflowException:
        return None


def list_versions(cfg: Config, family: str) -> list[VersionInfo]:
    """Every registered version of ``family`` with its tags, oldest (lowest number) first."""
    setup(cfg)
    name = cfg.mlflow.registered_name(family)
    client, out, token = MlflowClient(), [], None
    try:
        while True:
            page = client.search_model_versions(f"name='{name}'", page_token=token)
            out += [_version_info(mv) for mv in page]
            token = page.token
            if not token:
                break
    except MlflowException:  # no such registered model yet
        return []
    return sorted(out, key=lambda v: int(v.version))


# --- the right to be forgotten: versions trained on erased users' data --------------------------

ERASED_PENDING_TAG = "erased_users_pending"
ERASED_AT_TAG = "erased_users_at"
# Set by recsys forget on a version whose bundle it rewrote without the erased users.
ERASED_REDACTED_TAG = "erased_users_redacted_at"


def mark_versions_trained_on_erased(cfg: Config, trained_on, erased_at: str) -> list[VersionInfo]:
    """Tag every registered version of the pipeline's models (names starting with
    ``mlflow.registered_model_prefix``) that ``trained_on(ds)`` says was fitted on an erased
    user's data: ``erased_users_pending=true`` and ``erased_users_at=<erased_at>``.

    ``trained_on`` gets the version's ``ds`` tag (None when it has none). Versions already tagged
    are left as they are. Returns the versions tagged now. The gate
    (:func:`recsys.evaluate.gate.decide`) replaces a champion carrying the tag with the first
    challenger that does not.
    """
    setup(cfg)
    client, tagged = MlflowClient(), []
    for mv in _pipeline_versions(client, cfg.mlflow.registered_model_prefix):
        tags = mv.tags or {}
        if tags.get(ERASED_PENDING_TAG) == "true" or not trained_on(tags.get("ds")):
            continue
        client.set_model_version_tag(mv.name, mv.version, ERASED_PENDING_TAG, "true")
        client.set_model_version_tag(mv.name, mv.version, ERASED_AT_TAG, erased_at)
        tagged.append(_version_info(mv))
    return sorted(tagged, key=lambda v: (v.name, int(v.version)))


def _pipeline_versions(client: MlflowClient, prefix: str):
    """Every version of every registered model whose name starts with ``prefix``."""
    names, token = [], None
    while True:
        page = client.search_registered_models(page_token=token)
        names += [rm.name for rm in page if rm.name.startswith(prefix)]
        token = page.token
        if not token:
            break
    for name in names:
        token = None
        while True:
            page = client.search_model_versions(f"name='{name}'", page_token=token)
            yield from page
            token = page.token
            if not token:
                break


def redact_versions(cfg: Config, user_ids: list[str], redacted_at: str) -> list[VersionInfo]:
    """Remove ``user_ids`` from the model bundle of every registered version that holds them.

    A version's bundle (in the artifact store, where ``models:/<name>/<version>`` resolves)
    keeps each training user's id and per-user arrays (:func:`recsys.models.bundle.redact_bundle`).
    Only ``user_ids.parquet`` is read from each version; a bundle holding one of the users is
    downloaded, redacted and uploaded over itself, and the version gets the tag
    ``erased_users_redacted_at``. The version still serves every other user as before; the
    erased ones become unknown to it. Returns the versions rewritten.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from recsys.models.bundle import USERS_FILE, redact_bundle

    setup(cfg)
    client, done = MlflowClient(), []
    wanted = np.asarray(user_ids, dtype=str)
    rel = f"artifacts/{BUNDLE_ARTIFACT}"  # the bundle's folder under a logged model's artifacts
    for mv in _pipeline_versions(client, cfg.mlflow.registered_model_prefix):
        repo = get_artifact_repository(client.get_model_version_download_uri(mv.name, mv.version))
        with tempfile.TemporaryDirectory(prefix="recsys-redact-") as tmp:
            try:
                ids = pq.read_table(repo.download_artifacts(f"{rel}/{USERS_FILE}", tmp)).column(0)
            except (MlflowException, OSError):
                continue  # no bundle (not a version this pipeline logged)
            if not np.isin(ids.to_numpy(zero_copy_only=False).astype(str), wanted).any():
                continue
            (Path(tmp) / "full").mkdir()
            local = Path(repo.download_artifacts(rel, str(Path(tmp) / "full")))
            n = redact_bundle(local, wanted)
            repo.log_artifacts(str(local), rel)
        client.set_model_version_tag(mv.name, mv.version, ERASED_REDACTED_TAG, redacted_at)
        log.info("redacted %d user(s) from %s v%s", n, mv.name, mv.version)
        done.append(_version_info(mv))
    return sorted(done, key=lambda v: (v.name, int(v.version)))


def erased_data_pending(cfg: Config, family: str, version: str) -> bool:
    """True when version ``version`` of ``family`` was trained on data of a user erased since
    (tag ``erased_users_pending=true``, set by ``recsys forget``)."""
    setup(cfg)
    try:
        mv = MlflowClient().get_model_version(cfg.mlflow.registered_name(family), str(version))
    except MlflowException:
        return False
    return (mv.tags or {}).get(ERASED_PENDING_TAG) == "true"


# --- the nightly report (recsys.evaluate.beyond): one run per published day -------------------

REPORT_KIND = "nightly_report"
REPORT_PLOT = "nightly_report.png"


def _report_plot(series: list[tuple[str, dict]], names: tuple[str, ...]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in names if any(r.get(n) is not None for _, r in series)]
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.8 * len(names) + 0.6), sharex=True, squeeze=False)
    days = [dt.date.fromisoformat(d) for d, _ in series]
    for ax, name in zip(axes[:, 0], names):
        values = [np.nan if r.get(name) is None else float(r[name]) for _, r in series]
        ax.plot(days, values, marker="o")
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    from matplotlib.dates import DateFormatter

    axes[-1, 0].set_xticks(days)  # one tick per published day (retention keeps a few weeks)
    axes[-1, 0].xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    axes[-1, 0].tick_params(axis="x", rotation=45, labelsize=7)
    fig.suptitle("nightly report over published days")
    fig.tight_layout()
    return fig


def log_nightly_report(cfg: Config, ds: str, report: dict, history: list[tuple[str, dict]],
                       manifest: dict | None = None) -> str:
    """Log the nightly report of published day ``ds`` to its own MLflow run and return its id.

    One run per day, named ``nightly-report <ds>`` and tagged ``kind=nightly_report``, ``ds`` and
    the model that scored the table (a rerun of the day logs to the same run again). Metrics:
    every numeric report value and ``source_share.<source>``; artifacts: ``nightly_report.json``
    and ``nightly_report.png``, the metrics over ``history`` (earlier days' ``(ds, report)``,
    from their manifests) and today.
    """
    from recsys.evaluate.beyond import SERIES

    experiment_id = setup(cfg)
    manifest = manifest or {}
    found = mlflow.search_runs([experiment_id], filter_string=f"tags.kind = '{REPORT_KIND}' and tags.ds = '{ds}'",
                               max_results=1, output_format="list")
    run_id = found[0].info.run_id if found else None
    metrics = {k: float(v) for k, v in report.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics.update({f"source_share.{k}": float(v) for k, v in (report.get("source_share") or {}).items()})
    series = sorted([(d, r) for d, r in history if d != ds] + [(ds, report)])
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=f"nightly-report {ds}") as run:
        mlflow.set_tags({"kind": REPORT_KIND, "ds": ds,
                         "model_name": str(manifest.get("model_name")),
                         "model_version": str(manifest.get("model_version")),
                         "model_run_id": str(manifest.get("mlflow_run_id"))})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report, "nightly_report.json")
        fig = _report_plot(series, SERIES)
        mlflow.log_figure(fig, REPORT_PLOT)
        import matplotlib.pyplot as plt

        plt.close(fig)
        return run.info.run_id
