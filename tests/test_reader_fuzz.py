"""The file reader under mutated and hostile files: only FormatError (or a clean load), and
little memory for a hostile header; the cases it once failed on."""
import json
import random
import tracemalloc

import numpy as np
import pytest

import signcut
from signcut import FormatError, SignCut
from signcut._result import words
from conftest import gaussian


def _split(raw):
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header, data):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    """Valid files of orders 1 to 5, widths 0 to 70, single and mapping, history or not,
    tensorized or not (raw bytes)."""
    rng = np.random.default_rng(17)
    d = tmp_path_factory.mktemp("seeds")
    objs = [
        signcut.decompose(gaussian((7, 9), seed=1), width=5, seed=0),
        {"m": signcut.decompose(gaussian((5, 3), seed=2), width=3, seed=0),
         "t": signcut.decompose(gaussian((9, 2, 7), seed=3), width=2, seed=0),
         "z": signcut.decompose(np.zeros(4), width=1)},
        signcut.decompose(gaussian((2, 3, 4, 5), seed=4), width=3, seed=0),
        signcut.decompose(gaussian((1,), seed=5), width=1, seed=0),
        signcut.decompose(gaussian((8, 16), seed=6), width=6, seed=0, shape=(4, 2, 4, 4),
                          axes=(0, 2, 1, 3)),
        SignCut((65, 3), [rng.integers(0, 2, (70, 2), dtype=np.uint64),
                          rng.integers(0, 8, (70, 1), dtype=np.uint64)], rng.random(70)),
        signcut.decompose(gaussian((2, 2, 2, 2, 3), seed=7), width=4, seed=0),
    ]
    raws = []
    for i, obj in enumerate(objs):
        path = d / f"s{i}.safetensors"
        signcut.save(path, obj, history=bool(i % 2))
        raws.append(path.read_bytes())
        signcut.load(path)                               # every seed file is valid
    return raws


HUGE = [2**40, 2**63, 2**64 + 1, 10**400, -(2**40)]
HOSTILE = [0, 1, 2, 3, 7, 8, -1, 63, 64, 65, 255, 2**31, 2**32, 1.5, 3.0, -0.0, 1e308,
           float("inf"), float("nan"), True, False, None, "", "3", "float32", "F32", "U8", "O",
           "V8", "i4,f8", [], [0], [1], [3, 5], [2**40, 2**40], [1] * 33, [[1]], {}, {"a": 1}] + HUGE


