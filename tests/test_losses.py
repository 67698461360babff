"""AsymmetricLoss against an independent float64 derivation, gradcheck, dtypes, saturation, special cases and the `clip` alias;
the focal and distribution-balanced losses against their papers' formulas."""
import pytest
import torch
import torch.nn.functional as F

from tinyaction.losses import AsymmetricLoss, DistributionBalancedLoss, FocalLoss


def asl_reference(x: torch.Tensor, y: torch.Tensor, gamma_neg, gamma_pos, m, eps=1e-8, detach=True) -> torch.Tensor:
    "ASL in float64, written from REFERENCE.md §4 with log-sigmoid for the positive side."
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    p_m = torch.clamp(p - m, min=0.0)
    log_pos = torch.maximum(F.logsigmoid(x), torch.log(torch.tensor(eps, dtype=torch.float64)))
    log_neg = torch.log(torch.clamp(1 - p_m, min=eps))
    w_pos = (1 - p) ** gamma_pos
    w_neg = p_m ** gamma_neg
    if detach:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    return -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg).sum()


CASES = [(4, 1, 0.05), (4, 0, 0.05), (2, 2, 0.0), (1, 0, 0.2), (0, 0, 0.0)]


def sample(seed, shape=(6, 26), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale, (torch.rand(shape, generator=g) < 0.15).float()


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("gamma_neg,gamma_pos,m", CASES)
def test_values_and_gradients_match_float64_derivation(gamma_neg, gamma_pos, m, detach):
    logits, targets = sample(0)
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.double().clone().requires_grad_()
    ours = AsymmetricLoss(gamma_neg, gamma_pos, m, detach_focal_weight=detach)(ours_in, targets)
    ref = asl_reference(ref_in, targets, gamma_neg, gamma_pos, m, detach=detach)
    ours.backward()
    ref.backward()
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(ours_in.grad.double(), ref_in.grad, rtol=1e-4, atol=1e-6)


def test_detaching_changes_the_gradient():
    logits, targets = sample(1)
    grads = []
    for detach in (True, False):
        x = logits.clone().requires_grad_()
        AsymmetricLoss(detach_focal_weight=detach)(x, targets).backward()
        grads.append(x.grad)
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("gamma_neg,gamma_pos,m", CASES)
def test_float64_matches_the_float64_derivation_to_rounding(gamma_neg, gamma_pos, m, detach):
    logits, targets = sample(5)
    ours_in = logits.double().requires_grad_()
    ref_in = logits.double().requires_grad_()
    ours = AsymmetricLoss(gamma_neg, gamma_pos, margin=m, detach_focal_weight=detach)(ours_in, targets)
    ref = asl_reference(ref_in, targets, gamma_neg, gamma_pos, m, detach=detach)
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, ref, rtol=1e-12, atol=0)
    assert torch.allclose(ours_in.grad, ref_in.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("gamma_neg,gamma_pos,m", CASES)
def test_gradcheck_in_float64_without_detaching(gamma_neg, gamma_pos, m):
    logits, targets = sample(2, shape=(3, 5), scale=2.0)
    loss = AsymmetricLoss(gamma_neg, gamma_pos, margin=m, detach_focal_weight=False)
    assert torch.autograd.gradcheck(lambda x: loss(x, targets), (logits.double().requires_grad_(),))


@pytest.mark.parametrize("dtype,expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                            (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])
def test_computes_in_at_least_float32(dtype, expected):
    logits, targets = sample(6)
    assert AsymmetricLoss()(logits.to(dtype), targets).dtype == expected


@pytest.mark.parametrize("detach", [True, False])
def test_finite_for_saturated_logits_fp32_and_bf16(detach):
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0]])
    for dtype in (torch.float32, torch.bfloat16):
        x = logits.to(dtype).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = AsymmetricLoss(detach_focal_weight=detach)(x, targets)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        assert loss > 10  # the two confidently wrong labels dominate


