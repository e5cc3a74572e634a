"""``ortel serve --otlp-endpoint URL``: push every reading over OTLP as well as serving /metrics.

On when ``--otlp-endpoint`` (ORTEL_OTLP_ENDPOINT, config key ``otlp_endpoint``) is given, or when
the standard OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set; headers,
TLS files, compression and timeout come from the other OTEL_EXPORTER_OTLP_* variables, as for any
OTel SDK. The push runs on the OTel SDK's reader thread: an unreachable endpoint delays only the
push (failed exports are counted in ``ortel_otlp_dropped_total``), never sampling or scrapes.
The OTel SDK is imported only when the push is on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ortel.core.readings import Reading

log = logging.getLogger("ortel.exporter")

PROTOCOLS = ("grpc", "http/protobuf")
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_ENVS = ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_SERVICE = "ortel"
MAX_INTERVAL = 1e6  # seconds; finite, below threading's limits
SHUTDOWN_SECONDS = 2.0  # the last push at exit may take this long


@dataclass(frozen=True)
class OtlpSettings:
    endpoint: str | None  # None: the exporter reads OTEL_EXPORTER_OTLP_* itself
    protocol: str
    interval: float | None  # None: OTEL_METRIC_EXPORT_INTERVAL, else 60 s


def check_endpoint(value: str, what: str = "--otlp-endpoint") -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {value!r}: expected a URL like http://127.0.0.1:4317")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{what} {value!r}: bad port") from None
    return value


def otel_installed() -> bool:
    try:
        return all(
            importlib.util.find_spec(m) is not None
            for m in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc")
        )
    except ModuleNotFoundError:
        return False


def settings_from(
    params: dict[str, Any], env: Mapping[str, str] | None = None
) -> OtlpSettings | None:
    """Validated OTLP settings, or None when the push is off. Raises ValueError (one line)."""
    if env is None:
        env = os.environ
    endpoint = params.get("otlp_endpoint") or None
    from_env = [v for v in ENDPOINT_ENVS if env.get(v)]
    if endpoint is None and not from_env:
        return None
    if endpoint is not None:
        check_endpoint(endpoint)
    else:
        check_endpoint(env[from_env[0]], from_env[0])
    protocol = params.get("otlp_protocol") or next(
        (env[v] for v in PROTOCOL_ENVS if env.get(v)), ""
    )
    protocol = protocol or "grpc"
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    interval = params.get("otlp_interval")
    if interval is not None and not 0 < interval <= MAX_INTERVAL:
        raise ValueError(f"--otlp-interval must be in (0, {MAX_INTERVAL:g}] seconds")
    if not otel_installed():
        if endpoint is None:  # only an ambient OTEL_* variable asked: not worth refusing to start
            log.warning("%s is set but OTLP export needs: pip install 'ortel[otel]'", from_env[0])
            return None
        raise ValueError("OTLP export needs the otel extra: pip install 'ortel[otel]'")
    return OtlpSettings(endpoint, protocol, interval)


class OtlpPush:
    """The daemon's readings (``source``), pushed every interval until ``stop()``."""

    def __init__(self, settings: OtlpSettings, source: Callable[[], Iterable[Reading]]) -> None:
        from ortel.instrumentation.otlp import DROPS, OtlpExport, make_resource

        self.settings = settings
        self.drops = DROPS
        self.export = OtlpExport(
            source,
            resource=make_resource(DEFAULT_SERVICE),
            endpoint=settings.endpoint,
            protocol=settings.protocol,
            interval=settings.interval,
            include_drops=False,  # the daemon's readings carry them already
        )

    def describe(self) -> str:
        where = self.settings.endpoint or "OTEL_EXPORTER_OTLP_* endpoint"
        every = f"every {self.settings.interval:g}s" if self.settings.interval else ""
        return f"pushing OTLP ({self.settings.protocol}) to {where} {every}".rstrip()

    def readings(self) -> list[Reading]:
        return self.drops.readings(("metrics",))  # the daemon exports no spans

    def stop(self) -> None:
        self.export.shutdown(SHUTDOWN_SECONDS)
