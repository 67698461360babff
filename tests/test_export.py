"""Exporting a trained model (nbs/10_export.ipynb) and running it without PyTorch (nbs/02i_runtime.ipynb): both formats verify
on real decoded clips, the exported ONNX model gives the PyTorch predictor's labels on the real fixture videos through
onnxruntime alone, and a bad checkpoint, an unwritable path or a diverging model fail clearly, leaving no file."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tinyaction.export import ExportError, ExportVerificationError, deploy_contract, export_model, load_torchscript
from tinyaction.runtime import ExportedModel
from tinyaction.zoo import list_models

from conftest import REPO_ROOT, run_module

VIDEOS = ("flipping_a_pancake.mkv", "pool_cleaning.mp4", "ucf101_apply_eye_makeup.avi")

HIDE_TORCH = """import runpy, sys
class HideTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "decord"):
            raise ImportError(f"{name} is hidden: this process runs as a deployment without PyTorch")
sys.meta_path.insert(0, HideTorch())
sys.argv = ["tinyaction.runtime", *sys.argv[1:]]
runpy.run_module("tinyaction.runtime", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def exported(checkpoint, real_videos, tmp_path_factory):
    "The checkpoint exported to ONNX and TorchScript, each verified on one clip of each real video."
    out = tmp_path_factory.mktemp("exported")
    return {fmt: export_model(checkpoint, out / name, format=fmt, verify=real_videos)
            for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.pt"))}


def read_rows(path) -> dict[str, dict]:
    return {row["video"]: row for row in csv.DictReader(open(path))}


def test_both_formats_verify_on_real_clips_and_carry_the_contract(checkpoint, exported):
    _, contract, _ = deploy_contract(checkpoint)
    for report in exported.values():
        assert report.clips == 3 and 0 <= report.max_abs_diff < 1e-4 and report.tolerance == 1e-4, report
    assert ExportedModel(exported["onnx"].path).contract == contract
    module, read_back = load_torchscript(exported["torchscript"].path)
    assert read_back == contract and isinstance(module, torch.jit.ScriptModule)
    clips = torch.randint(0, 256, (7, 3, contract.clip_len, contract.size, contract.size), dtype=torch.uint8)  # any batch size
    np.testing.assert_allclose(ExportedModel(exported["onnx"].path)(clips.numpy()), module(clips).detach().numpy(), atol=1e-5)


def test_onnx_labels_without_torch_are_the_pytorch_predictors(checkpoint, exported, real_videos, tmp_path):
    videos = [str(real_videos / name) for name in VIDEOS]
    common = ["--num_clips", "2", "--out"]
    run_module("tinyaction.predict", "--checkpoint", str(checkpoint), *videos, "--num_workers", "0", "--device", "cpu",
               "--amp", "false", *common, str(tmp_path / "pytorch.csv"))
    deployed = subprocess.run([sys.executable, "-c", HIDE_TORCH, "--model", exported["onnx"].path, *videos, *common,
                               str(tmp_path / "onnx.csv")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert "3 of 3 videos scored" in deployed.stderr
    run_module("tinyaction.predict", "--model", exported["onnx"].path, *videos, *common, str(tmp_path / "predict_model.csv"))
    pytorch, onnx, predicted = (read_rows(tmp_path / f"{n}.csv") for n in ("pytorch", "onnx", "predict_model"))
    classes = ExportedModel(exported["onnx"].path).contract.classes
    assert list(pytorch) == list(onnx) == list(predicted) == videos
    for video in videos:
        assert onnx[video]["labels"] == pytorch[video]["labels"] == predicted[video]["labels"]
        np.testing.assert_allclose([float(onnx[video][c]) for c in classes], [float(pytorch[video][c]) for c in classes],
                                   atol=1e-4)
        assert onnx[video] == predicted[video]


def test_int8_quantisation_is_smaller_and_verifies_within_its_tolerance(checkpoint, exported, real_videos, tmp_path):
    for method in ("dynamic", "static"):  # static calibrated on the sample's train videos, verified on the real ones
        report = export_model(checkpoint, tmp_path / f"{method}.onnx", quantize=method, verify=real_videos)
        assert report.precision == "int8" and report.quantization == method and report.max_abs_diff <= report.tolerance == 0.1
        assert ExportedModel(report.path).contract.precision == "int8" and report.bytes < exported["onnx"].bytes


def test_a_file_that_is_not_a_training_checkpoint_is_refused(real_videos, tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="weights.pt: not a tinyaction training checkpoint"):
        export_model(tmp_path / "weights.pt", tmp_path / "model.onnx", verify=real_videos)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]


def test_an_unwritable_path_is_refused_before_exporting(checkpoint, real_videos, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ExportError, match="a_file/model.onnx: cannot write there"):
        export_model(checkpoint, tmp_path / "a_file" / "model.onnx", verify=real_videos)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ExportError, match="folder: is a folder"):
        export_model(checkpoint, tmp_path / "folder", verify=real_videos)
    result = subprocess.run([sys.executable, "-m", "tinyaction.export", "--checkpoint", str(checkpoint), "--out",
                             str(tmp_path / "a_file" / "m.onnx"), "--verify", str(real_videos)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "m.onnx: cannot write there" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a_file", "folder"]


def test_a_model_diverging_beyond_the_tolerance_is_not_written(checkpoint, real_videos, tmp_path):
    with pytest.raises(ExportVerificationError, match=r"strict.onnx: not written: .* differ from the PyTorch network's by up to"):
        export_model(checkpoint, tmp_path / "strict.onnx", quantize=True, tolerance=1e-7, verify=real_videos)
    assert list(tmp_path.iterdir()) == []


def test_the_zoo_table_is_measured_in_the_zoos_order_and_says_why_a_model_does_not_export():
    table = json.loads((REPO_ROOT / "benchmarks" / "results" / "export_zoo_cpu.json").read_text())
    names = [row["model"] for row in table["models"]]
    assert names == [name for name in list_models() if name in names]  # the chapter lists the rest as not measured yet
    assert {"r2plus1d_tiny", "r2plus1d_34", "r2plus1d_18", "swin3d_t", "s3d"} <= set(names)
    for row in table["models"]:
        for fmt in ("onnx_torchscript", "onnx_dynamo", "torchscript"):
            result = row[fmt]
            assert result["exported"] == (result["error"] is None)
            assert result["max_abs_diff"] < 1e-4 if result["exported"] else result["error"]


@pytest.mark.slow
def test_export_benchmark_smoke(checkpoint, synthetic_root, tmp_path):
    out = tmp_path / "export.json"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_export.py"), "--checkpoint", str(checkpoint),
                             "--data_dir", str(synthetic_root), "--videos", "4", "--batch_sizes", "1", "2", "--repeats", "1",
                             "--seconds", "0.05", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["run"]: row for row in report["results"]}
    assert {"pytorch_eager_fp32", "onnx_fp32", "onnx_int8", "onnx_int8_static"} <= set(rows) and report["videos"] == 4
    assert rows["pytorch_eager_fp32"]["ratio_batch1"] == 1.0 and rows["onnx_fp32"]["max_abs_diff_to_baseline"] < 1e-4
    assert all(row["clips_per_s_batch2"] > 0 for row in rows.values())
    assert [t["goal"] for t in report["targets"]] == [1.5, 1.5, 2.5, 2.5, 2.5, 2.5, 0.01, 0.01]


def test_a_torchscript_export_named_onnx_is_refused_before_anything_is_read(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tinyaction.export", "--checkpoint", str(tmp_path / "none.pt"), "--format",
                             "torchscript", "--out", str(tmp_path / "model.onnx")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1 and "a .onnx path for ONNX only (format 'torchscript')" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_graph_that_disagrees_with_its_contract_is_refused_at_load(exported, tmp_path):
    import onnx

    model = onnx.load(str(exported["onnx"].path))
    entry = next(p for p in model.metadata_props if p.key == "tinyaction")
    contract = json.loads(entry.value)
    entry.value = json.dumps({**contract, "classes": contract["classes"][:3], "thresholds": contract["thresholds"][:3]})
    onnx.save(model, str(tmp_path / "three_classes.onnx"))
    with pytest.raises(ValueError, match=r"three_classes.onnx: its graph takes .* but its contract says .* \(B, 3\) out"):
        ExportedModel(tmp_path / "three_classes.onnx")


def run_in(folder, module: str, *args) -> subprocess.CompletedProcess:
    "`python -m module args...` run in `folder`, its output kept."
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=folder, capture_output=True, text=True,
                          timeout=600)


def test_export_verifies_on_the_sample_from_any_working_directory(checkpoint, tmp_path):
    result = run_in(tmp_path, "tinyaction.export", "--checkpoint", checkpoint, "--out", "m.onnx", "--quantize", "static")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["clips"] > 0 and report["quantization"] == "static" and (tmp_path / "m.onnx").is_file()
    result = run_in(tmp_path, "tinyaction.export", "--checkpoint", checkpoint, "--out", "m.onnx", "--calibrate", "clips")
    assert result.returncode == 1 and "parameter 'calibrate': got 'clips'; expected None unless" in result.stderr
    result = run_in(tmp_path, "tinyaction.export", "--checkpoint", checkpoint, "--out", "new/m.onnx", "--verify", "no_clips")
    assert result.returncode == 1 and "no_clips: not found; the export needs real clips here" in result.stderr
    result = run_in(tmp_path, "tinyaction.export", "--checkpoint", tmp_path, "--out", "new/m.onnx", "--tolerance", "-1")
    assert result.returncode == 1 and "parameter 'tolerance': got -1.0" in result.stderr
    result = run_in(tmp_path, "tinyaction.export", "--checkpoint", tmp_path, "--out", "new/m.onnx")
    assert result.returncode == 1 and "is a folder, not a checkpoint" in result.stderr
    assert not (tmp_path / "new").exists()  # refused exports leave no folders behind


def test_deployment_paths_are_checked_before_scoring_and_an_empty_camera_folder_is_skipped(exported, real_videos, tmp_path):
    (tmp_path / "empty_camera").mkdir(), (tmp_path / "out.csv").mkdir()
    model, video = exported["onnx"].path, real_videos / VIDEOS[0]
    result = run_in(REPO_ROOT, "tinyaction.runtime", "--model", model, video, "--out", tmp_path / "out.csv")
    assert result.returncode == 1 and "out.csv: is a folder; give the file to write" in result.stderr
    assert "scored" not in result.stderr
    result = run_in(REPO_ROOT, "tinyaction.runtime", "--model", model, video, tmp_path / "empty_camera", "--num_clips", "1",
                    "--out", tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "and 1 folders without a video" in result.stderr and "1 of 1 videos scored" in result.stderr
    result = run_in(REPO_ROOT, "tinyaction.predict", "--model", model, "--checkpoint", "runs/other/checkpoint_best.pt", video,
                    "--out", tmp_path / "q.csv")
    assert result.returncode == 1 and "parameter 'checkpoint'" in result.stderr and "not given with --model" in result.stderr
    result = run_in(REPO_ROOT, "tinyaction.predict", "--model", model, "--num_workers", "2", video, "--out", tmp_path / "q.csv")
    assert result.returncode == 1 and "parameter 'num_workers': got '2'" in result.stderr  # its default, given: refused too


def with_contract(source, path, **changes):
    "A copy of the ONNX model at `source` whose embedded contract has `changes`."
    import onnx

    model = onnx.load(str(source))
    entry = next(p for p in model.metadata_props if p.key == "tinyaction")
    entry.value = json.dumps({**json.loads(entry.value), **changes})
    onnx.save(model, str(path))
    return path


def test_a_crafted_model_file_is_refused_in_one_line_before_any_clip(exported, real_videos, tmp_path):
    video = real_videos / VIDEOS[0]
    source = exported["onnx"].path
    classes = ExportedModel(source).contract.classes
    for name, changes, message in [("video_column", {"classes": ["video", *classes[1:]]}, "none of ('video', 'error', 'labels')"),
                                   ("negative_seed", {"seed": -1}, "seed an int >= 0"),
                                   ("listed_arch", {"arch": ["r2plus1d_tiny"]}, "arch must be a name")]:
        model = with_contract(source, tmp_path / f"{name}.onnx", **changes)
        result = run_in(REPO_ROOT, "tinyaction.runtime", "--model", model, video, "--out", tmp_path / f"{name}.csv")
        assert result.returncode == 1 and f"{name}.onnx" in result.stderr and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and not (tmp_path / f"{name}.csv").exists()


def test_linked_camera_folders_are_walked_and_odd_paths_named(exported, real_videos, tmp_path):
    cams = tmp_path / "cams"
    (cams / "cam1").mkdir(parents=True)
    (cams / "cam1" / "a.mp4").symlink_to(real_videos / VIDEOS[1])
    (cams / "cam2").symlink_to(real_videos, target_is_directory=True)  # a linked folder: its videos are scored
    (cams / "loop").symlink_to(cams, target_is_directory=True)  # a loop ends
    result = run_in(REPO_ROOT, "tinyaction.runtime", "--model", exported["onnx"].path, cams, "/dev/null", "--num_clips", "1",
                    "--out", tmp_path / "p.csv")
    assert result.returncode == 1 and "/dev/null: not a regular file" in result.stderr
    scored = read_rows(tmp_path / "p.csv")
    assert sum(1 for row in scored.values() if not row["error"]) == 1 + len(VIDEOS)
    result = run_in(REPO_ROOT, "tinyaction.runtime", "--model", exported["onnx"].path, cams, "--threads", "100000",
                    "--out", tmp_path / "q.csv")
    assert result.returncode == 1 and "parameter 'threads': got 100000" in result.stderr
