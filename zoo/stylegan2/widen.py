"""Widening a trained StyleGAN2 generator without changing a single image it draws.

A generator with more channels at some resolutions starts from a trained narrower one: every tensor of the narrow
state dict is copied into the leading block of the wide one, the new channels keep the wide model's own random
initialisation, every weight by which an *old* output reads a *new* input channel is set to zero, and the old
weights are rescaled so that weight x the equalised-learning-rate scale (``1/sqrt(fan_in)``) stays the same. Then:

* an old channel's pre-activation sums over the old inputs only, and its demodulation coefficient
  ``rsqrt(sum_i (s_i w_oi)^2)`` is unchanged, since the added terms are zero;
* the new channels compute something (random weights, noise, bias 0), but nothing reads them yet, so the output
  images are identical (up to float summation order);
* the zero weights still receive gradients (the new channels' activations are non-zero), so training grows them.

No library does this for rosinality's layout (the net2net-style widening of torch libraries targets plain
convolutions without modulation), hence the few lines here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from zoo.stylegan2.generator import Generator


def widen_generator(narrow: Generator, channels: Mapping[int, int], seed: int = 0) -> Generator:
    """A generator with ``channels`` (``{resolution: width}``, each at least ``narrow``'s) that draws exactly the
    images ``narrow`` draws; the new channels are initialised from ``seed``."""
    table = {int(k): int(v) for k, v in channels.items()}
    narrower = {res: (table.get(res), c) for res, c in narrow.channels.items() if table.get(res, c) < c}
    if narrower:
        raise ValueError("widen_generator only adds channels; narrower than the source at "
                         + ", ".join(f"{res} px ({new} < {old})" for res, (new, old) in sorted(narrower.items())))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = Generator(narrow.size, narrow.style_dim, narrow.n_mlp, channels={**narrow.channels, **table},
                         blur_kernel=list(narrow.blur_kernel))
    source = narrow.state_dict()
    state = wide.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            old = source[key]
            if old.shape == value.shape:
                value.copy_(old)
                continue
            block = tuple(slice(0, n) for n in old.shape)
            if value.dim() == 5:  # modulated conv weight [1, out, in, k, k]
                # the equalised-lr scale 1/sqrt(in k^2) shrinks with more inputs: keep weight x scale unchanged
                value[block] = old * (value.shape[2] / old.shape[2]) ** 0.5
                value[:, :old.shape[1], old.shape[2]:] = 0  # old outputs must not read new inputs
            else:
                value[block] = old
    wide.load_state_dict(state)
    if narrow.latent_avg is not None:  # a non-persistent buffer: not in the state dict
        wide.latent_avg = narrow.latent_avg.detach().clone()
    return wide.to(next(narrow.parameters()).device)
