"""The signcut command line, run as ``python -m signcut`` in a subprocess."""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from signcut import image
from conftest import subprocess_env

def run(*args, cwd=None, prefix=None):
    """python -P -m signcut ARGS (the working folder, maybe an unbuilt checkout, is not put on
    sys.path); `prefix` is a folder put on PYTHONPATH before the package."""
    env = subprocess_env(*([prefix] if prefix else []))
    return subprocess.run([sys.executable, "-P", "-m", "signcut", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def picture(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 80 * np.sin(x / 6.0)[..., None] * np.cos(y / 9.0)[..., None] * [1, 0.6, -0.4]
    return np.clip(np.rint(base + rng.normal(0, 4, (h, w, 3))), 0, 255).astype(np.uint8)


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(picture()).save(path)
    return path


def listing(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


# ------------------------------------------------------------------ demo
def test_demo(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "--out", out, "--ratios", "0.02", "0.05", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                                    # -q: no progress
    assert "| budget | bytes stored |" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 2%") or
            line.startswith("| 5%")]
    assert len(rows) == 2
    files = sorted(os.listdir(out))
    assert files == ["chelsea-2pct.png", "chelsea-2pct.sct", "chelsea-5pct.png",
                     "chelsea-5pct.sct", "contact-sheet.png"]
    with Image.open(out / "contact-sheet.png") as sheet:
        assert sheet.width > 3 * 451 and sheet.height > 300
    with Image.open(out / "chelsea-5pct.png") as im:
        assert im.size == (451, 300)
    decoded = image.decode(out / "chelsea-5pct.sct")
    assert np.array_equal(decoded.to_array(), np.asarray(Image.open(out / "chelsea-5pct.png")))
    psnr = float(rows[1].split("|")[6])
    assert psnr == pytest.approx(decoded.psnr, abs=0.01)


def test_demo_default_folder_and_progress(tmp_path):
    r = run("demo", "--ratios", "0.02", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(tmp_path / "signcut-demo" / "contact-sheet.png")
    assert "2%" in r.stderr                                  # the progress bar, on stderr


def test_demo_into_a_file_fails(tmp_path):
    (tmp_path / "f").write_text("x")
    r = run("demo", "--out", tmp_path / "f", "-q")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("signcut: error:")


# ------------------------------------------------------------------ image
def test_encode_decode(tmp_path, png):
    r = run("image", png, "-o", tmp_path / "p.sct", "--ratio", "0.1", "--seed", "3", "-q")
    assert r.returncode == 0, r.stderr
    assert "PSNR" in r.stdout
    res = image.compress(png, ratio=0.1, seed=3)
    dec = image.decode(tmp_path / "p.sct")
    assert np.array_equal(dec.to_array(), res.to_array())
    assert dec.tile == (image.DEFAULT_TILE,) * 2 and dec.color == image.DEFAULT_COLOR
    r = run("image", tmp_path / "p.sct", "-o", tmp_path / "back.png", "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), res.to_array())


def test_encode_options(tmp_path, png):
    for i, opts in enumerate([["--tile", "8x16", "--color", "rgb"], ["--tile", "none"],
                              ["--tile", "5", "--bits-per-pixel", "2"], ["--width", "7"]]):
        out = tmp_path / f"o{i}.sct"
        r = run("image", png, "-o", out, "-q", *opts)
        assert r.returncode == 0, r.stderr
        dec = image.decode(out)
        if "--tile" in opts:
            want = {"8x16": (8, 16), "none": None, "5": (5, 5)}[opts[opts.index("--tile") + 1]]
            assert dec.tile == want
        if "--color" in opts:
            assert dec.color == "rgb"
        if "--width" in opts:
            assert [p.width for p in dec.planes.values()] == [7, 7]
        if "--bits-per-pixel" in opts:
            assert dec.bits_per_pixel <= 2


def test_preview(tmp_path, png):
    out = tmp_path / "p.sct"
    r = run("image", png, "-o", out, "--ratio", "0.2", "--preview", "10", "-q")
    assert r.returncode == 0, r.stderr
    dec = image.decode(out)
    n = -(-dec.cuts // 10)
    previews = sorted(f for f in os.listdir(tmp_path) if "preview" in f)
    assert previews == [f"p-preview-{i:04d}.png" for i in range(1, n + 1)]
    last = np.asarray(Image.open(tmp_path / previews[-1]))
    assert np.array_equal(last, dec.to_array())
    first = np.asarray(Image.open(tmp_path / previews[0]))
    assert np.array_equal(first, dec.truncate(10).to_array())
    # decoding writes previews too
    r = run("image", out, "-o", tmp_path / "b.png", "--preview", "1000", "-q")
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(tmp_path / "b-preview-0001.png")


def test_progress_without_tqdm(tmp_path, png):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tqdm.py").write_text("raise ImportError('no tqdm here')\n")
    r = run("image", png, "-o", tmp_path / "p.sct", prefix=str(fake))
    assert r.returncode == 0, r.stderr
    assert "compressing:" in r.stderr and "cuts" in r.stderr
    r = run("image", png, "-o", tmp_path / "q.sct", "-q", prefix=str(fake))
    assert r.returncode == 0 and r.stderr == ""


def test_progress_with_tqdm(tmp_path, png):
    pytest.importorskip("tqdm")
    r = run("image", png, "-o", tmp_path / "p.sct")
    assert r.returncode == 0, r.stderr
    assert "compressing" in r.stderr and "%" in r.stderr


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("signcut ")


# ------------------------------------------------------------------ bad input
def zero_width_png(path):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)          # width 0, height 5, RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def bad_cases(tmp_path, png):
    """(name, argv): each must fail with exit status 2 and write nothing."""
    (tmp_path / "notes.txt").write_text("not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    zero_width_png(tmp_path / "zero.png")
    (tmp_path / "file").write_text("x")
    good = tmp_path / "good.sct"
    image.compress(png, ratio=0.1, seed=0).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.sct").write_bytes(data[:len(data) // 2])
    return [
        ("missing", ["image", tmp_path / "missing.png", "-o", tmp_path / "o.sct"]),
        ("not an image", ["image", tmp_path / "notes.txt", "-o", tmp_path / "o.sct"]),
        ("empty file", ["image", tmp_path / "empty.png", "-o", tmp_path / "o.sct"]),
        ("zero-size picture", ["image", tmp_path / "zero.png", "-o", tmp_path / "o.sct"]),
        ("no such folder", ["image", png, "-o", tmp_path / "nowhere" / "o.sct"]),
        ("folder is a file", ["image", png, "-o", tmp_path / "file" / "o.sct"]),
        ("output is a folder", ["image", png, "-o", tmp_path]),
        ("output is the input", ["image", png, "-o", png]),
        ("output is the input, other spelling",
         ["image", png, "-o", tmp_path / ".." / tmp_path.name / "in.png"]),
        ("decoding onto the input", ["image", good, "-o", good]),
        ("encoding to a picture name", ["image", png, "-o", tmp_path / "o.png"]),
        ("decoding to a non-picture name", ["image", good, "-o", tmp_path / "o.sct"]),
        ("corrupt signcut file", ["image", tmp_path / "cut.sct", "-o", tmp_path / "o.png"]),
        ("not a signcut file", ["image", tmp_path / "notes.txt", "-o", tmp_path / "o.png"]),
        ("budget too small", ["image", png, "-o", tmp_path / "o.sct", "--ratio", "1e-6"]),
        ("decode preview folder missing", ["image", good, "-o", tmp_path / "nowhere" / "o.png",
                                           "--preview", "5"]),
    ]


def test_bad_input(tmp_path, png):
    cases = bad_cases(tmp_path, png)
    before = listing(tmp_path)
    for name, argv in cases:
        r = run(*argv, "-q")
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert r.stderr.startswith("signcut: error:"), (name, r.stderr)
        assert r.stderr.count("\n") == 1, (name, r.stderr)
        assert r.stdout == "", name
        assert listing(tmp_path) == before, name            # nothing written, input intact


def test_unreadable_input_is_named_before_the_output(tmp_path):
    """A file that is neither a picture nor a signcut file, asked to become a picture (as a
    broken .sct would): the message is about the input, not about the output's extension."""
    (tmp_path / "broken.sct").write_bytes(b"garbage, not a signcut file")
    r = run("image", tmp_path / "broken.sct", "-o", tmp_path / "back.png", "-q")
    assert r.returncode == 2 and "neither a picture Pillow can open nor a signcut file" in r.stderr


def test_bad_arguments(tmp_path, png):
    for argv in (["image", png], ["image", png, "-o", tmp_path / "o.sct", "--ratio", "0"],
                 ["image", png, "-o", tmp_path / "o.sct", "--tile", "ax3"],
                 ["image", png, "-o", tmp_path / "o.sct", "--color", "hsv"],
                 ["image", png, "-o", tmp_path / "o.sct", "--preview", "0"], []):
        r = run(*argv)
        assert r.returncode == 2, argv
    assert not os.path.exists(tmp_path / "o.sct")
