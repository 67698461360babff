"Every benchmark runs once at a tiny size (a smoke test: no speed is asserted here)."
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_data_pipeline_benchmark_smoke(tmp_path):
    out = tmp_path / "data.json"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_data.py"), "--clips", "6",
                             "--workers", "0", "1", "--repeats", "1", "--size", "32", "--out", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["workers"] for row in report["results"]] == [0, 1]
    assert all(row["ratio"] > 0 and row["tinyaction_clips_per_s"] > 0 for row in report["results"])
    assert report["baseline"] and report["device"]
