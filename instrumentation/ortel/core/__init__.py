"""ortel's shared core: the metric vocabulary, readings, label rules, mergeable state and its
snapshot codec, exposition. Imports nothing else of ortel; every other part stands on it."""
