"""Trainer of the synthetic face world's CLIP (`python -m zoo.synthface.train clip`), and `load()` for both CLIPs.

Architecture: an open_clip custom config (`zoo/synthface/clip_configs/<model>.json`: a small ViT for 64x64 renders,
patch 16, 4 layers, and a 2-layer text transformer with the standard open_clip BPE tokenizer, vocabulary 49408,
context 40; width 128 for `clip`, 160 for `judge_clip`). Patch 16 and the shallow text tower keep a step near one
CPU-second: with patch 8 a step took 2-3x longer, too slow for the one-hour CPU budget.
The config files hold the open_clip model config plus a `preprocess_cfg` section (mean = std = 0.5: the [-1, 1]
renders reach the ViT unchanged); `register_configs()` registers the model part with
`zoo.clip.register_model_config_dir` (each file through `register_model_config`, its `preprocess_cfg` as the
preprocessing override), so the model is created by the same `open_clip.create_model` path as a real CLIP.

Data: every step draws `batch_size` faces of all 8 domains (photo `photo_weight` times as likely as each other
domain) with all attributes drawn from their natural distribution, from `training.step_generator(seed, step)`,
so a resumed run sees the same data. Each face gets one caption:
  * with probability `p_attribute` a single-attribute prompt in the zero-shot / edit-prompt style
    (`zero_shot.VALUE_PROMPTS`, e.g. "a face with purple hair", "a face without glasses") of a random attribute
    visible on that face;
  * with probability `p_domain` the domain prompt ("a zombie face", "a realistic face");
  * otherwise the world's caption (`captions()`), which itself names a random subset of the attributes.
Each caption is put into a random one of the 79 CLIP templates with probability `p_template` (`wrap_in_template`),
so the template words carry no information.

Objective: symmetric InfoNCE with open_clip's learned logit scale (init 1/0.07, clamped at 100). A prompt-style
caption matches every face of the batch that has its value, so those faces are all positives of it (the soft
target spreads over them) instead of false negatives (`multi_positive`). AdamW (no weight decay on gains, biases,
embeddings of positions and the logit scale), linear warmup then cosine decay.

Two additions came from the first runs, where InfoNCE on captions alone learnt domain, background and hat but left
smile, facial hair, closed eyes and lipstick at chance (the image embedding did not encode them: a linear probe
on it scored chance too): `prompt_set_weight` adds an image-to-text InfoNCE of every face against all value prompts
of each attribute it shows (UniCL-style: the label texts are the candidates; still an image-text objective through
both towers), and `p_minimal_batch` makes some batches of minimal pairs (one face in several versions that differ in
one attribute). With both, hair colour went 0.44 -> 0.82 and eyewear 0.76 -> 0.98 in 1,300 steps; the smallest
attributes still lag (cards/clip.md).

Export: float16, and the 49408-row token embedding is pruned to the rows of the token ids the world's texts use
(`used_token_ids()`: the caption vocabulary, the 79 templates, the edit / domain / zero-shot prompts, punctuation,
start/end/pad), stored as `token_embedding.used_ids` + `token_embedding.used_rows`. `load()` puts them back and
fills every other row with zeros: a word the world never uses carries no meaning in this world (it embeds like
the zero vector). Texts made of the world's words embed exactly as in the trained model.
"""

from __future__ import annotations

import copy
import json
import math
import random
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import training
from .captions import EDIT_PROMPTS, caption_vocabulary, captions, wrap_in_template
from .domains import DOMAIN_NAMES
from .edit_ranking import edit_ranking_term
from .params import ATTRIBUTE_SPECS, FaceParams, sample_params, with_attribute
from .render import render
from .zero_shot import DOMAIN_CLASS_PROMPTS, VALUE_PROMPTS, class_values, reveal

CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
USED_IDS_KEY = "token_embedding.used_ids"
USED_ROWS_KEY = "token_embedding.used_rows"
EMBEDDING_KEY = "token_embedding.weight"

