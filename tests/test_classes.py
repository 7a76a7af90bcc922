"""Class-level metrics (atelier.metrics.classes) on hand-made cases, and the conditioning pieces of the GAN
backbones: the shared class embedding's conditional norm, the projection D's class scores and loss.class_weight."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from atelier.errors import ConfigError
from atelier.metrics.classes import (
    class_agreement,
    class_balance,
    intra_class_diversity,
    mean_pairwise_distance,
    per_class_agreement,
    predict_classes,
)
from atelier.models import build
from atelier.models.layers import LinearConditionalBatchNorm2d
from atelier.runs import load_config
from conftest import DATA_REASON, REPO, mnist_available


class BrightnessClassifier(nn.Module):
    """A hand-made 'domain classifier': class k for images whose mean pixel is in [25.6k, 25.6(k+1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = (x.float().mean(dim=(1, 2, 3)) / 25.6).floor().clamp(0, 9).long()
        return nn.functional.one_hot(k, 10).float() * 5.0          # (B, 10) logits


class TinyConditionalG(nn.Module):
    """A 'generator' that paints class y as brightness 25.6 y + 12, except that it answers 3 when asked for 7."""

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shown = torch.where(y == 7, torch.full_like(y, 3), y)
        level = (shown.float() * 25.6 + 12).round().to(torch.uint8)
        return level[:, None, None, None].expand(-1, 1, 4, 4).clone()   # uint8 (B, 1, 4, 4)


def test_class_agreement_matches_a_hand_made_model():
    y = torch.arange(100) % 10                         # 10 images per class
    images = TinyConditionalG()(torch.zeros(100, 2), y)
    clf = BrightnessClassifier()
    assert predict_classes(images, clf, batch_size=7).tolist()[:10] == [0, 1, 2, 3, 4, 5, 6, 3, 8, 9]
    assert class_agreement(images, y, clf, batch_size=7) == pytest.approx(0.9)   # all but the sevens
    per = per_class_agreement(images, y, clf, num_classes=11)
    assert per[:10] == [1.0] * 7 + [0.0] + [1.0] * 2
    assert math.isnan(per[10])                          # a class with no images
    threes = torch.full_like(y, 3)                      # asking 3 of everything: the 3s and the 7s painted as 3 agree
    assert class_agreement(images, threes, clf) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="expected 100 labels"):
        class_agreement(images, y[:50], clf)


def test_class_balance_reports_shares_and_normalised_entropy():
    clf = BrightnessClassifier()
    balanced = TinyConditionalG()(torch.zeros(20, 2), torch.tensor([0, 1, 2, 3, 4, 5, 6, 8, 9, 3] * 2))
    b = class_balance(balanced, clf)
    assert b.shares[3] == pytest.approx(0.2) and b.shares[7] == 0.0
    assert b.min_share == 0.0 and b.max_share == pytest.approx(0.2)
    expected = -(8 * 0.1 * math.log(0.1) + 0.2 * math.log(0.2)) / math.log(10)
    assert b.entropy == pytest.approx(expected)
    one = class_balance(TinyConditionalG()(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)), clf)
    assert one.entropy == 0.0 and one.max_share == 1.0
    uniform = class_balance(TinyConditionalG()(torch.zeros(10, 2), torch.tensor([0, 1, 2, 3, 4, 5, 6, 8, 9, 9])),
                            clf, num_classes=9)
    assert uniform.entropy < 1.0


def test_intra_class_diversity_is_one_for_the_data_itself_and_zero_for_a_collapsed_class():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 8, generator=g)
    labels = torch.arange(200) % 2
    assert intra_class_diversity(real, labels, real, labels, 2) == pytest.approx([1.0, 1.0])
    collapsed = real.clone()
    collapsed[labels == 1] = real[1]                    # class 1: one image repeated
    div = intra_class_diversity(collapsed, labels, real, labels, 2)
    assert div[0] == pytest.approx(1.0) and div[1] == 0.0
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_linear_conditional_norm_starts_as_plain_batch_norm_and_depends_on_the_class_after_a_step():
    torch.manual_seed(0)
    norm = LinearConditionalBatchNorm2d(4, 3)
    x, c = torch.randn(6, 4, 5, 5), torch.randn(6, 3)
    assert torch.allclose(norm(x, c), nn.BatchNorm2d(4, affine=False)(x), atol=1e-6)
    opt = torch.optim.Adam(norm.parameters(), lr=1e-2)
    norm(x, c).pow(3).mean().backward()
    opt.step()
    out = norm(x, c)
    # Adam moved each weight by ~lr; a scale is a sum over cond_dim weights, so it moved by up to ~3 lr.
    gains = 1 + norm.gain(c)
    assert (gains - 1).abs().max() > 1e-2 and not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("family", ["resnet", "dcgan"])
