"""Recommender model families. See base.py for the contract and registry.py for the names."""
from recsys.interactions import Interactions, TrainingDataError
from recsys.models.base import FitOptions, Recommender
from recsys.models.registry import build_model, model_names

__all__ = ["FitOptions", "Interactions", "Recommender", "TrainingDataError", "build_model", "model_names"]
