"""Which generator layers StyleGAN-NADA trains: fixed phases or adaptive top-k selection, and the freezing itself.

The mapping network (`style.*`) and every ToRGB (`to_rgb1`, `to_rgbs.*`) are never trained. The candidates are the
learned constant (`input`), `conv1` and the styled convs (`convs.*`), each StyledConv as a whole (its conv weight,
modulation affine, noise strength and activation bias).

Fixed phases (the official code names convolutions by their position in `convs`; the table below restates that
notion as W+ indices, using the generator's own W+ index ↔ module table, where `convs.j` is driven by index j + 1)::

    phase     trains                                  W+ indices     resolutions at 1024 (at 64: the same rule)
    all       input, conv1, every convs.j             0 .. n-1       4 .. 1024
    shape     input, conv1, convs.0-1                 0, 1, 2        4, 8
    texture   input, conv1, convs.2-9                 0, 3 .. 10     4 (const/conv1), 16 .. 128
    no_fine   input, conv1, convs.0-9                 0 .. 10        4 .. 128

Indices past the generator's last conv are dropped (a 64 px generator has `convs.0-7`: texture = conv1 + convs.2-7,
no_fine = all). The official `all` phase also trains the mapping network and ToRGB; here `all` keeps them frozen
(the contract of this method: only the constant and the styled convs adapt).

Adaptive selection (`auto_layer_k` > 0, every training step): replicate sampled w into W+, take `auto_layer_iters`
SGD steps (lr 0.01) on W+ against the *global* CLIP loss, rank W+ indices by mean |Δw|, and train the StyledConvs
driven by the top-k indices (`Generator.layer_groups()`; the ToRGB a top index also drives stays frozen, and the
constant is not trained in this mode since no W+ index drives it). With k ≥ n_latent every index is chosen whatever
the ranking, so the SGD probe is skipped (same layers, less time; the official code runs it anyway).

A deliberate difference in the index → layer table: the official code maps a chosen index i through the list
[conv1, to_rgb1, convs.0, convs.1, ...] (index 1 trains to_rgb1 and index i ≥ 2 trains convs.(i − 2)), which is one
off from the W+ index each layer actually reads in StyleGAN2 (conv1 ← 0, convs.j ← j + 1). Here an index trains the
StyledConv it drives, so the ranking by |Δw| selects the layers whose styles moved; the last index, which drives only
the last ToRGB, trains nothing (at 64 px: k = 6 chosen among 10 indices trains 5 or 6 convs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

PHASES = ("all", "shape", "texture", "no_fine")
_PHASE_CONVS = {"shape": range(0, 2), "texture": range(2, 10), "no_fine": range(0, 10)}


def candidate_modules(generator) -> dict[str, nn.Module]:
    """Every module NADA may train, by name: input, conv1, convs.0 .. (never mapping or ToRGB)."""
    found = {"input": generator.input, "conv1": generator.conv1}
    found.update({f"convs.{j}": conv for j, conv in enumerate(generator.convs)})
    return found


def phase_modules(generator, phase: str) -> list[str]:
    """Names of the modules a fixed phase trains (see the module docstring's table)."""
    if phase not in PHASES:
        raise ValueError(f"unknown NADA phase {phase!r}; valid: {', '.join(PHASES)}")
    n_convs = len(generator.convs)
    convs = range(n_convs) if phase == "all" else [j for j in _PHASE_CONVS[phase] if j < n_convs]
    return ["input", "conv1", *[f"convs.{j}" for j in convs]]


def modules_for_w_indices(generator, indices: Iterable[int]) -> list[str]:
    """Names of the trainable modules driven by the given W+ indices (ToRGBs skipped), in generator order."""
    wanted = set(int(i) for i in indices)
    names = [name for i, group in enumerate(generator.layer_groups()) if i in wanted
             for name, _ in group if not name.startswith("to_rgb")]
    order = list(candidate_modules(generator))
    return sorted(names, key=order.index)


def set_trainable(generator, names: Iterable[str]) -> None:
    """requires_grad on exactly the named candidate modules; everything else in the generator frozen."""
    names = set(names)
    candidates = candidate_modules(generator)
    unknown = names - set(candidates)
    if unknown:
        raise ValueError(f"not trainable in NADA: {sorted(unknown)}")
    generator.requires_grad_(False)
    for name in names:
        candidates[name].requires_grad_(True)


def w_plus_change(render: Callable[[torch.Tensor], torch.Tensor], loss_fn: Callable[[torch.Tensor], torch.Tensor],
                  w: torch.Tensor, n_latent: int, iters: int = 1, lr: float = 0.01) -> torch.Tensor:
    """Mean |Δw| per W+ index [n_latent] after `iters` SGD steps on W+ (initialised by replicating w [B, D]) that
    minimise `loss_fn(render(w_plus))`. Only W+ receives updates (gradients w.r.t. the network are not kept)."""
    start = w.detach().unsqueeze(1).repeat(1, n_latent, 1)
    w_plus = start.clone()
    for _ in range(iters):
        w_plus.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(render(w_plus)), w_plus)
        w_plus = (w_plus - lr * grad).detach()
    return (w_plus - start).abs().mean(dim=(0, 2))


def top_w_indices(change: torch.Tensor, k: int) -> list[int]:
    """The k W+ indices with the largest change, ascending (k is clipped to the number of indices)."""
    k = max(1, min(int(k), change.numel()))
    return sorted(torch.topk(change, k).indices.tolist())
