"""The deployment files stay true: their configs load, the image installs as README says."""

from __future__ import annotations

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
