"""signcut.weights: compressing safetensors checkpoints, expanding them, the CLI commands."""
import concurrent.futures as cf
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as stnp
from safetensors import safe_open

import signcut
from signcut import weights

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(signcut.__file__)))


# ------------------------------------------------------------------ checkpoints
def bf16_bits(x):
    """float32 -> bfloat16 bits by truncation (independent of the code under test)."""
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype("<u2")


def write_raw(path, tensors):
    """A safetensors file written by hand: ``tensors`` maps name -> (dtype code, shape, bytes)."""
    header, offset, blobs = {}, 0, []
    for name, (code, shape, data) in tensors.items():
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def matrices(seed=0):
    rng = np.random.default_rng(seed)
    low = (rng.standard_normal((96, 6)) @ rng.standard_normal((6, 80))
           + 0.05 * rng.standard_normal((96, 80))).astype(np.float32)
    return {
        "layers.0.attn.weight": rng.standard_normal((64, 96), dtype=np.float32),
        "layers.0.mlp.weight": low,
        "layers.1.mlp.weight": rng.standard_t(2.5, (80, 64)).astype(np.float32),
        "layers.1.half.weight": rng.standard_normal((48, 64)).astype(np.float16),
        "layers.0.norm.weight": rng.standard_normal(96).astype(np.float32),
        "conv.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
        "position_ids": np.arange(32, dtype=np.int64),
    }


BF16 = np.random.default_rng(7).standard_normal((40, 72)).astype(np.float32)


@pytest.fixture
def ckpt(tmp_path):
    """One file: f32, f16, bf16 (raw), 4-D, 1-D and integer tensors."""
    path = tmp_path / "model.safetensors"
    stnp.save_file(matrices(), str(path))
    tensors, _, start = weights.read_header(path)
    raw = {}
    with open(path, "rb") as f:
        blob = f.read()
    for name, info in tensors.items():
        b, e = info["data_offsets"]
        raw[name] = (info["dtype"], info["shape"], blob[start + b:start + e])
    raw["emb.bf16"] = ("BF16", BF16.shape, bf16_bits(BF16).tobytes())
    write_raw(path, raw)
    return path


@pytest.fixture
def sharded(tmp_path, ckpt):
    """The same tensors in two shards with an index."""
    folder = tmp_path / "sharded"
    folder.mkdir()
    tensors, _, start = weights.read_header(ckpt)
    blob = ckpt.read_bytes()
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:4],
              "model-00002-of-00002.safetensors": names[4:]}
    weight_map = {}
    for shard, part in shards.items():
        raw = {}
        for n in part:
            b, e = tensors[n]["data_offsets"]
            raw[n] = (tensors[n]["dtype"], tensors[n]["shape"], blob[start + b:start + e])
            weight_map[n] = shard
        write_raw(folder / shard, raw)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def source_tensor(name):
    if name == "emb.bf16":
        return weights.bf16_to_f32(bf16_bits(BF16)).astype(np.float64)
    return matrices()[name].astype(np.float64)


def decompositions(path):
    return signcut.load(path)


def assert_same(a, b):
    da, db = decompositions(a), decompositions(b)
    assert list(da) == list(db)
    for k in da:
        assert da[k].shape == db[k].shape
        np.testing.assert_array_equal(da[k].coef, db[k].coef)
        for sa, sb in zip(da[k].signs, db[k].signs):
            np.testing.assert_array_equal(sa, sb)
    strip = lambda path: [dict(t, seconds=None) for t in weights.info(path)["tensors"]]
    assert strip(a) == strip(b)


COMPRESSED = {"layers.0.attn.weight", "layers.0.mlp.weight", "layers.1.mlp.weight",
              "layers.1.half.weight", "conv.weight", "emb.bf16"}