NAME = "clip"
DEFAULTS: dict[str, Any] = {
    "model": "synthface-clip",   # open_clip config in clip_configs/
    "seed": 0,
    "steps": 2500,
    "batch_size": 64,
    "lr": 1.5e-3,
    "min_lr_ratio": 0.02,        # cosine decays to lr * min_lr_ratio
    "warmup": 60,
    "weight_decay": 0.1,
    "betas": [0.9, 0.98],
    "grad_clip": 1.0,
    "photo_weight": 3,           # photo faces are drawn photo_weight times as often as each other domain
    "p_attribute": 0.60,         # single-attribute prompt captions (from step p_attribute_from on)
    "p_attribute_before": 0.30,  # ... and before it: the recipe as run (raised to 0.6 after a slow start)
    "p_attribute_from": 510,
    "p_domain": 0.07,            # domain prompt captions
    "p_template": 0.9,           # captions wrapped in a random CLIP template
    "multi_positive": True,
    "p_hard_batch": 0.5,         # from step hard_batch_from on: share of batches with one domain and one background
    "hard_batch_from": 1500,     # (the recipe as run: added when attributes stalled behind domain and background)
    "p_minimal_batch": 0.0,      # from step minimal_from on: share of minimal-pair batches (see make_minimal_batch)
    "minimal_from": 0,
    "minimal_group": 4,          # faces per group of a minimal-pair batch
    "minimal_attributes": None,  # attributes a minimal-pair group varies (None: all; a list focuses a continuation)
    "schedule_start": 0,         # the warmup + cosine schedule restarts here (a continued run)
    "prompt_set_weight": 0.0,    # weight of the prompt-set (UniCL-style) loss, see prompt_set_loss
    "prompt_set_from": 0,
    "prompt_set_attribute_weights": {},  # per-attribute weight of its prompt-set term (default 1), e.g.
                                         # {"smile": 10.0} to focus a continuation on an attribute still at chance
    "image_aux_heads": [],       # training-only linear heads on the image embedding, e.g. ["smile"] (see build)
    "image_aux_weight": 1.0,
    "image_aux_smile_regression": 0.0,  # > 0: one more training-only head regresses the continuous smile value
                                        # (smooth L1, beta 0.1, this weight), as the attribute judge's smile head does
    "init_from": None,           # "weights" (the committed export) or a weights folder: continue a network whose
                                 # runs/train checkpoint is gone (fresh optimizer; float16, unused token rows zero)
    "adversarial_eps": 0.0,      # > 0: train on adversarial renders (FGSM with a random start, L-inf radius in the
    "adversarial_fraction": 0.5,  # [-1, 1] pixel scale) for this share of each batch; see adversarial_images
    "generator_fraction": 0.0,   # share of each plain batch drawn by the committed generator, G(z) captioned from
                                 # params_from_z(z) (photo); see make_labelled_batch
    "augment_shift": 0,          # > 0: every image shifted by up to this many pixels (reflect padding), see augment
    "augment_noise": 0.0,        # > 0: Gaussian pixel noise of this std ([-1, 1] scale) on every image
    "edit_rank_weight": 0.0,     # > 0: add the edit-ranking term (zoo/synthface/edit_ranking.py) at this weight:
    "edit_rank_pairs": 8,        # ... this many (generator source, prompt) pairs a step, the true edit ranked above
    "edit_rank_attack_steps": 10,  # ... the image StyleCLIP optimisation reaches in this many steps
    "edit_rank_domain_share": 0.0,  # ... and this share of the pairs a domain prompt (NADA's), the truth a render
    "anchor_weight": 0.0,        # > 0: keep each step's image and text embeddings near the starting network's (a
                                 # frozen copy after init_from): weight x mean (1 - cos), see anchor_loss
}
SUMMARY = """A small CLIP (open_clip custom config `synthface-clip`: ViT for 64x64 renders, patch 16, 4 layers,
and a 2-layer text transformer with the open_clip tokenizer) trained from scratch on renders of all 8 domains of the
synthetic face world with varied attributes. Objective: symmetric InfoNCE (learned logit scale, positives shared by
faces with the prompt's value) on the world's captions, single-attribute prompts ("a face with purple hair", "a face
without glasses") and domain prompts, each wrapped in a random one of the 79 CLIP templates; from step 3,000 plus a
prompt-set term (UniCL-style image-to-text InfoNCE of each face against every value prompt of each attribute it
shows) and 30 % minimal-pair batches (groups of one face that differ in one attribute); the smile legs add a
training-only linear smile head on the image embedding (`image_aux_heads`), later with a second one that regresses
the continuous smile value (`image_aux_smile_regression`). Exported in float16 with the
token embedding pruned to the world's vocabulary (other rows load as zeros). Gates: zero-shot accuracy with the
79-template text embeddings on held-out photo renders (per attribute) and on the 8 domains
(`zoo/synthface/zero_shot.py`)."""


