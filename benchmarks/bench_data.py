"""Data pipeline throughput, clips/s: tinyaction's TinyVirat loader against a naive reference.

Both decode a TinyVIRAT-shaped synthetic split, sample `clip_len` frames, resize them to `size` and
collate batches, through the same DataLoader. The reference (`common.NaiveClips`) decodes every frame
with PyAV, then resizes the sampled frames one by one with PIL (bilinear). Runs alternate (ours,
reference) per worker count and repeat; the median is reported, with the ratio ours / reference.

    python benchmarks/bench_data.py                      # 400 clips, workers 0 1 2
    python benchmarks/bench_data.py --clips 8 --workers 0 --repeats 1 --out /tmp/smoke.json   # CI smoke
"""
import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from tinyaction.data import TinyVirat, collate_clips
from tinyaction.synthetic import default_data_root, make_synthetic

from common import RESULTS, NaiveClips, device_name, interleaved_rates, write_report


def one_pass(dataset: Dataset, workers: int, batch_size: int) -> int:
    "Load every clip of `dataset` once; returns how many."
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    return sum(len(clips) for clips, _, _ in loader)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clip_len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "data_pipeline_cpu.json")
    args = parser.parse_args()
    root = make_synthetic(default_data_root() / f"bench_{args.clips}", n_train=args.clips, n_val=1, n_test=1, seed=1)
    ours = TinyVirat(root, "train", clip_len=args.clip_len, size=args.size, train=False)
    reference = NaiveClips(root, "train", args.clip_len, args.size)
    rows = []
    for workers in args.workers:
        rates = interleaved_rates({"tinyaction": lambda: one_pass(ours, workers, args.batch_size),
                                   "reference": lambda: one_pass(reference, workers, args.batch_size)},
                                  args.repeats, torch.device("cpu"))
        rows.append({"workers": workers, "tinyaction_clips_per_s": round(rates["tinyaction"], 1),
                     "reference_clips_per_s": round(rates["reference"], 1),
                     "ratio": round(rates["tinyaction"] / rates["reference"], 2)})
        print(f"workers {workers}: tinyaction {rates['tinyaction']:.1f} clips/s, reference {rates['reference']:.1f} clips/s, "
              f"ratio {rates['tinyaction'] / rates['reference']:.2f}")
    write_report(args.out, {"benchmark": "data_pipeline", "device": device_name(torch.device("cpu")), "clips": args.clips,
                            "clip_len": args.clip_len, "size": args.size, "batch_size": args.batch_size,
                            "repeats": args.repeats, "baseline": "PyAV decode of all frames + per-frame PIL bilinear resize",
                            "results": rows})


if __name__ == "__main__":
    main()
