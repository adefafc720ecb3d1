"""NeuMF's weight averaging: the fitted weights are the mean over the last ``average_last`` epochs."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys.models import FitOptions, build_model

FAST = {"factors": 8, "mlp_layers": [8], "epochs": 5, "batch_size": 64, "lr": 0.01}


def _fit_recording(blocks, **params):
    train, _ = blocks
    model = build_model("neumf", {**FAST, **params})
    snapshots = []
    model.fit(train, FitOptions(seed=3, on_epoch=lambda e, m: snapshots.append(
        copy.deepcopy(model.module.state_dict()))))
    return model, snapshots


def test_the_fitted_weights_are_the_mean_of_the_last_epochs(blocks):
    model, snaps = _fit_recording(blocks, average_last=3)
    assert len(snaps) == 5
    for key, value in model.module.state_dict().items():
        mean = torch.stack([s[key].float() for s in snaps[-3:]]).mean(0)
        torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6)
    # ... and not the last epoch's own weights
    assert not torch.equal(model.module.head.weight, snaps[-1]["head.weight"])


def test_average_last_zero_keeps_the_last_epoch(blocks):
    model, snaps = _fit_recording(blocks, average_last=0)
    for key, value in model.module.state_dict().items():
        torch.testing.assert_close(value, snaps[-1][key], rtol=0, atol=0)


def test_more_averaged_epochs_than_run_averages_them_all(blocks):
    model, snaps = _fit_recording(blocks, average_last=50)
    for key, value in model.module.state_dict().items():
        mean = torch.stack([s[key].float() for s in snaps]).mean(0)
        torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6)


def test_a_resumed_run_averages_what_the_uninterrupted_run_did(blocks, tmp_path):
    """The running mean is checkpointed with the network: stop after 3 of 5 epochs, resume."""
    train, _ = blocks
    params = {**FAST, "average_last": 4}
    whole = build_model("neumf", params).fit(train, FitOptions(seed=3))

    class Killed(Exception):
        pass

    def kill_in_third_epoch(epoch, metrics):  # before its checkpoint: epochs 0-1 are saved
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        build_model("neumf", params).fit(train, FitOptions(
            seed=3, checkpoint_dir=tmp_path, on_epoch=kill_in_third_epoch))
    resumed = build_model("neumf", params).fit(train, FitOptions(seed=3, checkpoint_dir=tmp_path))
    users = np.arange(train.n_users)
    np.testing.assert_allclose(resumed.score_users(users), whole.score_users(users), rtol=1e-5,
                               atol=1e-6)