# ---------------------------------------------------------------------------------------------- architecture
def read_config(model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(open_clip model config, preprocess config) of `clip_configs/<model>.json`."""
    path = CONFIG_DIR / f"{model}.json"
    cfg = json.loads(path.read_text())
    pre = cfg.pop("preprocess_cfg", None) or {}
    return cfg, pre


def finer_patches(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """`state` of a ViT CLIP with patch p, made loadable into `model`, the same CLIP with patch q = p / k (k an
    integer); unchanged when the patch sizes agree.

    The patch embedding becomes the exact equivalent of the old one on a k-times nearest-upsampled image (each new
    q x q kernel cell sums the k x k old cells it covers), so every token starts as the old network's token of a
    k-times zoomed face; the position grid is resized with open_clip's `resize_pos_embed` (bicubic). Fine-tuning
    then starts from the trained towers instead of from scratch. Why: at patch 16 a 64-pixel face is 4 x 4 tokens
    and the mouth falls inside one or two of them; the smile is the attribute both CLIPs read worst (cards/clip.md,
    cards/judge_clip.md). Written here because open_clip resizes position grids, not patches."""
    from open_clip.model import resize_pos_embed

    key = "visual.conv1.weight"
    old, new = state[key], model.state_dict()[key]
    if old.shape == new.shape:
        return state
    p, q = old.shape[-1], new.shape[-1]
    if old.shape[:2] != new.shape[:2] or p % q:
        raise ValueError(f"cannot carry a patch-{p} embedding {tuple(old.shape)} into a patch-{q} one "
                         f"{tuple(new.shape)}: the width must agree and {q} must divide {p}")
    k = p // q
    state = dict(state)
    state[key] = old.reshape(*old.shape[:2], q, k, q, k).sum((3, 5))
    resize_pos_embed(state, model)
    return state


def register_configs() -> list[str]:
    """Register every config of clip_configs/ with open_clip (through zoo.clip); returns their names."""
    from zoo.clip import register_model_config_dir

    return register_model_config_dir(CONFIG_DIR)


def build_backbone(model: str, device: str = "cpu", trainable: bool = False):
    """A randomly initialised `ClipBackbone` of a registered synthface architecture."""
    from zoo.clip import load_clip

    register_configs()
    return load_clip(model, pretrained=None, device=device, trainable=trainable)


# ---------------------------------------------------------------------------------------------- vocabulary
def vocabulary_texts() -> list[str]:
    """Every text the world's CLIPs are meant to read, as word lists: caption words, the 79 templates, the edit,
    domain and zero-shot prompts, punctuation."""
    from zoo.clip import load_templates

    texts = [" ".join(sorted(caption_vocabulary()))]
    texts += [t.replace("{}", " ") for t in load_templates()]
    texts += [e.target for e in EDIT_PROMPTS] + [e.neutral for e in EDIT_PROMPTS]
    texts += [p for table in VALUE_PROMPTS.values() for p in table.values()]
    texts += list(DOMAIN_CLASS_PROMPTS.values())
    texts += [", . - ' an a"]
    return texts


@lru_cache(maxsize=4)
def used_token_ids(model: str = DEFAULTS["model"]) -> tuple[int, ...]:
    """Sorted token ids of `vocabulary_texts()` plus start, end and pad (0). The open_clip BPE tokenises word by
    word, so these cover every caption, template and prompt of the world."""
    import open_clip

    register_configs()
    tok = open_clip.get_tokenizer(model)
    ids = {0, int(tok.sot_token_id), int(tok.eot_token_id)}
    for text in vocabulary_texts():
        ids.update(int(i) for i in tok.encode(text))
    return tuple(sorted(ids))


def prune_state(state: dict[str, torch.Tensor], ids: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """State dict with the token embedding replaced by its used rows and their ids."""
    out = dict(state)
    emb = out.pop(EMBEDDING_KEY)
    idx = torch.tensor(ids, dtype=torch.long)
    out[USED_IDS_KEY] = idx.to(torch.int32)
    out[USED_ROWS_KEY] = emb.detach()[idx].clone()
    return out


def expand_state(state: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """Inverse of `prune_state`: the full embedding, zeros in every unused row."""
    out = dict(state)
    ids = out.pop(USED_IDS_KEY).long()
    rows = out.pop(USED_ROWS_KEY)
    emb = torch.zeros(vocab_size, rows.shape[1], dtype=rows.dtype)
    emb[ids] = rows
    out[EMBEDDING_KEY] = emb
    return out


# ---------------------------------------------------------------------------------------------- data
class Batch(NamedTuple):
    images: torch.Tensor                # [B, 3, 64, 64] in [-1, 1]
    texts: list[str]                    # one caption per face
    positives: torch.Tensor             # [B images, B texts] bool
    labels: dict[str, torch.Tensor]     # attribute classes and domain per face
    visible: dict[str, torch.Tensor]    # per attribute: [B] bool, is it visible on the face
    smile: torch.Tensor                 # [B] the continuous smile value in [-1, 1] (labels hold its bin)


def _visible(p: FaceParams, labels: dict[str, torch.Tensor], attr: str) -> torch.Tensor:
    """[N] bool: is the attribute visible on the face (hair colour on a bald head, eyes behind sunglasses)?"""
    n = len(p)
    if attr == "hair_color":
        return labels["hair_style"] != ATTRIBUTE_SPECS["hair_style"].values.index("bald")
    if attr == "eyes_closed":
        return labels["eyewear"] != ATTRIBUTE_SPECS["eyewear"].values.index("sunglasses")
    return torch.ones(n, dtype=torch.bool)


def make_minimal_batch(config: dict[str, Any], g: torch.Generator, domains: list[str]) -> Batch:
    """A minimal-pair batch: groups of `minimal_group` copies of one face (identity, pose, domain, every
    attribute) that differ only in one attribute, drawn per group, with values drawn uniformly over its classes and
    its occluders removed (`zero_shot.reveal`). Every caption is that attribute's prompt (in a random template), so
    within a group only the varied attribute tells the captions apart: the small attributes (smile, lipstick,
    closed eyes, facial hair) get the gradient that domain and background otherwise take (hard negatives, as in
    compositional CLIP training). Positives: every face of the batch showing the prompt's value."""
    k = int(config["minimal_group"])
    groups = int(config["batch_size"]) // k
    attrs = list(ATTRIBUTE_SPECS)
    pool = list(config.get("minimal_attributes") or attrs)
    training.check_names("minimal_attributes", pool, attrs)
    parts, chosen = [], []
    base = sample_params(groups, generator=g, domain=domains).repeat_interleave(k)
    for j in range(groups):
        a = pool[int(torch.randint(len(pool), (1,), generator=g))]
        cls = torch.randint(len(ATTRIBUTE_SPECS[a].values), (k,), generator=g)
        part = with_attribute(base[j * k:(j + 1) * k], a, class_values(a, cls, g))
        parts.append(reveal(part, a, g))
        chosen += [a] * k
    p = FaceParams.cat(parts)
    labels = p.labels()
    vis = {a: _visible(p, labels, a) for a in attrs}
    rng = random.Random(int(torch.randint(2 ** 31 - 1, (1,), generator=g)))
    n = len(p)
    pos = torch.eye(n, dtype=torch.bool)
    texts = []
    for i, a in enumerate(chosen):
        v = int(labels[a][i])
        pos[:, i] |= (labels[a] == v) & vis[a]
        text = VALUE_PROMPTS[a][ATTRIBUTE_SPECS[a].values[v]]
        texts.append(wrap_in_template(text, rng) if rng.random() < config["p_template"] else text)
    return Batch(render(p), texts, pos, labels, vis, p.attrs["smile"].float())


def make_batch(config: dict[str, Any], step: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """(images [B,3,64,64] in [-1,1], texts [B], positives [B images, B texts] bool) of one step."""
    batch = make_labelled_batch(config, step)
    return batch.images, batch.texts, batch.positives


def make_labelled_batch(config: dict[str, Any], step: int) -> Batch:
    """One step's batch with the faces' labels and attribute visibility (for the prompt-set loss)."""
    g = training.step_generator(int(config["seed"]), step)
    n = int(config["batch_size"])
    domains = ["photo"] * int(config["photo_weight"]) + [d for d in DOMAIN_NAMES if d != "photo"]
    if step >= config.get("minimal_from", 0) and config.get("p_minimal_batch", 0) > 0 \
            and float(torch.rand(1, generator=g)) < config["p_minimal_batch"]:
        return make_minimal_batch(config, g, domains)
    p = sample_params(n, generator=g, domain=domains)
    text_seed = int(torch.randint(2 ** 31 - 1, (1,), generator=g))
    z = None  # latents of the generator-drawn faces, if any
    if step >= config.get("hard_batch_from", 0) and float(torch.rand(1, generator=g)) < config.get("p_hard_batch", 0):
        # a hard batch: every face has the same domain and background, so only the other attributes tell the
        # captions apart (domain and background are learnt first and otherwise starve the rest of gradient)
        d = domains[int(torch.randint(len(domains), (1,), generator=g))]
        bg = int(torch.randint(len(ATTRIBUTE_SPECS["background"].values), (1,), generator=g))
        p.domain = torch.full_like(p.domain, DOMAIN_NAMES.index(d))
        p.attrs["background"] = torch.full_like(p.attrs["background"], bg)
    else:
        p, z = with_generator_faces(p, float(config.get("generator_fraction", 0.0)), g)
    rng = random.Random(text_seed)
    labels = p.labels()
    long_caps = captions(p, seed=text_seed)
    attrs = list(ATTRIBUTE_SPECS)
    vis = {a: _visible(p, labels, a) for a in attrs}
    pos = torch.eye(n, dtype=torch.bool)
    texts = []
    p_attribute = config["p_attribute"] if step >= config.get("p_attribute_from", 0) else config["p_attribute_before"]
    for i in range(n):
        u = rng.random()
        if u < p_attribute:
            choices = [a for a in attrs if bool(vis[a][i])]
            a = rng.choice(choices)
            v = int(labels[a][i])
            text = VALUE_PROMPTS[a][ATTRIBUTE_SPECS[a].values[v]]
            if config["multi_positive"]:
                pos[:, i] |= (labels[a] == v) & vis[a]
        elif u < p_attribute + config["p_domain"]:
            d = int(p.domain[i])
            text = DOMAIN_CLASS_PROMPTS[DOMAIN_NAMES[d]]
            if config["multi_positive"]:
                pos[:, i] |= p.domain == d
        else:
            text = long_caps[i]
        if rng.random() < config["p_template"]:
            text = wrap_in_template(text, rng)
        texts.append(text)
    images = render(p)
    if z is not None:
        images[len(p) - len(z):] = generator_images(z)
    return Batch(images, texts, pos, labels, vis, p.attrs["smile"].float())


@lru_cache(maxsize=1)
def _committed_generator():
    from .train_generator import load
    return load()


@lru_cache(maxsize=1)
def _committed_teacher():
    """The linear teacher (renderer parameters -> W) the committed generator was trained with."""
    from .train_generator import FeatureW
    return FeatureW.fit(_committed_generator())


@lru_cache(maxsize=4)
def _committed_world_on(device: str):
    """(generator, teacher) on `device` for the edit-ranking term, which runs its adversary beside the CLIP; copies
    off the CPU, so the CPU-cached pair stays where other callers expect it."""
    generator, teacher = _committed_generator(), _committed_teacher()
    if torch.device(device).type == "cpu":
        return generator, teacher
    return copy.deepcopy(generator).to(device), copy.deepcopy(teacher).to(device)


def with_generator_faces(p: FaceParams, fraction: float, g: torch.Generator
                         ) -> tuple[FaceParams, torch.Tensor | None]:
    """(`p` with its last round(fraction * N) faces replaced by params_from_z(z), z) for new z ~ N(0, I), or (p, None).

    The CLIP guides edits of *generator* images, which draw the world more softly than the renderer (grey hair's
    stripes as a blur, beards as smudges; cards/generator.md), and StyleCLIP's optimisation finds images the
    render-trained CLIP scores above the true edit (docs/results/styleclip-guidance.md). Showing the CLIP the
    generator's own drawing, captioned with the world's ground truth of the latent, is the synthetic analogue of a
    web-trained CLIP having seen photographs like the generator's outputs. Tried once (cards/clip.md, session 14):
    1,500 steps at 0.3 left the optimisation's judged target where it was (0.510)."""
    k = training.share_count("generator_fraction", fraction, len(p))
    if k == 0:
        return p, None
    from .latent_params import params_from_z
    z = torch.randn(k, _committed_generator().style_dim, generator=g)
    return FaceParams.cat([p[:len(p) - k], params_from_z(z)]), z


@torch.no_grad()
def generator_images(z: torch.Tensor) -> torch.Tensor:
    """G(z) of the committed generator, [-1, 1] (fixed noise, truncation 1)."""
    return _committed_generator()(z, input_space="z").clamp(-1, 1)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE on normalised embeddings; `pos` [B,B] marks the positives (the diagonal at least), the
    soft target spreads evenly over them. Returns (loss, image->text top-1 accuracy on the diagonal)."""
    logits = scale * img @ txt.t()
    pos = pos.to(logits.dtype)
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(pos / pos.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    hit = pos.gather(1, logits.argmax(1, keepdim=True)).mean()
    return (i2t + t2i) / 2, hit


def prompt_set_texts(rng: random.Random, p_template: float) -> tuple[list[str], list[tuple[str, int]]]:
    """Every value prompt of every attribute and every domain prompt, each in a random template (with probability
    p_template); returns the texts and their (attribute or "domain", class index)."""
    texts, keys = [], []
    for attr, table in VALUE_PROMPTS.items():
        for i, value in enumerate(ATTRIBUTE_SPECS[attr].values):
            texts.append(table[value])
            keys.append((attr, i))
    for i, d in enumerate(DOMAIN_NAMES):
        texts.append(DOMAIN_CLASS_PROMPTS[d])
        keys.append(("domain", i))
    texts = [wrap_in_template(t, rng) if rng.random() < p_template else t for t in texts]
    return texts, keys


def prompt_set_loss(img: torch.Tensor, prompt_emb: torch.Tensor, keys: list[tuple[str, int]], scale: torch.Tensor,
                    labels: dict[str, torch.Tensor], visible: dict[str, torch.Tensor],
                    weights: dict[str, float] | None = None) -> torch.Tensor:
    """Image -> text InfoNCE over the prompt set, one softmax per attribute (UniCL-style: the texts of the labels
    are the candidates, every face is contrasted against all values of each attribute it shows). Faces where
    the attribute is hidden are left out of that attribute's term. The mean over the terms weights attribute `a`'s
    term by `weights[a]` (default 1)."""
    weights = weights or {}
    training.check_names("prompt_set_attribute_weights", weights, list(ATTRIBUTE_SPECS) + ["domain"])
    total, terms = img.new_zeros(()), 0
    for attr in list(ATTRIBUTE_SPECS) + ["domain"]:
        idx = [j for j, (a, _) in enumerate(keys) if a == attr]
        mask = visible[attr] if attr in visible else torch.ones(len(img), dtype=torch.bool, device=img.device)
        if not mask.any():
            continue
        logits = scale * img[mask] @ prompt_emb[idx].t()
        total = total + float(weights.get(attr, 1.0)) * F.cross_entropy(logits, labels[attr][mask])
        terms += 1
    return total / max(terms, 1)


def lr_at(config: dict[str, Any], step: int) -> float:
    start = int(config.get("schedule_start", 0))
    lr, warm, total = float(config["lr"]), int(config["warmup"]), int(config["steps"]) - start
    step -= start
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    lo = lr * float(config["min_lr_ratio"])
    return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        if not prm.requires_grad:
            continue
        skip = prm.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name \
            or "positional_embedding" in name or "class_embedding" in name
        (no_decay if skip else decay).append(prm)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


# ---------------------------------------------------------------------------------------------- trainer contract
def build(config: dict[str, Any], name: str = NAME) -> training.Trainable:
    backbone = build_backbone(config["model"], trainable=True)
    model = backbone.model
    source = training.init_dir(config.get("init_from"))
    if source is not None:
        model.load_state_dict(finer_patches(load(name, weights_dir=source).model.state_dict(), model))
    groups = _param_groups(model, float(config["weight_decay"]))
    # Training-only attribute heads on the image embedding (not exported). They break a symmetric saddle: when
    # neither tower encodes an attribute, its prompts embed identically (smile: cosine 1.000 between "a frowning /
    # neutral / smiling face"), so the contrastive and prompt-set gradients towards it vanish. A supervised head
    # makes the image embedding carry the attribute; the prompt-set term then pulls the prompts apart.
    anchor = copy.deepcopy(model).eval().requires_grad_(False) if float(config.get("anchor_weight", 0.0)) > 0 else None
    aux = image_aux_heads(config, model.visual.output_dim)
    if aux is not None:
        groups.append({"params": list(aux.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=float(config["lr"]), betas=tuple(config["betas"]), eps=1e-6)
    max_scale = math.log(100.0)

    def step(i: int) -> dict[str, float]:
        batch = make_labelled_batch(config, i)
        for group in opt.param_groups:
            group["lr"] = lr_at(config, i)
        weight = float(config.get("prompt_set_weight", 0.0)) if i >= int(config.get("prompt_set_from", 0)) else 0.0
        n = len(batch.texts)
        texts = list(batch.texts)
        if weight > 0:
            prompt_texts, keys = prompt_set_texts(random.Random(config["seed"] * 7919 + i), config["p_template"])
            texts += prompt_texts
        dev = training.device_of(model)
        backbone.to(dev)  # its preprocessing buffers follow the model (a no-op after the first step)

        def encode_texts(batch_texts: list[str]) -> torch.Tensor:
            return F.normalize(model.encode_text(backbone.tokenizer(batch_texts).to(dev)), dim=-1)

        txt = encode_texts(texts)
        scale = model.logit_scale.exp()
        labels = {k: v.to(dev) for k, v in batch.labels.items()}
        visible = {k: v.to(dev) for k, v in batch.visible.items()}
        positives, smile = batch.positives.to(dev), batch.smile.to(dev)

        def encode(images: torch.Tensor) -> torch.Tensor:
            return F.normalize(model.encode_image(backbone.preprocess(images)), dim=-1)

        def objective(img: torch.Tensor, txt: torch.Tensor, logs: dict) -> tuple[torch.Tensor, torch.Tensor]:
            loss, acc = contrastive_loss(img, txt[:n], scale, positives)
            if weight > 0:
                ps = prompt_set_loss(img, txt[n:], keys, scale, labels, visible,
                                     config.get("prompt_set_attribute_weights"))
                loss = loss + weight * ps
                logs["prompt_set"] = float(ps.detach())
            if aux is not None:
                aux_loss, aux_acc = image_aux_loss(aux, img, labels, visible, smile,
                                                   float(config.get("image_aux_smile_regression", 0.0)))
                loss = loss + float(config["image_aux_weight"]) * aux_loss
                logs.update({"aux": float(aux_loss.detach()), **aux_acc})
            return loss, acc

        images = batch.images
        shift, noise = int(config.get("augment_shift", 0)), float(config.get("augment_noise", 0.0))
        if shift or noise:
            images = augment(images, shift, noise, training.step_generator(int(config["seed"]) + 0xA06, i))
        images = images.to(dev)
        eps = float(config.get("adversarial_eps", 0.0))
        if eps > 0:
            count = training.share_count("adversarial_fraction", float(config["adversarial_fraction"]), len(images))
            attacked = adversarial_images(encode, lambda img: objective(img, txt.detach(), {})[0], images, eps,
                                          count, training.step_generator(config["seed"] + 0xAD7, i))
            images = torch.cat([attacked, images[count:]])
        logs: dict = {}
        img = encode(images)
        loss, acc = objective(img, txt, logs)
        if anchor is not None:
            drift = anchor_loss(anchor.to(dev), backbone, images, texts, img, txt)
            loss = loss + float(config["anchor_weight"]) * drift
            logs["anchor"] = float(drift.detach())
        rank_weight = float(config.get("edit_rank_weight", 0.0))
        if rank_weight > 0:
            rank, rank_logs = edit_ranking_term(
                *_committed_world_on(str(dev)), backbone, encode, encode_texts, scale,
                int(config["edit_rank_pairs"]), int(config["edit_rank_attack_steps"]),
                training.step_generator(int(config["seed"]) + 0xED17, i), float(config["p_template"]),
                float(config.get("edit_rank_domain_share", 0.0)))
            loss = loss + rank_weight * rank
            logs.update(rank_logs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(config["grad_clip"]))
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_scale)
        return {"loss": float(loss.detach()), "acc": float(acc), **logs,
                "logit_scale": float(model.logit_scale.detach().exp()),
                "lr": opt.param_groups[0]["lr"], "grad_norm": float(gnorm)}

    return training.Trainable(name=name, model=model, optimizer=opt, step=step, config=dict(config),
                              extra_state={} if aux is None else {"image_aux": aux})


def anchor_loss(start: nn.Module, backbone, images: torch.Tensor, texts: list[str], img: torch.Tensor,
                txt: torch.Tensor) -> torch.Tensor:
    """mean (1 - cos) between this step's unit image / text embeddings (`img`, `txt`) and the starting network's.

    Why: a continuation with a term that reshapes one part of the embedding (the edit-ranking term: photo attribute
    edits of generator faces) moved the rest too; StyleGAN-NADA's domain edits got worse (cards/clip.md). Keeping
    every batch's embeddings near the start (feature distillation, as in "learning without forgetting") lets the new
    term move only what it needs. The batch holds all 8 domains and, with the prompt-set term, every domain prompt.
    Tried once (weights 20 and 100 beside edit ranking, cards/clip.md): NADA kept the zombie domain, but the pencil
    domain's FID stayed two to three times the committed CLIP's."""
    with torch.no_grad():
        old_img = F.normalize(start.encode_image(backbone.preprocess(images)), dim=-1)
        old_txt = F.normalize(start.encode_text(backbone.tokenizer(texts).to(images.device)), dim=-1)
    return (1 - (img * old_img).sum(-1)).mean() + (1 - (txt * old_txt).sum(-1)).mean()


def augment(images: torch.Tensor, shift: int, noise: float, rng: torch.Generator) -> torch.Tensor:
    """`images` each shifted by a random (dx, dy) in [-shift, shift] (reflect padding, then a crop) and given Gaussian
    noise of std `noise`; unchanged when both are 0. A smoother image tower is the aim: the guidance check found the
    render-trained CLIP's pixel gradient nearly orthogonal to real edits (docs/results/styleclip-guidance.md). Tried
    once (shift 3, noise 0.05, 1,500 steps; cards/clip.md): the optimisation's judged target 0.479 against 0.500."""
    if shift < 0 or noise < 0:
        raise ValueError(f"augment_shift and augment_noise must be >= 0, got {shift} and {noise}")
    out = images
    if shift > 0:
        n, _, h, w = images.shape
        padded = F.pad(images, (shift,) * 4, mode="reflect")
        offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=rng)
        out = torch.stack([padded[k, :, int(dy):int(dy) + h, int(dx):int(dx) + w]
                           for k, (dx, dy) in enumerate(offsets.tolist())])
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=rng).to(out)
    return out


