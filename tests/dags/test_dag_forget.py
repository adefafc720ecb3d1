"""recsys_forget: the form takes a list of ids and the task passes them to jobs.forget without
putting them into the shell command."""
from __future__ import annotations

import copy
import json

import pytest


@pytest.fixture(scope="module")
def forget(dagbag):
    return dagbag.dags["recsys_forget"]


def _validate(dag, conf):
    params = copy.deepcopy(dag.params)
    for key, value in conf.items():
        params[key] = value
    return params.validate()


def test_form_accepts_a_list_of_ids(forget):
    assert _validate(forget, {"users": ["u42", "user with spaces"]})["users"] == ["u42", "user with spaces"]


@pytest.mark.parametrize("users", [[], "u42", [""], ["u42", "u42"], [42]])
def test_form_refuses_anything_else(forget, users):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(forget, {"users": users})


def test_ids_reach_the_job_through_the_environment_not_the_command(forget):
    """A hostile id (quotes, $(...)) must not become shell code: the command only expands a
    quoted variable, and the job parses that variable's JSON back into the same list."""
    from jobs.forget import build_parser, users_from

    (task,) = forget.tasks
    assert task.bash_command.endswith('-m jobs.forget --users-json "$RECSYS_FORGET_USERS"')
    hostile = ["u1", "x\"; rm -rf / #", "$(touch /tmp/pwned)"]
    rendered = forget.get_template_env().from_string(task.env["RECSYS_FORGET_USERS"]).render(
        params={"users": hostile})
    args = build_parser().parse_args(["--users-json", rendered])
    assert users_from(args) == hostile
    assert json.loads(rendered) == hostile
