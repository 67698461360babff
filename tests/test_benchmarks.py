"Every benchmark runs once at a tiny size on CPU (a smoke test: no speed is asserted here)."
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def run_benchmark(script: str, *args: str) -> None:
    "Run benchmarks/`script` with `args`; fail with its stderr if it fails."
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_data_pipeline_benchmark_smoke(tmp_path):
    out = tmp_path / "data.json"
    run_benchmark("bench_data.py", "--clips", "6", "--workers", "0", "1", "--repeats", "1", "--size", "32", "--out", str(out))
    report = json.loads(out.read_text())
    assert [row["workers"] for row in report["results"]] == [0, 1]
    assert all(row["ratio"] > 0 and row["tinyaction_clips_per_s"] > 0 for row in report["results"])
    assert report["baseline"] and report["device"]


@pytest.mark.slow
def test_training_benchmark_smoke(tmp_path):
    out = tmp_path / "train.json"
    run_benchmark("bench_train.py", "--batch_size", "1", "--clip_len", "4", "--size", "32", "--steps", "1", "--warmup", "1",
                  "--repeats", "1", "--device", "cpu", "--peak_tflops", "1.0", "--out", str(out))
    report = json.loads(out.read_text())
    rows = {row["run"]: row for row in report["results"]}
    other = "tinyaction_fp32" if report["default_training_precision"] == "bf16" else "tinyaction_bf16"
    assert set(rows) == {"torchvision_eager_fp32", "tinyaction", other}
    assert rows["torchvision_eager_fp32"]["ratio_to_baseline"] == 1.0
    assert isinstance(report["native_bf16"], bool) and "bf16" in report["device"]
    assert all(row["clips_per_s"] > 0 and 0 < row["mfu"] for row in rows.values())
    assert 9 < report["train_gflops_per_clip"] < 10.5  # R(2+1)D-34 at 4x32x32: 3 x 3.25 forward GFLOPs
    assert all(row["warmup_s"] > 0 for row in rows.values())
    assert [t["goal"] for t in report["targets"]] == [3.0, 0.40]  # issue #16's CPU goal; the H100's is 2.0


@pytest.mark.slow
def test_evaluation_benchmark_smoke(tmp_path):
    out = tmp_path / "eval.json"
    run_benchmark("bench_eval.py", "--videos", "3", "--batch_size", "2", "--clip_len", "4", "--size", "32", "--workers", "1",
                  "--repeats", "1", "--device", "cpu", "--out", str(out))
    report = json.loads(out.read_text())
    other = "tinyaction_fp32" if report["default_precision"] == "bf16" else "tinyaction_bf16"
    assert [row["run"] for row in report["results"]] == ["baseline", "tinyaction", other, "tinyaction_model_only"]
    assert report["default_precision"] == ("bf16" if report["native_bf16"] else "fp32")
    assert all(row["videos_per_s"] > 0 for row in report["results"]) and report["num_clips"] == 5
    assert [t["goal"] for t in report["targets"]] == [10, 2.5]  # seconds for TinyVIRAT's test set; issue #16's CPU ratio


@pytest.mark.slow
def test_epoch_benchmark_smoke(tmp_path):
    train = {"device": "cpu", "results": [{"run": "torchvision_eager_fp32", "clips_per_s": 10.0},
                                          {"run": "tinyaction", "clips_per_s": 30.0},
                                          {"run": "tinyaction_fp32", "clips_per_s": 15.0}]}
    data = {"device": "cpu", "results": [{"workers": 0, "tinyaction_clips_per_s": 20.0, "reference_clips_per_s": 5.0},
                                         {"workers": 2, "tinyaction_clips_per_s": 60.0, "reference_clips_per_s": 8.0}]}
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "data.json").write_text(json.dumps(data))
    out = tmp_path / "epoch.json"
    run_benchmark("bench_epoch.py", "--train_json", str(tmp_path / "train.json"), "--data_json", str(tmp_path / "data.json"),
                  "--measure", "--clips", "8", "--arch", "r2plus1d_tiny", "--size", "16", "--clip_len", "4", "--batch_size", "4",
                  "--epochs", "1", "--out", str(out))
    report = json.loads(out.read_text())
    estimate = report["estimate"]
    assert estimate["tinyaction_epoch_s"] == round(16950 / 30, 1) and estimate["bound_by"] == "model"
    assert estimate["tinyaction_fp32_epoch_s"] == round(16950 / 15, 1)
    assert estimate["baseline_epoch_s"] == round(16950 / 8, 1) and estimate["loader_to_model_ratio"] == 2.0
    assert report["measured"]["clips"] == 8 and report["measured"]["measured_epoch_s"] >= 0
    assert [(t["goal"], t["met"]) for t in report["targets"][:2]] == [(1.5, True), (15, False)]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_train.py", "bench_eval.py"])
def test_benchmarks_take_any_model_of_the_zoo(tmp_path, script):
    out = tmp_path / "arch.json"
    size = ["--batch_size", "1", "--clip_len", "4", "--size", "32", "--repeats", "1", "--out", str(out)]
    extra = ["--steps", "1", "--warmup", "1"] if script == "bench_train.py" else ["--videos", "2", "--workers", "0"]
    run_benchmark(script, "--arch", "r3d_18", *size, *extra)
    report = json.loads(out.read_text())
    assert report["model"] == "r3d_18" and report["baseline"].startswith(("torchvision r3d_18", "PyAV decode"))
    assert "r3d_18" in report["baseline"]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_train.py", "bench_eval.py"])
def test_benchmarks_time_a_compiled_run_and_its_cost(tmp_path, script):
    out = tmp_path / "compiled.json"
    extra = ["--steps", "2", "--warmup", "1"] if script == "bench_train.py" else ["--videos", "3", "--workers", "0",
                                                                               "--num_clips", "1"]
    run_benchmark(script, "--arch", "r2plus1d_tiny", "--batch_size", "2", "--clip_len", "8", "--size", "32", "--repeats", "1",
                  "--device", "cpu", "--compile", "--out", str(out), *extra)
    compiled = json.loads(out.read_text())["results"][-1]
    payback = "pays_back_after_steps" if script == "bench_train.py" else "pays_back_after_passes"
    assert compiled["run"] == "tinyaction_compiled" and compiled["compile_s"] > 0 and payback in compiled
