"""Is a CLIP-guided edit's miss the optimiser's failure or its guide's? A check in the synthetic face world.

For every edit of a suite (default `suites/faces.yaml`: 12 edits) on the first N of the suite's sources (drawn by
`bench.sources.source_latents`, as `bench run` draws them), compare three latents: the source, the world's
ground-truth edit (`synthface_oracle`, what the generator draws for the exact parameter change) and StyleCLIP
latent optimisation's result (`steps`, λ_L2). For each: the CLIP loss the optimisation minimises (1 - cos with the
plain target text), Σ(w - w_s)² over W+, and the share the attribute judge reads as the edit's target. Plus the cosine between CLIP's pixel gradient at
the source and the pixel change of the ground-truth edit (1 would be a guide pointing straight at the edit).

    python tools/guidance_check.py [--weights DIR] [--sources 16] [--steps 60] [--json]

If the optimisation ends at a lower CLIP loss than the ground-truth edit while the judge does not see the target,
the guide prefers a wrong image: no optimiser setting can fix that (docs/results/styleclip-guidance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sources import source_latents  # noqa: E402
from bench.suite import load_suite  # noqa: E402
from methods.losses import prompt_features, styleclip_clip_loss  # noqa: E402
from methods.styleclip_optimization import optimize  # noqa: E402
from methods.synthface_oracle import edit_latents  # noqa: E402
from zoo.synthface.backbones import load_synthface  # noqa: E402
from zoo.synthface.train_generator import FeatureW  # noqa: E402


def judge_hits(judge, images: torch.Tensor, expect: dict) -> torch.Tensor:
    (attr, value), = expect.items()
    return (judge.logits(images)[attr].argmax(-1) == judge.classes[attr].index(value)).float()


class ShiftAugmented:
    """A CLIP seen through `copies` random translations of up to `shift` pixels (reflection padding) per call:
    `encode_images` returns the mean of the copies' L2-normalised embeddings, so StyleCLIP's loss
    1 - cos becomes the mean of the copies' losses. Not part of StyleCLIP: the differentiable augmentation of
    CLIP-guided generators (CLIPDraw, VQGAN+CLIP), measured here as a defence against adversarial images."""

    def __init__(self, clip, copies: int, shift: int):
        self.clip, self.copies, self.shift = clip, copies, shift

    def __getattr__(self, name):
        return getattr(self.clip, name)

    def encode_images(self, images: torch.Tensor, **options) -> torch.Tensor:
        n, _, h, w = images.shape
        padded = F.pad(images, (self.shift,) * 4, mode="reflect")
        feats = 0
        for _ in range(self.copies):
            dx, dy = torch.randint(0, 2 * self.shift + 1, (2,)).tolist()
            feats = feats + self.clip.encode_images(padded[:, :, dy:dy + h, dx:dx + w], **options)
        return feats / self.copies


def check_edit(generator, clip, judge, teacher, w: torch.Tensor, edit, steps: int, l2_lambda: float,
               guides: list | None = None) -> dict:
    """The table's CLIP columns are `clip`'s; the optimisation follows `guides` (default: `clip` alone), each CLIP at
    weight 1 as StyleCLIP's loss sums them."""
    text = prompt_features(clip, edit.target)
    w_oracle = edit_latents(teacher, w, edit.expect)
    guides = guides or [clip]
    w_opt, _ = optimize(generator, [(g, 1.0) for g in guides], w, [prompt_features(g, edit.target) for g in guides],
                        steps=steps, l2_lambda=l2_lambda)
    row, images = {"edit": edit.name}, {}
    with torch.no_grad():
        for name, latent in (("source", w), ("oracle", w_oracle), ("optimisation", w_opt)):
            images[name] = generator(latent, input_space="w+")
            row[name] = {"clip_loss": float(styleclip_clip_loss(clip, images[name], text).mean()),
                         "l2": float((latent - w).pow(2).flatten(1).sum(1).mean()),
                         "judge_target": float(judge_hits(judge, images[name], edit.expect).mean())}
    change = images["oracle"] - images["source"]
    pixels = images["source"].clone().requires_grad_(True)
    grad, = torch.autograd.grad(styleclip_clip_loss(clip, pixels, text).sum(), pixels)
    row["gradient_cosine"] = float(F.cosine_similarity(-grad.flatten(1), change.flatten(1), dim=1).mean())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="suites/faces.yaml", help="suite whose edits (with `expect`) to check")
    parser.add_argument("--weights", default=None, help="a folder of the world's weights (default: the committed)")
    parser.add_argument("--sources", type=int, default=16, help="the first N of the suite's sources")
    parser.add_argument("--steps", type=int, default=60, help="optimisation steps (the faces suite's 60)")
    parser.add_argument("--l2-lambda", type=float, default=0.008)
    parser.add_argument("--guides", nargs="+", default=["clip"], choices=["clip", "judge_clip"],
                        help="the world's CLIPs the optimisation follows (the table's CLIP loss stays the first's)")
    parser.add_argument("--augment", nargs=2, type=int, metavar=("COPIES", "SHIFT"), default=None,
                        help="the guides see COPIES random translations of up to SHIFT pixels (ShiftAugmented)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the augmentation's translations")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = load_suite(args.suite)
    edits = [e for e in suite.edits if e.expect]
    backbones = load_synthface(args.weights)
    generator, judge = backbones["generator"], backbones["judge_attributes"]
    teacher = FeatureW.fit(generator)
    w = source_latents(suite.sources, backbones, limit=args.sources)  # the suite's own sources
    clip = backbones[args.guides[0]]
    guides = [backbones[role] for role in args.guides]
    if args.augment:
        guides = [ShiftAugmented(g, *args.augment) for g in guides]
    torch.manual_seed(args.seed)
    rows = [check_edit(generator, clip, judge, teacher, w, edit, args.steps, args.l2_lambda, guides) for edit in edits]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| edit | CLIP loss: source / ground truth / optimisation | L2: ground truth / optimisation | "
          "judge target: ground truth / optimisation | gradient cosine |")
    print("|---|---|---|---|---|")
    for r in rows:
        s, o, p = r["source"], r["oracle"], r["optimisation"]
        print(f"| {r['edit']} | {s['clip_loss']:.3f} / {o['clip_loss']:.3f} / {p['clip_loss']:.3f} | "
              f"{o['l2']:.1f} / {p['l2']:.1f} | {o['judge_target']:.2f} / {p['judge_target']:.2f} | "
              f"{r['gradient_cosine']:+.3f} |")
    below = sum(r["optimisation"]["clip_loss"] < r["oracle"]["clip_loss"] for r in rows)
    print(f"\noptimisation below the ground truth's CLIP loss on {below} of {len(rows)} edits; judge target "
          f"{sum(r['optimisation']['judge_target'] for r in rows) / len(rows):.3f} (ground truth "
          f"{sum(r['oracle']['judge_target'] for r in rows) / len(rows):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
