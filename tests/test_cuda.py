"The CUDA fast path: bf16 autocast, channels_last_3d, cuDNN autotuning, fused AdamW, torch.compile. Skipped without a GPU."
import pytest
import torch

from tinyaction.checkpoint import load_checkpoint
from tinyaction.data import ClipNormalize, TinyVirat
from tinyaction.inference import predict
from tinyaction.models import prepare_for_device, r2plus1d_tiny
from tinyaction.train import fit, train_step

from conftest import tiny_config

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]


def test_a_bf16_step_tracks_an_fp32_step():
    torch.manual_seed(0)
    fast, plain = r2plus1d_tiny(num_classes=5), r2plus1d_tiny(num_classes=5)
    plain.load_state_dict(fast.state_dict())
    prepare_for_device(fast, "cuda"), prepare_for_device(plain, "cuda", channels_last=False)
    clips = torch.randint(0, 256, (8, 3, 8, 32, 32), dtype=torch.uint8, device="cuda")
    targets = (torch.rand(8, 5, device="cuda") < 0.3).float()
    losses = [train_step(m, clips, targets, torch.nn.BCEWithLogitsLoss(), torch.optim.AdamW(m.parameters(), fused=True),
                         ClipNormalize().cuda(), amp=amp) for m, amp in ((fast, True), (plain, False))]
    assert losses[0].dtype == torch.float32 and torch.allclose(losses[0], losses[1], rtol=0.02)


@pytest.mark.parametrize("compiled", [False, True])
def test_fit_on_cuda_and_evaluate_on_cpu(synthetic_root, tmp_path, compiled):
    out = tmp_path / "run"
    metrics = fit(tiny_config(synthetic_root, out, epochs=2, num_workers=2, cache=False, device="cuda", torch_compile=compiled))
    assert 0 <= metrics["macro_f1"] <= 1
    val = TinyVirat(synthetic_root, "val", clip_len=4, size=16, sampling="uniform")
    on_gpu, _ = load_checkpoint(out / "checkpoint_last.pt", "cuda")
    on_cpu, _ = load_checkpoint(out / "checkpoint_last.pt", "cpu")
    _, gpu_scores = predict(on_gpu, val, num_clips=1, device="cuda", progress=False)
    _, cpu_scores = predict(on_cpu, val, num_clips=1, device="cpu", progress=False)
    assert abs(gpu_scores - cpu_scores).max() < 0.05  # bf16 on the GPU against fp32 on the CPU
