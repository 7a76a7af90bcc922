"""Perceptual path length (Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019, sec. 4.2):
how much the image changes, perceptually, per small step of the latent along interpolation paths. A generator whose
latent space is "disentangled" changes its images smoothly (low PPL); sudden jumps between modes raise it.

    PPL = E[ d(G(lerp(w1, w2, t)), G(lerp(w1, w2, t + eps))) / eps^2 ],  t ~ U(0, 1)

in w for a mapping network (StyleGAN2's "w, end" variant uses t in {0, 1}; this is the full-path one), and with
slerp in z for any other generator. ``d`` is LPIPS in the paper; here it is the same LPIPS-style distance the
projector uses (:class:`atelier.inversion.distance.ProjectionDistance`), on the conv stages of an atelier
evaluator, without learned weights and without downloads: values are comparable between runs scored with the
same evaluator only. As in the paper, the 1% lowest and highest samples are dropped before averaging.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from atelier.errors import AtelierError
from atelier.inversion.distance import ProjectionDistance
from atelier.inversion.project import dim, has_mapping, mapping, render

__all__ = ["path_length"]


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = (na * nb).sum(1, keepdim=True).clamp(-1, 1).acos()
    so = omega.sin().clamp_min(1e-7)
    return (((1 - t) * omega).sin() / so) * a + ((t * omega).sin() / so) * b


@torch.no_grad()
def path_length(net: nn.Module, distance: ProjectionDistance, *, n: int = 1000, eps: float = 1e-4, seed: int = 0,
                batch_size: int = 100, psi: float = 1.0, num_classes: int = 0) -> dict[str, Any]:
    """PPL of ``net`` (eval mode) from ``n`` pairs of latents: ``{"metric": "ppl", "value", "space", "eps", ...}``.
    ``psi`` < 1 measures the truncated generator (a mapping network's w pulled towards w_avg)."""
    if distance.evaluator is None:
        raise AtelierError("perceptual path length needs an evaluator's features (not features 'none')")
    if n < 2:
        raise AtelierError(f"ppl needs at least 2 samples, got {n}")
    gen = torch.Generator().manual_seed(seed)
    dev = next(net.parameters()).device
    mapped = has_mapping(net)
    values = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn(2 * b, dim(net, "z_dim"), generator=gen)
        t = torch.rand(b, 1, generator=gen)
        y = (torch.arange(start, start + b) % num_classes) if num_classes else None
        if mapped:
            w = mapping(net, z.to(dev), None if y is None else y.repeat(2).to(dev))[:, 0].float().cpu()
            if psi != 1.0:
                w = net.get_buffer("w_avg").float().cpu().lerp(w, psi)
            wa, wb = w[:b], w[b:]
            ends = torch.cat([wa.lerp(wb, t), wa.lerp(wb, t + eps)])
            images = render(net, ends.to(dev), "w")
        else:
            za, zb = z[:b] * psi, z[b:] * psi
            ends = torch.cat([_slerp(za, zb, t), _slerp(za, zb, t + eps)])
            images = render(net, ends.to(dev), "z", None if y is None else y.repeat(2))
        images = images.float()
        values.append(distance.feature_distance(images[:b], images[b:]).cpu() / eps**2)
    v = torch.cat(values).sort().values
    lo, hi = int(0.01 * len(v)), max(int(0.01 * len(v)) + 1, len(v) - int(0.01 * len(v)))
    kept = v[lo:hi]
    return {"metric": "ppl", "value": float(kept.mean()), "std": float(kept.std()) if len(kept) > 1 else None,
            "space": "w" if mapped else "z (slerp)", "eps": eps, "ppl_samples": n,
            "ppl_distance": f"LPIPS-style distance of the {distance.features} evaluator's conv stages",
            **({"truncation": psi} if psi != 1.0 else {})}
