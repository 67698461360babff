"Helpers shared by the benchmarks: the device's name and peak, interleaved timing, and the JSON report."
import json
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision.models import video as tv_video

from tinyaction.data import load_class_map, load_split, multi_hot, sample_indices
from tinyaction.models import native_bf16, torchvision_r2plus1d_34
from tinyaction.zoo import get_model

RESULTS = Path(__file__).parent / "results"

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets; no sparsity).
BF16_DENSE_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                          "H200": 989.4, "A100": 312.0}


def device_name(device: torch.device) -> str:
    "The accelerator's name, or the CPU's and its core count."
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = "native bf16" if native_bf16("cpu") else "no native bf16"  # AVX-512-BF16 or AMX, as PyTorch reports them
    return f"CPU: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, {bf16}"


def bf16_peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    "The device's dense bf16 peak: `override` if given, else from the table for known GPUs, else None."
    if override:
        return override
    name = device_name(device)
    return next((peak for key, peak in BF16_DENSE_PEAK_TFLOPS.items() if key in name), None)


def synchronize(device: torch.device):
    "Wait for the device's queued work (a no-op on CPU)."
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_rates(runs: dict[str, Callable[[], int]], repeats: int, device: torch.device) -> dict[str, float]:
    "Median items/s of each run, timed in alternation `repeats` times; each run returns how many items it processed."
    rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            items = run()
            synchronize(device)
            rates[name].append(items / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def write_report(path: Path, report: dict) -> Path:
    "Write `report` (with torch's version added) as JSON, and say where."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "torch": torch.__version__}, indent=1))
    for goal in report.get("targets", []):
        verdict = "met" if goal["met"] else "missed"
        print(f"target {goal['target']}: {goal['value']} ({verdict}, {goal['value_over_goal']}x the goal)")
    print(f"wrote {path}")
    return path


class NaiveClips(Dataset):
    "The naive reference loader: PyAV decodes every frame of the video, PIL resizes each sampled frame (bilinear)."

    def __init__(self, root: Path, split: str, clip_len: int, size: int, num_clips: int = 1):
        self.records, self.classes = load_split(root, split), load_class_map(root)
        self.clip_len, self.size, self.num_clips = clip_len, size, num_clips

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        with av.open(str(record.path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        picks = sample_indices(len(frames), self.clip_len, "random", self.num_clips, rng=np.random.default_rng(index))
        size = (self.size, self.size)
        resized = [np.asarray(Image.fromarray(frames[i]).resize(size, Image.BILINEAR)) for i in picks.reshape(-1)]
        clip = torch.from_numpy(np.stack(resized)).unflatten(0, (self.num_clips, self.clip_len)).permute(0, 4, 1, 2, 3)
        return clip[0] if self.num_clips == 1 else clip, torch.from_numpy(multi_hot(record, self.classes)), record.id


def target(name: str, value: float, goal: float, at_most: bool = False) -> dict:
    "A target of an issue: `value` against `goal` (at least, or at most), and value / goal."
    met = value <= goal if at_most else value >= goal
    return {"target": name, "value": round(value, 3), "goal": goal, "met": met, "value_over_goal": round(value / goal, 3)}


def reference(arch: str) -> tuple[Callable[..., nn.Module], str]:
    "The baseline's builder of `arch` (num_classes=...) and its name: torchvision's code where it has the model."
    if arch in torchvision.models.list_models(module=tv_video):
        return partial(torchvision.models.get_model, arch, weights=None), f"torchvision {arch}, eager fp32, contiguous"
    if arch.startswith("r2plus1d_34"):
        return torchvision_r2plus1d_34, "torchvision VideoResNet as R(2+1)D-34 (IG65M layout), eager fp32, contiguous"
    return partial(get_model, arch), f"tinyaction {arch} without the fast path, eager fp32, contiguous"


def twin_networks(arch: str, num_classes: int) -> tuple[nn.Module, nn.Module]:
    "(baseline, tinyaction's build): `arch` built by its reference code and by the zoo, with the same random weights."
    torch.manual_seed(0)
    baseline = reference(arch)[0](num_classes=num_classes)
    ours = get_model(arch, num_classes=num_classes)
    ours.load_state_dict(baseline.state_dict())
    return baseline, ours
