"""Choose the torch device once, at the edge; everything below receives it."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def choose_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if preference == "cuda" and not available:
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available "
                           "(install a CUDA build of torch, see README 'GPU', or use device: auto)")
    device = torch.device("cuda" if available else "cpu")
    if device.type == "cuda":
        log.info("training on %s", torch.cuda.get_device_name(device))
    return device
