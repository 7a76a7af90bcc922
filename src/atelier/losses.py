"""Adversarial losses as objects with explicit D and G terms.

Each loss returns a dict of named scalar terms; ``"loss"`` is the one to backpropagate and the rest
are logged. Logits are cast to fp32 first so that bf16 autocast never computes the loss itself in
reduced precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["NonSaturatingLoss", "get_loss"]


class NonSaturatingLoss:
    """The original GAN loss with the non-saturating generator objective (Goodfellow et al. 2014).

    D minimises BCE(real -> 1) + BCE(fake -> 0); G minimises BCE(fake -> 1) = softplus(-D(G(z))),
    which keeps strong gradients early in training when D rejects every fake.
    """

    name = "nonsaturating"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        loss_real = F.softplus(-real_logits).mean()   # BCE-with-logits against 1
        loss_fake = F.softplus(fake_logits).mean()    # BCE-with-logits against 0
        return {"loss": loss_real + loss_fake, "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    def g_loss(self, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.softplus(-fake_logits.float()).mean()}


def get_loss(name: str) -> NonSaturatingLoss:
    losses = {"nonsaturating": NonSaturatingLoss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(losses)}")
    return losses[name]()
