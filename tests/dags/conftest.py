"""Airflow for DAG tests: a throwaway AIRFLOW_HOME (set before Airflow is imported), one DagBag."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
# Airflow reads its config on first import; parsing must not touch a developer's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="recsys-airflow-test-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.pop("RECSYS_NIGHTLY_SCHEDULE", None)  # the tests check the production schedule
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def nightly(dagbag):
    return dagbag.dags["recsys_nightly"]


@pytest.fixture(scope="session")
def consumer(dagbag):
    return dagbag.dags["recsys_consumer"]
