"""Data pipeline throughput, clips/s: tinyaction's TinyVirat loader against a naive reference.

Both decode a TinyVIRAT-shaped synthetic split, sample `clip_len` frames, resize them to `size` and
collate batches, through the same DataLoader. The reference decodes every frame with PyAV, then
resizes the sampled frames one by one with PIL (bilinear). Runs alternate (ours, reference) per
worker count and repeat; the median is reported, with the ratio ours / reference.

    python benchmarks/bench_data.py                      # 400 clips, workers 0 1 2
    python benchmarks/bench_data.py --clips 8 --workers 0 --repeats 1 --out /tmp/smoke.json   # CI smoke
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tinyaction.data import (TinyVirat, collate_clips, default_data_root, load_class_map, load_split, make_synthetic,
                             multi_hot, sample_indices)


class NaiveClips(Dataset):
    "The reference: PyAV decodes every frame, PIL resizes each sampled frame."

    def __init__(self, root: Path, clip_len: int, size: int):
        self.records, self.clip_len, self.size = load_split(root, "train"), clip_len, size
        self.classes = load_class_map(root)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        with av.open(str(record.path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        picks = sample_indices(len(frames), self.clip_len, "random", rng=np.random.default_rng(index))[0]
        resized = [np.asarray(Image.fromarray(frames[i]).resize((self.size, self.size), Image.BILINEAR)) for i in picks]
        clip = torch.from_numpy(np.stack(resized)).permute(3, 0, 1, 2)
        return clip, torch.from_numpy(multi_hot(record, self.classes)), record.id


def clips_per_second(dataset: Dataset, workers: int, batch_size: int) -> float:
    "One full pass over `dataset`; clips per second."
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    start, seen = time.perf_counter(), 0
    for clips, _, _ in loader:
        seen += len(clips)
    return seen / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clip_len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_pipeline_cpu.json")
    args = parser.parse_args()
    root = make_synthetic(default_data_root() / f"bench_{args.clips}", n_train=args.clips, n_val=1, n_test=1, seed=1)
    ours = TinyVirat(root, "train", clip_len=args.clip_len, size=args.size, train=False)
    reference = NaiveClips(root, args.clip_len, args.size)
    rows = []
    for workers in args.workers:
        timings = {"tinyaction": [], "reference": []}
        for _ in range(args.repeats):
            timings["tinyaction"].append(clips_per_second(ours, workers, args.batch_size))
            timings["reference"].append(clips_per_second(reference, workers, args.batch_size))
        ours_cps, ref_cps = statistics.median(timings["tinyaction"]), statistics.median(timings["reference"])
        rows.append({"workers": workers, "tinyaction_clips_per_s": round(ours_cps, 1),
                     "reference_clips_per_s": round(ref_cps, 1), "ratio": round(ours_cps / ref_cps, 2)})
        print(f"workers {workers}: tinyaction {ours_cps:.1f} clips/s, reference {ref_cps:.1f} clips/s, "
              f"ratio {ours_cps / ref_cps:.2f}")
    result = {"benchmark": "data_pipeline", "device": f"CPU: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "torch": torch.__version__, "clips": args.clips, "clip_len": args.clip_len,
              "size": args.size, "batch_size": args.batch_size, "repeats": args.repeats,
              "baseline": "PyAV decode of all frames + per-frame PIL bilinear resize", "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
