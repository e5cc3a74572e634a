"""Model inputs: generated for every dtype and dynamic dimension, or read from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ortel.analysis.testmodels import gpt_decoder_model
from ortel.instrumentation.models import _finish, mlp_model
from ortel.profiling import inputs as inp

ONNX_TYPES = {
    "tensor(float)": TensorProto.FLOAT,
    "tensor(float16)": TensorProto.FLOAT16,
    "tensor(double)": TensorProto.DOUBLE,
    "tensor(int8)": TensorProto.INT8,
    "tensor(int16)": TensorProto.INT16,
    "tensor(int32)": TensorProto.INT32,
    "tensor(int64)": TensorProto.INT64,
    "tensor(uint8)": TensorProto.UINT8,
    "tensor(uint16)": TensorProto.UINT16,
    "tensor(uint32)": TensorProto.UINT32,
    "tensor(uint64)": TensorProto.UINT64,
    "tensor(bool)": TensorProto.BOOL,
    "tensor(string)": TensorProto.STRING,
}


def identity_model(elem: int, shape: list) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    return _finish(graph)


@pytest.mark.parametrize("type_name", sorted(ONNX_TYPES))
def test_every_numpy_type_is_generated_and_accepted_by_onnxruntime(type_name):
    """The generated array goes through a real session of an Identity model of that type."""
    s = ort.InferenceSession(identity_model(ONNX_TYPES[type_name], ["batch", 3]))
    spec = inp.InputSpec.of(s.get_inputs()[0])
    assert spec.type == type_name
    shape = inp.resolve_shape(spec, inp.ShapeOverrides(), batch=4)
    a = inp.generate(spec, shape, np.random.default_rng(0))
    assert a.shape == (4, 3)
    (out,) = s.run(None, {"x": a})
    assert out.shape == (4, 3)
    assert (out == a).all()


def test_a_type_numpy_cannot_hold_is_a_clear_error():
    spec = inp.InputSpec("x", "tensor(bfloat16)", (1, 2))
    with pytest.raises(inp.InputError, match="bfloat16"):
        inp.generate(spec, (1, 2), np.random.default_rng(0))


def test_parse_shapes():
    o = inp.parse_shapes(["image:1x3x224x224", "batch=4,sequence_length=16"])
    assert o.whole == {"image": (1, 3, 224, 224)}
    assert o.dims == {"batch": 4, "sequence_length": 16}


@pytest.mark.parametrize("bad", ["image:1xAx3", "batch=0", "nonsense", "seq=x"])
def test_bad_shapes_are_input_errors(bad):
    with pytest.raises(inp.InputError):
        inp.parse_shapes([bad])


def test_resolve_shape_dims_batch_and_seq_len():
    spec = inp.InputSpec("input_ids", "tensor(int64)", ("batch", "sequence_length"))
    o = inp.ShapeOverrides()
    assert inp.resolve_shape(spec, o) == (1, inp.DEFAULT_SEQ_LEN)
    assert inp.resolve_shape(spec, o, batch=8, seq_len=32) == (8, 32)
    o = inp.parse_shapes(["sequence_length=7", "batch=3"])
    assert inp.resolve_shape(spec, o) == (3, 7)
    assert inp.resolve_shape(spec, o, batch=2) == (2, 7)  # the sweep's batch wins


def test_resolve_shape_past_and_total_dims():
    past = inp.InputSpec("past_key_values.0.key", "tensor(float)", ("batch", 4, "past_seq", 16))
    mask = inp.InputSpec("attention_mask", "tensor(int64)", ("batch", "past_sequence + 1"))
    o = inp.ShapeOverrides()
    assert inp.resolve_shape(past, o, batch=2, seq_len=5) == (2, 4, 0, 16)
    assert inp.resolve_shape(mask, o, batch=2, seq_len=5) == (2, 5)


def test_whole_input_shape_override_and_rank_check():
    spec = inp.InputSpec("image", "tensor(float)", ("N", 3, "H", "W"))
    o = inp.parse_shapes(["image:1x3x32x48"])
    assert inp.resolve_shape(spec, o, batch=4) == (4, 3, 32, 48)
    with pytest.raises(inp.InputError, match="rank"):
        inp.resolve_shape(spec, inp.parse_shapes(["image:3x32x48"]))


def test_fixed_batch_cannot_be_swept():
    spec = inp.InputSpec("x", "tensor(float)", (1, 16))
    assert inp.resolve_shape(spec, inp.ShapeOverrides(), batch=1) == (1, 16)
    with pytest.raises(inp.InputError, match="fixed batch"):
        inp.resolve_shape(spec, inp.ShapeOverrides(), batch=4)
    assert not inp.has_dynamic_batch([spec])


def test_seq_dim_detection():
    specs = [inp.InputSpec("input_ids", "tensor(int64)", ("batch", "sequence_length"))]
    assert inp.has_seq_dim(specs)
    assert not inp.has_seq_dim([inp.InputSpec("x", "tensor(float)", ("batch", 64))])


def test_special_integer_inputs():
    rng = np.random.default_rng(0)
    mask = inp.generate(inp.InputSpec("attention_mask", "tensor(int64)", ("b", "s")), (2, 5), rng)
    assert (mask == 1).all()
    pos = inp.generate(inp.InputSpec("position_ids", "tensor(int64)", ("b", "s")), (2, 4), rng)
    assert pos.tolist() == [[0, 1, 2, 3]] * 2
    ids = inp.generate(inp.InputSpec("input_ids", "tensor(int64)", ("b", "s")), (4, 64), rng, 96)
    assert ids.min() >= 0 and ids.max() < 96 and ids.max() > inp.DEFAULT_INT_HIGH


def test_index_ranges_read_the_embedding_table(tmp_path: Path):
    p = tmp_path / "gpt.onnx"
    p.write_bytes(gpt_decoder_model(vocab=50, attention_mask=True))
    assert inp.index_ranges(p) == {"input_ids": 50}


# --- files -------------------------------------------------------------------------------------

MLP_SPECS = [inp.InputSpec("input", "tensor(float)", ("batch", 64))]


def test_npy_single_input(tmp_path: Path):
    a = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", a)
    (feed,) = inp.load_inputs([str(tmp_path / "x.npy")], MLP_SPECS)
    assert np.array_equal(feed["input"], a)


def test_npy_float64_is_cast_to_the_model_type(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.ones((1, 64)))
    (feed,) = inp.load_inputs([f"input={tmp_path / 'x.npy'}"], MLP_SPECS)
    assert feed["input"].dtype == np.float32


def test_npz_and_pb(tmp_path: Path):
    a = np.full((2, 64), 0.5, np.float32)
    np.savez(tmp_path / "x.npz", input=a)
    t = numpy_helper.from_array(a, name="input")
    (tmp_path / "x.pb").write_bytes(t.SerializeToString())
    feeds = inp.load_inputs([str(tmp_path / "x.npz"), str(tmp_path / "x.pb")], MLP_SPECS)
    assert len(feeds) == 2
    assert all(np.array_equal(f["input"], a) for f in feeds)


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: np.save(p / "x.npy", np.ones((1, 63), np.float32)), "shape"),
        (lambda p: np.save(p / "x.npy", np.ones((1, 64, 1), np.float32)), "rank"),
        (lambda p: (p / "x.npy").write_bytes(b"not numpy"), "not a readable"),
        (lambda p: np.save(p / "x.npy", np.array(["a"] * 64).reshape(1, 64)), "expects"),
    ],
)
def test_bad_files_are_input_errors(tmp_path: Path, write, match):
    write(tmp_path)
    with pytest.raises(inp.InputError, match=match):
        inp.load_inputs([str(tmp_path / "x.npy")], MLP_SPECS)


def test_missing_file_and_unknown_type(tmp_path: Path):
    with pytest.raises(inp.InputError, match="no such file"):
        inp.load_inputs([str(tmp_path / "nope.npy")], MLP_SPECS)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(inp.InputError, match="unknown file type"):
        inp.load_inputs([str(tmp_path / "x.csv")], MLP_SPECS)


def test_npz_with_unknown_keys(tmp_path: Path):
    np.savez(tmp_path / "x.npz", other=np.ones((1, 64), np.float32))
    with pytest.raises(inp.InputError, match="not model inputs"):
        inp.load_inputs([str(tmp_path / "x.npz")], MLP_SPECS)


def test_multi_input_model_needs_names(tmp_path: Path):
    specs = [inp.InputSpec("a", "tensor(float)", (1,)), inp.InputSpec("b", "tensor(float)", (1,))]
    np.save(tmp_path / "a.npy", np.ones(1, np.float32))
    with pytest.raises(inp.InputError, match="NAME="):
        inp.load_inputs([str(tmp_path / "a.npy")], specs)
    with pytest.raises(inp.InputError, match=r"nothing given.*\['b'\]"):
        inp.load_inputs([f"a={tmp_path / 'a.npy'}"], specs)


def _png(path: Path, w: int, h: int) -> None:
    from PIL import Image

    # Left half red, right half blue: the centre crop keeps both, and the colours are known.
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2 :] = (0, 0, 255)
    Image.fromarray(a).save(path)


def test_imagenet_preprocessing(tmp_path: Path):
    _png(tmp_path / "cat.png", 400, 300)
    x = inp.imagenet_preprocess(tmp_path / "cat.png")
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    red = (np.array([1.0, 0, 0]) - inp.IMAGENET_MEAN) / inp.IMAGENET_STD
    blue = (np.array([0, 0, 1.0]) - inp.IMAGENET_MEAN) / inp.IMAGENET_STD
    assert np.allclose(x[:, 112, 10], red, atol=1e-5)
    assert np.allclose(x[:, 112, 210], blue, atol=1e-5)


def test_images_need_the_preprocess_flag_and_an_nchw_model(tmp_path: Path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", 256 + 10 * i, 256)
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    specs = [inp.InputSpec("image", "tensor(float)", ("N", 3, 224, 224))]
    with pytest.raises(inp.InputError, match="--preprocess imagenet"):
        inp.load_inputs(files, specs)
    (feed,) = inp.load_inputs(files, specs, "imagenet")
    assert feed["image"].shape == (3, 3, 224, 224)
    with pytest.raises(inp.InputError, match="4-D"):
        inp.load_inputs(files, MLP_SPECS, "imagenet")


def test_not_an_image(tmp_path: Path):
    (tmp_path / "x.png").write_bytes(b"nope")
    specs = [inp.InputSpec("image", "tensor(float)", ("N", 3, 224, 224))]
    with pytest.raises(inp.InputError, match="not a readable image"):
        inp.load_inputs([str(tmp_path / "x.png")], specs, "imagenet")


def test_rebatch_cycles_items_into_batches():
    pool = [{"x": np.arange(3, dtype=np.float32).reshape(3, 1)}]
    (b,) = inp.rebatch(pool, 5, count=1)
    assert b["x"].ravel().tolist() == [0, 1, 2, 0, 1]
    feeds = inp.rebatch(pool, 2)
    assert [f["x"].ravel().tolist() for f in feeds] == [[0, 1], [2, 0]]
    assert inp.rebatch(pool, None) == pool


def test_real_inputs_run_through_the_model(tmp_path: Path):
    s = ort.InferenceSession(mlp_model())
    np.save(tmp_path / "x.npy", np.ones((2, 64), np.float32))
    (feed,) = inp.load_inputs([str(tmp_path / "x.npy")], MLP_SPECS)
    (out,) = s.run(None, feed)
    assert out.shape == (2, 10)
