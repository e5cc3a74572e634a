"""The ``ortel`` command line: one click group."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ortel.core.cli import fail

from . import __version__
from .config import OPTIONS, RULE_OPTIONS, ConfigError, Option, build_settings, load_file


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is None:
        return
    ctx.meta["ortel.config"] = value  # SIGHUP reads it again
    try:
        ctx.default_map = {**(ctx.default_map or {}), **load_file(value)}
    except ConfigError as e:
        fail(str(e))


def _options(fn: Callable[..., Any], table: tuple[Option, ...]) -> Callable[..., Any]:
    """click options from a table of config.Option (flags, env vars and file keys)."""
    for o in reversed(table):
        if o.flag:
            fn = click.option(
                o.opt + "/" + o.opt.replace("--", "--no-"),
                o.name,
                default=o.default,
                envvar=o.envvar,
                show_envvar=True,
                help=o.help,
            )(fn)
        else:
            fn = click.option(
                o.opt,
                *o.aliases,
                o.name,
                type=o.type,
                default=o.default,
                envvar=o.envvar,
                show_default=True,
                show_envvar=True,
                help=o.help,
            )(fn)
    return fn


def _config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="ORTEL_CONFIG",
        show_envvar=True,
        is_eager=True,
        expose_value=False,
        callback=_load_config,
        help="YAML, JSON or TOML file with the same keys as these flags.",
    )(fn)


def rule_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The `ortel rules` SLO options, from config.RULE_OPTIONS."""
    return _options(fn, RULE_OPTIONS)


def serve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The serve options, generated from config.OPTIONS (flags, env vars and file keys)."""
    fn = _options(fn, OPTIONS)
    fn = click.option(
        "--check-config", is_flag=True, help="Validate the settings (file, env, flags) and exit."
    )(fn)
    return _config_option(fn)


class LazyGroup(click.Group):
    """Commands whose code imports onnxruntime/onnx (analysis, profiling) load only when run,
    so ``ortel serve`` never imports them."""

    lazy: dict[str, str] = {}  # command name -> "module:attribute" of a click.Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        # find_spec imports only the parent package: listing stays cheap and onnxruntime-free.
        present = {n for n, t in self.lazy.items() if _module_exists(t.split(":")[0])}
        return sorted({*super().list_commands(ctx), *present})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and _module_exists(self.lazy[name].split(":")[0]):
            import importlib

            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# Register heavy commands here, not by importing them.
LazyGroup.lazy = {
    "analyze": "ortel.analysis.cli:analyze",
    "hostinfo": "ortel.analysis.cli:hostinfo",
    "profile": "ortel.profiling.cli:profile",
    "runs": "ortel.profiling.cli:runs",
    "compare": "ortel.profiling.cli:compare",
    "top": "ortel.exporter.top:top",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ortel")
def cli() -> None:
    """ortel: what an inference costs, exported to Prometheus."""


def _serve(check_config: bool, demo_default: bool = False, **params: Any) -> None:
    raw = dict(params)
    params["demo"] = params["demo"] or demo_default
    try:
        settings = build_settings(params)
    except ConfigError as e:
        fail(str(e))
    from .webconfig import Security, WebConfigError

    try:  # certificates, keys and hashes load now, so a bad file is an exit 2, not a 500 later
        security = Security(settings.web_config, settings.bearer_token_file)
    except WebConfigError as e:
        fail(str(e))
    if check_config:
        click.echo(
            f"ortel: config OK (listen {settings.host}:{settings.port}, collectors "
            f"{','.join(settings.collectors)})"
        )
        return
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="ortel: %(levelname)s: %(message)s",
    )
    from .daemon import Daemon
    from .reload import Reloader

    ctx = click.get_current_context()
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    fixed = [n for n in raw if ctx.get_parameter_source(n) in given]
    reloader = Reloader(raw, fixed, ctx.meta.get("ortel.config"), demo_default)
    try:
        daemon = Daemon(settings, security=security, reloader=reloader)
    except OSError as e:
        fail(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}")
    daemon.run()


@cli.command()
@serve_options
def serve(**params: Any) -> None:
    """Run the exporter daemon: sample the host, merge instrumented processes, serve /metrics."""
    _serve(**params)


@cli.command()
@serve_options
def demo(**params: Any) -> None:
    """Same as `serve --demo`: a bundled model runs through the shim so metrics appear at once."""
    _serve(demo_default=True, **params)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["rules", "prometheusrule"]),
    default="rules",
    show_default=True,
    help="A Prometheus rules file, or the Kubernetes PrometheusRule (Prometheus Operator).",
)
@rule_options
@_config_option
def rules(fmt: str, **params: Any) -> None:
    """Print Prometheus recording rules and SLO burn-rate alerts for ortel's metrics."""
    from .rules import render, slo_from

    try:
        slo = slo_from(params)
    except ValueError as e:
        fail(str(e))
    click.echo(render(slo, fmt), nl=False)


# click >= 8.2 raises this (a UsageError whose message is the whole help) for a bare group.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="ortel", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except _NO_ARGS_IS_HELP as e:  # bare `ortel`: the help, as click shows it, not an "error:"
        click.echo(e.format_message(), err=True)
        sys.exit(2)
    except click.ClickException as e:  # bad flags: one line, not usage + error
        fail(e.format_message())
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
