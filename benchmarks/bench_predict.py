"""Windows per second on a long recording: tinyaction's streaming predictor against decoding each window separately.

Both score the same overlapping windows of one recording (the committed sample's clips looped, --side x --side at
30 fps, written to a temporary folder) with the same network (--arch, random weights, on the fast path), the
same sampled frames per window and the same batches through `tinyaction.inference.predict`:
- tinyaction: `tinyaction.predict.predict_windows`, one sequential PyAV decode of the file, keeping only a ring
  of the last window's frames, resized in chunks;
- baseline: `tinyaction.video.read_clip` per window, asking for that window's frames (decord seeks to the keyframe
  before them and decodes from there; where decord cannot be trusted PyAV decodes the file from its start).
The two give the same scores (the largest difference is reported); the ratio is tinyaction / baseline.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinyaction.data import load_class_map, load_split
from tinyaction.inference import predict, resolve_device
from tinyaction.models import prepare_for_device
from tinyaction.predict import ClipSpec, Span, predict_windows, window_starts
from tinyaction.video import read_clip, write_video
from tinyaction.zoo import get_model, model_info

from common import RESULTS, device_name, interleaved_rates, write_report

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def make_recording(path: Path, frames: int, side: int) -> Path:
    "The sample's val clips at side x side, looped to `frames` frames, at 30 fps."
    clips = np.concatenate([read_clip(r.path, size=side) for r in load_split(SAMPLE, "val")])
    return write_video(path, clips[np.arange(frames) % len(clips)], fps=30)


def baseline_scores(model, path: Path, spec: ClipSpec, frames: int, window: int, stride: int, num_clips: int, batch_size: int,
                    device) -> np.ndarray:
    "Each window's frames read on their own by read_clip, then scored in the same batches by predict."
    items, scores = [], []
    for start, length in window_starts(frames, window, stride):
        picks = start + spec.indices(length, num_clips, [start, length])
        clips = torch.from_numpy(read_clip(path, picks.reshape(-1), spec.size)).unflatten(0, tuple(picks.shape))
        clips = clips.permute(0, 4, 1, 2, 3)
        items.append((clips[0] if num_clips == 1 else clips, torch.zeros(1), str(start)))
        if len(items) == batch_size:
            scores.append(predict(model, items, num_clips=None, batch_size=batch_size, progress=False, device=device)[1])
            items = []
    if items:
        scores.append(predict(model, items, num_clips=None, batch_size=batch_size, progress=False, device=device)[1])
    return np.concatenate(scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the recording")
    parser.add_argument("--side", type=int, default=64, help="its frames' side")
    parser.add_argument("--window", type=int, default=64, help="window length, frames")
    parser.add_argument("--stride", type=int, default=32, help="step between windows, frames")
    parser.add_argument("--num_clips", type=int, default=1, help="clips per window")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per batch")
    parser.add_argument("--arch", default="r2plus1d_tiny", help="a name of tinyaction.zoo.list_models()")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "predict_windows_cpu.json")
    args = parser.parse_args()
    device, contract, classes = resolve_device(args.device), model_info(args.arch).contract, load_class_map(SAMPLE)
    spec = ClipSpec(contract.frames, contract.size, "segments", 0)
    torch.manual_seed(0)
    model = prepare_for_device(get_model(args.arch, num_classes=len(classes)), device).eval()
    frames = int(args.minutes * 60 * 30)
    with tempfile.TemporaryDirectory() as folder:
        path = make_recording(Path(folder) / "recording.mp4", frames, args.side)
        window, stride = Span(args.window, True), Span(args.stride, True)

        def streaming() -> np.ndarray:
            return predict_windows(model, path, spec, classes, window, stride, args.num_clips, args.batch_size,
                                   device=device).scores

        def baseline() -> np.ndarray:
            return baseline_scores(model, path, spec, frames, args.window, args.stride, args.num_clips, args.batch_size, device)

        difference = float(np.abs(streaming() - baseline()).max())
        rates = interleaved_rates({"baseline": lambda: len(baseline()), "tinyaction": lambda: len(streaming())}, args.repeats,
                                  device)
    windows = len(window_starts(frames, args.window, args.stride))
    rows = [{"run": name, "windows_per_s": round(rate, 1), "ratio_to_baseline": round(rate / rates["baseline"], 2),
             "seconds_for_recording": round(windows / rate, 2)} for name, rate in rates.items()]
    for row in rows:
        print(f"{row['run']:<12} {row['windows_per_s']:>8.1f} windows/s  x{row['ratio_to_baseline']:.2f}")
    write_report(args.out, {"benchmark": "predict_windows", "device": device_name(device), "model": args.arch,
                            "recording": f"{args.minutes:g} min, {frames} frames of {args.side}x{args.side} at 30 fps, H.264",
                            "windows": windows, "window_frames": args.window, "stride_frames": args.stride,
                            "clip_len": spec.clip_len, "size": spec.size, "num_clips": args.num_clips,
                            "batch_size": args.batch_size, "repeats": args.repeats, "max_score_difference": difference,
                            "baseline": "read_clip per window (decord seeks, PyAV where decord is refused), same batches "
                                        "through predict", "results": rows})


if __name__ == "__main__":
    main()
