"""Model inputs: generated from the model's input specs, or read from files.

Generated inputs cover every ONNX tensor type numpy can hold. Dynamic dimensions are resolved
from ``--shape`` (``NAME:1x3x224x224`` for a whole input, ``DIM=8`` for a symbolic dimension),
then from the sweep (the leading dimension is the batch, dimensions named like a sequence length
take ``--seq-lens``), and a past-sequence dimension (a KV cache) starts empty.

Real inputs: ``.npy`` (``NAME=file.npy`` when the model has several inputs), ``.npz`` (keys are
input names), ``.pb`` (serialized ``onnx.TensorProto``) and image files with the standard
ImageNet preprocessing (resize the shorter side to 256, centre-crop 224, scale to [0, 1],
normalise by the ImageNet mean and std, HWC to CHW) when asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ONNX Runtime's type strings -> numpy dtypes it accepts from Python.
DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
    "tensor(complex64)": np.complex64,
    "tensor(complex128)": np.complex128,
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SEQ_DIM = re.compile(r"seq|length|len\b|token|time|position", re.IGNORECASE)
PAST_DIM = re.compile(r"past", re.IGNORECASE)
TOTAL_DIM = re.compile(r"total|all|\+", re.IGNORECASE)
DEFAULT_SEQ_LEN = 128
DEFAULT_INT_HIGH = 10  # exclusive; small so an index input stays inside any vocabulary


class InputError(ValueError):
    """Inputs cannot be built or read: bad --shape, unreadable file, unsupported type."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # "tensor(float)", …
    shape: tuple[int | str | None, ...]

    @classmethod
    def of(cls, arg: Any) -> InputSpec:
        """From an onnxruntime NodeArg."""
        return cls(arg.name, arg.type, tuple(arg.shape))

    @property
    def dtype(self) -> Any:
        try:
            return DTYPES[self.type]
        except KeyError:
            raise InputError(
                f"input {self.name!r} has type {self.type}, which numpy cannot hold: give real "
                "inputs (--inputs) or profile a model with another input type"
            ) from None


@dataclass
class ShapeOverrides:
    whole: dict[str, tuple[int, ...]] = field(default_factory=dict)  # input name -> shape
    dims: dict[str, int] = field(default_factory=dict)  # symbolic dim name -> value


def parse_shapes(values: Iterable[str]) -> ShapeOverrides:
    """``NAME:1x3x224x224`` or ``DIM=8`` (several per value, comma-separated)."""
    out = ShapeOverrides()
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            if "=" in part:
                dim, _, n = part.partition("=")
                out.dims[dim.strip()] = _positive(n, part)
            elif ":" in part:
                name, _, dims = part.rpartition(":")
                out.whole[name.strip()] = tuple(_positive(d, part, 0) for d in dims.split("x"))
            else:
                raise InputError(f"--shape {part!r}: expected NAME:1x3x224x224 or DIM=8")
    return out


def _positive(text: str, where: str, minimum: int = 1) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise InputError(f"--shape {where!r}: {text.strip()!r} is not an integer") from None
    if n < minimum:
        raise InputError(f"--shape {where!r}: dimensions must be >= {minimum}")
    return n


def dynamic_dims(specs: Sequence[InputSpec]) -> set[str]:
    """Names (or "NAME[i]" for unnamed) of the dynamic dimensions across the inputs."""
    out = set()
    for s in specs:
        for i, d in enumerate(s.shape):
            if not isinstance(d, int) or d < 0:
                out.add(d if isinstance(d, str) and d else f"{s.name}[{i}]")
    return out


def has_dynamic_batch(specs: Sequence[InputSpec]) -> bool:
    return any(s.shape and not (isinstance(s.shape[0], int) and s.shape[0] > 0) for s in specs)


def has_seq_dim(specs: Sequence[InputSpec]) -> bool:
    return any(
        isinstance(d, str) and SEQ_DIM.search(d) and not PAST_DIM.search(d)
        for s in specs
        for d in s.shape[1:]
    )


