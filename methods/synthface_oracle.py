"""`synthface_oracle`: the synthetic world's ground-truth edit, the reference beside the text-guided methods.

No text and no CLIP. The synthetic generator was trained on a W linear in the renderer's parameters
(W* = [features, 1] @ basis, `zoo.synthface.train_generator.FeatureW`). This method reads the source latent's
parameter features (f = w @ decode, at every W+ index), writes the edit's `expect` into them (a categorical
attribute's one-hot block, or the smile's bin centre and the one-hot of its bin) and moves the latent by exactly
that change,
w' = w + (f' - f) @ basis. Everything else about the face stays where it was. Its judged `attr_target` is what
the generator draws for the exact parameter change it was trained on: an edit on which it stays low (blond hair at
0.5 on the faces suite with generator leg V, 0.25 with leg Q; the smile at 0 with leg I, 0.69 with leg Q, 1.0 with
leg V) is the generator's failure, not the text-guided method's. It is not a strict ceiling: a method that moves
further along a direction (global directions' "old" at alpha 4.1: 1.0 where the oracle reaches 0.875 on the faces
suite) can exceed it, at a cost in identity.

Only for a generator trained with that linear teacher: `prepare` fits the teacher to the backbone set's mapping
and refuses a generator whose mapping the fit does not explain.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import BenchError
from methods.base import EditMethod, EditResult, SourceBatch
from methods.losses import generator_of, source_latents_or_invert

# The least-squares teacher leaves 1.0 % of the committed generator's mapping variance unexplained (measured on
# 1,024 z for leg V; 1.1 % for leg Q, 1.0 % for leg I); a generator not trained on it (a real StyleGAN2, a random
# one) leaves most of it unexplained.
MAX_UNEXPLAINED = 0.05


class SynthfaceOracle(EditMethod):
    """Ground-truth attribute edit in the synthetic generator's parameter-linear W (a reference, not text-guided)."""

    POSITIVE_PARAMS = frozenset({"check_samples"})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"check_samples": 1024}

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.teacher = None

    def prepare(self, backbones: Any, edit: Any) -> None:
        from zoo.synthface.train_generator import FeatureW

        generator = generator_of(backbones)
        teacher = FeatureW.fit(generator).to(generator.device)
        z = torch.randn(int(self.params["check_samples"]), generator.style_dim,
                        generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            w = generator.mapping(z.to(generator.device))
            unexplained = float((w - teacher(z)).pow(2).sum() / (w - w.mean(0)).pow(2).sum())
        if unexplained > MAX_UNEXPLAINED:
            raise BenchError(f"synthface_oracle: the renderer's parameters explain only {1 - unexplained:.1%} of "
                             f"this generator's W (needs more than {1 - MAX_UNEXPLAINED:.0%}); it works only on the "
                             "synthetic world's generator (backbones: synthface)")
        self.teacher = teacher
        feature_delta(edit.expect)  # an unknown attribute or value fails here, before any source is edited

    def prepared_state(self) -> dict[str, Any] | None:
        return None if self.teacher is None else {"basis": self.teacher.basis.cpu()}

    def load_prepared_state(self, state: dict[str, Any]) -> None:
        from zoo.synthface.train_generator import FeatureW
        self.teacher = FeatureW(state["basis"])

    def apply(self, backbones: Any, sources: SourceBatch, edit: Any) -> EditResult:
        if self.teacher is None:
            self.prepare(backbones, edit)
        generator = generator_of(backbones)
        teacher = self.teacher.to(generator.device)
        w = source_latents_or_invert(backbones, sources).to(generator.device)
        w_new = edit_latents(teacher, w, edit.expect)
        with torch.no_grad():
            images = generator(w_new, input_space="w+")
        return EditResult(edited_images=images.clamp(-1, 1), edited_latents=w_new)


def edit_latents(teacher, w: torch.Tensor, expect: dict[str, Any]) -> torch.Tensor:
    """w (W [N, D] or W+ [N, L, D]) moved by the change of its parameter features that `expect` asks for."""
    features = w @ teacher.decode
    new = features.clone()
    for columns, value in feature_delta(expect):
        new[..., columns] = value(features[..., columns])
    return w + (new - features) @ teacher.basis


def feature_delta(expect: dict[str, Any]) -> list[tuple[slice, Any]]:
    """[(feature columns, new value of those columns given their current value)] for an edit's `expect`.

    A latent on the teacher's span reads back its exact features (each categorical block a one-hot). Off the span
    (an inversion, an edited latent) a block need not sum to 1, and a uniform shift of a block moves W along the
    constant row (each block's rows sum to it in a fitted teacher): the new one-hot keeps the block's sum, so the
    edit does not rescale the rest of the face."""
    from zoo.synthface.params import ATTRIBUTE_SPECS, value_index
    from zoo.synthface.train_generator import (CATEGORICAL, CATEGORICAL_SIZES, N_CONTINUOUS, SMILE_BIN_FEATURES,
                                               SMILE_FEATURE)

    def one_hot(cur: torch.Tensor, cls: int, size: int) -> torch.Tensor:
        offset = (cur.sum(-1, keepdim=True) - 1) / size
        return torch.nn.functional.one_hot(torch.tensor(cls), size).to(cur) + offset

    if not expect:
        raise BenchError("synthface_oracle: the edit declares no `expect` (the attribute value to write)")
    out = []
    for name, value in expect.items():
        if name not in ATTRIBUTE_SPECS:
            raise BenchError(f"synthface_oracle: expect names {name!r}; the synthetic generator draws "
                             f"{', '.join(ATTRIBUTE_SPECS)} (photo domain only)")
        try:
            cls = value_index(name, value)
        except ValueError as exc:
            raise BenchError(f"synthface_oracle: {exc}") from None
        spec = ATTRIBUTE_SPECS[name]
        if spec.continuous:
            centre = float(spec.centers[cls])
            out.append((slice(SMILE_FEATURE, SMILE_FEATURE + 1), lambda cur, c=centre: torch.full_like(cur, c)))
            bins = SMILE_BIN_FEATURES.stop - SMILE_BIN_FEATURES.start  # and the teacher's one-hot of its bin
            out.append((SMILE_BIN_FEATURES, lambda cur, c=cls, n=bins: one_hot(cur, c, n)))
            continue
        k = CATEGORICAL.index(name)
        start = N_CONTINUOUS + sum(CATEGORICAL_SIZES[:k])
        size = CATEGORICAL_SIZES[k]
        out.append((slice(start, start + size), lambda cur, c=cls, n=size: one_hot(cur, c, n)))
    return out
