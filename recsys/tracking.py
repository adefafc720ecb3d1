"""Everything that talks to MLflow: tracking runs, logging models, the registry and its aliases.

This is the only module that imports mlflow. The training loop returns metrics; this module logs
them. Registered models are named ``<prefix><family>`` (e.g. ``recsys_mf_bpr``); the alias
``champion`` marks the version that scoring uses.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
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


def _metrics(values: dict[str, float], prefix: str = "") -> dict[str, float]:
    # MLflow metric names cannot hold "@": ndcg@10 is logged as ndcg_at_10.
    return {f"{prefix}{k}".replace("@", "_at_"): float(v) for k, v in values.items()}


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
        return exp.experiment_id
    Path(cfg.mlflow.artifact_location).mkdir(parents=True, exist_ok=True) if "://" not in cfg.mlflow.artifact_location else None
    try:
        return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=cfg.mlflow.artifact_location)
    except MlflowException:  # created concurrently by a parallel task
        return mlflow.get_experiment_by_name(cfg.mlflow.experiment).experiment_id


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
        mlflow.log_input(
            mlflow.data.from_numpy(
                np.stack([train.user_idx, train.item_idx], axis=1),
                source=str((lineage or {}).get("path", "training_set")),
                name=f"training_set@{ds}",
            ),
            context="training",
        )
        if lineage:
            mlflow.log_dict(lineage, "lineage.json")
        if dq_summary:
            mlflow.log_dict(dq_summary, "dq_summary.json")
            mlflow.log_metrics(_metrics({k: v for k, v in dq_summary.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)}, "dq."))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(_metrics(metrics), step=epoch)
            if options.on_epoch is not None:
                options.on_epoch(epoch, metrics)

        model.fit(train, dataclasses.replace(options, on_epoch=on_epoch))
        seconds = time.perf_counter() - t0
        history = list(getattr(model, "history", []) or [])
        mlflow.log_metric("train_seconds", seconds)
        if history:
            mlflow.log_figure(_learning_curve(history), "learning_curve.png")
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
) -> None:
    """Log the comparison to the challenger's run and move ``champion`` if the gate says so."""
    client = MlflowClient()
    payload = {
        "promote": bool(decision.promote),
        "reason": decision.reason,
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else None,
        "challenger": challenger_metrics,
        "champion": champion_metrics,
    }
    with mlflow.start_run(run_id=challenger.run_id):
        mlflow.log_metrics(_metrics(challenger_metrics, "holdout."))
        if champion_metrics:
            mlflow.log_metrics(_metrics(champion_metrics, "champion."))
        mlflow.log_dict(payload, "gate.json")
        mlflow.set_tag("gate", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(challenger.name, challenger.version, "gate",
                                 "promoted" if decision.promote else "rejected")
    if decision.promote:
        client.set_registered_model_alias(challenger.name, CHAMPION, challenger.version)
    log.info("gate %s: %s", family, json.dumps(payload))


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
    prefix = cfg.mlflow.registered_model_prefix
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
            for mv in page:
                tags = mv.tags or {}
                if tags.get(ERASED_PENDING_TAG) == "true" or not trained_on(tags.get("ds")):
                    continue
                client.set_model_version_tag(mv.name, mv.version, ERASED_PENDING_TAG, "true")
                client.set_model_version_tag(mv.name, mv.version, ERASED_AT_TAG, erased_at)
                tagged.append(_version_info(mv))
            token = page.token
            if not token:
                break
    return sorted(tagged, key=lambda v: (v.name, int(v.version)))


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