# ------------------------------------------------------------------ compress / expand
def test_compress_and_expand_round_trip(tmp_path, ckpt):
    out = tmp_path / "model.sct"
    result = weights.compress(ckpt, out, bits_per_entry=8, progress=False)
    assert out.exists() and not (tmp_path / "model.sct.parts").exists()
    kinds = {t["name"]: t["kind"] for t in result["tensors"]}
    assert {n for n, k in kinds.items() if k == "signcut"} == COMPRESSED
    assert kinds["layers.0.norm.weight"] == kinds["position_ids"] == "passthrough"
    side = tmp_path / ("model.sct" + weights.PASSTHROUGH_SUFFIX)
    assert result["passthrough"] == str(side) and side.exists()
    for t in result["tensors"]:
        if t["kind"] == "signcut":
            assert t["bits_per_entry"] <= 8.0 and t["width"] >= 1

    # the signcut file is a plain signcut mapping
    loaded = signcut.load(out)
    assert set(loaded) == COMPRESSED

    orig_header, _, _ = weights.read_header(ckpt)
    for dtype, code in (("bf16", "BF16"), ("f16", "F16"), ("f32", "F32"), (None, None)):
        restored = tmp_path / f"restored-{dtype}.safetensors"
        weights.expand(out, restored, dtype=dtype)
        header, _, _ = weights.read_header(restored)
        assert list(header) == list(orig_header)
        for name, info in header.items():
            assert info["shape"] == orig_header[name]["shape"]
            if name in COMPRESSED:
                assert info["dtype"] == (code or orig_header[name]["dtype"])
                approx = np.asarray(loaded[name].expand(), np.float64)
                got = weights.read_tensor(restored, name).astype(np.float64)
                tol = {"BF16": 2**-7, "F16": 2**-10, "F32": 1e-7, "F64": 0}[info["dtype"]]
                assert np.all(np.abs(got - approx) <= tol * np.abs(approx) + 1e-30)
            else:                               # copied through byte for byte
                assert info["dtype"] == orig_header[name]["dtype"]
                np.testing.assert_array_equal(weights.read_tensor(restored, name),
                                              weights.read_tensor(ckpt, name))
        if dtype != "bf16":                     # the safetensors library reads it too
            with safe_open(str(restored), framework="numpy") as f:
                assert list(f.keys()) == sorted(orig_header)
                assert f.get_tensor("conv.weight").shape == (8, 4, 3, 3)


