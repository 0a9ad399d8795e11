"""Zero-shot evaluation of a CLIP on the synthetic face world (the gates of the world's two CLIPs, reused by
`bench zoo eval synthface`).

Protocol (fixed, documented, deterministic):

* Held-out renders from `HELDOUT_SEED`, a seed no trainer draws its data from (trainers derive their per-step
  generators from `training.step_generator(seed, step)` with small seeds).
* Attributes: for each attribute a fresh batch of `n` faces (other attributes drawn from their natural
  distribution) whose value of that attribute is *balanced*: face i gets value i mod n_values, so the accuracy
  of every class counts. `smile` values are drawn uniformly inside the class's bin (boundary cases included,
  as in the training data). Occluded attributes are made visible, and only there: `hair_color` is scored on
  faces with hair (a bald head shows no hair colour, `hair_style` is re-drawn among the other styles),
  `hair_style` without a hat or cap (they cover the crown), `eyes_closed` without sunglasses (dark lenses hide
  the eyes).
* Classification: image embedding -> argmax of the cosine to the 79-template text embedding
  (`ClipBackbone.template_embedding`) of each value's prompt in `VALUE_PROMPTS`. The prompts are the suites'
  `EDIT_PROMPTS` targets where one exists; the values no edit targets (the "none"/default values) have the
  prompts in `NONE_PROMPTS` ("a face without glasses", ...). The world's CLIP trainers put these prompts
  (single-attribute captions) into their caption mix, so the world's CLIPs know the words "without", "no" and
  "clean-shaven"; a CLIP trained only on `captions()` would not.
* Domain: balanced over the 8 domains, argmax over `DOMAIN_CLASS_PROMPTS` (the NADA target prompts of
  `DOMAIN_PROMPTS` plus the photo prompt "a realistic face").

The gates are the photo-domain attribute accuracies (>= `ATTRIBUTE_THRESHOLD`) and the 8-way domain accuracy
(>= `DOMAIN_THRESHOLD`); the per-domain attribute accuracies of the other domains are reported for information.

CLI: `python -m zoo.synthface.zero_shot clip|judge_clip [--n N] [--domains ...] [--card]` prints the table
(and with --card appends it to the network's model card).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .captions import DOMAIN_PROMPTS, EDIT_PROMPTS
from .domains import DOMAIN_NAMES, DOMAINS
from .params import ATTRIBUTE_SPECS, FaceParams, sample_params, with_attribute
from .render import render

__all__ = ["HELDOUT_SEED", "VALUE_PROMPTS", "NONE_PROMPTS", "DOMAIN_CLASS_PROMPTS", "ATTRIBUTE_THRESHOLD",
           "DOMAIN_THRESHOLD", "heldout_attribute_params", "heldout_domain_params", "classify",
           "evaluate", "gates_from_report", "format_report"]

HELDOUT_SEED = 90_210_777  # held-out renders; trainers never use this seed
ATTRIBUTE_THRESHOLD = 0.90
DOMAIN_THRESHOLD = 0.95

# Prompts for the values no edit prompt targets (the attribute's default / absence).
NONE_PROMPTS: dict[tuple[str, str], str] = {
    ("eyewear", "none"): "a face without glasses",
    ("facial_hair", "none"): "a clean-shaven man",
    ("eyes_closed", "open"): "a face with open eyes",
    ("lipstick", "none"): "a woman without lipstick",
    ("hat", "none"): "a person with no hat",
}


def _value_prompts() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {name: {} for name in ATTRIBUTE_SPECS}
    for e in EDIT_PROMPTS:
        table[e.attribute].setdefault(e.value, e.target)
    for (name, value), text in NONE_PROMPTS.items():
        table[name].setdefault(value, text)
    missing = [f"{n}={v}" for n, spec in ATTRIBUTE_SPECS.items() for v in spec.values if v not in table[n]]
    if missing:
        raise RuntimeError(f"zero-shot prompts missing for {', '.join(missing)}")
    return {n: {v: table[n][v] for v in spec.values} for n, spec in ATTRIBUTE_SPECS.items()}


# attribute -> value -> prompt (class order of ATTRIBUTE_SPECS)
VALUE_PROMPTS: dict[str, dict[str, str]] = _value_prompts()
# domain -> prompt: the NADA target texts, and the shared source text for photo
DOMAIN_CLASS_PROMPTS: dict[str, str] = {"photo": DOMAIN_PROMPTS[0][2], **{d: t for d, t, _ in DOMAIN_PROMPTS}}
DOMAIN_CLASS_PROMPTS = {d: DOMAIN_CLASS_PROMPTS[d] for d in DOMAIN_NAMES}
assert DOMAIN_CLASS_PROMPTS["photo"] == DOMAINS["photo"].prompt


# ---------------------------------------------------------------------------------------------- held-out data
def heldout_attribute_params(attribute: str, n: int, domain: str = "photo", seed: int = HELDOUT_SEED
                             ) -> FaceParams:
    """n held-out faces with balanced values of `attribute` made visible (see the module docstring)."""
    spec = ATTRIBUTE_SPECS[attribute]
    names = list(ATTRIBUTE_SPECS)
    g = torch.Generator().manual_seed(seed * 31 + 1009 * names.index(attribute) + 17 * DOMAIN_NAMES.index(domain))
    p = sample_params(n, generator=g, domain=domain)
    k = len(spec.values)
    cls = torch.arange(n) % k
    cls = cls[torch.randperm(n, generator=g)]
    p = with_attribute(p, attribute, class_values(attribute, cls, g))
    return reveal(p, attribute, g)


def class_values(attribute: str, cls: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Attribute values of the given classes: the class index, or for smile a float drawn uniformly in its bin."""
    spec = ATTRIBUTE_SPECS[attribute]
    if not spec.continuous:
        return cls
    edges = torch.tensor((-1.0, *spec.bins, 1.0))
    lo, hi = edges[cls], edges[cls + 1]
    return lo + (hi - lo) * torch.rand(len(cls), generator=g)


