"""``ortel profile``: benchmark an ONNX model the way a performance engineer would.

Phases (load, cold first inference, warm-up to steady state, a measured phase bounded by both a
minimum duration and a minimum count), sweeps (batch, sequence length, concurrency, providers,
precision), LLM generation, power and energy, a DuckDB results store, ``ortel compare`` with a
statistical regression gate, and self-contained reports.

Import-light on purpose: onnxruntime, onnx, numpy and duckdb load in the modules that need them,
so ``ortel --help`` and the daemon never pay for them.
"""
