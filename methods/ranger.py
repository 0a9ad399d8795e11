"""Ranger as StyleCLIP's mapper uses it: RAdam (`torch.optim.RAdam`) wrapped in Lookahead.

Lookahead keeps a slow copy φ of every parameter; every `k` inner steps the slow weights move towards the
fast ones, ``φ ← φ + α (θ − φ)``, and the fast weights are reset to φ. Ranger's defaults: k = 6, α = 0.5,
RAdam betas (0.95, 0.999), eps 1e-5, no weight decay. Differences from the Ranger StyleCLIP ships: no gradient
centralisation (that Ranger centres the gradients of conv/linear weights before the RAdam step) and torch's own
RAdam rectification rule (variance-rectified when ρ_t > 5, the same threshold).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Lookahead:
    """Lookahead around any inner optimiser (its `param_groups` are shared, so LR schedules still work)."""

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        if k < 1 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead needs k >= 1 and 0 <= alpha <= 1, got k={k}, alpha={alpha}")
        self.inner, self.k, self.alpha = inner, int(k), float(alpha)
        self._steps = 0
        self.slow = [[p.detach().clone() for p in group["params"]] for group in self.param_groups]

    # the inner optimiser's own list, looked up each time (its load_state_dict replaces it)
    @property
    def param_groups(self) -> list[dict]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.inner.step(closure)
        self._steps += 1
        if self._steps % self.k == 0:
            for group, slow in zip(self.param_groups, self.slow):
                for p, s in zip(group["params"], slow):
                    s.add_(p.detach() - s, alpha=self.alpha)
                    p.copy_(s)
        return loss


def Ranger(params: Iterable[torch.Tensor], lr: float = 1e-3, betas=(0.95, 0.999), eps: float = 1e-5,
           weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5) -> Lookahead:
    """RAdam + Lookahead with Ranger's defaults."""
    return Lookahead(torch.optim.RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                     k=k, alpha=alpha)
