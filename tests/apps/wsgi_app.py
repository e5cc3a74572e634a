"""A WSGI app for gunicorn's sync workers, instrumented with ``@profiled``.

``GET /infer`` runs exactly one instrumented inference (model ``wsgi``); ``GET /pid`` answers the
worker's pid and runs none (readiness probes use it). ``ORTEL_MULTIPROC_DIR`` comes from the
environment, so importing ortel here enables the snapshot writer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ortel.instrumentation import profiled

MODEL = "wsgi"
X = np.ones((4, 16), np.float32)


@profiled(model=MODEL, provider="cpu")
def infer(x: np.ndarray) -> float:
    return float((x @ x.T).sum())


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/infer":
        status, body = "200 OK", f"{os.getpid()} {infer(X)}"
    elif path == "/pid":
        status, body = "200 OK", str(os.getpid())
    else:
        status, body = "404 Not Found", "not found"
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