def test_reported_errors_match_recomputed(tmp_path, ckpt):
    out = tmp_path / "model.sct"
    result = weights.compress(ckpt, out, bits_per_entry=6, progress=False)
    loaded = signcut.load(out)
    with open(result["report"], newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {t["name"] for t in result["tensors"]}
    for t in result["tensors"]:
        if t["kind"] != "signcut":
            assert rows[t["name"]]["kind"] == "passthrough" and rows[t["name"]]["note"]
            continue
        x = source_tensor(t["name"])
        approx = np.asarray(loaded[t["key"]].expand(), np.float64).reshape(x.shape)
        recomputed = np.linalg.norm(x - approx) / np.linalg.norm(x)
        assert t["rel_error"] == pytest.approx(recomputed, rel=1e-3)
        assert float(rows[t["name"]]["rel_error"]) == t["rel_error"]
        assert rows[t["name"]]["shape"] == "x".join(map(str, t["shape"]))
        assert int(rows[t["name"]]["width"]) == t["width"]
    meta = weights.info(out)
    assert [m["rel_error"] for m in meta["tensors"]] == [t["rel_error"] for t in result["tensors"]]
    s = result["summary"]
    assert s["compressed"] == len(COMPRESSED) and s["passthrough"] == 2
    assert s["bits_per_entry"] <= 6.0
    # low rank plus noise compresses far better than pure noise
    errs = {t["name"]: t["rel_error"] for t in result["tensors"] if t["kind"] == "signcut"}
    assert errs["layers.0.mlp.weight"] < 0.5 * errs["layers.0.attn.weight"]


def test_high_errors_flagged(tmp_path):
    rng = np.random.default_rng(3)
    tensors = {f"low{i}": (rng.standard_normal((64, 2)) @ rng.standard_normal((2, 64))
                           + 1e-3 * rng.standard_normal((64, 64))).astype(np.float32)
               for i in range(3)}
    tensors["noise"] = rng.standard_normal((64, 64), dtype=np.float32)
    src = tmp_path / "m.safetensors"
    stnp.save_file(tensors, str(src))
    result = weights.compress(src, tmp_path / "m.sct", bits_per_entry=4, progress=False)
    flagged = [t["name"] for t in result["tensors"] if t["high_error"]]
    assert flagged == ["noise"] and result["summary"]["high_error"] == ["noise"]
    with open(result["report"], newline="") as f:
        assert [r["name"] for r in csv.DictReader(f) if r["high_error"] == "yes"] == ["noise"]


def test_filters(tmp_path, ckpt):
    out = tmp_path / "m.sct"
    result = weights.compress(ckpt, out, include=r"\.mlp\.|bf16", exclude=r"layers\.1",
                              min_size=100, progress=False)
    done = {t["name"] for t in result["tensors"] if t["kind"] == "signcut"}
    assert done == {"layers.0.mlp.weight", "emb.bf16"}
    reasons = {t["name"]: t["reason"] for t in result["tensors"]}
    assert reasons["layers.1.mlp.weight"] == "excluded"
    assert reasons["layers.0.attn.weight"] == "not included"
    result = weights.compress(ckpt, out, min_size=300, progress=False)
    assert {t["name"]: t["reason"] for t in result["tensors"]}["conv.weight"].startswith("fewer")
    restored = tmp_path / "r.safetensors"
    weights.expand(out, restored)
    assert list(weights.read_header(restored)[0]) == list(weights.read_header(ckpt)[0])


def test_sharded_equals_single_file(tmp_path, ckpt, sharded):
    weights.compress(ckpt, tmp_path / "a.sct", progress=False)
    result = weights.compress(sharded, tmp_path / "b.sct", progress=False)
    assert {t["name"] for t in result["tensors"] if t["kind"] == "signcut"} == COMPRESSED
    assert_same(tmp_path / "a.sct", tmp_path / "b.sct")


def test_seed_changes_bits_deterministically(tmp_path, ckpt):
    weights.compress(ckpt, tmp_path / "a.sct", seed=1, progress=False)
    weights.compress(ckpt, tmp_path / "b.sct", seed=1, progress=False)
    weights.compress(ckpt, tmp_path / "c.sct", seed=2, progress=False)
    assert_same(tmp_path / "a.sct", tmp_path / "b.sct")
    a, c = decompositions(tmp_path / "a.sct"), decompositions(tmp_path / "c.sct")
    assert not np.array_equal(a["conv.weight"].coef, c["conv.weight"].coef)
    assert weights.tensor_seed(1, "x") != weights.tensor_seed(1, "y") != weights.tensor_seed(2, "y")


def test_parallel_equals_single_process(tmp_path, ckpt):
    weights.compress(ckpt, tmp_path / "one.sct", progress=False)
    weights.compress(ckpt, tmp_path / "two.sct", jobs=2, progress=False)
    with cf.ThreadPoolExecutor(3) as pool:
        weights.compress(ckpt, tmp_path / "threads.sct", executor=pool, progress=False)
    assert_same(tmp_path / "one.sct", tmp_path / "two.sct")
    assert_same(tmp_path / "one.sct", tmp_path / "threads.sct")
    for name in ("one", "two", "threads"):
        weights.expand(tmp_path / f"{name}.sct", tmp_path / f"{name}.safetensors")
    one = (tmp_path / "one.safetensors").read_bytes()
    assert (tmp_path / "two.safetensors").read_bytes() == one
    assert (tmp_path / "threads.safetensors").read_bytes() == one


def test_resume_skips_finished_parts(tmp_path, ckpt, monkeypatch):
    out = tmp_path / "m.sct"
    parts = tmp_path / ("m.sct" + weights.PARTS_SUFFIX)
    real = signcut.decompose
    calls = []

    def interrupted(x, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(x.shape)
        return real(x, **kw)

    def counting(x, **kw):
        calls.append(x.shape)
        return real(x, **kw)

    monkeypatch.setattr(signcut, "decompose", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.compress(ckpt, out, progress=False)
    assert not out.exists() and len(list(parts.glob("*.sct"))) == 3
    assert (parts / weights.PARTS_MARKER).is_file()
    first = sorted(parts.glob("*.sct"))[0]
    first.write_bytes(first.read_bytes()[:-5])            # a corrupt part is redone
    calls.clear()
    monkeypatch.setattr(signcut, "decompose", counting)
    result = weights.compress(ckpt, out, progress=False)
    assert len(calls) == len(COMPRESSED) - 2
    assert sum(bool(t.get("resumed")) for t in result["tensors"]) == 2
    assert not parts.exists()
    monkeypatch.setattr(signcut, "decompose", real)
    weights.compress(ckpt, tmp_path / "fresh.sct", progress=False)
    assert_same(out, tmp_path / "fresh.sct")

    # parts made with another budget (or seed) are not reused
    calls.clear()
    monkeypatch.setattr(signcut, "decompose", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.compress(ckpt, out, bits_per_entry=3, progress=False)
    calls.clear()
    monkeypatch.setattr(signcut, "decompose", counting)
    weights.compress(ckpt, out, bits_per_entry=5, progress=False)
    assert len(calls) == len(COMPRESSED) and not parts.exists()


def test_bf16_conversions():
    x = np.array([0.0, -0.0, 1.0, -2.5, 3.1415927, 1e-40, np.inf, -np.inf, np.nan,
                  3.3895314e38], np.float32)
    bits = weights.f32_to_bf16(x)
    back = weights.bf16_to_f32(bits)
    finite = np.isfinite(x)
    assert np.all(np.abs(back[finite] - x[finite]) <= 2**-8 * np.abs(x[finite]) + 2.0**-133)
    assert np.isnan(back[8]) and back[6] == np.inf and back[7] == -np.inf
    assert weights.f32_to_bf16(np.float32(1 + 2**-8)) == 0x3F80       # ties to even
    assert weights.f32_to_bf16(np.float32(1 + 3 * 2**-8)) == 0x3F82


# ------------------------------------------------------------------ bad input
def test_bad_inputs(tmp_path, ckpt, sharded):
    out = tmp_path / "out.sct"
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a checkpoint at all")
    with pytest.raises(weights.WeightsError, match="not a safetensors file"):
        weights.compress(text, out, progress=False)
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(weights.WeightsError, match="truncated"):
        weights.compress(truncated, out, progress=False)
    complex_ = tmp_path / "complex.safetensors"
    write_raw(complex_, {"z": ("C64", [4, 4], np.ones((4, 4), np.complex64).tobytes())})
    with pytest.raises(weights.WeightsError, match="C64"):
        weights.compress(complex_, out, progress=False)
    dup = sharded / "model-00002-of-00002.safetensors"
    raw = {"layers.0.attn.weight": ("F32", [2, 2], bytes(16))}
    write_raw(dup, dict(raw, **{n: (i["dtype"], i["shape"], bytes(i["data_offsets"][1]
                                                                 - i["data_offsets"][0]))
                                for n, i in weights.read_header(dup)[0].items()}))
    with pytest.raises(weights.WeightsError, match="duplicate"):
        weights.compress(sharded, out, progress=False)
    same_file = tmp_path / "dup.safetensors"
    text_ = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' \
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    same_file.write_bytes(len(text_).to_bytes(8, "little") + text_ + bytes(4))
    with pytest.raises(weights.WeightsError, match="duplicate"):
        weights.compress(same_file, out, progress=False)
    with pytest.raises(weights.WeightsError, match="does not exist"):
        weights.compress(ckpt, tmp_path / "nowhere" / "out.sct", progress=False)
    with pytest.raises(weights.WeightsError, match="no such"):
        weights.compress(tmp_path / "missing.safetensors", out, progress=False)
    with pytest.raises(weights.WeightsError, match="not compressed model weights"):
        signcut.save(tmp_path / "plain.sct", signcut.decompose(BF16, width=2, seed=0))
        weights.expand(tmp_path / "plain.sct", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="dtype"):
        weights.expand(out, tmp_path / "x.safetensors", dtype="int8")
    assert not out.exists() and not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------ CLI
def run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-P", "-m", "signcut", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli(tmp_path, ckpt):
    out = tmp_path / "m.sct"
    r = run("weights", ckpt, "-o", out, "--bits-per-entry", "6", "--exclude", "conv", "--jobs",
            "2", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "layers.0.mlp.weight: 96x80" in r.stdout and "5 tensors compressed" in r.stdout
    weights.compress(ckpt, tmp_path / "api.sct", bits_per_entry=6, exclude="conv", seed=3,
                     progress=False)
    assert_same(out, tmp_path / "api.sct")
    r = run("info", out)
    assert r.returncode == 0, r.stderr
    assert "| emb.bf16 | BF16 | 40x72 | signcut |" in r.stdout
    assert "| conv.weight | F32 | 8x4x3x3 | copied |" in r.stdout
    r = run("expand", out, "-o", tmp_path / "r.safetensors", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    header = weights.read_header(tmp_path / "r.safetensors")[0]
    assert header["emb.bf16"]["dtype"] == "BF16" and header["conv.weight"]["dtype"] == "F32"
    r = run("weights", ckpt, "-o", tmp_path / "q.sct", "-q")
    assert r.returncode == 0 and "layers.0" not in r.stdout and "compressed" in r.stdout


@pytest.mark.parametrize("case", ["text", "truncated", "complex", "folder", "unwritable",
                                  "expand-plain", "info-text"])
def test_cli_bad_input(tmp_path, ckpt, case):
    target = tmp_path / "out.sct"
    bad = tmp_path / "bad.safetensors"
    if case == "text":
        bad.write_text("not a checkpoint")
        args = ("weights", bad, "-o", target)
    elif case == "truncated":
        bad.write_bytes(ckpt.read_bytes()[:200])
        args = ("weights", bad, "-o", target)
    elif case == "complex":
        write_raw(bad, {"z": ("C64", [4, 4], np.ones((4, 4), np.complex64).tobytes())})
        args = ("weights", bad, "-o", target)
    elif case == "folder":
        (tmp_path / "empty").mkdir()
        args = ("weights", tmp_path / "empty", "-o", target)
    elif case == "unwritable":
        target = tmp_path / "no" / "such" / "out.sct"
        args = ("weights", ckpt, "-o", target)
    elif case == "expand-plain":
        target = tmp_path / "r.safetensors"
        args = ("expand", ckpt, "-o", target)
    else:
        bad.write_text("nothing")
        args = ("info", bad)
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("signcut: error: ") and r.stderr.count("\n") == 1
    assert not target.exists()
    assert not os.path.exists(str(target) + weights.PARTS_SUFFIX)


# ------------------------------------------------------------------ dask
def test_dask_local_cluster(tmp_path, ckpt):
    distributed = pytest.importorskip("dask.distributed")
    weights.compress(ckpt, tmp_path / "one.sct", progress=False)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            weights.compress(ckpt, tmp_path / "client.sct", executor=client, progress=False)
            weights.compress(ckpt, tmp_path / "sched.sct", scheduler=cluster.scheduler_address,
                             progress=False)
    assert_same(tmp_path / "one.sct", tmp_path / "client.sct")
    assert_same(tmp_path / "one.sct", tmp_path / "sched.sct")


def test_names_with_slashes_and_missing_shard(tmp_path, sharded):
    rng = np.random.default_rng(5)
    src = tmp_path / "slash.safetensors"
    stnp.save_file({"enc/0/w": rng.standard_normal((32, 40), dtype=np.float32),
                    "enc/0/b": rng.standard_normal(40).astype(np.float32),
                    "x" * 300: rng.standard_normal((16, 48), dtype=np.float32)}, str(src))
    out = tmp_path / "slash.sct"
    result = weights.compress(src, out, progress=False)
    assert sorted(t["kind"] for t in result["tensors"]) == ["passthrough", "signcut", "signcut"]
    weights.expand(out, tmp_path / "r.safetensors", dtype="f32")
    with safe_open(str(tmp_path / "r.safetensors"), framework="numpy") as f:
        assert set(f.keys()) == {"enc/0/w", "enc/0/b", "x" * 300}
        assert f.get_tensor("x" * 300).shape == (16, 48)
    os.unlink(sharded / "model-00002-of-00002.safetensors")
    with pytest.raises(weights.WeightsError, match="does not exist"):
        weights.compress(sharded, tmp_path / "m.sct", progress=False)


def test_cli_info_plain_signcut_file(tmp_path):
    path = tmp_path / "plain.sct"
    signcut.save(path, {"a": signcut.decompose(BF16, width=3, seed=0)})
    r = run("info", path)
    assert r.returncode == 0, r.stderr
    assert "| a | 40x72 | 3 |" in r.stdout


# ------------------------------------------------------------------ outliers kept sparse
def test_outliers_auto_is_the_default_and_pays_on_heavy_tails(tmp_path):
    rng = np.random.default_rng(11)
    heavy = rng.standard_t(2, (96, 128)).astype(np.float32)
    gauss = rng.standard_normal((96, 128), dtype=np.float32)
    src = tmp_path / "m.safetensors"
    stnp.save_file({"heavy": heavy, "gauss": gauss}, str(src))
    auto = weights.compress(src, tmp_path / "auto.sct", bits_per_entry=6, progress=False)
    off = weights.compress(src, tmp_path / "off.sct", bits_per_entry=6, progress=False,
                           outliers=None)
    a = {t["name"]: t for t in auto["tensors"]}
    o = {t["name"]: t for t in off["tensors"]}
    assert a["heavy"]["sparse"] > 0 and o["heavy"]["sparse"] == 0
    assert a["heavy"]["rel_error"] < 0.5 * o["heavy"]["rel_error"]
    assert a["gauss"]["sparse"] == 0 and a["gauss"]["rel_error"] == o["gauss"]["rel_error"]
    loaded = signcut.load(tmp_path / "auto.sct")
    assert len(loaded["heavy"].outliers) == a["heavy"]["sparse"]
    assert auto["summary"]["stored_bytes"] == sum(sc.nbytes for sc in loaded.values())
    assert auto["summary"]["bits_per_entry"] <= 6.0
    assert weights.info(tmp_path / "auto.sct")["outliers"] == "auto"
    with pytest.raises(ValueError, match="outliers"):
        weights.compress(src, tmp_path / "bad.sct", outliers=2.0, progress=False)


def test_cli_outliers_option(tmp_path, ckpt):
    for value, stored in [("off", 0.0), ("0.01", 0.01), ("auto", "auto")]:
        out = tmp_path / f"{value}.sct"
        r = run("weights", ckpt, "-o", out, "--outliers", value, "-q")
        assert r.returncode == 0, r.stderr
        assert weights.info(out)["outliers"] == stored
    sparse = {t["name"]: t["sparse"] for t in weights.info(tmp_path / "0.01.sct")["tensors"]
              if t["kind"] == "signcut"}
    assert sparse["layers.0.attn.weight"] == round(0.01 * 64 * 96)
    for bad in ("1.5", "some"):
        r = run("weights", ckpt, "-o", tmp_path / "x.sct", "--outliers", bad)
        assert r.returncode == 2 and "--outliers" in r.stderr


def test_read_kind_tells_weights_from_plain_files(tmp_path, ckpt):
    out = tmp_path / "m.sct"
    weights.compress(ckpt, out, progress=False)
    kind, meta = weights.read_kind(out)
    assert kind == "weights" and meta == weights.info(out)
    plain = tmp_path / "plain.sct"
    signcut.save(plain, signcut.decompose(BF16, width=2, seed=0))
    assert weights.read_kind(plain) == ("signcut", None)
    with pytest.raises(weights.WeightsError, match="not compressed model weights"):
        weights.info(plain)
    with pytest.raises(weights.WeightsError, match="no such file"):
        weights.read_kind(tmp_path / "missing.sct")
    (tmp_path / "junk").write_bytes(b"junk" * 10)
    with pytest.raises(weights.WeightsError, match="is not a signcut file"):
        weights.read_kind(tmp_path / "junk")


# ------------------------------------------------------------------ the tool as a user meets it
def test_expand_keeps_each_tensors_dtype_by_default(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "m.safetensors"
    stnp.save_file({"a": rng.standard_normal((40, 30)).astype(np.float32),
                    "b": rng.standard_normal((30, 20)).astype(np.float16),
                    "c": rng.standard_normal((20, 24)).astype(np.float64),
                    "bias": rng.standard_normal(7).astype(np.float16)}, str(src))
    weights.compress(src, tmp_path / "m.sct")
    weights.expand(tmp_path / "m.sct", tmp_path / "back.safetensors")
    back = stnp.load_file(str(tmp_path / "back.safetensors"))       # NumPy reads it
    assert {k: v.dtype for k, v in back.items()} == {"a": np.float32, "b": np.float16,
                                                     "c": np.float64, "bias": np.float16}
    assert run("expand", tmp_path / "m.sct", "-o", tmp_path / "cli.safetensors").returncode == 0
    assert stnp.load_file(str(tmp_path / "cli.safetensors"))["b"].dtype == np.float16


def test_the_library_is_quiet_and_reports_sparse_entries(tmp_path, capsys, caplog):
    rng = np.random.default_rng(1)
    src = tmp_path / "m.safetensors"
    w = rng.standard_normal((128, 96)).astype(np.float32)
    w[rng.integers(0, 128, 20), rng.integers(0, 96, 20)] = 80.0          # spikes
    stnp.save_file({"spiky": w}, str(src))
    import logging
    with caplog.at_level(logging.INFO, logger="signcut.weights"):
        result = weights.compress(src, tmp_path / "m.sct")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    rec = result["tensors"][0]
    assert rec["sparse"] >= 20 and f"{rec['sparse']} sparse entries" in caplog.text
    with open(result["report"], newline="") as f:
        row = next(csv.DictReader(f))
    assert int(row["sparse_entries"]) == rec["sparse"] and row["high_error"] == ""
    info = run("info", tmp_path / "m.sct")
    assert "sparse entries" in info.stdout and f"| {rec['sparse']} |" in info.stdout


def test_command_line_budgets_effort_and_threads(tmp_path, ckpt):
    def widths(path):
        return {t["name"]: t["width"] for t in weights.info(path)["tensors"]
                if t["kind"] == "signcut"}

    assert run("weights", ckpt, "-o", tmp_path / "r.sct", "--ratio", "0.25", "-q",
               "--threads", "1").returncode == 0
    for t in weights.info(tmp_path / "r.sct")["tensors"]:
        if t["kind"] == "signcut":
            nbytes = math.prod(t["shape"]) * weights._ITEMSIZE[t["dtype"]]
            assert t["bits_per_entry"] * math.prod(t["shape"]) / 8 <= 0.25 * nbytes + 1
    assert run("weights", ckpt, "-o", tmp_path / "t.sct", "--rtol", "0.5", "-q").returncode == 0
    assert all(t["rel_error"] <= 0.5 for t in weights.info(tmp_path / "t.sct")["tensors"]
               if t["kind"] == "signcut")
    assert run("weights", ckpt, "-o", tmp_path / "f.sct", "--effort", "fast",
               "-q").returncode == 0
    assert run("weights", ckpt, "-o", tmp_path / "d.sct", "-q").returncode == 0
    assert widths(tmp_path / "f.sct") == widths(tmp_path / "d.sct")
    assert (tmp_path / "f.sct").read_bytes() != (tmp_path / "d.sct").read_bytes()
    assert weights.info(tmp_path / "f.sct")["effort"] == "fast"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, ckpt):
    before = sorted(os.listdir(tmp_path))
    r = run("weights", ckpt, "-o", tmp_path / "m.sct", "--dry-run", "--bits-per-entry", "4")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == before
    plan = weights.compress(ckpt, tmp_path / "m.sct", bits_per_entry=4, dry_run=True)
    for t in plan["tensors"]:
        if t["kind"] == "signcut":
            assert f"| {t['max_width']} |" in r.stdout
    real = weights.compress(ckpt, tmp_path / "m.sct", bits_per_entry=4)
    for p, t in zip(plan["tensors"], real["tensors"]):
        assert p["kind"] == t["kind"] and (t["kind"] != "signcut" or t["width"] <= p["max_width"])
    assert real["summary"]["stored_bytes"] <= plan["summary"]["stored_bytes"]


def test_nothing_to_compress_is_an_error(tmp_path, ckpt):
    r = run("weights", ckpt, "-o", tmp_path / "m.sct", "--bits-per-entry", "0.001")
    assert r.returncode == 2 and "no tensor" in r.stderr and "budget affords no cut" in r.stderr
    r = run("weights", ckpt, "-o", tmp_path / "m.sct", "--include", "nothing-matches")
    assert r.returncode == 2 and "not included" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_a_bad_tensor_is_named(tmp_path):
    rng = np.random.default_rng(0)
    bad = rng.standard_normal((32, 40)).astype(np.float32)
    bad[3, 4] = np.nan
    src = tmp_path / "m.safetensors"
    stnp.save_file({"good": rng.standard_normal((32, 40)).astype(np.float32),
                    "layers.7.broken": bad}, str(src))
    with pytest.raises(weights.WeightsError, match="layers.7.broken.*non-finite"):
        weights.compress(src, tmp_path / "m.sct")
    r = run("weights", src, "-o", tmp_path / "m.sct")
    assert r.returncode == 2 and "layers.7.broken" in r.stderr and "Traceback" not in r.stderr


def test_an_unreachable_scheduler_leaves_nothing(tmp_path, ckpt):
    pytest.importorskip("dask.distributed")
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(OSError):
            weights.compress(ckpt, tmp_path / "m.sct", scheduler="tcp://127.0.0.1:9")
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
