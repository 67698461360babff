"""Training throughput, clips/s: tinyaction's fast path against torchvision's VideoResNet in eager fp32.

Both networks are --arch (R(2+1)D-34 in the IG65M layout by default; any name of the zoo) with the
same weights, trained on the same uint8
batch already on the device with the 2021 entry's loss (ASL), AdamW and gradient clipping, one
`tinyaction.train.train_step` per step:
- tinyaction: `prepare_for_device` (channels_last_3d, cuDNN autotuning), the default precision (`amp="auto"`:
  bf16 autocast where the device computes bf16 natively, CUDA or CPU) and fused AdamW; beside
  it the same fast path in the other precision (tinyaction_bf16 or tinyaction_fp32); with --compile,
  also the default under torch.compile;
- baseline: the same network from torchvision's code (`torchvision_r2plus1d_34` for R(2+1)D-34),
  contiguous fp32, cuDNN autotuning off, AdamW's default
  implementation (PyTorch's default TF32 convolutions stay as they are).
Warm-up steps are excluded (compilation and autotuning happen there). Windows of --steps steps
alternate between the runs, --repeats times; medians are reported, with ratios to the baseline.
MFU = clips/s x counted FLOPs of one clip's forward and backward (FlopCounterMode: 2 per
multiply-add of convs and matmuls) / the device's dense bf16 peak.

    python benchmarks/bench_train.py                                    # GPU: batch 32, 16x112x112
    python benchmarks/bench_train.py --batch_size 2 --steps 2 --warmup 1 --out benchmarks/results/train_cpu.json
    python benchmarks/bench_train.py --batch_size 1 --clip_len 4 --size 32 --steps 1 --warmup 1 --repeats 1 --out /tmp/t.json
    python benchmarks/bench_train.py --arch swin3d_t --batch_size 8                    # at its contract, 32x224x224
"""
import argparse
import time
from pathlib import Path

import torch
from torch import nn

from tinyaction.inference import resolve_device
from tinyaction.losses import AsymmetricLoss
from tinyaction.models import count_flops, native_bf16, prepare_for_device, uses_bf16
from tinyaction.train import train_step
from tinyaction.zoo import contract_of, model_info

from common import (
    RESULTS,
    bf16_peak_tflops,
    device_name,
    interleaved_rates,
    reference,
    synchronize,
    target,
    twin_networks,
    write_report,
)


class Trainer:
    "A network with its optimiser and settings, stepping on one fixed batch."

    def __init__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], fast: bool, device: torch.device,
                 normalize: nn.Module, amp: bool | str = "auto"):
        self.model, self.batch, self.fast, self.amp = model.train(), batch, fast, amp if fast else False
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fast)
        self.criterion, self.normalize = AsymmetricLoss(), normalize.to(device)

    def steps(self, n: int) -> int:
        "Run `n` training steps; returns the clips processed."
        torch.backends.cudnn.benchmark = self.fast
        for _ in range(n):
            train_step(self.model, *self.batch, self.criterion, self.optimizer, self.normalize, amp=self.amp)
        return n * len(self.batch[0])


