"""``recsys clean|features|train|evaluate|score|publish|forget``: the DAG's steps without Airflow.

Each runs ``jobs/<job>.py``: same arguments (its ``build_parser()``), same code (its
``run(args)``), so the CLI and the DAG cannot drift apart.
"""
from __future__ import annotations

import argparse
import importlib

STEPS = (
    ("clean", "clean_interactions", "clean one ds of raw logs into the warehouse"),
    ("features", "build_features", "build the training set of one ds from clean interactions"),
    ("train", "train", "train model families for a ds (MLflow run + registered version)"),
    ("evaluate", "evaluate", "champion/challenger gate for the versions trained for a ds"),
    ("score", "score", "score all users for a ds with the version serving it; stage the top-N table"),
    ("publish", "publish", "validate the staged top-N table of a ds and publish it"),
    ("forget", "forget", "erase users from the warehouse and tombstone them (right to be forgotten)"),
)


def register(sub: argparse._SubParsersAction) -> None:
    for name, job, help_ in STEPS:
        module = importlib.import_module(f"jobs.{job}")
        p = sub.add_parser(name, help=help_, parents=[module.build_parser()], add_help=False)
        p.set_defaults(func=module.run)
