"""Loading a model runs none of its bytes: a model file, a bundle or a checkpoint whose pickle
would call a function (os.system here) is refused, or ignored, and the payload never runs."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from recsys.cli import main as cli
from recsys.interactions import Interactions
from recsys.models import FitOptions, Recommender, build_model
from recsys.models.bundle import MODEL_FILE, ModelBundle
from recsys.models.loop import CHECKPOINT, fit_epochs


class _Payload:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _data() -> Interactions:
    u = np.repeat(np.arange(6), 3)
    i = (u % 2) * 3 + np.tile(np.arange(3), 6)
    return Interactions(u.astype(np.int64), i.astype(np.int64), np.ones(len(u), np.float32), 6, 6)


@pytest.fixture()
def bundle_dir(tmp_path):
    model = build_model("popularity", {}).fit(_data(), FitOptions())
    ids = lambda p, n: np.array([f"{p}{k}" for k in range(n)])  # noqa: E731
    return ModelBundle(model, ids("u", 6), ids("i", 6), meta={"ds": "2026-01-01"}).save(tmp_path / "b")


def test_crafted_bundle_is_refused_not_executed(bundle_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    # A well-formed model file, except that its state unpickles by calling os.system.
    torch.save({"name": "popularity", "config": {}, "n_users": 6, "n_items": 6, "seen": None,
                "state": {"popularity": _Payload(marker)}}, bundle_dir / MODEL_FILE)
    with pytest.raises(Exception, match=rf"refused to load .*{MODEL_FILE}") as err:
        ModelBundle.load(bundle_dir)
    assert type(err.value).__name__ == "UnsafeModelFile" and "posix.system" in str(err.value)
    assert not marker.exists(), "the payload ran while the bundle loaded"

    # `recsys score-pairs --model-uri <folder>` says so and exits non-zero; the payload never runs.
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\nu0,i1\n")
    rc = cli(["score-pairs", "--model-uri", str(bundle_dir), "--pairs", str(pairs),
              "--out", str(tmp_path / "out.csv")])
    assert rc != 0 and f"refused to load {bundle_dir / MODEL_FILE}" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_plain_pickle_as_model_file_is_refused(tmp_path):
    # Not even torch's zip format: a bare pickle stream is refused by the same loader.
    marker = tmp_path / "pwned"
    (tmp_path / "m.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="refused to load"):
        Recommender.load(tmp_path / "m.pt")
    assert not marker.exists()


def test_saved_model_holds_only_tensors_and_plain_values(bundle_dir):
    # The saved file loads with torch's restricted loader as is (no allow-listed globals).
    blob = torch.load(bundle_dir / MODEL_FILE, weights_only=True)
    assert blob["name"] == "popularity" and isinstance(blob["state"]["popularity"]["__ndarray__"],
                                                       torch.Tensor)
    back = ModelBundle.load(bundle_dir)
    assert back.meta["ds"] == "2026-01-01" and list(back.user_index(np.array(["u5"]))) == [5]


def test_crafted_checkpoint_is_ignored_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"epoch": 5, "fingerprint": "f", "module": _Payload(marker)}, tmp_path / CHECKPOINT)
    module, calls = torch.nn.Linear(1, 1), []
    step = lambda e: calls.append(e) or {"loss": np.float64(0.5), "samples": 1.0}  # noqa: E731
    fit_epochs(module, None, step, 2, FitOptions(checkpoint_dir=tmp_path), fingerprint="f")
    assert calls == [0, 1] and not marker.exists()  # started over; nothing ran
    # The checkpoint it wrote (numpy floats in its history) loads safely and resumes.
    fit_epochs(module, None, step, 3, FitOptions(checkpoint_dir=tmp_path), fingerprint="f")
    assert calls == [0, 1, 2]


def _legacy_save(model, path, **extra) -> None:
    # How Recommender.save wrote files before: numpy arrays and the CSR matrix pickled as such.
    torch.save({"name": model.name, "config": model.config.model_dump(), "n_users": model.n_users,
                "n_items": model.n_items, "seen": model._seen, "state": model.state(), **extra},
               path)


@pytest.mark.parametrize("family", ["popularity", "itemknn", "mf_bpr"])
def test_versions_saved_in_the_older_format_still_load(family, tmp_path):
    model = build_model(family, {"epochs": 1} if family == "mf_bpr" else {}).fit(_data(),
                                                                                FitOptions())
    _legacy_save(model, tmp_path / "m.pt")
    loaded = Recommender.load(tmp_path / "m.pt")
    users = np.arange(model.n_users)
    np.testing.assert_allclose(loaded.score_users(users), model.score_users(users), rtol=1e-6)


def test_older_format_with_a_payload_is_refused(tmp_path):
    # The data-only allow-list for older files (numpy, CSR) lets no callable through, whether
    # beside the arrays or hidden inside an object array.
    marker = tmp_path / "pwned"
    model = build_model("popularity", {}).fit(_data(), FitOptions())
    _legacy_save(model, tmp_path / "a.pt", extra=_Payload(marker))
    hidden = np.empty(1, dtype=object)
    hidden[0] = _Payload(marker)
    _legacy_save(model, tmp_path / "b.pt", extra=hidden)
    with pytest.raises(ValueError, match=r"refused to load .*a\.pt.*GLOBAL posix\.system"):
        Recommender.load(tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"refused to load .*b\.pt.*ObjectDType"):  # no object arrays
        Recommender.load(tmp_path / "b.pt")
    assert not marker.exists()