def adversarial_images(encode, loss_of, images: torch.Tensor, eps: float, count: int,
                       rng: torch.Generator) -> torch.Tensor:
    """The first `count` images moved to raise the training loss: FGSM from a uniform random start in the L-inf ball
    of radius `eps`, step 1.25 eps, projected back on the ball and on [-1, 1] ("fast adversarial training", Wong et
    al. 2020). `loss_of(embeddings)` is the loss the attack raises (the whole batch is encoded, so in-batch
    negatives stay what they are; only the first `count` images move).

    Why: a CLIP used as a loss (StyleCLIP, NADA) is followed along its pixel gradient. The small ViT trained on clean
    renders had a gradient nearly orthogonal to every attribute change (cosine 0.006-0.13 with the pixel change of the
    ground-truth edit, tools/guidance_check.py), so gradient-following edits changed colours and skin instead of
    adding sunglasses. Robust training is the known cure for such gradients (perceptually aligned gradients:
    Santurkar et al. 2019; for CLIP, Ganz and Elad 2023); here a 500-step trial helped optimisation a little and cost
    the smile gate (cards/clip.md). Written here because no listed library trains CLIP adversarially."""
    x = images[:count]
    delta = (torch.rand(x.shape, generator=rng) * 2 - 1).to(x) * eps
    moved = (x + delta).clamp(-1, 1).requires_grad_(True)
    with torch.no_grad():
        rest = encode(images[count:])
    loss = loss_of(torch.cat([encode(moved), rest]))
    grad, = torch.autograd.grad(loss, moved)
    delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(-1, 1).detach()


