"""docker/docker-compose.yml is closed by default (no Docker engine here: the file is parsed).

Ports are published on 127.0.0.1 unless BIND_ADDR says otherwise; no password or secret is
written in the file (each is a required variable from docker/.env, and compose refuses to start
without it); MLflow runs its basic-auth app; Airflow's API needs a login.
"""
from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; $$ is a literal $.
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
_REQUIRED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")
_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$", re.I)


class MissingVariable(Exception):
    pass


def _interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation over a parsed compose file."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        have = env.get(name)
        if op in (":-", ":?"):
            missing = not have
        else:
            missing = have is None
        if not missing:
            return have
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op and op.endswith("-") else ""

    return _VAR.sub(sub, value)


def _raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _required_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", COMPOSE.read_text()))


def _filled_env() -> dict[str, str]:
    """Every required variable set (as docker/.env would), BIND_ADDR not."""
    return {name: f"value-of-{name.lower()}" for name in _required_vars()}


def _env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _published(ports: list) -> list[tuple[str | None, str]]:
    """(host address or None, host port) of each published port."""
    out = []
    for p in ports:
        if isinstance(p, dict):
            out.append((p.get("host_ip"), str(p.get("published"))))
            continue
        parts = str(p).rsplit(":", 2)
        out.append((parts[0], parts[1]) if len(parts) == 3 else (None, parts[0]))
    return out


def test_compose_ports_are_published_on_localhost_unless_told_otherwise():
    raw = _raw()
    published = {name: svc["ports"] for name, svc in raw["services"].items() if svc.get("ports")}
    assert {"mlflow", "airflow-api"} <= set(published)
    for name, ports in published.items():
        for host, _ in _published(ports):
            # An explicit address on every published port, and it is the BIND_ADDR variable.
            assert host is not None, f"{name}: {ports} publishes on every interface"
            assert host.startswith("${BIND_ADDR"), f"{name}: {ports}"

    default = _interpolate(raw, _filled_env())
    for name, svc in default["services"].items():
        for host, port in _published(svc.get("ports") or []):
            assert host == "127.0.0.1", f"{name} publishes {port} on {host}"
    told = _interpolate(raw, {**_filled_env(), "BIND_ADDR": "10.0.0.5"})
    assert {h for svc in told["services"].values() for h, _ in _published(svc.get("ports") or [])} \
        == {"10.0.0.5"}


def test_compose_holds_no_literal_password():
    raw = _raw()
    for name, svc in raw["services"].items():
        for key, value in _env_of(svc).items():
            if _SECRET_KEY.search(key) and not key.endswith("_PASSWORDS_FILE"):
                assert _REQUIRED.match(value), f"{name}: {key}={value!r} is not a required variable"
            for m in re.finditer(r"://[^/\s:@]+:([^@\s]+)@", value):  # passwords inside URLs
                assert _REQUIRED.match(m.group(1)), f"{name}: {key} holds a password"
    text = COMPOSE.read_text()
    assert not re.search(r"POSTGRES_PASSWORD:\s*[\w'\"]", text)
    assert "airflow:airflow@" not in text


def test_compose_fails_clearly_when_a_secret_is_missing():
    required = _required_vars()
    assert {"POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD",
            "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "MLFLOW_TRACKING_PASSWORD"} <= required
    for name in sorted(required):
        env = {k: v for k, v in _filled_env().items() if k != name}
        with pytest.raises(MissingVariable, match=f"{name}: set {name} in docker/.env"):
            _interpolate(_raw(), env)
        with pytest.raises(MissingVariable, match=name):  # empty counts as missing (":?")
            _interpolate(_raw(), {**env, name: ""})


def test_env_example_lists_every_variable_without_secrets():
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert _required_vars() <= set(example) <= used
    for key, value in example.items():
        if _SECRET_KEY.search(key):
            assert value == "", f"docker/.env.example: {key} must be left empty"
    assert example["BIND_ADDR"] == "127.0.0.1"


def test_env_file_is_gitignored():
    for path in ("docker/.env", ".env"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path
    example = subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=REPO)
    assert example.returncode == 1


def test_mlflow_server_requires_a_login():
    svc = _raw()["services"]["mlflow"]
    command = svc["command"] if isinstance(svc["command"], list) else svc["command"].split()
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert "--allowed-hosts" in command
    env = _env_of(svc)
    for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert _REQUIRED.match(env[key]), key
    # The auth config file is mounted where MLFLOW_AUTH_CONFIG_PATH points, and holds no password.
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"] if m.startswith("./")}
    ini_path = DOCKER / mounts[env["MLFLOW_AUTH_CONFIG_PATH"]]
    ini = configparser.ConfigParser()
    ini.read(ini_path)
    assert ini["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert "admin_password" not in ini["mlflow"]
    assert ini["mlflow"]["database_uri"].startswith("sqlite:////data/recsys/")
    # The image has the auth app's dependency; the pipeline's tasks log in.
    assert '"mlflow[auth]"' in (DOCKER / "Dockerfile").read_text()
    scheduler = _env_of(_raw()["services"]["airflow-scheduler"])
    assert _REQUIRED.match(scheduler["MLFLOW_TRACKING_USERNAME"])
    assert _REQUIRED.match(scheduler["MLFLOW_TRACKING_PASSWORD"])


def test_airflow_api_requires_a_login():
    services = _raw()["services"]
    for name, svc in services.items():
        if name.startswith("airflow-"):
            env = _env_of(svc)
            assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False").lower() == "false"
            assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/auth/")
            assert "airflow-auth:/opt/airflow/auth" in svc["volumes"]
            # Only the init container sees the admin password; it writes the 0600 passwords file.
            assert ("AIRFLOW_ADMIN_PASSWORD" in env) == (name == "airflow-init")
    init = " ".join(services["airflow-init"]["command"])
    assert init.index("umask 077") < init.index("AIRFLOW_ADMIN_PASSWORD") < init.index("db migrate")
