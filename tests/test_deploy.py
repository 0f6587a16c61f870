"""The deployment files stay true: their configs load, the image installs as README says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from collector.config import load_config

ROOT = Path(__file__).parent.parent


def test_systemd_config_loads_with_credentials(tmp_path: Path) -> None:
    """deploy/systemd/collector.toml reads its secrets from $CREDENTIALS_DIRECTORY, as the unit provides."""
    for name in ("access_key", "app_key"):
        (tmp_path / name).write_text(f"{name}-value\n")
    (tmp_path / "secret_key").write_text("c2VjcmV0LWtleS1mb3ItdGhlLXRlc3Q=\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "MIMECAST_APP_ID": "app-id"}
    config = load_config(ROOT / "deploy" / "systemd" / "collector.toml", env=env)
    account = config.accounts[0]
    assert account.secret_key is not None
    assert account.secret_key.reveal() == "c2VjcmV0LWtleS1mb3ItdGhlLXRlc3Q="
    assert config.service.listen == "127.0.0.1:9464"
    assert str(config.state.path).startswith("/var/lib/mimecast-collector/")  # StateDirectory=


def test_compose_config_loads() -> None:
    """deploy/compose/collector.toml is a valid config (its secrets live in the container)."""
    config = load_config(
        ROOT / "deploy" / "compose" / "collector.toml", env={"MIMECAST_APP_ID": "app-id"}, resolve_secrets=False
    )
    assert [(s.name, s.type, s.format) for s in config.sinks] == [
        ("rsyslog", "syslog", "cef"),
        ("local", "file", "json"),
    ]


HA = ROOT / "deploy" / "compose" / "ha"


def test_compose_ha_config_loads_with_postgresql_state_and_node_from_env() -> None:
    """deploy/compose/ha/collector.toml: PostgreSQL state, the replica's name from COLLECTOR_NODE.

    Needs the PostgreSQL backend's [state] keys (issue 14): until they exist the loader refuses
    `state.backend` as unknown.
    """
    env = {"MIMECAST_APP_ID": "app-id", "COLLECTOR_NODE": "collector-b"}
    config = load_config(HA / "collector.toml", env=env, resolve_secrets=False)
    state = config.state
    assert state.backend == "postgresql"
    assert state.url == "postgresql://collector@postgres:5432/collector?sslmode=disable"
    assert state.password is not None  # from password_file, a Secret (a placeholder without resolving)
    assert state.node == "collector-b"
    assert state.schema == "mimecast_collector"
    assert state.lease_secs == 30
    assert [(s.name, s.type, s.format) for s in config.sinks] == [("rsyslog", "syslog", "cef")]


def test_compose_ha_replicas_differ_only_by_node_and_collect_what_the_single_example_does() -> None:
    """Each replica gets its own COLLECTOR_NODE; the accounts are the single example's, and no sink
    writes on a replica's own disk (a file sink would split the events over the machines)."""
    compose = (HA / "compose.yaml").read_text()
    assert re.findall(r"^ {6}COLLECTOR_NODE: (\S+)", compose, re.MULTILINE) == ["collector-a", "collector-b"]
    assert "file: ../secrets/pg_password" in compose
    assert "POSTGRES_PASSWORD_FILE: /run/secrets/pg_password" in compose
    ha, single = (tomllib.loads(path.read_text()) for path in (HA / "collector.toml", HA.parent / "collector.toml"))
    assert ha["state"]["password_file"] == "/run/secrets/pg_password"
    assert ha["state"]["node"] == "${COLLECTOR_NODE}"
    assert ha["accounts"] == single["accounts"]
    assert ha["service"] == single["service"]
    assert ha["sinks"] == {"rsyslog": single["sinks"]["rsyslog"]}


def test_unit_file_declares_notify_watchdog_and_hardening() -> None:
    """The unit is Type=notify with a watchdog, a dynamic user and the hardening the README promises."""
    unit = (ROOT / "deploy" / "systemd" / "mimecast-collector.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=mimecast-collector",
        "LoadCredential=secret_key:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "RestartPreventExitStatus=78",
    ):
        assert line in unit, line


def test_image_installs_the_way_readme_says() -> None:
    """The Dockerfile and CI run README's production install step, so CI tests the image's install."""
    install = "-m venv /opt/mimecast-collector && /opt/mimecast-collector/bin/pip install"
    readme, dockerfile, ci = ((ROOT / name).read_text() for name in ("README.md", "Dockerfile", ".ci/run"))
    assert f"python3 {install} ." in readme
    assert f"python {install} --no-cache-dir ." in dockerfile
    assert 'python3 -m venv "$prefix" && "$prefix/bin/pip" install' in ci  # same step, prefix-agnostic
    assert "USER mimecast" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert 'VOLUME ["/var/lib/mimecast-collector"' in dockerfile