def test_shared_class_embedding_generators_take_labels(family):
    torch.manual_seed(0)
    extra = {"d_conditioning": "projection"} if family == "dcgan" else {}
    nets = build({"name": family, "z_dim": 8, "width": 8, "num_classes": 10, "cond_dim": 4, **extra},
                 resolution=28, channels=1)
    G, D = nets["G"].eval(), nets["D"].eval()
    z = torch.randn(3, 8)
    a, b = G(z, torch.tensor([1, 1, 1])), G(z, torch.tensor([2, 2, 2]))
    assert a.shape == (3, 1, 28, 28) and not torch.allclose(a, b)   # the class enters through z's embedding
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 4, 9])
    logits, scores = D(x, y, scores=True)
    assert scores.shape == (3, 10) and torch.allclose(logits, D(x, y), atol=1e-6)
    # The class term is the score of the asked class: changing y moves the logit by the score difference.
    other = torch.tensor([5, 5, 5])
    assert torch.allclose(D(x, other) - D(x, y), (scores[:, 5] - scores.gather(1, y[:, None])[:, 0])[:, None],
                          atol=1e-5)


def test_class_weight_needs_a_conditional_projection_discriminator():
    with pytest.raises(ConfigError, match="loss.class_weight trains the class scores"):
        load_config(None, {"loss.class_weight": 1.0})
    with pytest.raises(ConfigError, match="d_conditioning: projection"):
        load_config(None, {"loss.class_weight": 1.0, "model.num_classes": 10})
    cfg = load_config(None, {"loss.class_weight": 1.0, "model.num_classes": 10, "model.d_conditioning": "projection"})
    assert cfg.loss.class_weight == 1.0



@pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)
def test_the_shipped_conditional_config_trains_its_class_scores(tmp_path, tiny):
    import json

    import atelier

    run = tmp_path / "cgan"
    atelier.train(REPO / "configs" / "mnist-cgan.yaml", run, {**tiny, "train.steps": 2, "log.every": 1}, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cls = [r["cls"] for r in rows if "cls" in r]
    assert len(cls) == 2 and all(0 < c < 10 for c in cls)   # the cross-entropy of D's class scores on reals
    g = atelier.load(run)
    assert g.network.cond_dim == 64 and g.network.embed is not None


@pytest.mark.skipif(not mnist_available(), reason=DATA_REASON)
def test_evaluate_reports_class_agreement_for_a_conditional_run(tmp_path, tiny):
    # Issue 16.9: every conditional run's evaluation says whether it gives the class it is asked for.
    import atelier
    from atelier.api.evaluate import evaluate_run

    run = tmp_path / "cgan"
    atelier.train(REPO / "configs" / "mnist-cgan.yaml", run, {**tiny, "train.steps": 2}, progress=False)
    records = evaluate_run(run, metrics=["fid"], n=200)
    agree = next(r for r in records if r["metric"] == "class_agreement")
    assert agree["n"] == 200 and agree["chance"] == 0.1 and len(agree["per_class"]) == 10
    assert 0 <= agree["worst_agreement"] <= agree["value"] <= 1
    # An untrained model is near chance, nowhere near the >= 90% of a trained one.
    assert agree["value"] < 0.5
    plain = tmp_path / "dcgan"
    atelier.train(REPO / "configs" / "mnist-dcgan.yaml", plain, {**tiny, "train.steps": 1}, progress=False)
    assert all(r["metric"] != "class_agreement" for r in evaluate_run(plain, metrics=["fid"], n=100))
