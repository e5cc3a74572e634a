"""The demo workload behind ``ortel serve --demo``: the bundled MLP, run through the shim.

It runs as a child of the daemon (the daemon itself never imports onnxruntime) and hands its
metrics over the multiprocess directory like any instrumented process. Batch sizes vary, and one
call in 200 feeds a malformed input on purpose, so error metrics have something to show.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

BATCHES = (1, 1, 1, 2, 4, 8)
SLA_SECONDS = 250e-6
PAUSE = 0.004  # ~200 inferences/s: visible rates, little CPU


def main() -> int:
    import onnxruntime as ort

    from .instrumentor import OnnxRuntimeInstrumentor
    from .models import DEMO_MODEL_PATH
    from .recorder import RECORDER

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    parent = os.getppid()
    OnnxRuntimeInstrumentor().instrument(sla_seconds=SLA_SECONDS)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(DEMO_MODEL_PATH), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    width = session.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    i = 0
    while not stop and os.getppid() == parent:  # exit with the daemon, even if it was killed
        batch = BATCHES[i % len(BATCHES)]
        x = rng.standard_normal((batch, width), dtype=np.float32)
        if i % 200 == 199:
            x = x[:, : width // 2]  # wrong width: ORT raises, the shim counts the error
        try:
            session.run(None, {name: x})
        except Exception:
            pass
        i += 1
        time.sleep(PAUSE)
    RECORDER.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
