"""ortel's exporter daemon: host collectors, multiprocess merge, Prometheus endpoint.

This half may import ``ortel.instrumentation`` (the shared catalogue, readings and snapshot code)
but never onnxruntime or onnx: the daemon stays small and starts fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ortel")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
