"""Hostile input: absurd arguments, special files, tampered files, memory limits.

Each class of attack gets a clear exception (or a refusal on the command line) and leaves the
user's data as it was; nothing here may crash the process or take the machine down.
"""
import contextlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy as stnp
from PIL import Image

import conftest
import signcut
from signcut import _array, cli, weights


# ------------------------------------------------------------------ thread counts
@pytest.mark.parametrize("n_threads", [3, 64, 4096])
def test_more_threads_than_cores_are_clamped(n_threads):
    A = np.random.default_rng(0).standard_normal((300, 200))
    ref = signcut.decompose(A, width=20, seed=1, n_threads=1)
    r = signcut.decompose(A, width=20, seed=1, n_threads=n_threads)
    assert np.array_equal(r.coef, ref.coef)
    assert np.array_equal(r.expand(n_threads=n_threads), ref.expand(n_threads=1))
    x = np.ones(200, np.float32)
    assert np.array_equal(_array.matmul(r, x, n_threads=n_threads), _array.matmul(ref, x, 1))
    T = np.random.default_rng(0).standard_normal((6, 7, 8))
    t1 = signcut.decompose(T, width=5, seed=1, n_threads=1)
    t2 = signcut.decompose(T, width=5, seed=1, n_threads=n_threads)
    assert np.array_equal(t1.coef, t2.coef)


@pytest.mark.parametrize("n_threads", [4097, 20000, 100000, 2**31, 2**64, -2, 0])
def test_absurd_thread_counts_are_refused(n_threads):
    A = np.ones((4, 4))
    with pytest.raises(ValueError, match="n_threads"):
        signcut.decompose(A, width=1, n_threads=n_threads)
    r = signcut.decompose(A, width=1)
    with pytest.raises(ValueError, match="n_threads"):
        r.expand(n_threads=n_threads)


@pytest.mark.parametrize("n_threads", [2.5, "2", True, None.__class__])
def test_thread_counts_of_other_types_are_refused(n_threads):
    with pytest.raises(TypeError, match="n_threads"):
        signcut.decompose(np.ones((4, 4)), width=1, n_threads=n_threads)


# ------------------------------------------------------------------ data loss: paths
def small_checkpoint(path, seed=0):
    rng = np.random.default_rng(seed)
    stnp.save_file({"a.weight": rng.standard_normal((24, 32), dtype=np.float32),
                    "b.weight": rng.standard_normal((16, 20), dtype=np.float32),
                    "a.bias": rng.standard_normal(24, dtype=np.float32)}, str(path))
    return path


def tree(folder):
    """Every file below ``folder`` with its bytes and mode: what must not change."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, folder)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                              data)
    return out


def sign(*argv):
    """The command line in this process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main([str(a) for a in argv])
    return status, err.getvalue()


def refused(tmp_path, *argv, match):
    before = tree(tmp_path)
    status, err = sign(*argv)
    assert status == 2, err
    assert re.search(match, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert tree(tmp_path) == before          # nothing written, nothing removed


def test_weights_output_derived_from_a_folder_of_shards_is_refused(tmp_path):
    shards = tmp_path / "ckpt.parts"
    shards.mkdir()
    small_checkpoint(shards / "model-1.safetensors")
    (shards / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: "model-1.safetensors" for n in ("a.weight", "b.weight", "a.bias")}}))
    refused(tmp_path, "weights", shards, "-o", tmp_path / "ckpt", match="input")
    # an output inside the input folder, and the input folder itself
    refused(tmp_path, "weights", shards, "-o", shards / "out.sct", match="input")
    refused(tmp_path, "weights", shards, "-o", shards, match="input|folder")


