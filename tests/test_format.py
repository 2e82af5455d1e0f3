"""The signcut file format: signcut.save / signcut.load (safetensors with dense sign streams)."""
import json
import os
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import signcut
from signcut import FormatError, SignCut
from signcut import _format
from signcut._result import unpack_signs, words

DIMS = (1, 3, 63, 64, 65, 130)


# ------------------------------------------------------------------ helpers
def random_signcut(rng, shape, width, *, norm=2.5, orig_dtype=np.float32, nan_errors=False):
    signs = []
    for d in shape:
        bits = rng.integers(0, 2**64, size=(width, words(d)), dtype=np.uint64)
        if d % 64 and width:
            bits[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(bits)
    coef = rng.standard_normal(width).astype(np.float32)
    errors = np.full(width, np.nan) if nan_errors else rng.random(width)
    return SignCut(shape, signs, coef, errors, norm=norm, orig_dtype=orig_dtype)


def assert_same(x, y, history=False):
    assert isinstance(y, SignCut)
    assert y.shape == x.shape and y.width == x.width
    assert len(y.signs) == len(x.signs)
    for a, b in zip(x.signs, y.signs):
        assert b.dtype == np.uint64 and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    assert y.coef.dtype == np.float32
    np.testing.assert_array_equal(x.coef.view(np.uint32), y.coef.view(np.uint32))
    assert y.errors.dtype == np.float64
    if history:
        np.testing.assert_array_equal(x.errors.view(np.uint64), y.errors.view(np.uint64))
    elif x.width:                   # only the final error is kept
        assert np.isnan(y.errors[:-1]).all()
        assert (y.errors[-1] == x.errors[-1]) or (np.isnan(x.errors[-1]) and np.isnan(y.errors[-1]))
    assert y.norm == x.norm and type(y.norm) is type(x.norm)
    assert y.orig_dtype == x.orig_dtype
    assert getattr(y, "tensorize", None) == getattr(x, "tensorize", None)


def split(raw):
    """bytes -> (header dict, data bytes)."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join(header, data):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def edit(path, change):
    """Rewrite the header of ``path``: ``change(header, decompositions)`` edits it in place."""
    header, data = split(path.read_bytes())
    original = header["__metadata__"]["decompositions"]
    decomps = json.loads(original)
    change(header, decomps)
    if header["__metadata__"].get("decompositions") == original:   # not replaced by change
        header["__metadata__"]["decompositions"] = json.dumps(decomps)
    path.write_bytes(join(header, data))


def shape_cases():
    cases = []
    for order in range(1, 6):
        for start in range(0, len(DIMS), 2):
            cases.append(tuple(DIMS[(start + i) % len(DIMS)] for i in range(order)))
    return cases


@pytest.fixture
def small_file(tmp_path):
    """A file holding two small decompositions, and the mapping saved."""
    rng = np.random.default_rng(7)
    obj = {"a": random_signcut(rng, (5, 3), 3), "b": random_signcut(rng, (9, 2, 7), 2)}
    path = tmp_path / "small.safetensors"
    signcut.save(path, obj)
    return path, obj


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("shape", shape_cases(), ids=str)
@pytest.mark.parametrize("width", [0, 1, 7, 70])
def test_round_trip(tmp_path, shape, width):
    rng = np.random.default_rng(hash((shape, width)) % 2**32)
    x = random_signcut(rng, shape, width)
    path = tmp_path / "x.safetensors"
    signcut.save(path, x)
    assert_same(x, signcut.load(path))


@pytest.mark.parametrize("order", [6, 7, 8])
def test_round_trip_high_order(tmp_path, order):
    rng = np.random.default_rng(order)
    x = random_signcut(rng, (3, 1, 2, 5, 4, 2, 3, 2)[:order], 11)
    signcut.save(tmp_path / "x", x)
    y = signcut.load(tmp_path / "x")
    assert_same(x, y)
    np.testing.assert_array_equal(x.expand(), y.expand())


@pytest.mark.parametrize("orig_dtype", [np.float32, np.float64, np.float16, np.int8, np.uint16,
                                        ">f4", np.complex64])
@pytest.mark.parametrize("norm", [None, 0.0, 1 / 3, 1e300])
def test_round_trip_attributes(tmp_path, orig_dtype, norm):
    x = random_signcut(np.random.default_rng(1), (4, 65), 3, norm=norm, orig_dtype=orig_dtype,
                       nan_errors=True)
    signcut.save(tmp_path / "x", x)
    assert_same(x, signcut.load(tmp_path / "x"))


def test_tensorize_round_trips(tmp_path):
    x = random_signcut(np.random.default_rng(2), (6, 6), 2)
    signcut.save(tmp_path / "x", x)
    assert signcut.load(tmp_path / "x").tensorize is None
    header, _ = split((tmp_path / "x").read_bytes())
    assert json.loads(header["__metadata__"]["decompositions"])["signcut"]["tensorize"] is None
    t = signcut.SignCut(x.tensor_shape, x.signs, x.coef, x.errors,
                        tensorize={"shape": [4, 9], "axes": [1, 0]})
    signcut.save(tmp_path / "t", t)
    back = signcut.load(tmp_path / "t")
    assert back.tensorize == t.tensorize and back.shape == (4, 9)
    np.testing.assert_array_equal(back.expand(), t.expand())
    x.tensorize = object()
    with pytest.raises(ValueError, match="tensorize"):
        signcut.save(tmp_path / "x", x)


def test_mapping_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    obj = {"zeta": random_signcut(rng, (65, 130), 9), "alpha": random_signcut(rng, (3,), 0),
           "mid dle ü": random_signcut(rng, (1, 64, 63), 1, norm=None),
           "signcut": random_signcut(rng, (2, 2, 2, 2), 5)}
    signcut.save(tmp_path / "m.safetensors", obj)
    out = signcut.load(tmp_path / "m.safetensors")
    assert type(out) is dict and list(out) == list(obj)
    for name in obj:
        assert_same(obj[name], out[name])


def test_single_returns_signcut_and_mapping_of_one_returns_dict(tmp_path):
    x = random_signcut(np.random.default_rng(4), (8, 8), 4)
    signcut.save(tmp_path / "s", x)
    signcut.save(tmp_path / "m", {"signcut": x})
    assert isinstance(signcut.load(tmp_path / "s"), SignCut)
    out = signcut.load(tmp_path / "m")
    assert isinstance(out, dict) and list(out) == ["signcut"]
    assert_same(x, out["signcut"])


def test_empty_mapping(tmp_path):
    signcut.save(tmp_path / "e", {})
    assert signcut.load(tmp_path / "e") == {}
    assert safetensors.numpy.load_file(str(tmp_path / "e")) == {}


def test_decompose_result_round_trip(tmp_path):
    A = np.random.default_rng(5).standard_normal((70, 45)).astype(np.float64)
    x = signcut.decompose(A, width=37, seed=0)
    signcut.save(tmp_path / "r.safetensors", x)
    y = signcut.load(tmp_path / "r.safetensors")
    assert_same(x, y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert y.nbytes == x.nbytes and y.ratio == x.ratio


def test_save_accepts_str_and_overwrites(tmp_path):
    rng = np.random.default_rng(6)
    path = str(tmp_path / "x.safetensors")
    signcut.save(path, random_signcut(rng, (3, 3), 2))
    x = random_signcut(rng, (4, 5), 3)
    signcut.save(path, x)
    assert_same(x, signcut.load(path))


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize("shape,width", [((3, 65), 5), ((130, 1, 64), 9), ((63,), 70),
                                         ((3, 65, 130, 1, 63), 8), ((64, 64), 3),
                                         ((7, 9, 11, 13, 2), 17), ((5,), 0)])
def test_dense_layout_and_size(tmp_path, shape, width):
    x = random_signcut(np.random.default_rng(8), shape, width)
    path = tmp_path / "x.safetensors"
    signcut.save(path, x)
    tensors = safetensors.numpy.load_file(str(path))
    assert set(tensors) == {"signcut/coef"} | {f"signcut/signs.{a}" for a in range(len(shape))}
    np.testing.assert_array_equal(tensors["signcut/coef"], x.coef)
    for a, d in enumerate(shape):
        stream = tensors[f"signcut/signs.{a}"]
        assert stream.dtype == np.uint8 and stream.shape == (-(-width * d // 8),)
        bits = np.unpackbits(stream, count=width * d, bitorder="little").reshape(width, d)
        expected = unpack_signs(x.signs[a], d) if width else np.zeros((0, d))
        np.testing.assert_array_equal(1 - 2 * bits.astype(np.float32), expected)
        if width * d % 8:
            assert stream[-1] >> (width * d % 8) == 0
    payload = os.path.getsize(path) - 8 - int.from_bytes(path.read_bytes()[:8], "little")
    # one stream per mode: each rounds up to a whole byte on its own
    assert payload == sum(-(-width * d // 8) for d in shape) + 4 * width
    signs_and_coef = sum(t.nbytes for t in tensors.values())
    assert payload == signs_and_coef
    assert x.nbytes <= signs_and_coef <= x.nbytes + len(shape) - 1
    if all(width * d % 8 == 0 for d in shape):
        assert signs_and_coef == x.nbytes == -(-width * sum(shape) // 8) + 4 * width


def test_bit_order_explicit(tmp_path):
    # cut 0 = (-1, +1, +1), cut 1 = (+1, +1, -1), cut 2 = (-1, -1, -1): bits 1,0,0, 0,0,1, 1,1,1
    signs = np.array([[0b001], [0b100], [0b111]], dtype=np.uint64)
    x = SignCut((3,), [signs], [1, 2, 3])
    signcut.save(tmp_path / "x", x)
    stream = safetensors.numpy.load_file(str(tmp_path / "x"))["signcut/signs.0"]
    assert stream.tolist() == [0b11100001, 0b1]


def test_header_metadata(tmp_path):
    x = random_signcut(np.random.default_rng(9), (4, 6), 3, orig_dtype=np.float16)
    signcut.save(tmp_path / "x", x)
    header, _ = split((tmp_path / "x").read_bytes())
    meta = header["__metadata__"]
    assert meta["format"] == "signcut" and meta["format_version"] == "1"
    assert meta["container"] == "single"
    assert json.loads(meta["decompositions"]) == {"signcut": {
        "shape": [4, 6], "width": 3, "orig_dtype": "float16", "norm": 2.5,
        "rel_error": float(x.errors[-1]), "history": False, "tensorize": None}}
    assert (8 + int.from_bytes((tmp_path / "x").read_bytes()[:8], "little")) % 8 == 0


def test_chunked_conversion_matches(tmp_path, monkeypatch):
    rng = np.random.default_rng(10)
    x = random_signcut(rng, (77, 13, 130), 45)
    for d, bits in zip(x.shape, x.signs):
        whole = _format._rows_to_stream(bits, d)
        monkeypatch.setattr(_format, "_CHUNK_BITS", 1)
        chunked = _format._rows_to_stream(bits, d)
        np.testing.assert_array_equal(whole, chunked)
        np.testing.assert_array_equal(_format._stream_to_rows(whole, x.width, d), bits)
        monkeypatch.undo()
    monkeypatch.setattr(_format, "_CHUNK_BITS", 100)
    signcut.save(tmp_path / "x", x)
    assert_same(x, signcut.load(tmp_path / "x"))


# ------------------------------------------------------------------ save errors, atomicity
def test_exports():
    assert signcut.save is _format.save and signcut.load is _format.load
    assert issubclass(signcut.FormatError, ValueError)
    assert {"save", "load", "FormatError"} <= set(signcut.__all__)


@pytest.mark.parametrize("name", ["", "a/b", "/", "tab\there", "new\nline", "x" * 257])
def test_bad_names(tmp_path, name):
    x = random_signcut(np.random.default_rng(0), (2, 2), 1)
    with pytest.raises(ValueError, match="name"):
        signcut.save(tmp_path / "x", {name: x})
    assert list(tmp_path.iterdir()) == []


def test_bad_objects(tmp_path):
    x = random_signcut(np.random.default_rng(0), (2, 2), 1)
    with pytest.raises(TypeError):
        signcut.save(tmp_path / "x", {1: x})
    with pytest.raises(TypeError):
        signcut.save(tmp_path / "x", {"a": np.zeros(3)})
    with pytest.raises(TypeError):
        signcut.save(tmp_path / "x", [x])
    with pytest.raises(ValueError, match="read-only"):   # a SignCut cannot be corrupted ...
        x.signs[0][0, 0] |= np.uint64(1 << 40)
    with pytest.raises(ValueError):
        x.signs[0].flags.writeable = True
    good = random_signcut(np.random.default_rng(0), (2, 2), 1)
    raw = good.signs[0].copy()
    bad = SignCut(good.tensor_shape, [raw, good.signs[1]], good.coef, copy=False)
    raw[0, 0] |= np.uint64(1 << 40)        # ... except by the owner of arrays given with copy=False
    with pytest.raises(ValueError, match="beyond"):
        signcut.save(tmp_path / "x", bad)
    assert list(tmp_path.iterdir()) == []


def _boom(*args, **kwargs):
    raise OSError("simulated failure")


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_atomic_write_on_failure(tmp_path, monkeypatch, where):
    rng = np.random.default_rng(11)
    path = tmp_path / "x.safetensors"
    monkeypatch.setattr(_format.os, where, _boom)
    with pytest.raises(OSError, match="simulated"):
        signcut.save(path, random_signcut(rng, (30, 40), 5))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    old = random_signcut(rng, (3, 4), 2)
    signcut.save(path, old)
    before = path.read_bytes()
    monkeypatch.setattr(_format.os, where, _boom)
    with pytest.raises(OSError, match="simulated"):
        signcut.save(path, random_signcut(rng, (30, 40), 5))
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == before
    monkeypatch.undo()
    assert_same(old, signcut.load(path))


def test_save_into_missing_folder(tmp_path):
    x = random_signcut(np.random.default_rng(0), (2, 2), 1)
    with pytest.raises(FileNotFoundError, match="folder"):
        signcut.save(tmp_path / "nope" / "x.safetensors", x)


def test_save_under_a_file_instead_of_a_folder(tmp_path):
    # (a read-only folder does not stop root, which CI runs as; a file in the way does)
    x = random_signcut(np.random.default_rng(0), (2, 2), 1)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(OSError):
        signcut.save(blocker / "x.safetensors", x)
    assert blocker.read_bytes() == b"x" and list(tmp_path.iterdir()) == [blocker]


def test_save_onto_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    x = random_signcut(np.random.default_rng(0), (2, 2), 1)
    with pytest.raises(OSError):
        signcut.save(tmp_path / "d", x)
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# ------------------------------------------------------------------ corrupt files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        signcut.load(tmp_path / "absent.safetensors")


def test_every_truncation_fails(small_file):
    path, _ = small_file
    raw = path.read_bytes()
    for n in range(len(raw)):
        path.write_bytes(raw[:n])
        with pytest.raises(FormatError):
            signcut.load(path)


def test_trailing_garbage(small_file):
    path, _ = small_file
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(FormatError, match="trailing"):
        signcut.load(path)


@pytest.mark.parametrize("offset,value,match", [
    (0, 0xFF, "header length|JSON|UTF-8"), (7, 0x01, "header length"),
    (3, 0x10, "header length"), (0, 0x00, "header length|JSON|UTF-8"), (8, ord("["), "JSON"), (8, 0xC3, "UTF-8"),
    (9, ord("}"), "JSON"), (-1, 0x80, "UTF-8")])
def test_flipped_header_bytes(small_file, offset, value, match):
    path, _ = small_file
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    raw[offset if offset >= 0 else 8 + n + offset] = value
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=match):
        signcut.load(path)


def test_header_not_object(tmp_path):
    (tmp_path / "x").write_bytes(join([1, 2], b""))
    with pytest.raises(FormatError, match="not a JSON object"):
        signcut.load(tmp_path / "x")


def test_duplicate_keys(small_file):
    path, _ = small_file
    header, data = split(path.read_bytes())
    text = json.dumps(header)
    text = text[:-1] + ',"a/coef":' + json.dumps(header["a/coef"]) + "}"
    path.write_bytes(len(text).to_bytes(8, "little") + text.encode() + data)
    with pytest.raises(FormatError, match="duplicate"):
        signcut.load(path)


def _set(key, value):
    def change(header, decomps):
        decomps["a"][key] = value
    return change


def _meta(key, value):
    def change(header, decomps):
        if value is None:
            del header["__metadata__"][key]
        else:
            header["__metadata__"][key] = value
    return change


def _tensor(name, key, value):
    def change(header, decomps):
        if key is None:
            del header[name]
        else:
            header[name][key] = value
    return change


def _no_metadata(header, decomps):
    header["__metadata__"] = {"decompositions": "{}"}


def _extra_tensor(header, decomps):
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["a/extra"] = {"dtype": "U8", "shape": [0], "data_offsets": [end, end]}


def _extra_name(header, decomps):
    decomps["c"] = {"shape": [2], "width": 0, "orig_dtype": "float32", "norm": None}


EDITS = {
    "width+1": (_set("width", 4), "wrong shape|bytes"),
    "width-1": (_set("width", 2), "wrong shape"),
    "shape": (_set("shape", [5, 30]), "wrong shape"),
    "shape order": (_set("shape", [5, 3, 1]), "missing tensors"),
    "huge shape": (_set("shape", [10**12, 3]), "wrong shape"),
    "huge width": (_set("width", 10**15), "wrong shape"),
    "too many dims": (_set("shape", [1] * 33), "too many dims"),
    "zero dim": (_set("shape", [5, 0]), "positive integers"),
    "negative dim": (_set("shape", [5, -3]), "positive integers"),
    "float dim": (_set("shape", [5, 3.0]), "positive integers"),
    "string dim": (_set("shape", [5, "3"]), "positive integers"),
    "bool dim": (_set("shape", [5, True]), "positive integers"),
    "empty shape": (_set("shape", []), "non-empty"),
    "shape not list": (_set("shape", 15), "non-empty"),
    "negative width": (_set("width", -1), "width"),
    "float width": (_set("width", 3.0), "width"),
    "orig_dtype": (_set("orig_dtype", "float31"), "orig_dtype"),
    "orig_dtype object": (_set("orig_dtype", "O"), "orig_dtype"),
    "orig_dtype void": (_set("orig_dtype", "V0"), "orig_dtype"),
    "orig_dtype struct": (_set("orig_dtype", "i4,f8"), "orig_dtype"),
    "orig_dtype number": (_set("orig_dtype", 4), "orig_dtype"),
    "norm": (_set("norm", "big"), "norm"),
    "norm huge int": (_set("norm", 10**400), "norm"),
    "version": (_meta("format_version", "5"), "unknown format version"),
    "format": (_meta("format", "gguf"), "not a signcut file"),
    "container": (_meta("container", "list"), "container"),
    "no decompositions": (_meta("decompositions", None), "decompositions"),
    "decompositions not json": (_meta("decompositions", "{'a': 1"), "not valid JSON"),
    "decompositions list": (_meta("decompositions", "[]"), "not a JSON object"),
    "no metadata": (_no_metadata, "format"),
    "missing coef": (_tensor("a/coef", None, None), "missing tensors"),
    "missing signs": (_tensor("b/signs.2", None, None), "missing tensors"),
    "extra tensor": (_extra_tensor, "unexpected tensors"),
    "extra name": (_extra_name, "missing tensors"),
    "coef dtype": (_tensor("a/coef", "dtype", "F64"), "wrong dtype"),
    "signs dtype": (_tensor("a/signs.0", "dtype", "I8"), "wrong dtype"),
    "tensor shape": (_tensor("a/signs.1", "shape", [3]), "wrong shape"),
    "tensor huge shape": (_tensor("a/signs.1", "shape", [10**12]), "wrong shape"),
    "offsets beyond": (_tensor("a/signs.1", "data_offsets", [10**12, 10**12 + 2]), "outside"),
    "offsets bad": (_tensor("a/signs.1", "data_offsets", [1]), "data_offsets"),
    "offsets overlap": (_tensor("a/signs.1", "data_offsets", [0, 2]), "starts at byte"),
    "missing key": (lambda h, d: d["a"].pop("norm"), "norm"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_edited_metadata(small_file, case):
    path, _ = small_file
    change, match = EDITS[case]
    edit(path, change)
    with pytest.raises(FormatError, match=match):
        signcut.load(path)


def test_single_container_with_other_name(small_file):
    path, _ = small_file
    edit(path, _meta("container", "single"))
    with pytest.raises(FormatError, match="single"):
        signcut.load(path)


def test_huge_shape_allocates_nothing(tmp_path):
    x = random_signcut(np.random.default_rng(12), (3, 5), 2)
    path = tmp_path / "x"
    signcut.save(path, x)

    def change(header, decomps):
        decomps["signcut"]["shape"] = [10**9, 10**9]   # (10**18 entries: below the 2**62 cap)
        for a in range(2):
            n = -(-2 * 10**9 // 8)
            header[f"signcut/signs.{a}"]["shape"] = [n]
            header[f"signcut/signs.{a}"]["data_offsets"] = [24 + a * n, 24 + (a + 1) * n]
    edit(path, change)
    assert os.path.getsize(path) < 2000
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="outside"):
            signcut.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_header_length_beyond_file(small_file):
    path, _ = small_file
    raw = path.read_bytes()
    path.write_bytes((2**62).to_bytes(8, "little") + raw[8:])
    with pytest.raises(FormatError, match="header length"):
        signcut.load(path)


@pytest.mark.parametrize("shape,width", [((5, 3), 3), ((1,), 1), ((130, 65), 3)])
def test_tail_bits_set(tmp_path, shape, width):
    x = random_signcut(np.random.default_rng(13), shape, width)
    path = tmp_path / "x"
    signcut.save(path, x)
    header, data = split(path.read_bytes())
    for a, d in enumerate(shape):
        if width * d % 8 == 0:
            continue
        end = header[f"signcut/signs.{a}"]["data_offsets"][1]
        raw = bytearray(path.read_bytes())
        n = int.from_bytes(raw[:8], "little")
        raw[8 + n + end - 1] |= 0x80
        path.write_bytes(bytes(raw))
        with pytest.raises(FormatError, match="bits set beyond"):
            signcut.load(path)
        signcut.save(path, x)


def test_data_flips_load_as_valid(small_file):
    path, obj = small_file
    raw = bytearray(path.read_bytes())
    header, _ = split(bytes(raw))
    start = 8 + int.from_bytes(raw[:8], "little")
    begin = header["a/coef"]["data_offsets"][0]
    raw[start + begin] ^= 0xFF
    path.write_bytes(bytes(raw))
    out = signcut.load(path)
    assert out["a"].coef.view(np.uint32)[0] != obj["a"].coef.view(np.uint32)[0]
    assert_same(obj["b"], out["b"])


# ------------------------------------------------------------------ property tests
@st.composite
def signcuts(draw):
    order = draw(st.integers(1, 8))
    shape = tuple(draw(st.lists(st.integers(1, 140), min_size=order, max_size=order)))
    width = draw(st.integers(0, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    norm = draw(st.one_of(st.none(), st.floats(min_value=0, allow_nan=False,
                                               allow_infinity=False)))
    return random_signcut(np.random.default_rng(seed), shape, width, norm=norm)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=signcuts())
def test_property_round_trip(tmp_path, x):
    signcut.save(tmp_path / "p", x)
    assert_same(x, signcut.load(tmp_path / "p"))


# ------------------------------------------------------------------ fuzzing the reader
# 10,000 generated files in all (4,000 byte edits and truncations, 4,000 edited header values,
# 2,000 garbage files): every failure is a FormatError, a file that loads is a consistent
# decomposition, and loading never allocates more than LOAD_BOUND(file size).
#
# The bound follows from how load() works: it checks every declared length against the bytes
# the file holds before reading, so each array it makes is tied to file bytes. Per cut the file
# holds a float32 coefficient and ceil(d/8)-ish bytes per mode (>= 4 + ndim/8 bytes); memory
# holds the coefficient, a float64 error and a 64-bit word per started 64 entries of each mode
# (<= 12 + 8 ndim + sum(d)/8 bytes): at most 34x with 32 modes of size 1. On top come the raw
# bytes read (1x), the unpacked sign flags of one chunk (<= 8x the stream) and the parsed JSON
# header (~15-20x its text). 40x the file plus 64 KiB covers all of it; nothing may scale with
# a size the header merely declares.
def LOAD_BOUND(size):
    return 64 * 1024 + 40 * size


def _load_measured(path):
    """signcut.load(path) under tracemalloc: (result or the exception, peak bytes)."""
    tracemalloc.start()
    try:
        try:
            out = signcut.load(path)
        except Exception as exc:                         # noqa: BLE001 - returned to the test
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _assert_loads_or_format_error(path, must_fail=False):
    """Load a fuzzed file: FormatError, or a consistent SignCut/dict; allocation bounded."""
    size = os.path.getsize(path)
    out, peak = _load_measured(path)
    assert peak <= LOAD_BOUND(size), f"peak {peak} bytes for a file of {size} bytes"
    if isinstance(out, FormatError):
        return None
    if isinstance(out, Exception):
        raise AssertionError(f"not a FormatError: {type(out).__name__}: {out}") from out
    assert not must_fail, "a file that must fail loaded"
    assert isinstance(out, (dict, SignCut))
    for item in (out.values() if isinstance(out, dict) else [out]):
        assert isinstance(item, SignCut)
        w = item.width
        assert item.coef.shape == (w,) and item.errors.shape == (w,)
        assert len(item.signs) == len(item.tensor_shape) >= 1
        for bits, d in zip(item.signs, item.tensor_shape):
            assert bits.dtype == np.uint64 and bits.shape == (w, words(d))
            if d % 64 and w:
                assert not (bits[:, -1] >> np.uint64(d % 64)).any()
        assert item.nbytes >= 0 and repr(item)
    return out


@pytest.fixture(scope="module")
def corruptible(tmp_path_factory):
    """Valid files (raw bytes) of several kinds: a mapping of orders 1 to 3, a tensorized
    decomposition saved with history, a 32-mode one; plus the objects and a scratch path."""
    rng = np.random.default_rng(14)
    obj = {"m": random_signcut(rng, (5, 3), 3), "t": random_signcut(rng, (9, 2, 7), 2),
           "z": random_signcut(rng, (4,), 0)}
    folder = tmp_path_factory.mktemp("corrupt")
    signcut.save(folder / "base.safetensors", obj)
    A = rng.standard_normal((8, 16)).astype(np.float32)
    signcut.save(folder / "tz.safetensors", signcut.decompose(
        A, width=5, seed=0, shape=(4, 2, 4, 4), axes=(0, 2, 1, 3)), history=True)
    signcut.save(folder / "ones.safetensors", random_signcut(rng, (1,) * 32, 9))
    raws = [(folder / n).read_bytes() for n in ("base", "tz", "ones")
            for n in [n + ".safetensors"]]
    return raws, obj, tmp_path_factory.mktemp("work") / "c.safetensors"


@pytest.mark.fuzz
@settings(max_examples=4000, deadline=None)
@given(data=st.data())
def test_property_corruption(corruptible, data):
    """Byte edits anywhere or in the header, then maybe a truncation."""
    raws, obj, path = corruptible
    original = data.draw(st.sampled_from(raws))
    raw = bytearray(original)
    size = len(raw)
    n = int.from_bytes(raw[:8], "little")
    edits = data.draw(st.lists(st.tuples(
        st.one_of(st.integers(0, len(raw) - 1), st.integers(0, min(8 + n, len(raw)) - 1)),
        st.integers(0, 255)), min_size=1, max_size=4))
    for offset, value in edits:
        raw[offset] = value
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:
        raw = raw[:cut]
    path.write_bytes(bytes(raw))
    out = _assert_loads_or_format_error(path, must_fail=cut is not None and cut != size)
    if out is not None and bytes(raw) == raws[0]:
        for name in obj:
            assert_same(obj[name], out[name])


HUGE = [2**31, 2**32, 2**40, 2**62, 2**63, 2**64 + 1, 10**400, -(2**40)]
HOSTILE = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 8, -1, 63, 64, 65, 1.5, 3.0, -0.0, 1e308, float("inf"),
                     float("nan"), True, False, None, "", "3", "float32", "F32", "U8", "O",
                     "V8", "i4,f8", [], [0], [1], [3, 5], [2**40, 2**40], [1] * 33, [[1]], {},
                     {"a": 1}] + HUGE),
    st.integers(-5, 300), st.text(max_size=8),
    st.lists(st.integers(-2, 2**41), max_size=4))


@pytest.mark.fuzz
@settings(max_examples=4000, deadline=None)
@given(data=st.data())
def test_property_header_edits(corruptible, data):
    """One value of the parsed header replaced (a metadata key, one dimension, the width, a
    tensor's dtype/shape/offsets, a metadata string, a tensor dropped or added, or width and
    tensor lengths grown consistently so only the data is short), maybe truncated after."""
    raws, _, path = corruptible
    raw = data.draw(st.sampled_from(raws))
    header, body = split(raw)
    meta = header["__metadata__"]
    decomps = json.loads(meta["decompositions"])
    name = data.draw(st.sampled_from(sorted(decomps)))
    entry = decomps[name]
    tensors = sorted(k for k in header if k != "__metadata__")
    value = data.draw(HOSTILE)
    where = data.draw(st.sampled_from(["key", "dim", "huge", "tensor", "tensor[i]", "meta",
                                       "tensors", "consistent"]))
    must_fail = False
    if where == "key":
        key = data.draw(st.sampled_from(["shape", "width", "orig_dtype", "norm", "rel_error",
                                         "history", "tensorize", "extra"]))
        entry[key] = value
    elif where == "dim":
        entry["shape"][data.draw(st.integers(0, len(entry["shape"]) - 1))] = value
    elif where == "huge":
        if data.draw(st.booleans()):
            entry["width"] = data.draw(st.sampled_from(HUGE))
        else:
            entry["shape"] = [data.draw(st.sampled_from(HUGE)) for _ in entry["shape"]]
    elif where == "tensor":
        key = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[data.draw(st.sampled_from(tensors))][key] = value
    elif where == "tensor[i]":
        t = data.draw(st.sampled_from(tensors))
        key = data.draw(st.sampled_from(["shape", "data_offsets"]))
        header[t][key][data.draw(st.integers(0, len(header[t][key]) - 1))] = value
    elif where == "meta":
        key = data.draw(st.sampled_from(["format", "format_version", "container",
                                         "decompositions", "signs"]))
        meta[key] = data.draw(st.one_of(st.sampled_from(
            ["", "1", "2", "single", "mapping", "signcut", "{}", "[]"]), st.text(max_size=12)))
    elif where == "tensors":
        if data.draw(st.booleans()):
            del header[data.draw(st.sampled_from(tensors))]
        else:
            header[f"{name}/signs.{data.draw(st.integers(0, 40))}"] = {
                "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}
    else:                              # lengths consistent with a larger width, data short
        entry["width"] += data.draw(st.integers(1, 1000))
        offset, factor = 0, data.draw(st.integers(1, 300))
        for t in tensors:
            n = (header[t]["data_offsets"][1] - header[t]["data_offsets"][0]) * factor
            header[t]["shape"] = [n // {"U8": 1, "F32": 4, "F64": 8}[header[t]["dtype"]]]
            header[t]["data_offsets"] = [offset, offset + n]
            offset += n
        must_fail = True
    if where != "meta" or key != "decompositions":
        meta["decompositions"] = json.dumps(decomps)
    out = join(header, body)
    if data.draw(st.integers(0, 4)) == 0:
        out, must_fail = out[:data.draw(st.integers(0, len(out) - 1))], True
    path.write_bytes(out)
    _assert_loads_or_format_error(path, must_fail=must_fail)


@pytest.mark.fuzz
@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300), n=st.integers(0, 400))
def test_property_garbage(tmp_path, blob, n):
    path = tmp_path / "g"
    path.write_bytes(n.to_bytes(8, "little") + blob)
    out, peak = _load_measured(path)
    assert isinstance(out, FormatError), repr(out)
    assert peak <= LOAD_BOUND(8 + len(blob))


def test_load_bound_holds_for_the_worst_ratio(tmp_path):
    """A valid file of 32 modes of size 1 (the most memory per file byte: one 64-bit word per
    mode and cut against one bit) loads within LOAD_BOUND, and needs more than 10x its size,
    so the bound is not loose by orders of magnitude."""
    x = random_signcut(np.random.default_rng(3), (1,) * 32, 20_000)
    path = tmp_path / "ones.safetensors"
    signcut.save(path, x)
    out, peak = _load_measured(path)
    assert_same(x, out)
    size = os.path.getsize(path)
    assert 10 * size < peak <= LOAD_BOUND(size), (peak, size)


def test_history_round_trips_exactly(tmp_path):
    x = random_signcut(np.random.default_rng(21), (5, 70, 3), 33)
    path = tmp_path / "h.safetensors"
    signcut.save(path, x, history=True)
    assert_same(x, signcut.load(path), history=True)
    tensors = safetensors.numpy.load_file(str(path))
    np.testing.assert_array_equal(tensors["signcut/errors"].view(np.uint64), x.errors.view(np.uint64))
    plain = tmp_path / "p.safetensors"
    signcut.save(plain, x)
    assert os.path.getsize(path) - os.path.getsize(plain) >= 8 * 33


def test_extra_metadata(tmp_path):
    x = random_signcut(np.random.default_rng(5), (3, 4), 2)
    path = tmp_path / "m.safetensors"
    signcut.save(path, {"a": x}, metadata={"app.info": '{"k": 1}'})
    assert signcut.read_metadata(path) == {"app.info": '{"k": 1}'}
    assert_same(x, signcut.load(path)["a"])
    with pytest.raises(ValueError, match="reserved"):
        signcut.save(path, x, metadata={"format": "other"})
    with pytest.raises(TypeError, match="str"):
        signcut.save(path, x, metadata={"k": 3})
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(signcut.FormatError):
        signcut.read_metadata(bad)


def test_too_many_entries_is_a_format_error(tmp_path):
    x = random_signcut(np.random.default_rng(13), (3, 5), 2)
    path = tmp_path / "x"
    signcut.save(path, x)
    edit(path, lambda header, decomps: decomps["signcut"].update(shape=[2**40, 2**40]))
    with pytest.raises(FormatError, match="too many entries"):
        signcut.load(path)


def test_atheris_target_runs(tmp_path):
    """fuzz/fuzz_load.py (where atheris installs): seeds, then 2,000 libFuzzer runs with the
    allocation bound checked, no crash."""
    pytest.importorskip("atheris")
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz",
                          "fuzz_load.py")
    corpus = tmp_path / "corpus"
    env = {**os.environ, "SIGNCUT_FUZZ_TRACE": "1"}
    subprocess.run([sys.executable, script, "--seeds", str(corpus)], check=True, env=env,
                   capture_output=True)
    done = subprocess.run([sys.executable, script, str(corpus), "-runs=2000", "-max_len=2048",
                           "-seed=1"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 2000 runs" in done.stderr
