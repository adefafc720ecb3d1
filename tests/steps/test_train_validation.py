"""Issue 13: early stopping on the nightly path. `FitOptions.validation` was never set and
`train.validation_fraction` never read, so every `patience` setting was dead."""
from __future__ import annotations

from mlflow import MlflowClient

from recsys.config import load_config
from recsys.data.training_set import holdout_split, load_training_set
from recsys.models.mf import BPRMF
from recsys.steps.train import carve_validation, train_families
from tests.steps.test_gate_flow import write_training_set

DS = "2026-02-01"
EPOCHS = 60


def test_nightly_training_uses_a_validation_set_and_stops_early(recsys_home, monkeypatch):
    # Patience 1 and a large epoch budget: a model that stops improving on validation must stop
    # well before the budget, and its run logs the validation metric of every epoch.
    cfg = load_config(overrides={"models.mf_bpr.epochs": EPOCHS, "models.mf_bpr.patience": 1,
                                 "models.mf_bpr.lr": 0.2, "models.mf_bpr.factors": 8,
                                 "train.validation_fraction": 0.2, "train.device": "cpu"})
    write_training_set(cfg.paths.warehouse, DS)
    handed = []
    real_fit = BPRMF.fit

    def spy(self, train, options):  # what the step hands the family
        handed.append((len(train), options.validation))
        return real_fit(self, train, options)

    monkeypatch.setattr(BPRMF, "fit", spy)
    [result] = train_families(cfg, DS, ["mf_bpr"], progress=False)

    [(fit_rows, validation)] = handed
    assert validation is not None and len(validation) > 0
    train, _ = holdout_split(load_training_set(cfg.paths.warehouse, DS))
    assert fit_rows + len(validation) == len(train)  # carved from train, not from the holdout
    assert all("val_ndcg@10" in h for h in result.history)
    assert len(result.history) < EPOCHS  # patience is live: training stopped early
    # Both URIs: an earlier test in the session may have set the global registry URI elsewhere.
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.tracking_uri)
    curve = client.get_metric_history(result.run_id, "fit/val_ndcg_at_10")
    assert len(curve) == len(result.history)


def test_carve_validation_is_per_user_seeded_and_optional(recsys_home):
    cfg = load_config()
    write_training_set(cfg.paths.warehouse, DS)
    train, _ = holdout_split(load_training_set(cfg.paths.warehouse, DS))
    fit, val = carve_validation(train, 0.2, seed=7)
    _, val2 = carve_validation(train, 0.2, seed=7)
    assert len(fit) + len(val) == len(train) and len(val) > 0
    assert (val.user_idx == val2.user_idx).all() and (val.item_idx == val2.item_idx).all()
    assert set(val.user_idx) <= set(fit.user_idx)  # every validated user keeps training rows
    assert carve_validation(train, 0.0, seed=7) == (train, None)