def test_weights_never_touches_an_unrelated_parts_folder(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    mine = tmp_path / "results.parts"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    refused(tmp_path, "weights", ckpt, "-o", tmp_path / "results", match="not made by signcut")
    (mine / "thesis.tex").unlink()              # even empty: not ours
    refused(tmp_path, "weights", ckpt, "-o", tmp_path / "results", match="not made by signcut")
    mine.rmdir()
    mine.write_text("a file where the work folder would go")
    refused(tmp_path, "weights", ckpt, "-o", tmp_path / "results", match="folder")


@pytest.mark.parametrize("suffix", [weights.PASSTHROUGH_SUFFIX, weights.REPORT_SUFFIX,
                                    weights.PARTS_SUFFIX])
def test_weights_side_outputs_never_overwrite_the_input(tmp_path, suffix):
    ckpt = small_checkpoint(tmp_path / ("m" + suffix))
    refused(tmp_path, "weights", ckpt, "-o", tmp_path / "m", match="input")


def test_expand_never_overwrites_its_own_side_file(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    assert sign("weights", ckpt, "-o", tmp_path / "m.sct", "-q")[0] == 0
    side = tmp_path / ("m.sct" + weights.PASSTHROUGH_SUFFIX)
    assert side.exists()
    refused(tmp_path, "expand", tmp_path / "m.sct", "-o", side, match="input")
    refused(tmp_path, "expand", tmp_path / "m.sct", "-o", tmp_path / "m.sct", match="input")
    link = tmp_path / "link.safetensors"
    link.symlink_to(side)
    refused(tmp_path, "expand", tmp_path / "m.sct", "-o", link, match="input")


def interrupted_after(ckpt, out, tensors):
    """Run weights.compress and interrupt it (Ctrl-C) once ``tensors`` tensors are done."""
    real, calls = signcut.decompose, []

    def decompose(x, **kw):
        if len(calls) == tensors:
            raise KeyboardInterrupt
        calls.append(1)
        return real(x, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(signcut, "decompose", decompose)
        with pytest.raises(KeyboardInterrupt):
            weights.compress(ckpt, out)


def test_a_finished_run_removes_only_its_own_work_files(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    parts = tmp_path / ("m.sct" + weights.PARTS_SUFFIX)
    interrupted_after(ckpt, tmp_path / "m.sct", 1)
    (parts / "notes.txt").write_text("mine")     # a user's file put there meanwhile
    weights.compress(ckpt, tmp_path / "m.sct", progress=False)
    assert sorted(os.listdir(parts)) == ["notes.txt"]


def test_resume_redoes_a_tensor_whose_bytes_changed(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors", seed=0)
    interrupted_after(ckpt, tmp_path / "m.sct", 1)
    small_checkpoint(ckpt, seed=1)        # same names, shapes and dtypes, other values
    weights.compress(ckpt, tmp_path / "m.sct", progress=False)
    (tmp_path / "fresh").mkdir()
    weights.compress(ckpt, tmp_path / "fresh" / "m.sct", progress=False)
    assert (tmp_path / "m.sct").read_bytes() == (tmp_path / "fresh" / "m.sct").read_bytes()


def test_outputs_are_reproducible_bytes(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    for folder, jobs in (("a", 1), ("b", 1), ("c", 2)):
        (tmp_path / folder).mkdir()
        weights.compress(ckpt, tmp_path / folder / "m.sct", progress=False, jobs=jobs)
    data = [(tmp_path / folder / "m.sct").read_bytes() for folder in "abc"]
    assert data[0] == data[1] == data[2]


# ------------------------------------------------------------------ special files as outputs
def fifo(path):
    os.mkfifo(path)
    return path


def test_no_command_replaces_a_special_file(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    png = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)).save(png)
    assert sign("weights", ckpt, "-o", tmp_path / "m.sct", "-q")[0] == 0
    node = fifo(tmp_path / "node")
    refused(tmp_path, "image", png, "-o", node, match="FIFO")
    refused(tmp_path, "weights", ckpt, "-o", node, match="FIFO")
    refused(tmp_path, "expand", tmp_path / "m.sct", "-o", node, match="FIFO")
    r = signcut.decompose(np.ones((4, 4)), width=1)
    with pytest.raises(OSError, match="FIFO"):
        signcut.save(node, r)
    assert stat.S_ISFIFO(os.lstat(node).st_mode)
    if os.access("/dev", os.W_OK):           # as root: the device nodes themselves
        for args in (("image", png), ("weights", ckpt), ("expand", tmp_path / "m.sct")):
            status, err = sign(*args, "-o", "/dev/null")
            assert status == 2 and "character device" in err
        with pytest.raises(OSError, match="character device"):
            signcut.save("/dev/null", r)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_replacing_a_file_keeps_its_mode_and_writes_through_links(tmp_path):
    r = signcut.decompose(np.ones((4, 4)), width=1)
    private = tmp_path / "private.sct"
    private.write_bytes(b"old")
    os.chmod(private, 0o600)
    signcut.save(private, r)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    link = tmp_path / "link.sct"
    link.symlink_to(private)
    signcut.save(link, r.truncate(0))
    assert link.is_symlink() and signcut.load(private).width == 0
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "m.sct"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    weights.compress(ckpt, out, progress=False)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


# ------------------------------------------------------------------ special files as inputs
def finishes(call, unblock, seconds=20):
    """call() in a thread: its outcome (the exception, or None); fails if it blocks."""
    box = []

    def run():
        try:
            call()
            box.append(None)
        except BaseException as exc:    # noqa: BLE001 - reported to the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        unblock()
        pytest.fail(f"{call} blocked on a special file")
    return box[0]


def test_special_files_are_refused_as_inputs_without_blocking(tmp_path):
    node = fifo(tmp_path / "in.sct")

    def unblock():                  # a writer releases a reader blocked in open()
        try:
            os.close(os.open(node, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    calls = [lambda: signcut.load(node), lambda: signcut.read_metadata(node),
             lambda: signcut.image.decode(node), lambda: signcut.image.compress(node, ratio=0.1),
             lambda: weights.compress(node, tmp_path / "w.sct", progress=False),
             lambda: weights.expand(node, tmp_path / "w.safetensors"),
             lambda: weights.info(node)]
    for call in calls:
        exc = finishes(call, unblock)
        assert isinstance(exc, (OSError, ValueError)) and "FIFO" in str(exc), exc
    before = tree(tmp_path)
    for argv in (("image", node, "-o", tmp_path / "x.sct"), ("weights", node, "-o", tmp_path / "x.sct"),
                 ("info", node), ("expand", node, "-o", tmp_path / "x.safetensors")):
        box = []
        assert finishes(lambda: box.append(sign(*argv)), unblock) is None
        status, err = box[0]
        assert status == 2 and "FIFO" in err, (argv, err)
    assert tree(tmp_path) == before
    folder = tmp_path / "folder.sct"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        signcut.load(folder)
    if os.path.exists("/dev/zero"):    # a device that would feed a reader forever
        with pytest.raises(OSError, match="character device"):
            signcut.load("/dev/zero")
        with pytest.raises(weights.WeightsError, match="character device"):
            weights.compress("/dev/zero", tmp_path / "z.sct", progress=False)


# ------------------------------------------------------------------ tampered files
def edit_header(path, edit):
    """Rewrite the safetensors header of ``path`` through ``edit(header)`` (data kept)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def edit_entry(path, edit, key="decompositions"):
    def apply(header):
        entries = json.loads(header["__metadata__"][key])
        edit(entries)
        header["__metadata__"][key] = json.dumps(entries)
    edit_header(path, apply)


def edit_data(path, tensor, values):
    """Overwrite the bytes of one tensor in place."""
    raw = bytearray(open(path, "rb").read())
    n = int.from_bytes(raw[:8], "little")
    info = json.loads(raw[8:8 + n])[tensor]
    begin, end = info["data_offsets"]
    data = np.ascontiguousarray(values).tobytes()
    assert len(data) == end - begin
    raw[8 + n + begin:8 + n + end] = data
    open(path, "wb").write(bytes(raw))


@pytest.fixture
def saved(tmp_path):
    r = signcut.decompose(np.random.default_rng(0).standard_normal((12, 9)), width=3, seed=0)
    path = tmp_path / "r.sct"
    signcut.save(path, r, history=True)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_coefficients_are_refused_on_load(saved, value):
    edit_data(saved, "signcut/coef", np.array([1.0, value, 2.0], "<f4"))
    with pytest.raises(signcut.FormatError, match="finite"):
        signcut.load(saved)


@pytest.mark.parametrize("field,value", [("norm", float("nan")), ("norm", float("inf")),
                                         ("norm", -1.0), ("rel_error", float("nan")),
                                         ("rel_error", float("inf")), ("rel_error", -0.5)])
def test_non_finite_norms_and_errors_are_refused_on_load(saved, field, value):
    edit_entry(saved, lambda e: e["signcut"].__setitem__(field, value))
    with pytest.raises(signcut.FormatError, match=field):
        signcut.load(saved)


@pytest.mark.parametrize("value", [np.inf, -1.0])
def test_bad_error_histories_are_refused_on_load(saved, value):
    edit_data(saved, "signcut/errors", np.array([0.5, value, 0.1], "<f8"))
    with pytest.raises(signcut.FormatError, match="errors must be non-negative"):
        signcut.load(saved)


def test_coefficients_that_overflow_float32_raise_on_expand(saved):
    edit_data(saved, "signcut/coef", np.full(3, 3e38, "<f4"))
    r = signcut.load(saved)
    with pytest.raises(OverflowError, match="float32"):
        r.expand()


@pytest.mark.parametrize("dtype", ["f4," * 100000 + "f4", "(2,3)f4", "V8", "O", "U10", "M8[s]",
                                   "x" * 10000, "f4" + " " * 1000, "[('a', 'f4')]"])
def test_orig_dtype_strings_are_short_scalar_names(saved, dtype):
    edit_entry(saved, lambda e: e["signcut"].__setitem__("orig_dtype", dtype))
    size = os.path.getsize(saved)
    tracemalloc.start()
    try:
        with pytest.raises(signcut.FormatError, match="orig_dtype") as info:
            signcut.load(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 64 * 1024 + 40 * size
    assert len(str(info.value)) < 300            # the message does not echo the whole field


def weights_file(tmp_path):
    ckpt = small_checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "m.sct"
    weights.compress(ckpt, out, progress=False)
    return out


def edit_weights(path, edit):
    def apply(header):
        meta = json.loads(header["__metadata__"][weights.FORMAT_KEY])
        edit(meta)
        header["__metadata__"][weights.FORMAT_KEY] = json.dumps(meta)
    edit_header(path, apply)


def first(kind):
    return lambda meta: next(t for t in meta["tensors"] if t["kind"] == kind)


TAMPERED = {
    "absolute side file": (lambda m: m.__setitem__("passthrough", "/etc/passwd"), "passthrough"),
    "side file up a folder": (lambda m: m.__setitem__("passthrough", "../m.safetensors"),
                              "passthrough"),
    "tensor named __metadata__": (lambda m: first("signcut")(m).__setitem__("name", "__metadata__"),
                                  "names"),
    "duplicate names": (lambda m: first("passthrough")(m).__setitem__(
        "name", first("signcut")(m)["name"]), "names"),
    "negative dimension": (lambda m: first("signcut")(m).__setitem__("shape", [-1, 12]), "shape"),
    "transposed shape": (lambda m: first("signcut")(m).__setitem__(
        "shape", first("signcut")(m)["shape"][::-1]), "shape"),
    "shape of a copied tensor": (lambda m: first("passthrough")(m).__setitem__("shape", [2, 12]),
                                 "listed as"),
    "missing key": (lambda m: first("signcut")(m).pop("key"), "key"),
    "missing tensors": (lambda m: m.pop("tensors"), "tensors"),
    "tensors not a list": (lambda m: m.__setitem__("tensors", {"a": 1}), "tensors"),
    "bad kind": (lambda m: first("signcut")(m).__setitem__("kind", "rm -rf"), "kind"),
    "unknown dtype": (lambda m: first("signcut")(m).__setitem__("dtype", "I8"), "dtype"),
    "version": (lambda m: m.__setitem__("version", 99), "version"),
    "width not a number": (lambda m: first("signcut")(m).__setitem__("width", "many"), "width"),
    "error not a number": (lambda m: first("signcut")(m).__setitem__("rel_error", None),
                           "rel_error"),
    "not an object": (lambda m: m.clear() or m.__setitem__("x", []), "version"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_weights_metadata_is_refused(tmp_path, case):
    out = weights_file(tmp_path)
    edit, match = TAMPERED[case]
    edit_weights(out, edit)
    (tmp_path / "r").mkdir()
    refused(tmp_path, "expand", out, "-o", tmp_path / "r" / "x.safetensors", match=match)
    if case not in ("transposed shape", "shape of a copied tensor"):   # only expand reads them
        refused(tmp_path, "info", out, match=match)


def test_deeply_nested_metadata_is_refused(tmp_path):
    out = weights_file(tmp_path)
    edit_header(out, lambda h: h["__metadata__"].__setitem__(
        weights.FORMAT_KEY, "[" * 100000 + "]" * 100000))
    refused(tmp_path, "info", out, match="JSON")
    refused(tmp_path, "expand", out, "-o", tmp_path / "x.safetensors", match="JSON")
    edit_header(out, lambda h: h["__metadata__"].__setitem__(
        "decompositions", "[" * 100000 + "]" * 100000))
    refused(tmp_path, "info", out, match="JSON")


def test_nan_coefficients_in_weights_are_refused(tmp_path):
    out = weights_file(tmp_path)
    with open(out, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    name = next(k for k in header if k.endswith("/coef"))
    width = header[name]["shape"][0]
    edit_data(out, name, np.full(width, np.nan, "<f4"))
    refused(tmp_path, "expand", out, "-o", tmp_path / "x.safetensors", match="finite")


def test_terminal_escapes_in_names_are_not_printed_raw(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    evil = "w\x1b]0;owned\x07\x1b[2J.weight"
    stnp.save_file({evil: np.random.default_rng(0).standard_normal((24, 32), dtype=np.float32)},
                   str(ckpt))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        assert cli.main(["weights", str(ckpt), "-o", str(tmp_path / "m.sct")]) == 0
        assert cli.main(["info", str(tmp_path / "m.sct")]) == 0
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text


# ------------------------------------------------------------------ runaway work
@pytest.mark.parametrize("budget", [dict(bits_per_entry=1e300), dict(ratio=1e300),
                                    dict(width=10**12), dict(bits_per_entry=1.7e308),
                                    dict(rtol=0.0)])
def test_generous_budgets_stop_once_exact_to_float32(budget):
    A = np.random.default_rng(0).standard_normal((50, 40))
    r = signcut.decompose(A, seed=0, **budget)
    if "rtol" in budget:        # no storage budget: the 32 bits per entry cap comes first
        assert r.bits_per_entry <= 32
    else:
        assert r.stopped_by == "exhausted" and r.rel_error <= 2**-23
    assert np.linalg.norm(r.expand() - A) <= 1e-6 * np.linalg.norm(A) or "rtol" in budget


def test_tiny_arrays_take_any_budget():
    r = signcut.decompose(np.array([[3.0]]), rtol=0.1)
    assert r.width == 1 and r.rel_error == 0 and r.expand()[0, 0] == 3.0


@pytest.mark.parametrize("budget", [dict(ratio=1000), dict(width=10**9),
                                    dict(bits_per_pixel=1e300)])
def test_pictures_stop_once_lossless(budget):
    """A 60 x 80 picture at ratio=1000 made 512,751 cuts; it stops once every pixel rounds
    back to its own value."""
    x = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    r = signcut.image.compress(x, seed=0, **budget)
    assert np.array_equal(r.to_array(), x) and r.psnr == np.inf
    assert r.cuts < 10000


# ------------------------------------------------------------------ decompression bombs
def bomb(path, h, w):
    """A signcut picture of a few hundred bytes that declares an h x w grey picture."""
    words = [(h + 63) // 64, (w + 63) // 64]
    plane = signcut.SignCut((h, w), [np.zeros((0, k), np.uint64) for k in words],
                            np.zeros(0, np.float32), tensorize={"shape": [h, w, 1], "axes": [0, 1]})
    info = {"version": 1, "shape": [h, w], "mode": "L", "color": "grey", "tile": None,
            "planes": [{"name": "grey", "channels": 1, "mean": [128.0]}], "psnr": None}
    signcut.save(path, {"grey": plane}, metadata={"signcut.image": json.dumps(info)})
    return path


def test_a_small_file_cannot_declare_a_huge_picture(tmp_path):
    path = bomb(tmp_path / "bomb.sct", 60000, 60000)
    assert os.path.getsize(path) < 2000
    with pytest.raises(signcut.FormatError, match="decompression-bomb"):
        signcut.image.decode(path)
    refused(tmp_path, "image", path, "-o", tmp_path / "out.png", match="decompression-bomb")
    small = signcut.image.decode(bomb(tmp_path / "fine.sct", 30, 40))     # the same, small
    assert np.array_equal(small.to_array(), np.full((30, 40), 128, np.uint8))


def test_pictures_above_the_pixel_limit_are_refused(tmp_path, monkeypatch):
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(png)
    for limit in (40000, 10000):        # Pillow warns, then refuses
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ValueError, match="decompression-bomb"):
            signcut.image.compress(png, ratio=0.1)
        refused(tmp_path, "image", png, "-o", tmp_path / "p.sct", match="decompression-bomb")
    r = signcut.image.compress(np.zeros((200, 300, 3), np.uint8), ratio=0.1)  # pixels in hand
    assert r.shape == (200, 300, 3)


def test_out_of_memory_is_a_clean_error(tmp_path, monkeypatch):
    from signcut import _validate
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(png)
    fine = bomb(tmp_path / "fine.sct", 300, 400)
    monkeypatch.setattr(_validate, "available_memory", lambda: 100_000)
    refused(tmp_path, "image", png, "-o", tmp_path / "p.sct", match="memory")
    refused(tmp_path, "image", fine, "-o", tmp_path / "p.png", match="memory")
    with pytest.raises(MemoryError):
        signcut.decompose(np.ones((200, 300)), width=3)


# ------------------------------------------------------------------ memory limits
LIMITED = r"""
import resource, sys
import numpy as np
import scipy.sparse
import signcut, signcut.image, signcut._sparse       # imported before the limit
A = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
T = np.random.default_rng(0).standard_normal((64, 64, 64))
X = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
S = scipy.sparse.random(2000, 2000, density=0.01, random_state=0, format="csr")
used = 1024 * int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")))
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[1]), resource.RLIM_INFINITY))
for name, call in (("matrix", lambda: signcut.decompose(A, width=20, seed=0)),
                   ("tensor", lambda: signcut.decompose(T, width=5, seed=0)),
                   ("picture", lambda: signcut.image.compress(X, ratio=0.05, seed=0)),
                   ("sparse", lambda: signcut.decompose(S, width=10))):
    try:
        call()
        print(name, "ok", flush=True)
    except MemoryError:
        print(name, "MemoryError", flush=True)
"""


@pytest.mark.parametrize("headroom_mib", [0, 8, 16, 24, 32, 48, 64, 96, 160])
def test_address_space_limits_give_memory_errors_not_crashes(headroom_mib):
    """Under prlimit --as, the OpenMP runtime ended the process when it could not start a
    thread, and NumPy crashed in a casting loop; every entry point now either works or raises
    MemoryError."""
    out = subprocess.run([sys.executable, "-P", "-c", LIMITED, str(headroom_mib << 20)],
                         capture_output=True, text=True, timeout=300,
                         env=conftest.subprocess_env())
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    assert [line.split()[0] for line in lines if line] == ["matrix", "tensor", "picture",
                                                           "sparse"], out.stdout + out.stderr


# ------------------------------------------------------------------ orphaned workers
def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux's /proc")
def test_workers_end_when_the_command_is_killed(tmp_path):
    """After SIGKILL of `signcut weights --jobs 2`, its workers kept decomposing."""
    rng = np.random.default_rng(0)
    stnp.save_file({f"layer{i}.weight": rng.standard_normal((1500, 1500), dtype=np.float32)
                    for i in range(8)}, str(tmp_path / "m.safetensors"))
    proc = subprocess.Popen([sys.executable, "-P", "-m", "signcut", "weights",
                             str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "m.sct"), "--jobs", "2",
                             "--bits-per-entry", "16", "-q"],
                            env=conftest.subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        workers = []
        for _ in range(600):                     # until both workers have started working
            workers = [p for p in children(proc.pid) if len(children(p)) == 0]
            if len(workers) >= 2 and (tmp_path / "m.sct.parts").exists():
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the workers did not start"
        proc.kill()
        proc.wait()
        for _ in range(100):
            if not any(alive(p) for p in workers):
                break
            time.sleep(0.1)
        assert not any(alive(p) for p in workers)
    finally:
        proc.kill()
        for p in children(proc.pid):
            try:
                os.kill(p, 9)
            except OSError:
                pass


# ------------------------------------------------------------------ clear errors
@pytest.mark.parametrize("value,match", [("1e4000", "values up to 1e\\+4000"),
                                         ("-1e4000", "values up to 1e\\+4000"),
                                         ("1e-4000", "at most 1e-4000")])
def test_long_doubles_beyond_float32_are_refused(value, match):
    if np.finfo(np.longdouble).max < np.longdouble("1e400"):
        pytest.skip("long double is float64 here")
    A = np.array([[np.longdouble(value), 0], [0, 0]])
    with pytest.raises(ValueError, match=match):
        signcut.decompose(A, width=1)


def test_a_masked_array_is_not_silently_unmasked():
    A = np.ma.masked_array(np.ones((4, 5)), mask=np.eye(4, 5, dtype=bool))
    with pytest.raises(TypeError, match="masked"):
        signcut.decompose(A, width=2)
    r = signcut.decompose(np.ma.masked_array(np.ones((4, 5))), width=2)   # nothing masked
    assert r.width >= 1


@pytest.mark.parametrize("k", [2.7, "2", None, 1.0])
def test_truncate_takes_integers_only(k):
    r = signcut.decompose(np.random.default_rng(0).standard_normal((6, 7)), width=3)
    with pytest.raises(TypeError):
        r.truncate(k)
    assert r.truncate(np.int64(2)).width == 2