def reveal(p: FaceParams, attribute: str, g: torch.Generator) -> FaceParams:
    """`p` with the occluders of `attribute` removed: bald heads get another hair style (hair colour), hats come
    off (hair style), sunglasses become no eyewear (closed eyes). Other attributes: `p` unchanged."""
    n = len(p)
    if attribute == "hair_color":  # bald heads show no hair colour: draw one of the other styles
        p = p.clone()
        styles = ATTRIBUTE_SPECS["hair_style"].values
        other = torch.tensor([i for i, s in enumerate(styles) if s != "bald"])
        bald = p.attrs["hair_style"] == styles.index("bald")
        p.attrs["hair_style"] = torch.where(bald, other[torch.randint(len(other), (n,), generator=g)],
                                            p.attrs["hair_style"])
    elif attribute == "hair_style":  # a hat or cap covers the crown
        p = with_attribute(p, "hat", "none")
    elif attribute == "eyes_closed":  # dark lenses hide the eyes
        p = p.clone()
        sun = p.attrs["eyewear"] == ATTRIBUTE_SPECS["eyewear"].values.index("sunglasses")
        p.attrs["eyewear"] = torch.where(sun, torch.zeros_like(p.attrs["eyewear"]), p.attrs["eyewear"])
    return p


def heldout_domain_params(n: int, seed: int = HELDOUT_SEED) -> FaceParams:
    """n held-out faces, balanced over the 8 domains, attributes natural."""
    g = torch.Generator().manual_seed(seed * 31 + 7)
    p = sample_params(n, generator=g)
    d = torch.arange(n) % len(DOMAIN_NAMES)
    p.domain = d[torch.randperm(n, generator=g)]
    return p


