"""A FastAPI app serving a real onnxruntime session, auto-instrumented by ortel.

The model file comes from ``DEPLOY_MODEL_PATH`` (its stem is the model label). The session is
created at import, as real apps do: under ``gunicorn --preload`` that is in the master, before the
workers are forked. ``GET /infer`` runs exactly one ``session.run``; ``GET /pid`` runs none.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from ortel.instrumentation import OnnxRuntimeInstrumentor

OnnxRuntimeInstrumentor().instrument()

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
SESSION = ort.InferenceSession(
    os.environ["DEPLOY_MODEL_PATH"], _options, providers=["CPUExecutionProvider"]
)
X = np.ones((1, 16), np.float32)

app = FastAPI()


@app.get("/infer", response_class=PlainTextResponse)
def infer() -> str:  # a plain def: FastAPI runs it on its thread pool, as CPU-bound handlers are
    (z,) = SESSION.run(None, {"x": X, "y": X})
    return f"{os.getpid()} {float(z.sum())}"


@app.get("/pid", response_class=PlainTextResponse)
def pid() -> str:
    return str(os.getpid())
