"R(2+1)D parity with torchvision, the IG65M layout, any number of stages, weight loading, autocast, channels_last_3d and compile."
import pytest
import torch
from torch import nn
from torchvision.models.video import resnet as tv

from tinyaction.models import (
    BasicBlock,
    LoadReport,
    R2Plus1D,
    R2Plus1DStem,
    TimePaddedConv3d,
    load_pretrained,
    mid_planes,
    prepare_for_device,
    r2plus1d_18,
    r2plus1d_34,
    r2plus1d_tiny,
    torchvision_r2plus1d_34,
    use_time_padded_convs,
)
from tinyaction.zoo import get_model

from conftest import randomize_


def assert_parity(ours: nn.Module, reference: nn.Module, clip_shape):
    randomize_(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(*clip_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours.eval()(x) - reference.eval()(x)).abs().max().item()
    assert diff <= 1e-5, diff


def test_r2plus1d_18_matches_torchvision():
    assert_parity(r2plus1d_18(num_classes=400), tv.r2plus1d_18(weights=None), (2, 3, 8, 56, 56))


def test_r2plus1d_34_ig65m_matches_patched_torchvision():
    reference = torchvision_r2plus1d_34(359)
    assert [reference.layer2[0].conv2[0][0].out_channels, reference.layer4[0].conv2[0][0].out_channels] == [288, 1152]
    assert_parity(r2plus1d_34(num_classes=359, ig65m=True), reference, (1, 3, 8, 48, 48))


def test_mid_planes_spelling_and_values_match_torchvision():
    block, reference = BasicBlock(64, 128, stride=2), tv.BasicBlock(64, 128, tv.Conv2Plus1D, stride=2,
                                                                     downsample=nn.Conv3d(64, 128, 1))
    assert block.conv1[0][0].out_channels == reference.conv1[0][0].out_channels == mid_planes(64, 128) == 230
    assert BasicBlock(64, 128, stride=2, per_conv_mid_planes=True).conv2[0][0].out_channels == mid_planes(128, 128) == 288
    stem_shapes = {k: v.shape for k, v in R2Plus1DStem(64, mid_planes=45).state_dict().items()}
    assert stem_shapes == {k: v.shape for k, v in tv.R2Plus1dStem().state_dict().items()}
    assert r2plus1d_tiny().stem[0].out_channels == 12


@pytest.mark.parametrize("layers,widths", [([1, 2], (8, 16)), ([1, 1, 1, 1, 1], (8, 16, 32, 64, 128))])
def test_the_network_has_one_stage_per_entry_of_layers(layers, widths):
    model = R2Plus1D(layers, widths=widths, num_classes=3, stem_mid_planes=6).eval()
    stage_names = [f"layer{i + 1}" for i in range(len(layers))]
    assert list(model.stage_names) == stage_names
    assert {k.split(".")[0] for k in model.state_dict()} == {"stem", *stage_names, "fc"}
    assert [len(getattr(model, name)) for name in stage_names] == layers
    x = torch.randn(2, 3, 8, 32, 32)
    halvings = len(layers) - 1  # the stem halves H and W, then every stage after the first halves T, H and W
    with torch.no_grad():
        assert model.features(x).shape == (2, widths[-1])
        assert model(x).shape == (2, 3)
        out = model.stem(x)
        for name in stage_names:
            out = getattr(model, name)(out)
    assert out.shape == (2, widths[-1], max(8 >> halvings, 1), 16 >> halvings, 16 >> halvings)


def test_widths_and_layers_mismatch_is_a_clear_error():
    message = r"widths must give one width per stage: layers=\[1, 1\] has 2 stages, widths=\[64, 128, 256, 512\] has 4"
    with pytest.raises(ValueError, match=message):
        R2Plus1D([1, 1])
    with pytest.raises(ValueError, match="layers must give at least one stage"):
        R2Plus1D([], widths=())
    with pytest.raises(ValueError, match="layers must give at least one stage of at least one block"):
        R2Plus1D([1, 0], widths=(8, 16))


def test_parameter_counts_match_the_reference_facts():
    with torch.device("meta"):
        assert round(sum(p.numel() for p in r2plus1d_18(num_classes=400).parameters()) / 1e6, 1) == 31.5
        assert round(sum(p.numel() for p in r2plus1d_34(num_classes=400).parameters()) / 1e6, 1) == 63.7


def test_load_pretrained_reports_and_replaces_head(tmp_path):
    source = randomize_(torchvision_r2plus1d_34(359))
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "ig65m.pth")
    model = r2plus1d_34(num_classes=26)
    report = load_pretrained(model, tmp_path / "ig65m.pth")
    assert isinstance(report, LoadReport) and report.head_replaced == ["fc.weight", "fc.bias"]
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(model.layer4[0].conv2[0][3].weight, source.layer4[0].conv2[0][3].weight)
    assert model.fc.weight.shape == (26, 512)