def build_runs(args: argparse.Namespace, device: torch.device) -> dict[str, Trainer]:
    "The baseline, tinyaction's fast path in its default and its other precision (and compiled), sharing weights and one batch."
    baseline, ours = twin_networks(args.arch, 26)
    other, other_name = (False, "tinyaction_fp32") if uses_bf16(device) else (True, "tinyaction_bf16")
    normalize = contract_of(ours).normalize()
    prepare_for_device(ours, device)
    clips = torch.randint(0, 256, (args.batch_size, 3, args.clip_len, args.size, args.size), dtype=torch.uint8, device=device)
    targets = (torch.rand(args.batch_size, 26, device=device) < 0.1).float()
    runs = {"torchvision_eager_fp32": Trainer(baseline.to(device), (clips, targets), False, device, normalize),
            "tinyaction": Trainer(ours, (clips, targets), True, device, normalize),
            other_name: Trainer(prepare_for_device(twin_networks(args.arch, 26)[1], device), (clips, targets), True, device,
                                normalize, amp=other)}
    if args.compile:
        _, twin = twin_networks(args.arch, 26)
        runs["tinyaction_compiled"] = Trainer(torch.compile(prepare_for_device(twin, device)), (clips, targets), True, device,
                                              normalize)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="r2plus1d_34", help="a name of tinyaction.zoo.list_models()")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--clip_len", type=int, help="default: the model's input contract")
    parser.add_argument("--size", type=int, help="default: the model's input contract")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per run first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time tinyaction under torch.compile")
    parser.add_argument("--peak_tflops", type=float, help="dense bf16 peak of the device, when not in the table")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_throughput.json")
    args = parser.parse_args()
    contract = model_info(args.arch).contract
    args.clip_len, args.size = args.clip_len or contract.frames, args.size or contract.size
    contract.check(args.arch, args.clip_len, args.size)
    device = resolve_device(args.device)
    runs = build_runs(args, device)
    warmup = {}
    for name, trainer in runs.items():  # the compiled run compiles here: its warm-up minus the eager one's is the cost
        synchronize(device)
        start = time.perf_counter()
        trainer.steps(args.warmup)
        synchronize(device)
        warmup[name] = round(time.perf_counter() - start, 2)
    rates = interleaved_rates({name: lambda t=t: t.steps(args.steps) for name, t in runs.items()}, args.repeats, device)
    flops = count_flops(runs["tinyaction"].model, (1, 3, args.clip_len, args.size, args.size), backward=True)
    peak = bf16_peak_tflops(device, args.peak_tflops)
    base = rates["torchvision_eager_fp32"]
    rows = [{"run": name, "clips_per_s": round(rate, 2), "ratio_to_baseline": round(rate / base, 2),
             "tflops": round(rate * flops / 1e12, 3), "mfu": round(rate * flops / 1e12 / peak, 3) if peak else None,
             "warmup_s": warmup[name]} for name, rate in rates.items()]
    if args.compile:  # steps after which compiling has paid for itself (None: compiled steps are not faster)
        saved = args.batch_size / rates["tinyaction"] - args.batch_size / rates["tinyaction_compiled"]
        cost = warmup["tinyaction_compiled"] - warmup["tinyaction"]
        rows[-1]["compile_s"], rows[-1]["pays_back_after_steps"] = round(cost, 1), round(cost / saved) if saved > 0 else None
    for row in rows:
        print(f"{row['run']:<24} {row['clips_per_s']:>9.2f} clips/s  x{row['ratio_to_baseline']:.2f}  "
              f"{row['tflops']:.2f} TFLOP/s  MFU {row['mfu']}")
    fast = next(row for row in rows if row["run"] == "tinyaction")
    goal = 2.0 if device.type == "cuda" else 3.0  # issue #6 (H100) and issue #16 (a CPU with native bf16)
    targets = [target(f"training / torchvision eager fp32 >= {goal}", fast["ratio_to_baseline"], goal)]
    targets += [target("MFU >= 0.40 of the bf16 dense peak", fast["mfu"], 0.40)] if peak else []
    write_report(args.out, {"benchmark": "train_throughput", "device": device_name(device), "model": args.arch,
                            "input": [args.batch_size, 3, args.clip_len, args.size, args.size], "steps": args.steps,
                            "warmup": args.warmup, "repeats": args.repeats, "train_gflops_per_clip": round(flops / 1e9, 2),
                            "bf16_peak_tflops": peak, "tf32_convolutions": torch.backends.cudnn.allow_tf32,
                            "native_bf16": native_bf16(device.type), "default_training_precision":
                            "bf16" if uses_bf16(device) else "fp32",
                            "baseline": reference(args.arch)[1],
                            "results": rows, "targets": targets})


if __name__ == "__main__":
    main()
