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
import scipy.sparse as sp
import torch

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


# The user id a redacted row gets: the clean step never lets an empty id through, so no user of a
# later day can match it.
REDACTED_ID = ""


class AmbiguousUserAxis(ValueError):
    """The model's user and item counts are equal: its user axes cannot be told from its item axes."""


def redact_bundle(folder: Path | str, user_ids: list[str] | np.ndarray) -> int:
    """Remove ``user_ids`` from a saved bundle in place; return how many of them it held.

    What a bundle keeps per user: its id in ``user_ids.parquet`` (replaced by :data:`REDACTED_ID`,
    so the positions of the other users do not move) and, in ``model.pt``, every array whose axis
    has the model's user count: embeddings, factors, user-side feature blocks, user x user
    weights and the seen matrix. Those rows (and columns) are zeroed, or dropped from sparse
    matrices. The model still loads and scores every other user exactly as before. Files are
    written beside the old ones and renamed over them.
    """
    from recsys.models import _safe

    folder = Path(folder)
    users = pq.read_table(folder / USERS_FILE).column(0).to_numpy(zero_copy_only=False).astype(str)
    idx = np.flatnonzero(np.isin(users, np.asarray(user_ids, dtype=str)))
    if not len(idx):
        return 0
    blob = _safe.load(folder / MODEL_FILE)
    n_users, n_items = int(blob["n_users"]), int(blob["n_items"])
    if n_users == n_items:
        raise AmbiguousUserAxis(
            f"{folder}: the model has as many users as items ({n_users}), so its user axes cannot be "
            "told apart from its item axes; delete this version instead (MlflowClient.delete_model_version)")
    blob["seen"] = _redact(blob["seen"], idx, n_users)
    blob["state"] = _redact(blob["state"], idx, n_users)
    users[idx] = REDACTED_ID
    tmp_model, tmp_users = folder / (MODEL_FILE + ".redacting"), folder / (USERS_FILE + ".redacting")
    _safe.save(blob, tmp_model)
    pq.write_table(pa.table({"user_id": pa.array(users)}), tmp_users)
    tmp_model.replace(folder / MODEL_FILE)
    tmp_users.replace(folder / USERS_FILE)
    return len(idx)


def _redact(value, idx: np.ndarray, n_users: int):
    """``value`` with the user rows/columns ``idx`` zeroed on every axis of length ``n_users``."""
    if isinstance(value, dict):
        return {k: _redact(v, idx, n_users) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, idx, n_users) for v in value)
    if sp.issparse(value):
        m = value.tocoo()
        keep = np.ones(m.nnz, bool)
        if m.shape[0] == n_users:
            keep &= ~np.isin(m.row, idx)
        if m.shape[1] == n_users:
            keep &= ~np.isin(m.col, idx)
        out = sp.coo_matrix((m.data[keep], (m.row[keep], m.col[keep])), shape=m.shape)
        return out.asformat(value.format)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        is_torch = isinstance(value, torch.Tensor)
        if is_torch and value.is_sparse:
            return _redact(value.to_dense(), idx, n_users).to_sparse()
        out = value.clone() if is_torch else value.copy()
        at = torch.from_numpy(idx) if is_torch else idx
        for axis, size in enumerate(out.shape):
            if size == n_users:
                sel = [slice(None)] * out.ndim
                sel[axis] = at
                out[tuple(sel)] = 0
        return out
    return value