def resolve_shape(
    spec: InputSpec,
    overrides: ShapeOverrides,
    batch: int | None = None,
    seq_len: int | None = None,
    past_len: int = 0,
) -> tuple[int, ...]:
    """The concrete shape of one input for one configuration."""
    if spec.name in overrides.whole:
        shape = list(overrides.whole[spec.name])
        if len(shape) != len(spec.shape):
            raise InputError(
                f"--shape {spec.name}: rank {len(shape)}, but the model's input has rank "
                f"{len(spec.shape)} {list(spec.shape)}"
            )
        if batch is not None and shape:
            shape[0] = batch
        return tuple(shape)
    out = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d >= 0:
            out.append(d)
        elif i == 0 and batch is not None:  # the sweep's batch wins over a --shape default
            out.append(batch)
        elif isinstance(d, str) and d in overrides.dims:
            out.append(overrides.dims[d])
        elif i == 0:
            out.append(1)
        elif isinstance(d, str) and PAST_DIM.search(d):
            # "past + seq" names (an attention mask over the cache and the new tokens).
            total = past_len + (seq_len or DEFAULT_SEQ_LEN)
            out.append(total if TOTAL_DIM.search(d) else past_len)
        elif isinstance(d, str) and TOTAL_DIM.search(d) and SEQ_DIM.search(d):
            out.append(past_len + (seq_len or DEFAULT_SEQ_LEN))
        elif isinstance(d, str) and SEQ_DIM.search(d):
            out.append(seq_len or DEFAULT_SEQ_LEN)
        else:
            out.append(1)
    fixed = out and isinstance(spec.shape[0], int) and spec.shape[0] > 0
    if batch is not None and fixed and batch != spec.shape[0]:
        raise InputError(
            f"input {spec.name!r} has a fixed batch dimension of {spec.shape[0]}: batch "
            f"{batch} cannot be fed"
        )
    return tuple(out)


def generate(
    spec: InputSpec,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    int_high: int | None = None,
    past_len: int = 0,
) -> np.ndarray:
    """Random data of the input's type: N(0, 1) floats, small non-negative integers (below the
    vocabulary size where the model tells it), an all-ones attention mask, counting positions."""
    dtype = spec.dtype
    name = spec.name.lower()
    if dtype is np.object_:
        return np.array(["ortel"] * int(np.prod(shape)), dtype=object).reshape(shape)
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.complexfloating):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if "mask" in name:
        return np.ones(shape, dtype=dtype)
    if "position" in name and shape:
        pos = np.arange(past_len, past_len + shape[-1], dtype=dtype)
        return np.broadcast_to(pos, shape).copy()
    if "token_type" in name or "segment" in name:
        return np.zeros(shape, dtype=dtype)
    high = int_high or DEFAULT_INT_HIGH
    info = np.iinfo(dtype)
    return rng.integers(0, min(high, int(info.max)), size=shape, dtype=dtype)


def index_ranges(model_path: Path | str) -> dict[str, int]:
    """For integer inputs used as Gather indices into an initializer (token ids into an
    embedding table): the table's size along the gathered axis, so generated ids stay valid."""
    try:
        import onnx
    except ImportError:  # without onnx: the small default range
        return {}
    model = onnx.load(str(model_path), load_external_data=False)
    g = model.graph
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    inputs = {i.name for i in g.input}
    out: dict[str, int] = {}
    for node in g.node:
        if node.op_type == "Gather" and len(node.input) == 2:
            data, idx = node.input
            if idx in inputs and data in inits:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                dims = inits[data]
                if dims:
                    n = dims[axis % len(dims)]
                    out[idx] = min(out.get(idx, n), n)
    return out


# --- real inputs -------------------------------------------------------------------------------


