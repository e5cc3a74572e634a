"""``ortel analyze``: operator-level profiling and model analysis of an ONNX model.

Per node: measured time (ONNX Runtime's profiler), MACs/FLOPs and bytes, roofline position,
critical path, energy, offload candidates. See ``docs/analysis.md``.

Import-light on purpose: the CLI checks that this package exists with ``find_spec`` and the
daemon must never load onnx or onnxruntime, so nothing heavy is imported here.
"""
