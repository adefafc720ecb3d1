"""Saving and loading model files without pickle's power to run code.

``torch.load(weights_only=True)`` only rebuilds tensors and plain values (dict, list, tuple, str,
int, float, bool, None); a file asking for anything else, say ``os.system``, is refused before
anything runs. Model states also hold numpy arrays and scipy CSR matrices, which that loader
refuses, so :func:`encode` turns each into a small tagged dict of tensors (an array shares its
memory with the tensor: no copy) and :func:`decode` turns them back. No numpy or scipy function
is put on torch's allow-list for these files.

Files written before this format (numpy arrays and CSR matrices pickled as such) still load: when
the strict load refuses one, it is tried once more with a data-only allow-list
(:data:`LEGACY_GLOBALS`: numpy's array and scalar rebuilders, the numeric dtypes and the CSR
class; none of them calls other code, and object arrays stay refused), so the versions registered
before keep loading. Anything else, ``os.system`` say, is refused.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

ARRAY = "__ndarray__"  # {ARRAY: tensor, "scalar": bool}
CSR = "__csr__"  # {CSR: {"data", "indices", "indptr": tensors, "shape": (rows, cols)}}

_PLAIN = (str, int, float, bool, type(None))

# What numpy and scipy name in a pickle of an ndarray, a numpy scalar and a CSR matrix (found
# from the objects themselves, so numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` both work).
LEGACY_GLOBALS = [np.ndarray.__reduce__(np.zeros(1))[0], np.float64(0).__reduce__()[0],
                  np.ndarray, np.dtype, sp.csr_matrix,
                  *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"}]  # numeric dtypes only
log = logging.getLogger(__name__)


class UnsafeModelFile(ValueError):
    """A model or checkpoint file holds more than tensors and plain values; it was not loaded."""


def encode(value: Any, where: str = "state") -> Any:
    """``value`` with every numpy array, numpy scalar and sparse matrix replaced by tensors."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if sp.issparse(value):
        m = value.tocsr()
        return {CSR: {"data": encode(m.data, where), "indices": encode(m.indices, where),
                      "indptr": encode(m.indptr, where), "shape": tuple(int(d) for d in m.shape)}}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot save a numpy array of dtype {arr.dtype} safely")
        if not arr.flags.c_contiguous or not arr.flags.writeable:
            arr = np.array(arr, order="C")
        return {ARRAY: torch.from_numpy(arr), "scalar": isinstance(value, np.generic)}
    if isinstance(value, dict):
        if ARRAY in value or CSR in value:
            raise TypeError(f"{where}: the keys {ARRAY!r} and {CSR!r} are reserved")
        return {k: encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out = [encode(v, f"{where}[{n}]") for n, v in enumerate(value)]
        return tuple(out) if isinstance(value, tuple) else out
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(f"{where}: cannot save a {type(value).__name__} safely "
                    "(only tensors, numpy arrays, sparse matrices and plain values)")


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict):
        if ARRAY in value:
            arr = value[ARRAY].cpu().numpy()
            return arr[()] if value.get("scalar") else arr
        if CSR in value:
            parts = value[CSR]
            return sp.csr_matrix((decode(parts["data"]), decode(parts["indices"]),
                                  decode(parts["indptr"])), shape=tuple(parts["shape"]))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(decode(v) for v in value)
    return value


def save(payload: dict[str, Any], path: Path | str) -> None:
    torch.save(encode(payload), path)


def load(path: Path | str, map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`save`; refuse (:class:`UnsafeModelFile`) anything else.

    Only tensors and plain values are rebuilt (``weights_only=True``): a file whose pickle would
    import or call anything else is refused before any of it runs.
    """
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        try:
            with torch.serialization.safe_globals(LEGACY_GLOBALS):
                blob = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UnsafeModelFile(
                f"refused to load {path}: it asks to rebuild objects other than tensors and "
                f"plain values, which could run code; nothing in it was executed "
                f"({_first_line(exc)})"
            ) from None
        log.info("%s is in the older format (numpy/scipy pickles): loaded through the data-only "
                 "allow-list", path)
    return decode(blob)


def _first_line(exc: BaseException) -> str:
    # torch's message is long and its wording varies; keep the line naming what was refused,
    # e.g. "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
    lines = [line.strip() for line in str(exc).replace("WeightsUnpickler error:", "\n").splitlines()]
    keys = ("GLOBAL", "global", "Can only build", "unrecognized", "Unsupported")
    return next((line for line in lines if any(k in line for k in keys)),
                next((line for line in lines if line), type(exc).__name__))
