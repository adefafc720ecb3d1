"""A fitted model together with the id maps of the data it was trained on.

Indices are dense per training set, so they change from day to day. A model version only makes
sense with the maps it was trained with: the bundle keeps them together, on disk and in memory.

Loading a bundle executes nothing from it: ``model.pt`` holds tensors and plain values only (see
:meth:`Recommender.load`; anything else is refused), the id maps are Parquet string columns and
``bundle.json`` is JSON. No file in it is unpickled.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.models.base import Recommender

MODEL_FILE = "model.pt"
USERS_FILE = "user_ids.parquet"
ITEMS_FILE = "item_ids.parquet"
META_FILE = "bundle.json"


@dataclasses.dataclass
class ModelBundle:
    model: Recommender
    user_ids: np.ndarray  # index = the model's user_idx
    item_ids: np.ndarray  # index = the model's item_idx
    meta: dict = dataclasses.field(default_factory=dict)

    def save(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        pq.write_table(pa.table({"user_id": pa.array(self.user_ids.astype(str))}), folder / USERS_FILE)
        pq.write_table(pa.table({"item_id": pa.array(self.item_ids.astype(str))}), folder / ITEMS_FILE)
        (folder / META_FILE).write_text(json.dumps({"family": self.model.name, **self.meta}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "ModelBundle":
        folder = Path(folder)
        if not (folder / MODEL_FILE).exists():
            raise FileNotFoundError(f"{folder} is not a model bundle (no {MODEL_FILE})")
        model = Recommender.load(folder / MODEL_FILE)
        users = pq.read_table(folder / USERS_FILE).column(0).to_numpy(zero_copy_only=False)
        items = pq.read_table(folder / ITEMS_FILE).column(0).to_numpy(zero_copy_only=False)
        meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).exists() else {}
        return cls(model=model, user_ids=users, item_ids=items, meta=meta)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """The model's user_idx for each id; -1 where the model has never seen the user."""
        return _lookup(self.user_ids, user_ids)

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        """The model's item_idx for each id; -1 where the item is not in the model's catalog."""
        return _lookup(self.item_ids, item_ids)


def _lookup(vocab: np.ndarray, ids: np.ndarray) -> np.ndarray:
    vocab = np.asarray(vocab).astype(str)
    ids = np.asarray(ids).astype(str)
    order = np.argsort(vocab, kind="stable")
    sorted_vocab = vocab[order]
    pos = np.searchsorted(sorted_vocab, ids)
    pos_clipped = np.minimum(pos, len(vocab) - 1) if len(vocab) else pos
    found = (pos < len(vocab)) & (sorted_vocab[pos_clipped] == ids) if len(vocab) else np.zeros(len(ids), bool)
    return np.where(found, order[pos_clipped] if len(vocab) else -1, -1).astype(np.int64)
