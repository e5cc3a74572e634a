"""SIGHUP: work out the settings again, as the command line did at startup, with the config file
read afresh.

Flags and ORTEL_* variables were fixed when the process started, so they keep their values (and
keep winning over the file); everything that came from the file or from a default is taken from
the file as it is now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from .config import OPTIONS, ConfigError, Option, Settings, build_settings, load_file


def _convert(o: Option, value: Any, path: Path) -> Any:
    kind = click.BOOL if o.flag else click.types.convert_type(o.type, o.default)
    try:
        return kind.convert(value, None, None)
    except click.BadParameter as e:
        raise ConfigError(f"config {path}: {o.name}: {e.format_message()}") from None


class Reloader:
    def __init__(
        self,
        params: Mapping[str, Any],
        fixed: Iterable[str],
        config_path: Path | None,
        demo_default: bool = False,
    ) -> None:
        self.params = dict(params)
        self.fixed = set(fixed)  # options given as flags or environment variables
        self.config_path = config_path
        self.demo_default = demo_default

    def __call__(self) -> Settings:
        """The settings now; raises ConfigError (the daemon then keeps the ones it has)."""
        path = self.config_path
        from_file = {} if path is None else load_file(path)
        p: dict[str, Any] = {}
        for o in OPTIONS:
            if o.name in self.fixed:
                p[o.name] = self.params[o.name]
            elif o.name in from_file:
                p[o.name] = _convert(o, from_file[o.name], path)  # type: ignore[arg-type]
            else:
                p[o.name] = o.default
        p["demo"] = p["demo"] or self.demo_default
        return build_settings(p)
