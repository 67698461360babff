"""Evaluation throughput, videos/s with 5 clips each: tinyaction's `predict` against a naive loop.

Both score every video of a TinyVIRAT-shaped synthetic split with --arch (R(2+1)D-34 in the IG65M
layout by default; any name of the zoo; same weights), K clips per video, sigmoid scores averaged,
through DataLoaders with the same workers:
- tinyaction: `TinyVirat` (decodes only the sampled frames, resizes each clip in one call) and
  `predict` with the model on the fast path (`prepare_for_device`; the default precision, `amp="auto"`: bf16
  autocast where the device computes bf16 natively, CUDA or AVX-512-BF16/AMX CPUs), and beside it the same
  in the other precision (tinyaction_fp32 or tinyaction_bf16);
- baseline: `common.NaiveClips` (PyAV decodes every frame, PIL resizes frame by frame) and
  the network from torchvision's code in eager fp32;
- with --compile, also tinyaction's `predict` with the model under torch.compile (its compile time apart).
"model only" times tinyaction's forward passes alone on a batch already on the device: the bound the
loader would have to reach. Runs alternate --repeats times; medians are reported.

    python benchmarks/bench_eval.py                    # GPU: 6,097 videos like TinyVIRAT-v2's test split
    python benchmarks/bench_eval.py --videos 4 --batch_size 2 --clip_len 4 --size 32 --workers 0 --repeats 1 --out /tmp/e.json
"""
import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tinyaction.data import TinyVirat, collate_clips
from tinyaction.inference import predict, resolve_device
from tinyaction.loaders import auto_workers
from tinyaction.models import autocast, input_memory_format, native_bf16, prepare_for_device, uses_bf16
from tinyaction.synthetic import default_data_root, make_synthetic
from tinyaction.zoo import contract_of, model_info

from common import RESULTS, NaiveClips, device_name, interleaved_rates, reference, target, twin_networks, write_report


@torch.no_grad()
def naive_scores(model: torch.nn.Module, dataset: NaiveClips, batch_size: int, workers: int, device: torch.device,
                 normalize: torch.nn.Module) -> int:
    "The baseline: scores of every video, eager fp32; returns the number of videos."
    normalize, videos = normalize.to(device), 0
    for clips, _, _ in DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips):
        clips = clips.to(device)
        clips = clips.unsqueeze(1) if clips.dim() == 5 else clips  # one clip per video comes without the clip axis
        torch.sigmoid(model(normalize(clips.flatten(0, 1)))).unflatten(0, clips.shape[:2]).mean(1).cpu()
        videos += len(clips)
    return videos


@torch.no_grad()
def model_only(model: torch.nn.Module, clips: torch.Tensor, batches: int) -> int:
    "Forward passes of tinyaction's model (default precision) on a (videos x K)-clip batch on the device; returns videos scored."
    normalize, videos = contract_of(model).normalize().to(clips.device), clips.shape[0] * batches
    for _ in range(batches):
        with autocast(clips.device):
            inputs = clips.flatten(0, 1).contiguous(memory_format=input_memory_format(model))
            torch.sigmoid(model(normalize(inputs)).float()).cpu()
    return videos


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6097)
    parser.add_argument("--num_clips", type=int, default=5)
    parser.add_argument("--arch", default="r2plus1d_34", help="a name of tinyaction.zoo.list_models()")
    parser.add_argument("--clip_len", type=int, help="default: the model's input contract")
    parser.add_argument("--size", type=int, help="default: the model's input contract")
    parser.add_argument("--batch_size", type=int, default=16, help="videos per batch")
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: every usable core)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time predict with the model under torch.compile")
    parser.add_argument("--out", type=Path, default=RESULTS / "eval_throughput.json")
    args = parser.parse_args()
    contract = model_info(args.arch).contract
    args.clip_len, args.size = args.clip_len or contract.frames, args.size or contract.size
    contract.check(args.arch, args.clip_len, args.size)
    device, workers = resolve_device(args.device), auto_workers() if args.workers is None else args.workers
    root = make_synthetic(default_data_root() / f"bench_eval_{args.videos}", n_train=1, n_val=args.videos, n_test=1, seed=2)
    baseline, ours = twin_networks(args.arch, 10)
    baseline, ours = baseline.to(device).eval(), prepare_for_device(ours, device).eval()
    clips = dict(clip_len=args.clip_len, size=args.size, num_clips=args.num_clips)
    dataset = TinyVirat(root, "val", sampling="random", **clips)
    naive = NaiveClips(root, "val", args.clip_len, args.size, args.num_clips)
    batch = torch.randint(0, 256, (args.batch_size, args.num_clips, 3, args.clip_len, args.size, args.size), dtype=torch.uint8,
                          device=device)
    model_only(ours, batch, 1)
    other, other_name = (False, "tinyaction_fp32") if uses_bf16(device) else (True, "tinyaction_bf16")

    def ours_scores(amp: bool | str, model: torch.nn.Module = ours) -> int:
        return len(predict(model, dataset, args.num_clips, batch_size=args.batch_size, num_workers=workers, device=device,
                           progress=False, amp=amp)[0])

    runs = {"baseline": lambda: naive_scores(baseline, naive, args.batch_size, workers, device, contract.normalize()),
            "tinyaction": lambda: ours_scores("auto"), other_name: lambda: ours_scores(other),
            "tinyaction_model_only": lambda: model_only(ours, batch, max(1, args.videos // args.batch_size))}
    compile_s = None
    if args.compile:
        compiled = torch.compile(ours)
        start = time.perf_counter()
        ours_scores("auto", compiled)  # compiles for the full batches and for the last, smaller one
        compile_s = time.perf_counter() - start
        runs["tinyaction_compiled"] = lambda: ours_scores("auto", compiled)
    rates = interleaved_rates(runs, args.repeats, device)
    rows = [{"run": name, "videos_per_s": round(rate, 2), "ratio_to_baseline": round(rate / rates["baseline"], 2),
             "seconds_for_all": round(args.videos / rate, 1)} for name, rate in rates.items()]
    if compile_s is not None:
        cost = compile_s - args.videos / rates["tinyaction_compiled"]  # the first pass less a compiled pass
        saved = args.videos / rates["tinyaction"] - args.videos / rates["tinyaction_compiled"]
        rows[-1]["compile_s"], rows[-1]["pays_back_after_passes"] = round(cost, 1), round(cost / saved, 1) if saved > 0 else None
    for row in rows:
        print(f"{row['run']:<22} {row['videos_per_s']:>9.2f} videos/s  x{row['ratio_to_baseline']:.2f}")
    targets = [target("seconds for 6,097 videos <= 10", 6097 / rates["tinyaction"], 10, at_most=True)]  # issue #6 (H100)
    targets += [] if device.type == "cuda" else [  # issue #16: a CPU with native bf16
        target("evaluation / baseline >= 2.5", rates["tinyaction"] / rates["baseline"], 2.5)]
    write_report(args.out, {"benchmark": "eval_throughput", "device": device_name(device), "model": args.arch,
                            "videos": args.videos, "num_clips": args.num_clips, "clip_len": args.clip_len, "size": args.size,
                            "batch_size": args.batch_size, "workers": workers, "repeats": args.repeats,
                            "native_bf16": native_bf16(device.type), "default_precision": "bf16" if uses_bf16(device) else "fp32",
                            "baseline": f"PyAV decode of all frames + per-frame PIL resize, {reference(args.arch)[1]}",
                            "results": rows, "targets": targets})


if __name__ == "__main__":
    main()
