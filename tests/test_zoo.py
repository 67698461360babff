"""The zoo: every model builds by name, loads a weights file of its own layout exactly (parity with torchvision's
builder), takes a 26-class head on a published file, trains a step and predicts 5 clips at its input size."""
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import video as tv_video

from tinyaction.data import TinyVirat
from tinyaction.inference import predict
from tinyaction.models import load_pretrained, torchvision_r2plus1d_34
from tinyaction.train import TrainConfig, train_step
from tinyaction.zoo import get_model, list_models, model_info

from conftest import SAMPLE_ROOT, randomize_

TORCHVISION = torchvision.models.list_models(module=tv_video)
SMALL = ("r2plus1d_tiny", "r3d_18", "mc3_18", "r2plus1d_18")  # cheap enough for the quick tests


def model_input(name: str, batch: int = 1) -> torch.Tensor:
    contract = model_info(name).contract
    return torch.randn(batch, 3, contract.frames, contract.size, contract.size, generator=torch.Generator().manual_seed(1))


def test_every_torchvision_video_model_and_the_ig65m_family_have_a_name():
    assert set(TORCHVISION) <= set(list_models())
    ig65m = {f"r2plus1d_34_{frames}_{data}" for frames in (8, 32) for data in ("ig65m", "kinetics")}
    assert ig65m <= set(list_models())
    with pytest.raises(ValueError, match="unknown model 'i3d'; available: \\['mc3_18'"):
        get_model("i3d")


@pytest.mark.parametrize("name", [n if n in SMALL else pytest.param(n, marks=pytest.mark.slow) for n in TORCHVISION])
def test_a_torchvision_file_loads_exactly_and_takes_a_26_class_head(name, tmp_path):
    torch.manual_seed(0)
    reference = randomize_(torchvision.models.get_model(name, weights=None, num_classes=400)).eval()
    torch.save(reference.state_dict(), tmp_path / f"{name}.pth")
    ours = get_model(name, num_classes=400)
    report = load_pretrained(ours, tmp_path / f"{name}.pth")
    assert report.missing == [] and report.unexpected == [] and report.head_replaced == []
    clips = model_input(name)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(clips), reference(clips), atol=1e-5, rtol=1e-5)
    tiny_head = get_model(name, num_classes=26)
    report = load_pretrained(tiny_head, tmp_path / f"{name}.pth")
    assert report.head_replaced == list(tiny_head.head_keys) and report.missing == []
    assert len(report.loaded) == len(reference.state_dict()) - len(tiny_head.head_keys)


@pytest.mark.parametrize("name, classes", [("r2plus1d_34_8_ig65m", 487), ("r2plus1d_34_32_ig65m", 359)])
def test_an_ig65m_layout_file_loads_into_its_name(name, classes, tmp_path):
    torch.save(torchvision_r2plus1d_34(num_classes=classes, ig65m=True).state_dict(), tmp_path / "ig65m.pth")
    assert model_info(name).weights_classes == classes
    report = load_pretrained(get_model(name, num_classes=26), tmp_path / "ig65m.pth")
    assert report.head_replaced == ["fc.weight", "fc.bias"] and report.missing == []


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(torchvision.models.get_model("r3d_18", weights=None).state_dict(), tmp_path / "r3d.pth")
    with pytest.raises(ValueError, match="another architecture"):
        load_pretrained(get_model("r2plus1d_18", num_classes=26), tmp_path / "r3d.pth")


def test_a_clip_size_a_fixed_size_model_cannot_take_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="mvit_v2_s takes only clips of 16 frames of 224x224"):
        TrainConfig(arch="mvit_v2_s", clip_len=16, size=112, out_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="s3d needs clips of at least 14 frames of 224x224"):
        TrainConfig(arch="s3d", clip_len=8, size=224, out_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", [n if n in SMALL else pytest.param(n, marks=pytest.mark.slow)
                                  for n in list_models() if not n.startswith("r2plus1d_34_")])
def test_one_training_step_and_a_5_clip_prediction_at_the_model_input(name):
    contract = model_info(name).contract
    model = get_model(name, num_classes=10)
    clips = torch.randint(0, 256, (2, 3, contract.frames, contract.size, contract.size), dtype=torch.uint8)
    targets = torch.zeros(2, 10).index_fill_(1, torch.tensor([1]), 1.0)
    loss = train_step(model, clips, targets, nn.BCEWithLogitsLoss(reduction="sum"), torch.optim.AdamW(model.parameters()),
                      contract.normalize())
    assert torch.isfinite(loss)
    val = TinyVirat(SAMPLE_ROOT, "val", clip_len=contract.frames, size=contract.size, train=False)
    ids, scores = predict(model, val, num_clips=5, batch_size=1, progress=False, indices=[0])
    assert ids == [val.records[0].id] and scores.shape == (1, 10) and ((scores >= 0) & (scores <= 1)).all()
