"""The epoch loop: checkpoints, resume after a real kill, early stopping, fingerprints."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.models import FitOptions, Interactions, build_model
from recsys.models.loop import CHECKPOINT, fit_epochs

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"factors": 4, "epochs": 5, "batch_size": 16, "lr": 0.05}


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 300)
    items = (users % 3) * 5 + rng.integers(0, 5, 300)
    return Interactions(users.astype(np.int64), items.astype(np.int64),
                        np.ones(300, np.float32), 30, 15)


WORKER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from models.test_loop import PARAMS, _data
    from recsys.models import FitOptions, build_model
    torch.set_num_threads(1)
    kill_at = int(sys.argv[2])
    epochs_run = []

    def on_epoch(epoch, metrics):
        epochs_run.append(epoch)
        if epoch == kill_at:  # a real kill: no exception handling, no cleanup, no flush
            os.kill(os.getpid(), signal.SIGKILL)

    opts = FitOptions(seed=5, checkpoint_dir=__import__("pathlib").Path(sys.argv[1]),
                      on_epoch=on_epoch)
    model = build_model("mf_bpr", PARAMS).fit(_data(), opts)
    np.save(sys.argv[3], model.score_users(np.arange(30)))
    print("EPOCHS", epochs_run)
""")


def _run(script: Path, ckpt: Path, kill_at: int, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), str(ckpt), str(kill_at), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_killed_training_resumes_from_checkpoint_and_finishes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests")))
    ckpt, out = tmp_path / "ckpt", tmp_path / "scores.npy"

    killed = _run(script, ckpt, 2, out)
    assert killed.returncode == -9, killed.stderr  # SIGKILL mid-training
    saved = torch.load(ckpt / CHECKPOINT, weights_only=False)
    assert saved["epoch"] == 1 and not out.exists()  # epoch 2 was never checkpointed

    resumed = _run(script, ckpt, -1, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "EPOCHS [2, 3, 4]" in resumed.stdout  # picked up where the kill left off

    # Same as a run that was never interrupted (per-epoch RNG, optimizer state restored).
    model = build_model("mf_bpr", PARAMS).fit(_data(), FitOptions(seed=5))
    np.testing.assert_allclose(np.load(out), model.score_users(np.arange(30)), rtol=1e-5, atol=1e-6)


class _Counter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_early_stopping_restores_the_best_epoch():
    module = _Counter()
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9])

    def train_epoch(epoch):
        module.w.data.fill_(epoch)
        return {"loss": 0.0, "samples": 1.0}

    history = fit_epochs(module, None, train_epoch, 5, FitOptions(),
                         validate=lambda: {"val": next(scores)}, monitor="val", patience=2)
    assert [h["val"] for h in history] == [0.1, 0.5, 0.3, 0.2]  # stopped after two stale epochs
    assert module.w.item() == 1.0  # the weights of the best epoch (val 0.5)
    assert all(h["samples_per_second"] > 0 for h in history)


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    module, calls = _Counter(), []
    opts = FitOptions(checkpoint_dir=tmp_path)
    step = lambda e: calls.append(e) or {"loss": 0.0, "samples": 1.0}  # noqa: E731
    fit_epochs(module, None, step, 2, opts, fingerprint="a")
    fit_epochs(module, None, step, 3, opts, fingerprint="a")  # resumes: only epoch 2 runs
    fit_epochs(module, None, step, 2, opts, fingerprint="b")  # another model: starts over
    assert calls == [0, 1, 2, 0, 1]
