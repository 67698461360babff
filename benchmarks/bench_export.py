"""An exported model on the CPU: macro F1 and clips per second of PyTorch eager fp32, ONNX fp32 and ONNX int8.

One trained checkpoint (--checkpoint; `03_train`'s demo network), its val split (--data_dir, the synthetic set), one
clip per video drawn as a deployment draws it (`tinyaction.runtime.read_clips`: the checkpoint's sampling and exact
resize), decoded once before timing. Engines, each on the same uint8 clips, each including its preprocessing:
- baseline: PyTorch eager fp32, `tinyaction.export.DeployedNetwork` (normalise, network, sigmoid), --threads threads;
- tinyaction_bf16 (an extra row, where the CPU computes bf16 natively): the same under bf16 autocast;
- onnx_fp32: the file `tinyaction.export` writes, in onnxruntime (CPU, intra-op threads = torch's);
- onnx_int8: the same, after onnxruntime's dynamic int8 quantisation;
- onnx_int8_static: the same, after static int8 (QDQ) calibrated on one clip of each of the first --calibration videos
  of the train split (`tinyaction.export.quantize_int8(method="static")`, what `--quantize static` writes).
Macro F1 at the checkpoint's embedded thresholds; throughput at batch 1 and 16 (--batch_sizes), the engines timed in
alternation, median of --repeats windows of --seconds each; ratios against the baseline at the same batch size.
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from tinyaction.data import load_class_map, load_split, multi_hot
from tinyaction.export import DeployedNetwork, deploy_contract, onnx_bytes, quantize_int8
from tinyaction.metrics import multilabel_metrics
from tinyaction.models import autocast, native_bf16
from tinyaction.runtime import ExportedModel, read_clips

from common import RESULTS, device_name, target, write_report


def timed_rates(runs: dict, clips: np.ndarray, batch_size: int, repeats: int, seconds: float) -> dict[str, float]:
    "Median clips/s of each engine on batches of `batch_size`, in alternating windows of about `seconds` each."
    batches = [clips[i:i + batch_size] for i in range(0, len(clips) - batch_size + 1, batch_size)] or [clips[:batch_size]]
    rates = {name: [] for name in runs}
    for name, run in runs.items():  # warm-up: first calls allocate and pick kernels
        run(batches[0])
    for _ in range(repeats):
        for name, run in runs.items():
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or done == 0:
                run(batches[(done // batch_size) % len(batches)])
                done += len(batches[0])
            rates[name].append(done / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/export_demo/checkpoint_last.pt", help="a training checkpoint of 03_train")
    parser.add_argument("--data_dir", default="data/synthetic", help="the dataset whose split is scored")
    parser.add_argument("--split", default="val")
    parser.add_argument("--videos", type=int, default=0, help="the first N videos of the split; 0: all")
    parser.add_argument("--calibration", type=int, default=64, help="train videos static int8 is calibrated on")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="timing windows per engine and batch size (median)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timing window")
    parser.add_argument("--threads", type=int, default=0, help="threads of both engines; 0: torch's default (every core)")
    parser.add_argument("--out", type=Path, default=RESULTS / "export_cpu.json")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model, contract, thresholds_source = deploy_contract(args.checkpoint)
    network = DeployedNetwork(model).eval()
    records = load_split(args.data_dir, args.split)[:args.videos or None]
    classes = load_class_map(args.data_dir)
    if list(classes) != list(contract.classes):
        raise SystemExit(f"{args.data_dir}: its classes are not the checkpoint's {list(contract.classes)}")
    clips = np.concatenate([read_clips(r.path, contract, 1) for r in records])
    targets = np.stack([multi_hot(r, classes) for r in records])

    start = time.perf_counter()
    fp32 = onnx_bytes(network, torch.from_numpy(clips[:2]), contract)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    int8 = quantize_int8(fp32, contract)
    quantize_s = time.perf_counter() - start
    calibration = np.concatenate([read_clips(r.path, contract, 1) for r in load_split(args.data_dir, "train")[:args.calibration]])
    start = time.perf_counter()
    static = quantize_int8(fp32, contract, "static", calibration)
    static_s = time.perf_counter() - start

    def torch_run(precision: str):
        def run(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad(), autocast(torch.device("cpu"), precision == "bf16"):
                return network(torch.from_numpy(batch)).float().numpy()
        return run

    runs = {"pytorch_eager_fp32": torch_run("fp32")}
    if native_bf16("cpu"):
        runs["pytorch_bf16"] = torch_run("bf16")
    runs["onnx_fp32"] = ExportedModel(fp32, threads)
    runs["onnx_int8"] = ExportedModel(int8, threads)
    runs["onnx_int8_static"] = ExportedModel(static, threads)
    sizes = {"pytorch_eager_fp32": None, "pytorch_bf16": None, "onnx_fp32": len(fp32), "onnx_int8": len(int8),
             "onnx_int8_static": len(static)}

    thresholds = np.array(contract.thresholds)
    scores = {name: np.concatenate([run(clips[i:i + 16]) for i in range(0, len(clips), 16)]) for name, run in runs.items()}
    f1 = {name: multilabel_metrics(targets, s, thresholds)["macro_f1"] for name, s in scores.items()}
    rates = {b: timed_rates(runs, clips, b, args.repeats, args.seconds) for b in args.batch_sizes}

    results = []
    for name in runs:
        row = {"run": name, "macro_f1": round(f1[name], 4),
               "max_abs_diff_to_baseline": float(np.abs(scores[name] - scores["pytorch_eager_fp32"]).max()),
               "same_labels_as_baseline": float(((scores[name] >= thresholds) == (scores["pytorch_eager_fp32"] >= thresholds))
                                                .all(1).mean()),
               "file_bytes": sizes[name]}
        for b in args.batch_sizes:
            row[f"clips_per_s_batch{b}"] = round(rates[b][name], 1)
            row[f"ratio_batch{b}"] = round(rates[b][name] / rates[b]["pytorch_eager_fp32"], 3)
        results.append(row)
        print({k: v for k, v in row.items() if k != "file_bytes"})
    rows = {row["run"]: row for row in results}
    targets_ = [target(f"onnx fp32 / pytorch eager fp32, batch {b}", rows["onnx_fp32"][f"ratio_batch{b}"], 1.5)
                for b in args.batch_sizes]
    for name in ("onnx_int8", "onnx_int8_static"):
        targets_ += [target(f"{name} / pytorch eager fp32, batch {b}", rows[name][f"ratio_batch{b}"], 2.5)
                     for b in args.batch_sizes]
    for name in ("onnx_int8", "onnx_int8_static"):
        drop = f1["pytorch_eager_fp32"] - f1[name]
        targets_.append(target(f"macro F1 drop of {name} (pytorch fp32 - int8)", drop, 0.01, at_most=True))
    write_report(args.out, {
        "benchmark": "export", "device": device_name(torch.device("cpu")), "threads": threads,
        "onnxruntime": onnxruntime.__version__, "checkpoint": str(args.checkpoint), "arch": contract.arch,
        "input": f"{contract.clip_len}x{contract.size}x{contract.size}", "split": args.split, "videos": len(records),
        "thresholds": thresholds_source, "baseline": "PyTorch eager fp32 (DeployedNetwork: normalise, network, sigmoid)",
        "export_s": round(export_s, 2), "quantize_s": round(quantize_s, 2), "static_quantize_s": round(static_s, 2),
        "calibration_videos": len(calibration),
        "repeats": args.repeats, "seconds": args.seconds, "results": results, "targets": targets_})


if __name__ == "__main__":
    main()
