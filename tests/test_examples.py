"""The scripts in examples/ run as documented (small sizes) and print what they promise."""
import os
import subprocess
import sys

from conftest import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args, cwd):
    # -P: the script's folder is not put on sys.path
    r = subprocess.run([sys.executable, "-P", os.path.join(ROOT, "examples", name), *args],
                       cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def table_rows(out):
    """The cells of each row of the Markdown table in `out`, header left out."""
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in lines[1:]]


def percent(cell):
    assert cell.endswith("%"), cell
    return float(cell[:-1])


def test_compress_cat(tmp_path):
    out = run_example("compress_cat.py", "--out", str(tmp_path), "--bits", "0.5", "2", cwd=tmp_path)
    rows = table_rows(out)
    assert len(rows) == 2
    psnr = [float(r[3]) for r in rows]
    assert 20 < psnr[0] < psnr[1]                     # more bits, a better picture
    assert sorted(os.listdir(tmp_path)) == ["chelsea-0.5bpp.png", "chelsea-2bpp.png"]


def test_compressed_matmul(tmp_path):
    out = run_example("compressed_matmul.py", "--size", "192", "--bits", "2", "8", cwd=tmp_path)
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["2", "8"]
    for row in rows:                  # W @ x about as close to A @ x as W is to A
        assert percent(row[4]) < 2 * percent(row[3]) + 0.5
    assert percent(rows[1][4]) < percent(rows[0][4])  # more bits, a closer product


def test_compress_weights(tmp_path):
    out = run_example("compress_weights.py", "--out", str(tmp_path), "--size", "128",
                      "--layers", "1", cwd=tmp_path)
    rows = {r[0]: r for r in table_rows(out)}
    assert set(rows) == {"layers.0.attn.weight", "layers.0.mlp.weight", "layers.0.norm.weight",
                         "layers.0.mlp.bias"}
    norm, mlp = rows["layers.0.norm.weight"], rows["layers.0.mlp.weight"]
    assert norm[2] == "passthrough" and percent(norm[3]) == 0.0
    assert mlp[2] == "signcut" and 0.0 < percent(mlp[3]) < 5.0
    assert {"model.safetensors", "model.sct", "restored.safetensors"} <= set(os.listdir(tmp_path))
    assert "W @ x from the signs" in out


def test_graph_cuts(tmp_path):
    out = run_example("graph_cuts.py", "--ratios", "0.25", "1", cwd=tmp_path)
    rows = table_rows(out)
    assert [r[0] for r in rows] == ["karate club"] * 2 + ["les miserables"] * 2 \
        + ["southern women x events"] * 2
    for small, large in zip(rows[::2], rows[1::2]):
        sparse_bytes = int(small[3])
        assert int(small[6]) <= 0.25 * sparse_bytes and int(large[6]) <= sparse_bytes
        assert 0.0 <= percent(large[7]) < percent(small[7]) < 100.0   # more bytes, less error
    ari = float(out.split("adjusted Rand index")[1].split()[0])
    assert -1.0 <= ari <= 1.0
