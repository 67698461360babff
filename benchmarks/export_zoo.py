"""Which models of the zoo export, to which format, and why not: the table of nbs/10_export.ipynb, measured.

Each model of `tinyaction.zoo.list_models()` with random weights (seed 0), on the fast path as `load_checkpoint` builds it,
wrapped as `tinyaction.export.DeployedNetwork` (uint8 in, probabilities out), exported by torch.onnx.export's two
exporters (TorchScript-based and dynamo) and traced to TorchScript, then verified as `export_model` verifies: one clip of
each real fixture video (a batch of 3, against an example batch of 2, so the batch axis must be dynamic), the largest
absolute difference of any probability against PyTorch, held under 1e-4. Big models are measured at a small input:
8 frames of 64x64, or the smallest they take (s3d 14x224x224; the MViTs take only 16x224x224); r2plus1d_tiny at its
own 8x32x32. Results are written after each model; models already in --out are skipped unless --again.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyaction.export import DEFAULT_TOLERANCE, DeployedNetwork, load_torchscript, max_abs_diff, onnx_bytes, torchscript_bytes
from tinyaction.models import prepare_for_device
from tinyaction.runtime import DeployContract, ExportedModel, read_clips
from tinyaction.zoo import get_model, list_models, model_info

from common import RESULTS, device_name

REPO = Path(__file__).resolve().parents[1]
REAL_VIDEOS = Path(os.environ.get("TINYACTION_REAL_VIDEOS", REPO.parent / "shared" / "fixtures" / "real_videos"))
FORMATS = ("onnx_torchscript", "onnx_dynamo", "torchscript")


def zoo_input(name: str) -> tuple[int, int]:
    "Frames and side a model is measured at: 8x64x64, or the smallest it takes, or its only input."
    c = model_info(name).contract
    return (c.frames, c.size) if c.fixed else (max(c.min_frames, min(c.frames, 8)), max(c.min_size, min(c.size, 64)))


def try_export(network: nn.Module, contract: DeployContract, clips: np.ndarray, fmt: str) -> dict:
    "Export `network` to `fmt` (one of FORMATS) and verify it on `clips`; the reason, if it does not export or verify."
    start = time.time()
    try:
        example = torch.from_numpy(clips[:2])
        if fmt == "torchscript":
            data = torchscript_bytes(network, example, contract)
            module = load_torchscript(data)[0]
            diff = max_abs_diff(network, lambda b: module(torch.from_numpy(b)).detach().numpy(), clips)
        else:
            data = onnx_bytes(network, example, contract, exporter=fmt.removeprefix("onnx_"))
            diff = max_abs_diff(network, ExportedModel(data), clips)
        error = None if diff < DEFAULT_TOLERANCE["fp32"] else f"outputs differ by {diff:.2g}, over 1e-4"
        size = round(len(data) / 1e6, 1)
    except Exception as e:  # noqa: BLE001 -- the reason is the result
        diff, size, error = None, None, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
    return {"exported": error is None, "error": error, "max_abs_diff": diff, "mb": size, "seconds": round(time.time() - start, 1)}


def measure(name: str, videos: list[Path]) -> dict:
    "One row of the table: `name` at its measured input, each format's result."
    frames, side = zoo_input(name)
    torch.manual_seed(0)
    network = DeployedNetwork(prepare_for_device(get_model(name, num_classes=26), "cpu").float().eval()).eval()
    c = model_info(name).contract
    contract = DeployContract(tuple(f"class_{i}" for i in range(26)), (0.5,) * 26, frames, side, "uniform", 0, tuple(c.mean),
                              tuple(c.std), name)
    clips = np.concatenate([read_clips(v, contract, 1) for v in videos])
    results = {fmt: try_export(network, contract, clips, fmt) for fmt in FORMATS}
    return {"model": name, "input": f"{frames}x{side}x{side}", **results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="names of the zoo; default: every one")
    parser.add_argument("--again", action="store_true", help="measure models already in --out again")
    parser.add_argument("--out", type=Path, default=RESULTS / "export_zoo_cpu.json")
    args = parser.parse_args()
    videos = sorted(p for p in REAL_VIDEOS.iterdir() if p.suffix in (".mkv", ".mp4", ".avi"))
    report = json.loads(args.out.read_text()) if args.out.is_file() else {"models": []}
    rows = {row["model"]: row for row in report["models"]}
    for name in args.models or list_models():
        if name in rows and not args.again:
            continue
        rows[name] = measure(name, videos)
        print(name, {fmt: rows[name][fmt]["exported"] for fmt in FORMATS}, flush=True)
        report = {"benchmark": "export_zoo", "device": device_name(torch.device("cpu")), "torch": torch.__version__,
                  "clips": [v.name for v in videos], "tolerance": DEFAULT_TOLERANCE["fp32"],
                  "models": [rows[n] for n in list_models() if n in rows]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # after each model: a long run keeps what it measured


if __name__ == "__main__":
    main()
