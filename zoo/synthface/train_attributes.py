"""The synthetic world's attribute judge: a small multi-head CNN classifier of every editable attribute + the domain.

One head per attribute of `ATTRIBUTES` (smile is classified by its bin: frowning / neutral / smiling, as
`FaceParams.labels()` gives it) and one head over the 8 `DOMAINS`, on a shared residual conv trunk (`nets.py`).
With `smile_regression_weight` > 0 a smile-value head also regresses the continuous smile (smooth L1), and the
judge's smile class is the bin of that value (`smile_logits`); the bin head keeps training beside it.
Training data: renders with random people, attributes and pose, in every domain (photo with probability
`photo_prob`, otherwise one of the other seven uniformly); loss: the sum of the heads' cross-entropies. The
hair colour target is masked out of the loss in `COLOURLESS_DOMAINS` (pencil, marble), where the renderer draws
the hair in grey graphite / white stone and its colour cannot be seen; the hair-colour head's output there is
meaningless. A bald face without facial hair shows no hair colour at all in any domain (`hair_colour_visible`);
those faces stay in the training loss (label noise: the head learns the prior there) and the hair-colour gate
counts only faces whose hair colour is drawn.

`load_attribute_judge()` returns an `AttributeJudge`: `logits(images)` / `predict(images)` -> dict name ->
[N, K] logits / [N] class indices, for RGB [-1, 1] 64x64 images; `classes[name]` are the class names.

Gates (held-out renders, fixed seeds): accuracy >= 0.95 per attribute on photo renders (hair colour: on those
that show it), domain accuracy >= 0.95
over renders of all domains; per-attribute accuracy on the other domains is reported for information.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.synthface import training
from zoo.synthface.domains import COLOURLESS_DOMAINS, DOMAIN_NAMES
from zoo.synthface.nets import (ConvTrunk, adamw_with_decay_groups, count_parameters, training_domains,
                                 warmup_cosine)
from zoo.synthface.params import ATTRIBUTE_SPECS, ATTRIBUTES, sample_params
from zoo.synthface.render import render

NAME = "attributes"
INPUT_SIZE = 64

DEFAULTS = {
    "seed": 0,
    "steps": 1500,
    "batch": 96,
    "photo_prob": 0.35,
    "widths": [32, 64, 96, 128],
    "depth": 1,
    "hidden": 256,
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "warmup": 100,
    "head_weights": {},  # per-head loss weights (default 1), e.g. {"smile": 3.0} for a continuation
    "smile_regression_weight": 0.0,  # > 0: a smile-value head (smooth L1 on the continuous smile) that also
                                     # decides the smile class (see smile_logits)
    "smile_edge_fraction": 0.0,  # share of each batch whose smile is redrawn within SMILE_CLEAR_MARGIN of a bin
                                 # edge (uniform), where the bin of a regressed value is decided
    "blur_fraction": 0.0,  # share of each batch (its last faces) blurred by a Gaussian of sigma ~ U(0.3, blur_sigma)
    "blur_sigma": 1.2,     # px: the judge reads generator samples, which are softer than the renders (see blur_some)
    "init_from": None,   # "weights" (the committed export) or a weights folder: continue the committed judge in a
                         # new run (fresh optimizer; a head the export lacks, e.g. the smile-value head, starts new)
}

SUMMARY = """Small multi-head CNN attribute judge (residual conv trunk, BN + PReLU, shared FC feature, one linear
head per editable attribute, smile by its bin, plus an 8-way domain head; smile is read from a smile-value
regression head, cut at the caption bins). Trained with summed cross-entropies (+ smooth L1 of the smile value) on
renders of random people, attributes and poses in all domains; the hair-colour loss is masked in the pencil and
marble domains, where hair colour is not rendered; the last run draws up to half of each batch's smiles next to a
bin edge and blurs 30 % of its renders (generator samples are softer). Gates: per-attribute accuracy on
held-out photo renders (hair colour on the ~93% of faces that show any hair: a bald face without facial hair has
no visible hair colour) and domain accuracy over all domains."""

EVAL_PHOTO_SEED = 8_001
EVAL_DOMAINS_SEED = 8_002
EVAL_RENDERS = 2000
SMILE_CLEAR_MARGIN = 0.1  # smile in [-1, 1], bin edges at +-0.35: a render this far from an edge is unambiguous


def head_sizes() -> dict[str, int]:
    return {**{k: len(v) for k, v in ATTRIBUTES.items()}, "domain": len(DOMAIN_NAMES)}


class AttributeJudge(nn.Module):
    """[N, 3, 64, 64] RGB in [-1, 1] -> per-head logits (`forward` = `logits`), `predict` -> class indices."""

    def __init__(self, heads: dict[str, int], widths=(32, 64, 96, 128), depth: int = 1, hidden: int = 256,
                 smile_regression: bool = False):
        super().__init__()
        self.trunk = ConvTrunk(widths, depth)
        c = self.trunk.out_channels
        spatial = INPUT_SIZE // 2 ** len(widths)
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(c * spatial * spatial, hidden, bias=False),
                                     nn.BatchNorm1d(hidden), nn.PReLU(hidden))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, k) for name, k in heads.items()})
        # smile is a continuous value cut into caption bins; regressing the value teaches the trunk its exact
        # size (a dense signal), where bin cross-entropy only learns from faces near an edge that it misreads
        self.smile_value = nn.Linear(hidden, 1) if smile_regression else None
        self.classes: dict[str, tuple[str, ...]] = {
            name: (DOMAIN_NAMES if name == "domain" else ATTRIBUTES.get(name, tuple(str(i) for i in range(k))))
            for name, k in heads.items()}

    @staticmethod
    def resize(images: Tensor) -> Tensor:
        """`images` at the judge's input size (INPUT_SIZE x INPUT_SIZE, antialiased bilinear), as they are."""
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                   antialias=True)
        return images

    def outputs(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """(every head's own logits, the regressed smile value [N] in [-1, 1] scale or None) for training."""
        h = self.feature(self.trunk(self.resize(images)))
        value = self.smile_value(h).squeeze(-1) if self.smile_value is not None else None
        return {name: head(h) for name, head in self.heads.items()}, value

    def logits(self, images: Tensor) -> dict[str, Tensor]:
        """Per-head logits; with a smile-value head the smile logits are `smile_logits` of the regressed value."""
        out, value = self.outputs(images)
        if value is not None:
            out["smile"] = smile_logits(value)
        return out

    forward = logits

    @torch.no_grad()
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {name: out.argmax(-1) for name, out in self.logits(images).items()}


def smile_logits(value: Tensor, sharpness: float = 10.0) -> Tensor:
    """[N, 3] logits of (frowning, neutral, smiling) from a smile value: sharpness x (lo - v, 0, v - hi) for the
    bin edges (lo, hi), so the argmax is exactly the caption bin of v."""
    lo, hi = ATTRIBUTE_SPECS["smile"].bins
    return sharpness * torch.stack([lo - value, torch.zeros_like(value), value - hi], dim=-1)


def near_edges(params, fraction: float, g: torch.Generator) -> None:
    """Redraw the smile of the first round(fraction * N) faces in place, uniform within SMILE_CLEAR_MARGIN of a
    randomly chosen bin edge. Uniform smiles put 19% of faces there, yet the judge's smile errors sit almost only
    there (a ~0.09 regression error decides the bin only near an edge)."""
    k = training.share_count("smile_edge_fraction", fraction, len(params))
    if k == 0:
        return
    edges = torch.tensor(ATTRIBUTE_SPECS["smile"].bins, dtype=torch.float32)
    pick = edges[torch.randint(len(edges), (k,), generator=g)]
    offset = (torch.rand(k, generator=g) * 2 - 1) * SMILE_CLEAR_MARGIN
    smile = params.attrs["smile"]
    smile[:k] = (pick + offset).to(smile.dtype)


def blur_some(images: Tensor, fraction: float, max_sigma: float, g: torch.Generator) -> Tensor:
    """`images` with the last round(fraction * N) blurred, each by its own Gaussian (sigma uniform in
    [0.3, max_sigma] px, kernel 7). The judge scores generator samples, which are softer than the renders, and the
    judge trained on sharp renders only read smile on renders blurred by 1.2 px at 0.763 (0.958 sharp); with 30 % of
    its batches blurred, 0.916 (cards/attributes.md, "Third run")."""
    k = training.share_count("blur_fraction", fraction, len(images))
    if k == 0:
        return images
    from torchvision.transforms.functional import gaussian_blur
    sigmas = 0.3 + torch.rand(k, generator=g) * (max_sigma - 0.3)
    out = images.clone()
    for i, sigma in zip(range(len(images) - k, len(images)), sigmas.tolist()):
        out[i] = gaussian_blur(images[i], kernel_size=7, sigma=sigma)
    return out


def judge_loss(logits: dict[str, Tensor], labels: dict[str, Tensor], weights: dict[str, float] | None = None
               ) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of per-head cross-entropies (hair colour masked in the colourless domains; `weights` default
    1 per head) and per-head accuracies."""
    weights = weights or {}
    training.check_names("head_weights", weights, logits)
    colourless = torch.tensor([DOMAIN_NAMES.index(d) for d in COLOURLESS_DOMAINS], device=labels["domain"].device)
    visible = ~torch.isin(labels["domain"], colourless)
    total = logits["domain"].new_zeros(())
    accs = {}
    for name, out in logits.items():
        target = labels[name]
        if name == "hair_color":
            out, target = out[visible], target[visible]
            if target.numel() == 0:
                continue
        total = total + float(weights.get(name, 1.0)) * F.cross_entropy(out, target)
        accs[name] = (out.argmax(-1) == target).float().mean().item()
    return total, accs


def build(config) -> training.Trainable:
    regress = float(config.get("smile_regression_weight", 0.0))
    model = AttributeJudge(head_sizes(), config["widths"], config["depth"], config["hidden"], regress > 0)
    source = training.init_dir(config.get("init_from"))
    if source is not None:
        state, _ = training.load_weights(NAME, source)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"init_from {source}: the judge there does not match this config: {exc}") from None
        if unexpected or any(not k.startswith("smile_value.") for k in missing):
            raise ValueError(f"init_from {source}: the judge there does not match this config (missing {missing}, "
                             f"unexpected {unexpected})")
    optimizer = adamw_with_decay_groups(model, config["lr"], config["weight_decay"])
    steps = config["steps"]

    def step(i: int) -> dict[str, float]:
        g = training.step_generator(config["seed"], i)
        n = config["batch"]
        params = sample_params(n, generator=g, domain=training_domains(n, g, config["photo_prob"]))
        near_edges(params, float(config.get("smile_edge_fraction", 0.0)), g)
        dev = training.device_of(model)
        with torch.no_grad():
            images = blur_some(render(params), float(config.get("blur_fraction", 0.0)),
                               float(config.get("blur_sigma", 1.2)), g).to(dev)
        lr = warmup_cosine(i, steps, config["warmup"], config["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        out, value = model.outputs(images)
        labels = {k: v.to(dev) for k, v in params.labels().items()}
        loss, accs = judge_loss(out, labels, config.get("head_weights"))
        if value is not None:
            target = params.attrs["smile"].float().to(dev)
            loss = loss + regress * F.smooth_l1_loss(value, target, beta=0.1)
            accs["smile"] = (smile_logits(value).argmax(-1) == labels["smile"]).float().mean().item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "lr": lr, "min_acc": min(accs.values()),
                **{f"acc_{k}": v for k, v in accs.items() if k in ("smile", "hair_color", "age", "domain")}}

    return training.Trainable(NAME, model, optimizer, step, dict(config))


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    config = dict(trainable.config)
    config["heads"] = head_sizes()
    config["smile_regression"] = trainable.model.smile_value is not None
    config["parameters"] = count_parameters(trainable.model)
    return training.export_weights(NAME, trainable.model, config, weights_dir, dtype=torch.float16)


def load_attribute_judge(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR) -> AttributeJudge:
    """The trained attribute judge (eval mode, frozen)."""
    state, config = training.load_weights(NAME, Path(weights_dir))
    judge = AttributeJudge(config["heads"], config["widths"], config["depth"], config["hidden"],
                           bool(config.get("smile_regression", False)))
    judge.load_state_dict(state)
    return judge.eval().requires_grad_(False).to(device)


# ---------------------------------------------------------------------------------------------- gates
@torch.no_grad()
def accuracies(judge: AttributeJudge, params, batch: int = 250) -> dict[str, Tensor]:
    """Per head: [N] bool, prediction == label, on the renders of `params`."""
    labels = params.labels()
    hits: dict[str, list[Tensor]] = {name: [] for name in judge.heads}
    for i in range(0, len(params), batch):
        pred = judge.predict(render(params[i:i + batch]))
        for name in hits:
            hits[name].append(pred[name] == labels[name][i:i + batch])
    return {name: torch.cat(v) for name, v in hits.items()}


def hair_colour_visible(params) -> Tensor:
    """[N] bool: the hair colour is drawn somewhere. A bald face without facial hair shows no hair at all (the
    eyebrows keep their own colour), so its hair colour cannot be judged (about 7% of random faces)."""
    bald = params.attrs["hair_style"] == ATTRIBUTES["hair_style"].index("bald")
    shaven = params.attrs["facial_hair"] == ATTRIBUTES["facial_hair"].index("none")
    return ~(bald & shaven)


def gates(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR, n: int = EVAL_RENDERS,
          photo_seed: int = EVAL_PHOTO_SEED, domains_seed: int = EVAL_DOMAINS_SEED) -> list[dict]:
    """The gates on the held-out renders of `photo_seed` and `domains_seed` (other seeds: tools/gate_draws.py)."""
    judge = load_attribute_judge(device, weights_dir)
    results = []
    photo_params = sample_params(n, seed=photo_seed, domain="photo")
    photo = accuracies(judge, photo_params)
    visible = hair_colour_visible(photo_params)
    for name in ATTRIBUTES:
        hits = photo[name][visible] if name == "hair_color" else photo[name]
        acc = float(hits.float().mean())
        where = f"{int(visible.sum())} held-out renders with visible hair" if name == "hair_color" else \
            f"{n} held-out renders"
        results.append({"name": f"{name} accuracy, photo ({where})", "value": acc,
                        "threshold": ">= 0.95", "passed": acc >= 0.95})
    acc = float(photo["hair_color"].float().mean())
    results.append({"name": f"hair_color accuracy, photo, all {n} renders incl. bald and shaven (info)",
                    "value": acc, "threshold": "info", "passed": True})
    # smile is a continuous value cut into caption bins: how much of the error sits next to a bin edge?
    smile = photo_params.attrs["smile"].float()
    edge = torch.stack([(smile - b).abs() for b in ATTRIBUTE_SPECS["smile"].bins]).min(0).values
    clear = edge >= SMILE_CLEAR_MARGIN
    results.append({"name": f"smile accuracy, photo, the {int(clear.sum())} renders >= {SMILE_CLEAR_MARGIN} from a "
                            "bin edge (info)", "value": float(photo["smile"][clear].float().mean()),
                    "threshold": "info", "passed": True})
    everywhere = sample_params(n, seed=domains_seed, domain=list(DOMAIN_NAMES))
    hits = accuracies(judge, everywhere)
    acc = float(hits["domain"].float().mean())
    results.append({"name": f"domain accuracy, all 8 domains ({n} held-out renders)", "value": acc,
                    "threshold": ">= 0.95", "passed": acc >= 0.95})
    other = everywhere.domain != DOMAIN_NAMES.index("photo")
    colourless = torch.isin(everywhere.domain, torch.tensor([DOMAIN_NAMES.index(d) for d in COLOURLESS_DOMAINS]))
    hair = hair_colour_visible(everywhere)
    for name in ATTRIBUTES:
        keep = other & ~colourless & hair if name == "hair_color" else other
        label = "non-photo domains except pencil/marble" if name == "hair_color" else "non-photo domains"
        results.append({"name": f"{name} accuracy, {label} (info)", "value": float(hits[name][keep].float().mean()),
                        "threshold": "info", "passed": True})
    for d, dname in enumerate(DOMAIN_NAMES[1:], start=1):
        sel = everywhere.domain == d
        names = [k for k in ATTRIBUTES if not (k == "hair_color" and dname in COLOURLESS_DOMAINS)]
        acc_of = {k: float(hits[k][sel & hair].float().mean()) if k == "hair_color" else
                  float(hits[k][sel].float().mean()) for k in names}
        worst = min(names, key=acc_of.get)
        results.append({"name": f"lowest attribute accuracy in {dname} ({worst}) (info)",
                        "value": acc_of[worst], "threshold": "info", "passed": True})
    return results


def attribute_judge_or_none(device: str = "cpu", purpose: str = "attribute gate") -> AttributeJudge | None:
    """The committed judge, or None (with a printed reason) when it is not trained yet: other networks' gates
    that need it are then skipped, not failed."""
    try:
        return load_attribute_judge(device)
    except (FileNotFoundError, OSError) as exc:
        print(f"{purpose} SKIPPED: the attribute judge is not available ({type(exc).__name__}: {exc})")
        return None