def test_load_pretrained_safetensors_and_prefixes(tmp_path):
    from safetensors.torch import save_file
    source = r2plus1d_tiny(num_classes=5)
    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = r2plus1d_tiny(num_classes=5)
    report = load_pretrained(model, tmp_path / "w.safetensors")
    assert report.head_replaced == [] and "fc.weight" in report.loaded
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))


def test_load_pretrained_wrong_layout_is_a_clear_error(tmp_path):
    torch.save(r2plus1d_34(num_classes=400, ig65m=False).state_dict(), tmp_path / "tv34.pth")
    message = (r"(?s)tv34.pth: 18 tensor shape\(s\) do not match.*"
               r"layer2.0.conv2.0.0.weight: file \(230, 128, 1, 3, 3\) vs model \(288.*ig65m=False")
    with pytest.raises(ValueError, match=message):
        load_pretrained(r2plus1d_34(num_classes=26, ig65m=True), tmp_path / "tv34.pth")


def test_load_pretrained_missing_file_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_pretrained(r2plus1d_tiny(), tmp_path / "nope.pth")
    state = r2plus1d_tiny().state_dict()
    del state["layer1.0.conv1.1.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing \['layer1.0.conv1.1.weight'\], unexpected \['extra.weight'\]"):
        load_pretrained(r2plus1d_tiny(), tmp_path / "partial.pt")
    report = load_pretrained(r2plus1d_tiny(), tmp_path / "partial.pt", strict=False)
    assert report.missing == ["layer1.0.conv1.1.weight"] and report.unexpected == ["extra.weight"]


def test_bf16_autocast_and_channels_last_give_the_same_predictions():
    torch.manual_seed(0)
    model = get_model("r2plus1d_tiny", num_classes=10).eval()
    x = torch.randn(4, 3, 8, 48, 48)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        channels_last = model_cl(x.to(memory_format=torch.channels_last_3d))
    assert mixed.dtype == torch.bfloat16
    scale = reference.abs().max()
    assert (mixed.float() - reference).abs().max() <= 0.05 * scale
    assert (mixed.float() > 0).eq(reference > 0).float().mean() >= 0.95
    assert torch.allclose(channels_last, reference, atol=1e-4, rtol=1e-4)


def bf16_weight_grads_with_nans(conv: nn.Conv3d, frames: int, trials: int = 40) -> int:
    "In how many of `trials` the bf16 weight gradient of `conv` over `frames`-frame inputs has NaNs."
    torch.manual_seed(0)
    conv = conv.to(torch.bfloat16)
    hits = 0
    for _ in range(trials):
        y = conv(torch.randn(4, conv.in_channels, frames, 8, 8, dtype=torch.bfloat16))
        hits += torch.isnan(torch.autograd.grad(y, conv.weight, torch.randn_like(y))[0]).any().item()
    return hits


@pytest.mark.parametrize("kernel, frames", [((3, 1, 1), 2), ((5, 1, 1), 3)])
def test_bf16_weight_gradients_stay_finite_where_a_conv_sees_fewer_frames_than_its_kernel(kernel, frames):
    # with nn.Conv3d, oneDNN's bf16 weight gradient had NaNs in 29 and 35 of these 40 calls on this machine
    # (2 threads, AVX-512-BF16; nbs/01_models.ipynb shows it)
    padding = tuple(k // 2 for k in kernel)
    assert bf16_weight_grads_with_nans(TimePaddedConv3d(32, 32, kernel, padding=padding, bias=False), frames) == 0


@pytest.mark.parametrize("name", ["r2plus1d_tiny", "r2plus1d_34", "r3d_18", "mc3_18", "s3d"])
def test_the_fast_path_pads_time_itself_in_every_conv_that_pads_time(name):
    model = prepare_for_device(get_model(name, num_classes=5))
    plain = [n for n, m in model.named_modules() if type(m).forward is nn.Conv3d.forward and m.padding[0]]
    assert plain == [] and any(isinstance(m, TimePaddedConv3d) for m in model.modules())


def test_time_padded_convs_compute_what_the_network_computed():
    torch.manual_seed(0)
    reference = tv.r3d_18(num_classes=5).eval()
    padded = use_time_padded_convs(tv.r3d_18(num_classes=5)).eval()
    padded.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(padded(x), reference(x), atol=1e-5)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = r2plus1d_tiny(num_classes=4).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        compiled = torch.compile(model)(x)
        assert torch.allclose(compiled, model(x), atol=1e-4, rtol=1e-4)


def test_weights_of_another_architecture_do_not_blame_the_ig65m_layout(tmp_path):
    torch.save(r2plus1d_tiny(num_classes=26).state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="another architecture") as error:
        load_pretrained(r2plus1d_34(num_classes=26, ig65m=True), tmp_path / "tiny.pth")
    assert "ig65m" not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_an_unreadable_pretrained_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is None:  # a real file cut short, as a full disk leaves it
        torch.save(r2plus1d_tiny(num_classes=26).state_dict(), path)
        content = path.read_bytes()[:4000]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="weights.pth: not a readable weights file") as error:
        load_pretrained(r2plus1d_tiny(num_classes=26), path)
    assert "weights_only" not in str(error.value)