def test_under_autocast_with_a_linear_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    x, y = torch.randn(5, 8) * 50, (torch.rand(5, 4) < 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = AsymmetricLoss()(layer(x), y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(layer.weight.grad).all()


def test_special_cases_bce_and_focal():
    logits, targets = sample(3)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert torch.allclose(AsymmetricLoss(0, 0, 0)(logits, targets), bce, rtol=1e-5)
    p = torch.sigmoid(logits.double())
    focal = -(targets * (1 - p) ** 2 * torch.log(p) + (1 - targets) * p ** 2 * torch.log(1 - p)).sum()
    assert torch.allclose(AsymmetricLoss(2, 2, 0)(logits, targets).double(), focal, rtol=1e-5)


def test_reductions():
    logits, targets = sample(4)
    per_element = AsymmetricLoss(reduction="none")(logits, targets)
    assert per_element.shape == logits.shape
    assert torch.allclose(AsymmetricLoss(reduction="sum")(logits, targets), per_element.sum())
    assert torch.allclose(AsymmetricLoss(reduction="mean")(logits, targets), per_element.mean())
    with pytest.raises(ValueError, match="reduction"):
        AsymmetricLoss(reduction="max")


def test_margin_zeroes_easy_negatives():
    loss = AsymmetricLoss(reduction="none")(torch.logit(torch.tensor([0.01, 0.04, 0.3])), torch.zeros(3))
    assert loss[0] == 0 and loss[1] == 0 and loss[2] > 0


def test_clip_is_a_deprecated_alias_of_margin():
    logits, targets = sample(7)
    with pytest.warns(FutureWarning, match="'clip' is deprecated.*use 'margin'"):
        old_spelling = AsymmetricLoss(clip=0.2)
    assert old_spelling.margin == 0.2
    assert old_spelling(logits, targets) == AsymmetricLoss(margin=0.2)(logits, targets)
    assert "margin=0.2" in repr(old_spelling) and "clip" not in repr(old_spelling)
    with pytest.raises(TypeError, match="got both 'margin' and its deprecated name 'clip'"):
        AsymmetricLoss(margin=0.2, clip=0.2)
    with pytest.raises(TypeError, match="got both 'margin' and its deprecated name 'clip'"):
        AsymmetricLoss(4, 1, 0.2, clip=0.2)  # margin given by position


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="margin must be a probability"):
        AsymmetricLoss(margin=-0.1)
    with pytest.raises(ValueError, match="gamma_neg and gamma_pos must be >= 0"):
        AsymmetricLoss(gamma_neg=-1)
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 4\)"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# Long-tail losses (nbs/02_losses.ipynb): the focal loss and the distribution-balanced loss, against their papers' formulas.

def test_focal_loss_is_lin_et_al_eq_5_by_hand():
    # p = sigmoid(0) = 0.5 positive: 0.25 * 0.5^2 * ln 2; p = sigmoid(2) negative: 0.75 * p^2 * -ln(1 - p)
    p = torch.sigmoid(torch.tensor(2.0, dtype=torch.float64))
    by_hand = torch.tensor([[0.25 * 0.25 * torch.log(torch.tensor(2.0)).item(), 0.75 * p**2 * -torch.log(1 - p)]])
    loss = FocalLoss(reduction="none")(torch.tensor([[0.0, 2.0]], dtype=torch.float64), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(loss, by_hand.double())
    logits, targets = sample(5)
    assert torch.allclose(FocalLoss(alpha=-1, gamma=2)(logits, targets), AsymmetricLoss(2, 2, margin=0)(logits, targets),
                          rtol=1e-5)
    assert FocalLoss()(logits, targets).shape == ()  # summed, as ASL


def db_reference(x: torch.Tensor, y: torch.Tensor, counts, n, alpha=0.1, beta=10.0, mu=0.2, kappa=0.05, lam=2.0, gamma=2.0,
                 balance=2.0) -> torch.Tensor:
    "The DB loss in float64, written from Wu et al. (2020) Eq. 3-7 and the authors' ResampleLoss, element by element."
    out = torch.zeros(x.shape, dtype=torch.float64)
    counts = [min(max(c, 1), n - 1) for c in counts]
    for k in range(x.shape[0]):
        labels = [c for c in range(x.shape[1]) if y[k, c] == 1]
        instance = sum(1 / counts[c] for c in labels)
        for c in range(x.shape[1]):
            r = (1 / counts[c]) / instance
            weight = alpha + 1 / (1 + torch.exp(torch.tensor(-beta * (r - mu), dtype=torch.float64)))
            z = x[k, c].double() - kappa * torch.log(torch.tensor(n / counts[c] - 1, dtype=torch.float64)) / lam
            if y[k, c] == 1:
                bce = torch.log1p(torch.exp(-z))
            else:
                bce, weight = torch.log1p(torch.exp(lam * z)), weight / lam
            out[k, c] = balance * (1 - torch.exp(-bce)) ** gamma * weight * bce
    return out


def test_distribution_balanced_loss_against_its_formula():
    torch.manual_seed(3)
    logits = torch.randn(6, 5, dtype=torch.float64) * 2
    targets = (torch.rand(6, 5) < 0.4).double()
    targets[:, 0] = 1  # every clip has a label (an unlabelled clip keeps weight 1, tested below)
    counts, n = [300, 80, 12, 3, 0], 400
    loss = DistributionBalancedLoss(counts, n, reduction="none")(logits, targets)
    torch.testing.assert_close(loss, db_reference(logits, targets, counts, n))
    # by hand (nbs/02_losses.ipynb): N = 4, counts (2, 1), logits (0, 0), targets (1, 0)
    by_hand = DistributionBalancedLoss([2, 1], 4, reduction="none")(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(by_hand, torch.tensor([[0.381115, 0.173245]]), atol=1e-6, rtol=0)
    unlabelled = DistributionBalancedLoss([2, 1], 4).rebalance_weight(torch.zeros(1, 2))
    torch.testing.assert_close(unlabelled, torch.ones(1, 2))
    with pytest.raises(ValueError, match="num_clips >= 2"):
        DistributionBalancedLoss([1], 1)
