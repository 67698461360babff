"""Time of a TinyVIRAT-v2-sized training epoch (16,950 clips): estimated from benchmarks 1 and 2, and measured.

Estimate: an epoch runs at the pace of the slower of the model (bench_train.py, clips/s) and the
loader (bench_data.py, clips/s at its best worker count), so its time is 16,950 clips / min(both);
the baseline's estimate pairs torchvision eager fp32 with the naive loader, and the fast path in its
other precision (bench_train.py's tinyaction_fp32 or tinyaction_bf16 row) gets its estimate beside the default.
Measured (--measure): `tinyaction.train.fit` on a synthetic TinyVIRAT-shaped training split of
--clips clips (16,950 by default), decoding from disk (no cache), loader workers "auto", R(2+1)D-34
at 16x112x112, ASL, random frames; the last epoch's training time (validation excluded) is reported,
scaled to 16,950 clips when --clips differs.

    python benchmarks/bench_epoch.py --train_json benchmarks/results/train_throughput.json \
        --data_json benchmarks/results/data_pipeline.json
    python benchmarks/bench_epoch.py ... --measure                         # GPU: a real 16,950-clip epoch
    python benchmarks/bench_epoch.py ... --measure --clips 16 --arch r2plus1d_tiny --size 32 --clip_len 4 \
        --batch_size 4 --out /tmp/x.json
"""
import argparse
import json
import tempfile
from pathlib import Path

from tinyaction.inference import resolve_device
from tinyaction.synthetic import default_data_root, make_synthetic
from tinyaction.train import TrainConfig, fit

from common import RESULTS, device_name, target, write_report

TINYVIRAT_TRAIN_CLIPS = 16950


def estimate(train: dict, data: dict) -> dict:
    "Epoch seconds for tinyaction and the baseline, from the two benchmarks' reports."
    model = {row["run"]: row["clips_per_s"] for row in train["results"]}
    loader_ours = max(row["tinyaction_clips_per_s"] for row in data["results"])
    loader_ref = max(row["reference_clips_per_s"] for row in data["results"])
    ours = min(model["tinyaction"], loader_ours)
    baseline = min(model["torchvision_eager_fp32"], loader_ref)
    other = {f"{name}_epoch_s": round(TINYVIRAT_TRAIN_CLIPS / min(rate, loader_ours), 1) for name, rate in model.items()
             if name in ("tinyaction_fp32", "tinyaction_bf16")}
    return {"model_clips_per_s": model["tinyaction"], "loader_clips_per_s": loader_ours,
            "loader_to_model_ratio": round(loader_ours / model["tinyaction"], 2),
            "bound_by": "loader" if loader_ours < model["tinyaction"] else "model",
            "tinyaction_epoch_s": round(TINYVIRAT_TRAIN_CLIPS / ours, 1), **other,
            "baseline_epoch_s": round(TINYVIRAT_TRAIN_CLIPS / baseline, 1), "ratio_to_baseline": round(ours / baseline, 2),
            "train_device": train["device"], "data_device": data["device"]}


def measure(args: argparse.Namespace) -> dict:
    "Train --epochs epochs with `fit` on a synthetic split of --clips clips; the last epoch's training seconds."
    root = make_synthetic(default_data_root() / f"bench_epoch_{args.clips}", n_train=args.clips, n_val=args.batch_size,
                          n_test=1, seed=3)
    with tempfile.TemporaryDirectory() as out:
        fit(TrainConfig(data_dir=str(root), out_dir=out, arch=args.arch, clip_len=args.clip_len, size=args.size,
                        epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, loss="asl", sampling="random",
                        cache=False, num_workers="auto", torch_compile=args.compile))
        history = [json.loads(line) for line in (Path(out) / "history.jsonl").read_text().splitlines()]
    seconds = history[-1]["train_seconds"]
    return {"arch": args.arch, "clips": args.clips, "input": [args.batch_size, 3, args.clip_len, args.size, args.size],
            "epochs": args.epochs, "compile": args.compile, "train_seconds_per_epoch": [h["train_seconds"] for h in history],
            "measured_epoch_s": seconds, "scaled_to_16950_s": round(seconds * TINYVIRAT_TRAIN_CLIPS / args.clips, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_json", type=Path, default=RESULTS / "train_throughput.json")
    parser.add_argument("--data_json", type=Path, default=RESULTS / "data_pipeline.json")
    parser.add_argument("--measure", action="store_true", help="also time real epochs with fit")
    parser.add_argument("--clips", type=int, default=TINYVIRAT_TRAIN_CLIPS)
    parser.add_argument("--arch", default="r2plus1d_34")
    parser.add_argument("--clip_len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "epoch_time.json")
    args = parser.parse_args()
    report = {"benchmark": "epoch_time", "device": device_name(resolve_device("auto")), "clips": TINYVIRAT_TRAIN_CLIPS,
              "baseline": "torchvision eager fp32 model with the naive PyAV+PIL loader",
              "estimate": estimate(json.loads(args.train_json.read_text()), json.loads(args.data_json.read_text()))}
    report["targets"] = [target("loader / model >= 1.5", report["estimate"]["loader_to_model_ratio"], 1.5),
                         target("epoch seconds <= 15 (estimate)", report["estimate"]["tinyaction_epoch_s"], 15, at_most=True)]
    print("estimate:", report["estimate"])
    if args.measure:
        report["measured"] = measure(args)
        print("measured:", report["measured"])
        measured = report["measured"]["scaled_to_16950_s"]
        report["targets"].append(target("epoch seconds <= 15 (measured)", measured, 15, at_most=True))
    write_report(args.out, report)


if __name__ == "__main__":
    main()