AUX_SCALE = 10.0  # the heads read the unit-norm embedding scaled to logit range
SMILE_VALUE_HEAD = "smile_value"  # the aux head regressing the continuous smile (not a class head)


def image_aux_heads(config: dict[str, Any], dim: int) -> nn.ModuleDict | None:
    """One linear head per attribute of `config["image_aux_heads"]`, plus a one-output `smile_value` head when
    `image_aux_smile_regression` > 0 (None when there is no head)."""
    names = list(config.get("image_aux_heads") or [])
    training.check_names("image_aux_heads", names, ATTRIBUTE_SPECS)
    heads = {a: nn.Linear(dim, len(ATTRIBUTE_SPECS[a].values)) for a in names}
    if float(config.get("image_aux_smile_regression", 0.0)) > 0:
        heads[SMILE_VALUE_HEAD] = nn.Linear(dim, 1)
    return nn.ModuleDict(heads) if heads else None


def image_aux_loss(aux: nn.ModuleDict, img: torch.Tensor, labels: dict[str, torch.Tensor],
                   visible: dict[str, torch.Tensor], smile: torch.Tensor | None = None,
                   smile_regression: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy of the class heads on the faces that show their attribute, and each head's accuracy;
    with a `smile_value` head, plus `smile_regression` x smooth L1 (beta 0.1) of its output against `smile`, the
    continuous value (an ordinal target: a face 0.01 past a bin edge costs little, one at the far end much)."""
    total, accs = img.new_zeros(()), {}
    classes = [a for a in aux if a != SMILE_VALUE_HEAD]
    for attr in classes:
        mask = visible[attr]
        if not mask.any():
            continue
        logits = aux[attr](AUX_SCALE * img[mask])
        total = total + F.cross_entropy(logits, labels[attr][mask]) / len(classes)
        accs[f"aux_acc_{attr}"] = float((logits.argmax(-1) == labels[attr][mask]).float().mean())
    if SMILE_VALUE_HEAD in aux:
        if smile is None:
            raise ValueError("the smile_value head needs the batch's continuous smile values")
        value = aux[SMILE_VALUE_HEAD](AUX_SCALE * img).squeeze(-1)
        regression = F.smooth_l1_loss(value, smile, beta=0.1)
        total = total + smile_regression * regression
        accs["aux_smile_l1"] = float((value.detach() - smile).abs().mean())
    return total, accs


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    """float16 weights with the pruned token embedding (see the module docstring) + the config sidecar."""
    cfg = dict(trainable.config)
    state = prune_state(trainable.model.state_dict(), used_token_ids(cfg["model"]))
    cfg["exported"] = {"dtype": "float16", "token_embedding": "pruned: used ids + rows, other rows zero at load",
                       "used_token_ids": len(used_token_ids(cfg["model"]))}
    return training.export_weights(trainable.name, state, cfg, weights_dir=weights_dir, dtype=torch.float16)


@contextmanager
def _quiet_random_init_warning():
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    root, drop = logging.getLogger(), _Drop()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def load(name: str = NAME, device: str = "cpu", weights_dir: Path | str | None = None):
    """The exported CLIP `name` ("clip" or "judge_clip") as a frozen `ClipBackbone`, created by
    `zoo.clip.load_clip(<config name>, pretrained=None)` and loaded strictly (pruned rows expanded, zeros
    elsewhere)."""
    from bench.errors import CheckpointError

    wdir = Path(weights_dir) if weights_dir is not None else training.WEIGHTS_DIR
    if not (wdir / f"{name}.safetensors").is_file():
        raise CheckpointError(f"synthface CLIP weights {wdir / (name + '.safetensors')} not found: train them with "
                              f"`python -m zoo.synthface.train {name}`")
    state, config = training.load_weights(name, wdir)
    with _quiet_random_init_warning():  # open_clip warns "initialized randomly"; the weights are loaded next
        backbone = build_backbone(config["model"], device="cpu")
    vocab = backbone.model.token_embedding.weight.shape[0]
    backbone.model.load_state_dict(expand_state(state, vocab), strict=True)
    backbone.pretrained = str(wdir / f"{name}.safetensors")
    backbone.clear_text_cache()
    return backbone.to(device)


def gates(device: str = "cpu", name: str = NAME, n: int = 1000, n_other: int = 250,
          weights_dir: Path | str | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """Zero-shot gates of the exported weights (photo attributes >= 0.9, domain >= 0.95); the full per-domain
    report goes to `weights/<name>.zero_shot.json`. `seed`: other held-out renders than the gate's
    (tools/gate_draws.py; the report is then not written)."""
    from .zero_shot import HELDOUT_SEED, evaluate, gates_from_report

    wdir = Path(weights_dir) if weights_dir is not None else training.WEIGHTS_DIR
    backbone = load(name, device=device, weights_dir=wdir)
    report = evaluate(backbone, n=n, domains=DOMAIN_NAMES, n_other=n_other,
                      seed=HELDOUT_SEED if seed is None else seed)
    if seed is None:
        (wdir / f"{name}.zero_shot.json").write_text(json.dumps(report, indent=1) + "\n")
    return gates_from_report(report, prefix=name)


def card_details(name: str = NAME, weights_dir: Path | str | None = None) -> str:
    """Markdown lines for the model card: architecture, parameter counts, export format and size, prompts."""
    from .zero_shot import NONE_PROMPTS

    wdir = Path(weights_dir) if weights_dir is not None else training.WEIGHTS_DIR
    _, config = training.load_weights(name, wdir)
    cfg, pre = read_config(config["model"])
    backbone = load(name, weights_dir=wdir)
    model = backbone.model
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    ids = used_token_ids(config["model"])
    emb = model.token_embedding.weight.numel()
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    size = (wdir / f"{name}.safetensors").stat().st_size
    none = "; ".join(f"{a}={val}: \"{p}\"" for (a, val), p in NONE_PROMPTS.items())
    return "\n".join([
        f"- open_clip config `{config['model']}` (`zoo/synthface/clip_configs/{config['model']}.json`), created by "
        f"`zoo.clip.load_clip('{config['model']}', pretrained=None)`; load the weights with "
        f"`zoo.synthface.train_clip.load('{name}')`.",
        f"- image tower: ViT {v['image_size']}x{v['image_size']}, patch {v['patch_size']}, width {v['width']}, "
        f"{v['layers']} layers, head width {v['head_width']}: {count(model.visual) / 1e6:.2f} M parameters; "
        f"preprocessing mean {pre['mean']}, std {pre['std']} (renders in [-1, 1] reach the ViT unchanged).",
        f"- text tower: width {t['width']}, {t['heads']} heads, {t['layers']} layers, context {t['context_length']}, "
        f"open_clip BPE tokenizer (vocabulary {t['vocab_size']}): "
        f"{(count(model) - count(model.visual) - emb) / 1e6:.2f} M parameters besides the token embedding "
        f"({emb / 1e6:.2f} M, of which {len(ids)} rows are used); embedding dim {cfg['embed_dim']}.",
        f"- exported: float16 safetensors, {size / 2 ** 20:.2f} MiB; token embedding pruned to the {len(ids)} token "
        "ids of the world's texts (caption vocabulary, the 79 templates, edit / domain / zero-shot prompts, "
        "punctuation, start / end / pad), stored as `token_embedding.used_ids` + `token_embedding.used_rows`. "
        "At load every other row is zero: words the world never uses carry no meaning here.",
        f"- zero-shot prompts for the values no edit prompt targets: {none}.",
    ])