def _mutate_header(rnd, raw):
    """Parse the header, replace one value deep inside (metadata entries, tensor infos,
    shapes, widths, dtypes, offsets) by a hostile one, write it back."""
    header, data = _split(raw)
    meta = header["__metadata__"]
    decomps = json.loads(meta["decompositions"])
    name = rnd.choice(list(decomps))
    entry = decomps[name]
    tensors = [k for k in header if k != "__metadata__"]
    value = rnd.choice(HOSTILE)
    where = rnd.randrange(8)
    path = ""
    if where == 0:                                            # a key of the entry
        key = rnd.choice(["shape", "width", "orig_dtype", "norm", "rel_error", "history",
                          "tensorize", "extra"])
        path = key
        if key == "tensorize" and rnd.random() < 0.7:
            value = {"shape": rnd.choice([[value], [2, value], value, list(entry["shape"])]),
                     "axes": rnd.choice([[value, 0], list(range(len(entry["shape"]))), value])}
        entry[key] = value
    elif where == 1:                                          # one dimension of the shape
        path = "shape[i]"
        entry["shape"][rnd.randrange(len(entry["shape"]))] = value
    elif where == 2:                                          # width / shape made huge
        path = "huge"
        if rnd.random() < 0.5:
            entry["width"] = rnd.choice(HUGE)
        else:
            entry["shape"] = [rnd.choice(HUGE) for _ in entry["shape"]]
    elif where == 3 and tensors:                              # a key of a tensor info
        t = rnd.choice(tensors)
        key = rnd.choice(["dtype", "shape", "data_offsets"])
        path = f"tensor.{key}"
        header[t][key] = value
    elif where == 4 and tensors:                              # one offset / length
        t = rnd.choice(tensors)
        key = rnd.choice(["shape", "data_offsets"])
        path = f"tensor.{key}[i]"
        header[t][key][rnd.randrange(len(header[t][key]))] = rnd.choice(HOSTILE + HUGE)
    elif where == 5:                                          # a metadata string
        key = rnd.choice(["format", "format_version", "container", "decompositions", "signs"])
        path = f"meta.{key}"
        meta[key] = rnd.choice(["", "1", "2", "single", "mapping", "signcut", "{}", "[]",
                                json.dumps(decomps)[:rnd.randrange(1, 40)], str(value)])
    elif where == 6 and tensors:                              # drop or add a tensor
        path = "tensors"
        if rnd.random() < 0.5:
            del header[rnd.choice(tensors)]
        else:
            header[f"{name}/signs.{rnd.randrange(40)}"] = {"dtype": "U8", "shape": [1],
                                                          "data_offsets": [0, 1]}
    else:                                                     # width and tensors consistent, data short
        path = "consistent"
        entry["width"] = entry["width"] + rnd.randrange(1, 1000)
        offset = 0
        for t in sorted(tensors):
            n = header[t]["data_offsets"][1] - header[t]["data_offsets"][0]
            n = n * rnd.randrange(1, 300)
            header[t]["shape"] = [n // {"U8": 1, "F32": 4, "F64": 8}[header[t]["dtype"]]]
            header[t]["data_offsets"] = [offset, offset + n]
            offset += n
    if where != 5 or meta.get("decompositions") == json.dumps(decomps):
        meta["decompositions"] = json.dumps(decomps)
    return _join(header, data), path, value


def _check_loaded(out):
    """A successful load is a consistent SignCut (or a dict of them)."""
    assert isinstance(out, (SignCut, dict))
    for item in (out.values() if isinstance(out, dict) else [out]):
        assert isinstance(item, SignCut)
        w = item.width
        assert item.coef.shape == (w,) and item.coef.dtype == np.float32
        assert item.errors.shape == (w,) and item.errors.dtype == np.float64
        assert len(item.signs) == len(item.tensor_shape) >= 1
        for bits, d in zip(item.signs, item.tensor_shape):
            assert bits.dtype == np.uint64 and bits.shape == (w, words(d))
            if d % 64 and w:
                assert not (bits[:, -1] >> np.uint64(d % 64)).any()
        assert int(np.prod(item.shape, dtype=object)) == int(np.prod(item.tensor_shape, dtype=object))
        assert item.nbytes >= 0 and repr(item)


FUZZ_CASES = 10_000


@pytest.mark.fuzz
def test_fuzz_loader(seed_files, tmp_path):
    """10,000 corrupted files (random truncations, byte flips anywhere or in the header,
    header length fields, appended garbage, edited header JSON values: shapes, widths, dtypes,
    offsets, huge dims up to 10**400): every failure is signcut.FormatError, never another
    exception; every truncation and every file with appended bytes fails; a file that loads is a
    consistent SignCut whose sign arrays match its shape."""
    rnd = random.Random(20261126)
    path = tmp_path / "fuzz.safetensors"
    counts = {"cases": 0, "loaded": 0, "format_error": 0}
    unexpected = []
    while counts["cases"] < FUZZ_CASES:
        raw = rnd.choice(seed_files)
        kind = rnd.randrange(7)
        must_fail, desc = False, ""
        if kind == 0:                                            # truncation
            cut = rnd.randrange(len(raw))
            data, must_fail, desc = raw[:cut], True, f"truncate {cut}"
        elif kind in (1, 2):                                     # flipped bytes
            buf = bytearray(raw)
            n = int.from_bytes(raw[:8], "little")
            limit = len(buf) if kind == 1 else 8 + n
            for _ in range(rnd.randint(1, 4)):
                buf[rnd.randrange(limit)] ^= rnd.randint(1, 255)
            data, desc = bytes(buf), "flip"
        elif kind == 3:                                          # header length field
            value = rnd.choice([0, 1, 2, 7, 2**40, 2**64 - 1, rnd.randrange(len(raw) + 16)])
            data, desc = value.to_bytes(8, "little") + raw[8:], f"length {value}"
        elif kind == 4:                                          # appended garbage
            data = raw + bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
            must_fail, desc = True, "append"
        else:                                                    # edited header JSON
            data, where, value = _mutate_header(rnd, raw)
            desc = f"edit {where}={value!r:.60}"
            if rnd.random() < 0.2:
                data = data[:rnd.randrange(len(data))]
                must_fail = True
        counts["cases"] += 1
        path.write_bytes(data)
        try:
            out = signcut.load(path)
        except FormatError:
            counts["format_error"] += 1
            continue
        except Exception as exc:                                 # noqa: BLE001 - the finding
            unexpected.append(f"{desc}: {type(exc).__name__}: {exc}"[:300])
            continue
        counts["loaded"] += 1
        if must_fail:
            unexpected.append(f"{desc}: loaded")
            continue
        try:
            _check_loaded(out)
        except Exception as exc:                                 # noqa: BLE001 - the finding
            unexpected.append(f"{desc}: inconsistent result {type(exc).__name__}: {exc}"[:300])
    print(f"\nfuzz: {counts}")
    assert not unexpected, f"{len(unexpected)} bad outcomes, first: {unexpected[:5]}"
    assert counts["cases"] == FUZZ_CASES >= 10_000
    assert counts["format_error"] > FUZZ_CASES // 2 and counts["loaded"] > 100   # both paths ran


def _hostile(raw, change):
    header, data = _split(raw)
    decomps = json.loads(header["__metadata__"]["decompositions"])
    change(header, decomps)
    header["__metadata__"]["decompositions"] = json.dumps(decomps)
    return _join(header, data)


def _huge_everything(header, decomps):
    """Shape 2**40 per mode, tensor lengths and offsets made consistent with it."""
    entry = decomps["signcut"]
    entry["shape"] = [2**40] * len(entry["shape"])
    entry["width"] = 2**20
    offset = 0
    for t in sorted(k for k in header if k != "__metadata__"):
        code = header[t]["dtype"]
        n = 2**20 if code != "U8" else 2**57
        size = n * {"U8": 1, "F32": 4, "F64": 8}[code]
        header[t]["shape"] = [n]
        header[t]["data_offsets"] = [offset, offset + size]
        offset += size


def _many_names(header, decomps):
    header["__metadata__"]["container"] = "mapping"
    for i in range(300):
        decomps[f"n{i}"] = {"shape": [2**40] * 32, "width": 2**40, "orig_dtype": "float64",
                            "norm": None}


# Allowed peak allocation per byte of file: 10x, except for a header made of 300 entries,
# where parsing the JSON itself (Python objects for every key, list and integer) takes ~14x.
HOSTILE_HEADERS = {
    "huge shape, consistent tensors": _huge_everything,
    "32 dims of 2**40": lambda h, d: d["signcut"].update(shape=[2**40] * 32),
    "width 2**40": lambda h, d: d["signcut"].update(width=2**40),
    "width 10**400": lambda h, d: d["signcut"].update(width=10**400),
    "tensor shape 2**62": lambda h, d: h["signcut/coef"].update(shape=[2**62]),
    "offsets 2**62": lambda h, d: h["signcut/coef"].update(data_offsets=[0, 2**62]),
    "300 huge names": _many_names,
}
FACTOR = {"300 huge names": 20}


def _peak_of_refused_load(path):
    """The peak Python allocation of ``load(path)``, which must raise FormatError."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            signcut.load(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(HOSTILE_HEADERS))
def test_hostile_header_allocates_little(seed_files, tmp_path, case):
    """Tiny files whose headers declare huge shapes/widths/offsets fail with FormatError, and
    the peak Python allocation while loading stays under 64 KB + 10x the file size (20x for a
    header of 300 entries, which is all JSON to parse): nothing scales with the declared sizes."""
    data = _hostile(seed_files[0], HOSTILE_HEADERS[case])
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(data)
    size = len(data)
    assert size < 200_000
    peak = _peak_of_refused_load(path)
    assert peak < 64 * 1024 + FACTOR.get(case, 10) * size, (peak, size)


def test_hostile_header_length_allocates_little(tmp_path):
    """A 100-byte file whose header length field says 2**40 or 99,999,999 bytes: FormatError
    without reading (allocating) that much."""
    for n in (2**40, 99_999_999, 92):
        path = tmp_path / "h"
        path.write_bytes(n.to_bytes(8, "little") + b"{" + b" " * 91)
        peak = _peak_of_refused_load(path)
        assert peak < 64 * 1024 + 10 * 100, (n, peak)


def test_huge_integer_rel_error_is_a_format_error(seed_files, tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_hostile(seed_files[0], lambda h, d: d["signcut"].update(rel_error=10**400)))
    with pytest.raises(FormatError):
        signcut.load(path)


@pytest.mark.parametrize("record", [{"shape": [float("inf")], "axes": [0, 1]},
                                    {"shape": [63], "axes": [float("inf"), 0]}])
def test_infinite_tensorize_record_is_a_format_error(seed_files, tmp_path, record):
    path = tmp_path / "x"
    path.write_bytes(_hostile(seed_files[0], lambda h, d: d["signcut"].update(tensorize=record)))
    with pytest.raises(FormatError):
        signcut.load(path)


def _width0(shape):
    """A valid file of a width-0 decomposition of a 4-vector, edited to declare ``shape``."""
    def change(header, decomps):
        decomps["signcut"]["shape"] = shape
        del header["signcut/signs.0"]
        for a in range(len(shape)):
            header[f"signcut/signs.{a}"] = {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}
    return change


@pytest.fixture
def width0_file(tmp_path):
    path = tmp_path / "w0.safetensors"
    signcut.save(path, signcut.decompose(np.zeros(4), width=1))
    return path


def test_width_zero_file_with_a_huge_dimension(width0_file):
    raw = width0_file.read_bytes()
    width0_file.write_bytes(_hostile(raw, _width0([10**400])))
    try:
        signcut.load(width0_file)
    except FormatError:
        return
    raise AssertionError("loaded a decomposition with a 10**400 dimension")


@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**64]])
def test_width_zero_file_whose_size_overflows_int64(width0_file, shape):
    raw = width0_file.read_bytes()
    width0_file.write_bytes(_hostile(raw, _width0(shape)))
    try:
        r = signcut.load(width0_file)
    except FormatError:
        return
    assert "width=0" in repr(r)                      # ZeroDivisionError / OverflowError today
    assert r.size == int(np.prod(shape, dtype=object))