def load_inputs(
    paths: Sequence[str], specs: Sequence[InputSpec], preprocess: str | None = None
) -> list[dict[str, np.ndarray]]:
    """Read files into a pool of feeds (each a full feed of every input, batch as in the file)."""
    names = [s.name for s in specs]
    by_name: dict[str, list[np.ndarray]] = {}
    feeds: list[dict[str, np.ndarray]] = []
    images: list[np.ndarray] = []
    for raw in paths:
        name, path = _split_named(raw, names)
        suffix = path.suffix.lower()
        if not path.is_file():
            raise InputError(f"--inputs {raw}: no such file")
        if suffix in IMAGE_SUFFIXES:
            if preprocess != "imagenet":
                raise InputError(
                    f"--inputs {raw}: an image; pass --preprocess imagenet to resize, crop and "
                    "normalise it"
                )
            images.append(imagenet_preprocess(path))
            continue
        if suffix == ".npz":
            feeds.append(_load_npz(path, names))
            continue
        arr = _load_npy(path) if suffix == ".npy" else _load_pb(path) if suffix == ".pb" else None
        if arr is None:
            raise InputError(f"--inputs {raw}: unknown file type (use .npy, .npz, .pb or images)")
        if isinstance(arr, tuple):  # a TensorProto that names its input
            name = name or arr[0] or None
            arr = arr[1]
        if name is None:
            if len(names) != 1:
                raise InputError(f"--inputs {raw}: the model has inputs {names}; write NAME={raw}")
            name = names[0]
        by_name.setdefault(name, []).append(arr)
    if images:
        image_input = [s for s in specs if len(s.shape) == 4]
        if len(image_input) != 1 or len(specs) != 1:
            raise InputError("image inputs need a model with a single 4-D (NCHW) input")
        by_name.setdefault(image_input[0].name, []).append(np.stack(images))
    if by_name:
        counts = {len(v) for v in by_name.values()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise InputError(f"--inputs: nothing given for model input(s) {missing}")
        if len(counts) != 1:
            raise InputError("--inputs: give the same number of files for every input")
        for i in range(counts.pop()):
            feeds.append({n: v[i] for n, v in by_name.items()})
    for f in feeds:
        _check_feed(f, specs)
    return feeds


def _split_named(raw: str, names: Sequence[str]) -> tuple[str | None, Path]:
    if "=" in raw:
        name, _, path = raw.partition("=")
        if name in names:
            return name, Path(path)
        if not Path(raw).exists():
            raise InputError(f"--inputs {raw}: the model has no input {name!r} (inputs: {names})")
    return None, Path(raw)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--inputs {path}: not a readable .npy file ({e})") from None


def _load_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"--inputs {path}: not a readable .npz file ({e})") from None
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(f"--inputs {path}: keys {unknown} are not model inputs {list(names)}")
    return data


def _load_pb(path: Path) -> tuple[str, np.ndarray]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError(
            ".pb inputs need the onnx package (pip install 'ortel[profile]')"
        ) from None
    t = onnx.TensorProto()
    try:
        t.ParseFromString(path.read_bytes())
        return t.name, numpy_helper.to_array(t)
    except Exception as e:  # protobuf raises its own DecodeError
        raise InputError(f"--inputs {path}: not a serialized onnx.TensorProto ({e})") from None


def _check_feed(feed: dict[str, np.ndarray], specs: Sequence[InputSpec]) -> None:
    for s in specs:
        a = feed.get(s.name)
        if a is None:
            continue
        if len(a.shape) != len(s.shape):
            raise InputError(
                f"--inputs: {s.name} has shape {list(a.shape)}, the model expects rank "
                f"{len(s.shape)} {list(s.shape)}"
            )
        for got, want in zip(a.shape, s.shape):
            if isinstance(want, int) and want > 0 and got != want:
                raise InputError(
                    f"--inputs: {s.name} has shape {list(a.shape)}, the model expects "
                    f"{list(s.shape)}"
                )
        dtype = s.dtype
        if a.dtype != dtype:
            if a.dtype.kind != np.dtype(dtype).kind and not (
                a.dtype.kind in "iu" and np.dtype(dtype).kind in "iu"
            ):
                raise InputError(f"--inputs: {s.name} is {a.dtype}, the model expects {s.type}")
            feed[s.name] = a.astype(dtype)


def imagenet_preprocess(path: Path | str) -> np.ndarray:
    """The torchvision ImageNet evaluation transform: float32 [3, 224, 224]."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("image inputs need Pillow (pip install 'ortel[profile]')") from None
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = 256 / min(w, h)
            size = (max(256, round(w * scale)), max(256, round(h * scale)))
            im = im.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
            im = im.crop((left, top, left + 224, top + 224))
            a = np.asarray(im, dtype=np.float32) / 255.0
    except OSError as e:
        raise InputError(f"--inputs {path}: not a readable image ({e})") from None
    a = (a - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def rebatch(pool: Sequence[dict[str, np.ndarray]], batch: int | None, count: int = 4):
    """Feeds of ``batch`` items cut from the pool's items in turn (all items when fewer are
    asked); with ``batch`` None the pool's own feeds, as read."""
    if batch is None:
        return list(pool)
    names = list(pool[0])
    items: list[dict[str, np.ndarray]] = []
    for f in pool:
        n = len(f[names[0]]) if f[names[0]].ndim else 1
        for i in range(n):
            items.append({k: v[i : i + 1] for k, v in f.items()})
    out = []
    for j in range(max(1, min(count, -(-len(items) // batch)))):
        chunk = [items[(j * batch + i) % len(items)] for i in range(batch)]
        out.append({k: np.concatenate([c[k] for c in chunk]) for k in names})
    return out
