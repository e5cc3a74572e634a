"""SIGHUP's settings: flags and environment stay, the config file is read again.

The Reloader is taken from a real ``ortel serve`` command line (click parses it; only the daemon is
replaced by a recorder), so precedence is exactly the command's. The daemon applying it under a
real SIGHUP is in test_daemon.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ortel.exporter import daemon as daemon_mod
from ortel.exporter.cli import cli
from ortel.exporter.config import ConfigError, Settings
from ortel.exporter.reload import Reloader


@pytest.fixture(autouse=True)
def _no_ortel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ORTEL_"):
            monkeypatch.delenv(name)


class FakeDaemon:
    made: list[FakeDaemon] = []

    def __init__(self, settings: Settings, security: Any = None, reloader: Any = None) -> None:
        self.settings, self.reloader = settings, reloader
        FakeDaemon.made.append(self)

    def run(self) -> None:
        pass


def reloader_of(
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str] | None = None,
    command: str = "serve",
) -> tuple[Settings, Reloader]:
    monkeypatch.setattr(daemon_mod, "Daemon", FakeDaemon)
    FakeDaemon.made.clear()
    result = CliRunner().invoke(cli, [command, *args], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    (d,) = FakeDaemon.made
    return d.settings, d.reloader


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ortel.yaml"
    path.write_text("interval: 2\ncollectors: [cpu, memory]\nwindow: 30\n")
    return path


def test_file_values_are_read_again(monkeypatch: pytest.MonkeyPatch, cfg: Path) -> None:
    first, reload = reloader_of(monkeypatch, ["--config", str(cfg)])
    assert (first.interval, first.collectors) == (2.0, ("cpu", "memory"))
    assert reload() == first  # nothing changed: the same settings
    cfg.write_text("interval: 0.5\ncollectors: [process]\nper_core: true\nlabel_limits: model=3\n")
    new = reload()
    assert (new.interval, new.collectors, new.options.per_core) == (0.5, ("process",), True)
    assert dict(new.options.label_limits)["model"] == 3
    assert new.options.window_seconds == 60.0  # removed from the file: back to the default


def test_flags_and_environment_keep_winning(monkeypatch: pytest.MonkeyPatch, cfg: Path) -> None:
    _, reload = reloader_of(
        monkeypatch,
        ["--config", str(cfg), "--interval", "3"],
        env={"ORTEL_COLLECTORS": "memory"},
    )
    cfg.write_text("interval: 9\ncollectors: [cpu]\nwindow: 10\n")
    new = reload()
    assert (new.interval, new.collectors, new.options.window_seconds) == (3.0, ("memory",), 10.0)


def test_web_config_paths_come_from_the_file(
    monkeypatch: pytest.MonkeyPatch, cfg: Path, tmp_path: Path
) -> None:
    _, reload = reloader_of(monkeypatch, ["--config", str(cfg)])
    cfg.write_text(f"bearer_token_file: {tmp_path / 'tokens'}\n")
    assert reload().bearer_token_file == tmp_path / "tokens"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("interval: [", "is not valid"),
        ("interval: fast\n", "interval"),
        ("interval: -1\n", "--interval must be greater than 0"),
        ("collectors: [gpu9000]\n", "unknown collector"),
        ("label_limits: model=lots\n", "--label-limits"),
        ("colectors: [cpu]\n", "unknown key"),
    ],
)
def test_a_bad_file_raises_config_error(
    monkeypatch: pytest.MonkeyPatch, cfg: Path, text: str, why: str
) -> None:
    _, reload = reloader_of(monkeypatch, ["--config", str(cfg)])
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=why):
        reload()


def test_a_deleted_file_raises_config_error(monkeypatch: pytest.MonkeyPatch, cfg: Path) -> None:
    _, reload = reloader_of(monkeypatch, ["--config", str(cfg)])
    cfg.unlink()
    with pytest.raises(ConfigError, match="cannot read config"):
        reload()


def test_without_a_config_file_reload_repeats_the_startup_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, reload = reloader_of(monkeypatch, ["--interval", "4"])
    assert reload() == first


def test_the_demo_command_stays_a_demo(monkeypatch: pytest.MonkeyPatch, cfg: Path) -> None:
    first, reload = reloader_of(monkeypatch, ["--config", str(cfg)], command="demo")
    assert first.demo and reload().demo


def test_reloader_directly() -> None:
    r = Reloader({"interval": 5.0}, {"interval"}, None)
    assert r().interval == 5.0
