"""benchmarks/run.py and the record protocol of the benchmark scripts (small runs only)."""
import json
import math
import os
import subprocess
import sys

import pytest

import signcut
from conftest import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
KEYS = {"figure", "value", "unit", "baseline", "baseline_value", "ratio", "goal", "ok"}


def run(*args):
    # A script's own folder (benchmarks/) goes on sys.path, not the checkout: PYTHONPATH
    # names the signcut these tests import.
    return subprocess.run([sys.executable, *map(str, args)], env=subprocess_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_record_and_json_writer(tmp_path):
    sys.path.insert(0, BENCH)
    try:
        from _common import record, write_json
    finally:
        sys.path.remove(BENCH)
    r = record("f", 3, "ms", "base", 2, "ratio <= 1", False)
    assert set(r) == KEYS and r["ratio"] == 1.5 and r["ok"] is False
    assert record("g", 1, "", "b", 0)["ok"] is None
    write_json(tmp_path / "r.json", [r, record("g", 1, "", "b", 0)])
    back = json.loads((tmp_path / "r.json").read_text())    # strict JSON: NaN became null
    assert back[0] == r and back[1]["ratio"] is None


def test_run_collects_one_table(tmp_path):
    out = tmp_path / "all.json"
    done = run(os.path.join(BENCH, "run.py"), "--quick", "--only", "memory", "--json", out)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert signcut.cpu_info()["active"] in text and "CPU features" in text
    assert "| Script | Figure | Value | Baseline (same run) |" in text
    records = json.loads(out.read_text())
    assert len(records) == 1 and set(records[0]) == KEYS | {"script"}
    r = records[0]
    assert r["script"] == "bench_memory.py" and r["unit"] == "MiB" and r["baseline_value"] == 4
    assert math.isclose(r["ratio"], r["value"] / r["baseline_value"])
    assert f"| memory | {r['figure']} |" in text


def test_run_refuses_unknown_scripts():
    done = run(os.path.join(BENCH, "run.py"), "--only", "nonsense")
    assert done.returncode == 2 and "unknown script" in done.stderr


@pytest.mark.parametrize("script", sorted(n for n in os.listdir(BENCH)
                                          if n.startswith("bench_") and n.endswith(".py")))
def test_every_script_takes_the_protocol_options(script):
    done = run(os.path.join(BENCH, script), "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--quick" in done.stdout and "--json" in done.stdout
