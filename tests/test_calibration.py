"""Calibration statistics (signcut.calibration) and the weights tool with --calibration and
--scales: the statistics against NumPy, the file round trip, the weighted fits it asks for,
tensors it does not name left as they were, and bad input refused before anything is
written."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as stnp

import signcut
from signcut import calibration, weights
from conftest import subprocess_env


def layers(seed=0):
    rng = np.random.default_rng(seed)
    return {"a.weight": (rng.standard_normal((48, 64)) / np.exp(rng.standard_normal(64))
                         ).astype(np.float32),
            "b.weight": rng.standard_normal((40, 48)).astype(np.float32),
            "b.bias": rng.standard_normal(40).astype(np.float32)}


def inputs(seed=0):
    rng = np.random.default_rng(seed + 1)
    scale = np.exp(rng.standard_normal(64))
    return {"a.weight": [rng.standard_normal((5, 7, 64)) * scale,
                         rng.standard_normal((3, 64)) * scale]}


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.safetensors"
    stnp.save_file(layers(), str(path))
    return path


# ------------------------------------------------------------------ statistics
def test_stats_against_numpy(tmp_path):
    x = inputs()["a.weight"]
    rows = np.concatenate([b.reshape(-1, 64) for b in x])
    y = np.random.default_rng(3).standard_normal((10, 48)).astype(np.float16)
    stats = calibration.calibration_stats({"a.weight": iter(x), "b.weight": y},
                                          tmp_path / "s.safetensors")
    np.testing.assert_allclose(stats["a.weight"], np.sqrt((rows ** 2).mean(0)), rtol=1e-6)
    np.testing.assert_allclose(stats["b.weight"],
                               np.sqrt((y.astype(np.float64) ** 2).mean(0)), rtol=1e-6)
    assert stats["a.weight"].dtype == np.float32
    raw = stnp.load_file(str(tmp_path / "s.safetensors"))
    assert sorted(raw) == ["a.weight", "b.weight"] and raw["a.weight"].dtype == np.float32
    back = calibration.read_calibration(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(back["a.weight"], stats["a.weight"])
    assert weights.calibration_stats is calibration.calibration_stats


@pytest.mark.parametrize("bad, exc, match", [
    ({}, ValueError, "no inputs"),
    ([np.ones(3)], TypeError, "map weight names"),
    ({"a": np.ones((4, 3)) * 1j}, TypeError, "complex"),
    ({"a": np.array(["x", "y"])}, TypeError, "real numbers"),
    ({"a": np.float32(3)}, ValueError, "feature axis"),
    ({"a": [np.ones((2, 3)), np.ones((2, 4))]}, ValueError, "4 features in one batch and 3 in another"),
    ({"a": np.r_[1.0, np.nan]}, ValueError, "NaN or Inf"),
    ({"a": np.ones((0, 3))}, ValueError, "empty"),
    ({"a": []}, ValueError, "empty"),
    ({"a": 5}, ValueError, "feature axis"),
    ({3: np.ones(3)}, TypeError, "non-empty str"),
])
def test_stats_refuse_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        calibration.calibration_stats(bad)


@pytest.mark.parametrize("tensors, match", [
    ({"a": np.ones((2, 3), np.float32)}, "1-D floating vector"),
    ({"a": np.arange(3)}, "1-D floating vector"),
    ({"a": -np.ones(3, np.float32)}, "non-negative"),
    ({"a": np.zeros(3, np.float32)}, "not all zero"),
    ({"a": np.r_[1.0, np.inf]}, "finite"),
])
def test_bad_calibration_files(tmp_path, tensors, match):
    path = tmp_path / "bad.safetensors"
    stnp.save_file(tensors, str(path))
    with pytest.raises(weights.WeightsError, match=match):
        calibration.read_calibration(path)
    with pytest.raises(weights.WeightsError, match="no such file"):
        calibration.read_calibration(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------ the weights tool
def test_compress_with_calibration(tmp_path, ckpt):
    stats_path = tmp_path / "stats.safetensors"
    stats = calibration.calibration_stats(inputs(), stats_path)
    out = tmp_path / "cal.sct"
    res = weights.compress(ckpt, out, bits_per_entry=4, calibration=stats_path, progress=False)
    weights.compress(ckpt, tmp_path / "plain.sct", bits_per_entry=4, progress=False)
    got, ref = signcut.load(out), signcut.load(tmp_path / "plain.sct")
    a = got["a.weight"]
    assert a.error_norm == "col_weights" and a.scales[1] is not None
    d = stats["a.weight"].astype(np.float64)
    W = layers()["a.weight"]
    weighted = np.linalg.norm((W - a.expand()) * d) / np.linalg.norm(W * d)
    assert a.rel_error == pytest.approx(weighted, rel=1e-5)
    ref_weighted = np.linalg.norm((W - ref["a.weight"].expand()) * d) / np.linalg.norm(W * d)
    assert weighted < ref_weighted
    record = next(t for t in res["tensors"] if t["name"] == "a.weight")
    assert record["rel_error"] == pytest.approx(weighted, rel=1e-5)
    # the tensor the file does not name: the same bits as without calibration
    b, b_ref = got["b.weight"], ref["b.weight"]
    assert b.error_norm == "frobenius" and not b.has_scales
    assert np.array_equal(b.coef, b_ref.coef)
    assert all(np.array_equal(x, y) for x, y in zip(b.signs, b_ref.signs))
    meta = weights.info(out)
    assert meta["calibration"] == "stats.safetensors" and "calibration" not in weights.info(
        tmp_path / "plain.sct")
    back = tmp_path / "back.safetensors"
    weights.expand(out, back, dtype="f32")
    np.testing.assert_allclose(stnp.load_file(str(back))["a.weight"], a.expand())


def test_compress_with_scales(tmp_path, ckpt):
    out = tmp_path / "s.sct"
    weights.compress(ckpt, out, bits_per_entry=4, scales="both", progress=False)
    got = signcut.load(out)
    for name in ("a.weight", "b.weight"):
        sc = got[name]
        assert sc.scales[0] is not None and sc.scales[1] is not None
        assert sc.bits_per_entry <= 4
        W = layers()[name]
        assert sc.rel_error == pytest.approx(np.linalg.norm(W - sc.expand()) / np.linalg.norm(W),
                                             rel=1e-5)
    assert weights.info(out)["scales"] == "both"
    with pytest.raises(ValueError, match="scales must be"):
        weights.compress(ckpt, tmp_path / "x.sct", scales="diagonal", progress=False)


def test_tiny_tensors_fall_back_to_the_plain_fit(tmp_path):
    path = tmp_path / "tiny.safetensors"
    stnp.save_file({"t.weight": np.random.default_rng(0).standard_normal((6, 6)).astype(
        np.float32)}, str(path))
    weights.compress(path, tmp_path / "t.sct", bits_per_entry=6, scales="both", progress=False)
    sc = signcut.load(tmp_path / "t.sct")["t.weight"]
    assert sc.width >= 1 and not sc.has_scales     # 24 bytes of scales would leave no cut


def nothing_written(tmp_path, out):
    assert not os.path.exists(out) and not os.path.exists(str(out) + weights.PARTS_SUFFIX)
    assert not os.path.exists(str(out) + weights.REPORT_SUFFIX)


def test_bad_calibration_writes_nothing(tmp_path, ckpt):
    out = tmp_path / "o.sct"
    wrong = tmp_path / "wrong.safetensors"
    stnp.save_file({"a.weight": np.ones(63, np.float32)}, str(wrong))
    with pytest.raises(weights.WeightsError, match="63 entries but the tensor's last axis has 64"):
        weights.compress(ckpt, out, calibration=wrong, progress=False)
    nothing_written(tmp_path, out)
    other = tmp_path / "other.safetensors"
    stnp.save_file({"c.weight": np.ones(64, np.float32)}, str(other))
    with pytest.raises(weights.WeightsError, match="names none of the 2 tensors"):
        weights.compress(ckpt, out, calibration=other, progress=False)
    nothing_written(tmp_path, out)
    with pytest.raises(weights.WeightsError, match="no such file"):
        weights.compress(ckpt, out, calibration=tmp_path / "none.safetensors", progress=False)
    nothing_written(tmp_path, out)
    calibration.calibration_stats(inputs(), tmp_path / "s.safetensors")
    with pytest.raises(weights.WeightsError):
        weights.compress(ckpt, tmp_path / "s.safetensors", calibration=tmp_path / "s.safetensors",
                         progress=False)
    assert calibration.read_calibration(tmp_path / "s.safetensors")


def test_dry_run_checks_the_calibration(tmp_path, ckpt):
    out = tmp_path / "o.sct"
    wrong = tmp_path / "wrong.safetensors"
    stnp.save_file({"b.weight": np.ones(64, np.float32)}, str(wrong))
    with pytest.raises(weights.WeightsError, match="64 entries but the tensor's last axis has 48"):
        weights.compress(ckpt, out, calibration=wrong, dry_run=True)
    good = tmp_path / "good.safetensors"
    calibration.calibration_stats(inputs(), good)
    plan = weights.compress(ckpt, out, scales="both", calibration=good, dry_run=True)
    assert plan["summary"]["compressed"] == 2
    nothing_written(tmp_path, out)


def test_unknown_names_are_logged(tmp_path, ckpt, caplog):
    stats = dict(calibration.calibration_stats(inputs()), **{"gone.weight": np.ones(3)})
    path = tmp_path / "s.safetensors"
    weights.write_safetensors(path, [(k, "F32", v.shape, lambda v=v: np.asarray(v, "<f4"))
                                     for k, v in stats.items()])
    with caplog.at_level("WARNING", logger="signcut.weights"):
        weights.compress(ckpt, tmp_path / "o.sct", calibration=path, progress=False)
    assert "gone.weight" in caplog.text


def test_rerun_with_other_statistics_redoes_the_tensor(tmp_path, ckpt):
    """A part made with other weights is not reused (its record names them)."""
    s1, s2 = tmp_path / "s1.safetensors", tmp_path / "s2.safetensors"
    calibration.calibration_stats(inputs(0), s1)
    calibration.calibration_stats(inputs(5), s2)
    out = tmp_path / "o.sct"
    weights.compress(ckpt, out, bits_per_entry=4, calibration=s1, progress=False)
    first = signcut.load(out)["a.weight"]
    weights.compress(ckpt, out, bits_per_entry=4, calibration=s2, progress=False)
    second = signcut.load(out)["a.weight"]
    assert not np.array_equal(first.scales[1], second.scales[1])


def cli(*args):
    return subprocess.run([sys.executable, "-P", "-m", "signcut", *map(str, args)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_cli(tmp_path, ckpt):
    stats = tmp_path / "stats.safetensors"
    calibration.calibration_stats(inputs(), stats)
    out = tmp_path / "c.sct"
    done = cli("weights", ckpt, "-o", out, "--bits-per-entry", "4", "--scales", "both",
               "--calibration", stats, "-q")
    assert done.returncode == 0, done.stderr
    got = signcut.load(out)
    assert got["a.weight"].error_norm == "col_weights" and got["b.weight"].has_scales
    meta = json.loads(signcut.read_metadata(out)["signcut_weights"])
    assert meta["scales"] == "both" and meta["calibration"] == "stats.safetensors"
    done = cli("weights", ckpt, "-o", tmp_path / "d.sct", "--scales", "diag")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = cli("weights", ckpt, "-o", tmp_path / "d.sct", "--calibration", tmp_path / "no")
    assert done.returncode == 2 and "no such file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "d.sct")