# ---------------------------------------------------------------------------------------------- classification
@torch.no_grad()
def image_embeddings(backbone, params: FaceParams, batch_size: int = 250) -> torch.Tensor:
    """L2-normalised image embeddings of the renders of `params`."""
    out = []
    for start in range(0, len(params), batch_size):
        imgs = render(params[start:start + batch_size]).to(backbone.device)
        out.append(backbone.encode_images(imgs).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def classify(backbone, image_emb: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """[N] argmax over the prompts' 79-template embeddings."""
    text = backbone.template_embedding(list(prompts)).float().cpu()
    return (image_emb @ text.t()).argmax(dim=1)


def _confusion(pred: torch.Tensor, true: torch.Tensor, k: int) -> list[list[int]]:
    m = torch.zeros(k, k, dtype=torch.long)
    m.index_put_((true, pred), torch.ones_like(true), accumulate=True)
    return m.tolist()


@torch.no_grad()
def evaluate(backbone, n: int = 1000, domains: Sequence[str] = ("photo",), n_other: int | None = None,
             n_domain: int | None = None, attributes: Sequence[str] | None = None, seed: int = HELDOUT_SEED,
             batch_size: int = 250) -> dict[str, Any]:
    """Zero-shot report: {"attributes": {domain: {attr: {"accuracy", "n", "confusion", "values"}}},
    "domain": {"accuracy", "n", "confusion", "values"}, "prompts": {...}, "seed": seed}. `n` faces per attribute
    on photo, `n_other` (default n // 4) per attribute on every other listed domain, `n_domain` (default n) for
    the domain task (0 skips it)."""
    was_training = backbone.training
    backbone.eval()
    n_other = max(1, n // 4) if n_other is None else n_other
    n_domain = n if n_domain is None else n_domain
    attributes = list(ATTRIBUTE_SPECS) if attributes is None else list(attributes)
    report: dict[str, Any] = {"seed": seed, "attributes": {},
                              "prompts": {"attributes": {a: VALUE_PROMPTS[a] for a in attributes},
                                          "domain": DOMAIN_CLASS_PROMPTS}}
    for domain in domains:
        count = n if domain == "photo" else n_other
        per: dict[str, Any] = {}
        for attr in attributes:
            spec = ATTRIBUTE_SPECS[attr]
            p = heldout_attribute_params(attr, count, domain=domain, seed=seed)
            true = p.labels()[attr]
            pred = classify(backbone, image_embeddings(backbone, p, batch_size), list(VALUE_PROMPTS[attr].values()))
            per[attr] = {"accuracy": float((pred == true).float().mean()), "n": count, "values": list(spec.values),
                         "confusion": _confusion(pred, true, len(spec.values))}
        report["attributes"][domain] = per
    if n_domain:
        p = heldout_domain_params(n_domain, seed=seed)
        pred = classify(backbone, image_embeddings(backbone, p, batch_size), list(DOMAIN_CLASS_PROMPTS.values()))
        report["domain"] = {"accuracy": float((pred == p.domain).float().mean()), "n": n_domain,
                            "values": list(DOMAIN_NAMES), "confusion": _confusion(pred, p.domain, len(DOMAIN_NAMES))}
    backbone.train(was_training)
    return report


def gates_from_report(report: dict[str, Any], prefix: str = "clip",
                      attribute_threshold: float = ATTRIBUTE_THRESHOLD,
                      domain_threshold: float = DOMAIN_THRESHOLD) -> list[dict[str, Any]]:
    """The gate list: photo-domain attribute accuracies and the domain accuracy."""
    out = []
    for attr, r in report["attributes"].get("photo", {}).items():
        out.append({"name": f"{prefix}.zero_shot.{attr}", "value": r["accuracy"], "threshold": attribute_threshold,
                    "passed": bool(r["accuracy"] >= attribute_threshold)})
    if "domain" in report:
        acc = report["domain"]["accuracy"]
        out.append({"name": f"{prefix}.zero_shot.domain", "value": acc, "threshold": domain_threshold,
                    "passed": bool(acc >= domain_threshold)})
    return out


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table: attribute accuracy per domain, then the domain accuracy and the worst confusions."""
    domains = list(report["attributes"])
    attrs = list(next(iter(report["attributes"].values()), {}))
    lines = ["| attribute | " + " | ".join(domains) + " |", "|---|" + "---|" * len(domains)]
    for a in attrs:
        lines.append(f"| {a} | " + " | ".join(f"{report['attributes'][d][a]['accuracy']:.3f}" for d in domains)
                     + " |")
    ns = ", ".join(f"{d}: {report['attributes'][d][attrs[0]]['n']}" for d in domains) if attrs else ""
    lines += ["", f"Faces per attribute: {ns}; held-out seed {report['seed']}."]
    if "domain" in report:
        lines += ["", f"Domain (8-way, {report['domain']['n']} faces): {report['domain']['accuracy']:.3f}"]
    confusions = []
    for d in domains:
        for a in attrs:
            r = report["attributes"][d][a]
            for i, row in enumerate(r["confusion"]):
                for j, c in enumerate(row):
                    if i != j and c:
                        confusions.append((c / max(1, sum(row)), d, a, r["values"][i], r["values"][j]))
    if "domain" in report:
        r = report["domain"]
        for i, row in enumerate(r["confusion"]):
            for j, c in enumerate(row):
                if i != j and c:
                    confusions.append((c / max(1, sum(row)), "all", "domain", r["values"][i], r["values"][j]))
    worst = sorted(confusions, reverse=True)[:8]
    if worst:
        lines += ["", "Largest confusions (share of the true class): "
                  + "; ".join(f"{d}/{a}: {t} -> {p} {s:.2f}" for s, d, a, t, p in worst)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI
_PROTOCOL = ("Protocol (`zoo/synthface/zero_shot.py`): held-out renders (seed %d), per attribute balanced over its "
             "values, occluders removed only where they hide the attribute (hair colour: no bald heads; hair style: "
             "no hat; eyes: no sunglasses); argmax over the 79-template embeddings of `VALUE_PROMPTS`; gates on the "
             "photo column (>= %.2f) and the 8-way domain task (>= %.2f); other domains for information."
             % (HELDOUT_SEED, ATTRIBUTE_THRESHOLD, DOMAIN_THRESHOLD))

def main(argv: list[str] | None = None) -> int:
    from . import train_clip, training

    parser = argparse.ArgumentParser(prog="python -m zoo.synthface.zero_shot", description=__doc__.split("\n")[0])
    parser.add_argument("network", choices=["clip", "judge_clip"])
    parser.add_argument("--n", type=int, default=1000, help="photo faces per attribute")
    parser.add_argument("--n-other", type=int, default=250, help="faces per attribute on the other domains")
    parser.add_argument("--domains", nargs="*", default=list(DOMAIN_NAMES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--card", action="store_true", help="append the table to the network's model card")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--cached", action="store_true",
                        help="use the report the gates wrote (weights/<network>.zero_shot.json) instead of evaluating")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cached = training.WEIGHTS_DIR / f"{args.network}.zero_shot.json"
    if args.cached:
        if not cached.is_file():
            parser.error(f"{cached} does not exist (run the gates first)")
        report = json.loads(cached.read_text())
    else:
        report = evaluate(train_clip.load(args.network), n=args.n, domains=args.domains, n_other=args.n_other)
    gates = gates_from_report(report, prefix=args.network)
    text = format_report(report)
    print(json.dumps(report) if args.json else text)
    print(json.dumps({"gates": gates}, indent=2))
    if args.card:
        card = training.CARDS_DIR / f"{args.network}.md"
        if not card.is_file():
            parser.error(f"{card} does not exist yet (train and export first)")
        body = card.read_text()
        marker = "\n## Architecture and export\n"
        body = (body.split(marker)[0].rstrip("\n") + "\n" + marker + "\n" + train_clip.card_details(args.network)
                + "\n\n## Zero-shot accuracy by domain\n\n" + _PROTOCOL + "\n\n" + text + "\n")
        card.write_text(body)
    return 0 if all(g["passed"] for g in gates) else 1


if __name__ == "__main__":
    sys.exit(main())
