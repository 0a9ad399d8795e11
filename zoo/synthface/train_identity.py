"""The synthetic world's identity network: a small ArcFace-trained CNN embedding of who a rendered person is.

Training data: a fixed set of `n_identities` people (`sample_identities(n_identities, seed=identity_seed)`), each
image rendered with freshly drawn editable attributes, pose and domain (photo with probability `photo_prob`,
otherwise one of the seven other domains uniformly), so the embedding learns to ignore what an edit may change.
Objective: additive angular margin (ArcFace) softmax over the training people; the margin is ramped in from 0
over the first `margin_ramp` of the steps. An auxiliary linear head regresses the rendered person's identity
parameters from the embedding (`aux_weight` x MSE): the synthetic world knows them, and this dense signal gets
the small network past ArcFace's slow start within a CPU budget. Only the embedding network is exported.

Two forms of the same weights:

* PyTorch, `load_identity()`: [N, 3, 64, 64] RGB in [-1, 1] -> [N, embed_dim] L2-normalised embeddings; the
  synthetic world's identity *loss* through `zoo.identity.IdentityLoss(load_identity(), crop=None)` (the renders
  are already face crops).
* ONNX, `weights/identity.onnx` for the identity *metric* through `zoo.identity.load_onnx_recognizer`: insightface
  routes it to its ArcFace recognizer (one output, input N x 3 x 128 x 128; no graph node named Sub*/Mul*, so
  insightface normalises (pixel - 127.5) / 127.5 and the graph receives exactly the [-1, 1] image). The graph
  first maps 128 -> 64 with the least-squares inverse of bilinear 2x upsampling (two MatMuls), which undoes
  exactly what `OnnxRecognizer` does to a 64x64 render (bilinear resize to the graph's 128), then runs the
  64x64 network: the two forms agree to float precision on renders.

Gates (held-out people drawn with other seeds, never trained on): verification on pairs whose two images differ
in at least two editable attributes (plus pose), half same person, half different people; the decision threshold
is chosen on a separate calibration set of pairs and applied to the test pairs. "mixed": both images' domains
drawn like the training data; "photo": both photo.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.synthface import training
from zoo.synthface.domains import DOMAIN_NAMES
from zoo.synthface.nets import (ConvTrunk, adamw_with_decay_groups, count_parameters, training_domains,
                                 warmup_cosine)
from zoo.synthface.params import ATTRIBUTE_SPECS, N_ID, FaceParams, attribute_class, sample_identities, sample_params
from zoo.synthface.render import render

NAME = "identity"
ONNX_PATH = training.WEIGHTS_DIR / f"{NAME}.onnx"
INPUT_SIZE = 64

DEFAULTS = {
    "seed": 0,
    "steps": 2000,
    "batch": 96,
    "n_identities": 1000,
    "identity_seed": 20_240_601,
    "photo_prob": 0.6,
    "widths": [32, 64, 96, 128],
    "depth": 1,
    "embed_dim": 128,
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "warmup": 100,
    "arc_scale": 16.0,
    "arc_margin": 0.3,
    "margin_ramp": 0.5,
    "aux_weight": 1.0,
    "onnx_size": 128,
    "init_from": None,  # "weights" (the committed export) or a weights folder: continue that network in a new run;
                        # the export holds no class centres or read-out, so they start from it (warm_start_heads)
}

SUMMARY = """Small ArcFace-style CNN embedding (residual conv trunk, BN + PReLU, BN-flatten-FC-BN output layer,
L2-normalised) of the synthetic world's people. Trained with an additive angular margin softmax over a fixed set
of training identities (plus an auxiliary regression of the known identity parameters from the embedding), each
image rendered with random editable attributes, pose and domain (mostly photo), so the embedding is invariant to
edits. Used as the identity loss (PyTorch, `load_identity`) and, exported to
`identity.onnx`, as an insightface recognizer for the identity metric. Gates: verification of held-out people on
pairs differing in >= 2 editable attributes, threshold calibrated on separate held-out pairs."""

EVAL_CALIBRATION_SEED = 7_001  # held-out people for the threshold
EVAL_TEST_SEED = 7_002  # held-out people for the reported accuracy
EVAL_PAIRS = 1000


class IdentityNet(nn.Module):
    """[N, 3, 64, 64] in [-1, 1] -> [N, embed_dim] L2-normalised (other sizes are resized to 64 first)."""

    def __init__(self, widths=(32, 64, 96, 128), depth: int = 1, embed_dim: int = 128):
        super().__init__()
        self.trunk = ConvTrunk(widths, depth)
        c = self.trunk.out_channels
        spatial = INPUT_SIZE // 2 ** len(widths)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.Flatten(), nn.Linear(c * spatial * spatial, embed_dim),
                                  nn.BatchNorm1d(embed_dim))

    def features(self, images: Tensor) -> Tensor:
        """The embedding before L2 normalisation (the output BatchNorm's [N, embed_dim])."""
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                   antialias=True)
        return self.head(self.trunk(images))

    def forward(self, images: Tensor) -> Tensor:
        return F.normalize(self.features(images), dim=-1)


class ArcMarginHead(nn.Module):
    """ArcFace logits s * cos(theta + m) for the target class, s * cos(theta) for the others."""

    def __init__(self, embed_dim: int, n_classes: int):
        super().__init__()
        # unit-variance entries: Adam's ~lr-sized steps then turn a class centre slowly (a tiny init would let
        # every step rotate it at random)
        self.weight = nn.Parameter(torch.randn(n_classes, embed_dim))

    def forward(self, emb: Tensor, labels: Tensor, scale: float, margin: float) -> tuple[Tensor, Tensor]:
        cos = F.linear(emb, F.normalize(self.weight, dim=-1)).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        if margin > 0:
            sin = (1 - target * target).clamp(min=0).sqrt()
            phi = target * math.cos(margin) - sin * math.sin(margin)
            # past theta = pi - m, cos(theta + m) stops decreasing: use the usual linear continuation
            phi = torch.where(target > math.cos(math.pi - margin), phi, target - math.sin(math.pi - margin) * margin)
            logits = cos.scatter(1, labels[:, None], phi)
        else:
            logits = cos
        return logits * scale, cos


class _Training(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = IdentityNet(config["widths"], config["depth"], config["embed_dim"])
        self.arc = ArcMarginHead(config["embed_dim"], config["n_identities"])
        self.aux = nn.Linear(config["embed_dim"], N_ID)  # identity-parameter regression (training only)


def training_identities(config) -> Tensor:
    return sample_identities(config["n_identities"], seed=config["identity_seed"])


@torch.no_grad()
def warm_start_heads(model: _Training, people: Tensor, config, renders_per_person: int = 8, seed: int = 0) -> None:
    """Class centres and identity read-out for a network continued from an export, which keeps only the embedding:
    each centre is the mean normalised embedding of `renders_per_person` renders of that training person (random
    attributes, pose and domain, as in training), scaled to the norm of the usual N(0, 1) init; the read-out is the
    least-squares fit of the identity parameters from those renders' features. Random centres would instead pull
    every embedding towards noise in the first steps."""
    g = torch.Generator().manual_seed(seed)
    n = len(people)
    idx = torch.arange(n).repeat_interleave(renders_per_person)
    was_training = model.training
    model.eval()
    feats = []
    for i in range(0, len(idx), 500):
        part = idx[i:i + 500]
        params = sample_params(len(part), generator=g, domain=training_domains(len(part), g, config["photo_prob"]),
                               identity=people[part])
        feats.append(model.net.features(render(params).to(training.device_of(model))).cpu())
    feats = torch.cat(feats)
    centres = torch.zeros(n, feats.shape[1]).index_add_(0, idx, F.normalize(feats, dim=-1))
    model.arc.weight.copy_(F.normalize(centres, dim=-1).to(model.arc.weight) * math.sqrt(feats.shape[1]))
    targets = (people[idx] - 0.5) * math.sqrt(12)
    design = torch.cat([feats, torch.ones(len(feats), 1)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution  # [embed_dim + 1, N_ID]
    model.aux.weight.copy_(solution[:-1].t().to(model.aux.weight))
    model.aux.bias.copy_(solution[-1].to(model.aux.bias))
    model.train(was_training)


def build(config) -> training.Trainable:
    model = _Training(config)
    people = training_identities(config)
    source = training.init_dir(config.get("init_from"))
    if source is not None:
        state, _ = training.load_weights(NAME, source)
        try:
            model.net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"init_from {source}: the identity network there does not match this config: {exc}"
                             ) from None
        warm_start_heads(model, people, config)
    optimizer = adamw_with_decay_groups(model, config["lr"], config["weight_decay"])
    steps = config["steps"]

    def step(i: int) -> dict[str, float]:
        g = training.step_generator(config["seed"], i)
        n = config["batch"]
        labels = torch.randint(len(people), (n,), generator=g)
        params = sample_params(n, generator=g, domain=training_domains(n, g, config["photo_prob"]),
                               identity=people[labels])
        dev = training.device_of(model)
        with torch.no_grad():
            images = render(params).to(dev)
        labels, params = labels.to(dev), params.to(dev)
        lr = warmup_cosine(i, steps, config["warmup"], config["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        margin = config["arc_margin"] * min(1.0, (i + 1) / max(1.0, config["margin_ramp"] * steps))
        feats = model.net.features(images)
        logits, cos = model.arc(F.normalize(feats, dim=-1), labels, config["arc_scale"], margin)
        arc = F.cross_entropy(logits, labels)
        aux = F.mse_loss(model.aux(feats), (params.identity - 0.5) * math.sqrt(12))  # unit-variance targets
        loss = arc + config["aux_weight"] * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "arcface": arc.item(), "aux_mse": aux.item(),
                "acc": (cos.argmax(1) == labels).float().mean().item(), "lr": lr,
                "margin": margin}

    return training.Trainable(NAME, model, optimizer, step, dict(config))


# ---------------------------------------------------------------------------------------------- export / load
def _inverse_upsampling(size: int, factor: int) -> Tensor:
    """[size, size * factor] least-squares left inverse of 1-D bilinear upsampling by `factor` (align_corners=False,
    as `F.interpolate` and `OnnxRecognizer` do it): inverse @ upsample = identity."""
    basis = torch.eye(size, dtype=torch.float64).view(1, 1, size, size)
    up = F.interpolate(basis, size=(size, size * factor), mode="bilinear", align_corners=False, antialias=True)
    return torch.linalg.pinv(up[0, 0].T).float()


class OnnxIdentity(nn.Module):
    """The exported graph: [N, 3, S, S] (S = 64 * factor) -> the 64x64 network's normalised embedding."""

    def __init__(self, net: IdentityNet, size: int = 128):
        super().__init__()
        if size % INPUT_SIZE:
            raise ValueError(f"ONNX input size {size} must be a multiple of {INPUT_SIZE}")
        self.net = net
        self.register_buffer("down", _inverse_upsampling(INPUT_SIZE, size // INPUT_SIZE))
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        x = torch.matmul(torch.matmul(self.down, images), self.down.t())
        return self.net(x)


def export_onnx(net: IdentityNet, path: Path = ONNX_PATH, size: int = 128, half: bool = True) -> Path:
    """Write the insightface-compatible ONNX recognizer (see the module docstring); `half`: float16 storage."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = OnnxIdentity(net, size).eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(wrapper, (dummy,), str(path), dynamo=False, input_names=["input"],
                      output_names=["embedding"], dynamic_axes={"input": {0: "N"}, "embedding": {0: "N"}},
                      opset_version=17, do_constant_folding=True)
    if half:
        onnx_model = onnx.load(str(path))
        _float16_initializers(onnx_model)
        onnx.save(onnx_model, str(path))
    return path


def _float16_initializers(model, min_size: int = 64) -> None:
    """Store the large float32 initializers as float16, each cast back to float32 by a Cast node at the top of the
    graph (onnxruntime folds the casts at load): half the file size, float32 arithmetic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < min_size:
            continue
        array = numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array, f"{name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT,
                                      name=f"float16_weight_cast_{len(casts)}"))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    config = dict(trainable.config)
    config["parameters"] = count_parameters(trainable.model.net)
    path = training.export_weights(NAME, trainable.model.net, config, weights_dir, dtype=torch.float16)
    # the ONNX graph is built from the exported (float16-rounded) weights, so both forms are the same function
    export_onnx(load_identity(weights_dir=weights_dir), Path(weights_dir) / f"{NAME}.onnx", config["onnx_size"])
    return path


def load_identity(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR) -> IdentityNet:
    """The trained identity network (eval mode, frozen): [N, 3, 64, 64] in [-1, 1] -> normalised embeddings."""
    state, config = training.load_weights(NAME, Path(weights_dir))
    net = IdentityNet(config["widths"], config["depth"], config["embed_dim"])
    net.load_state_dict(state)
    return net.eval().requires_grad_(False).to(device)


def load_identity_judge(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR):
    """The identity network's ONNX export through insightface (`zoo.identity.load_onnx_recognizer`), the identity
    *metric*'s judge; `device` picks the onnxruntime providers."""
    from zoo.identity import load_onnx_recognizer

    return load_onnx_recognizer(Path(weights_dir) / f"{NAME}.onnx", device=device)


# ---------------------------------------------------------------------------------------------- gates
def _other_class(cls: Tensor, k: int, g: torch.Generator) -> Tensor:
    return (cls + 1 + torch.randint(k - 1, cls.shape, generator=g)) % k


def _smile_in_bin(bins: Tensor, g: torch.Generator) -> Tensor:
    edges = torch.tensor([-1.0, *ATTRIBUTE_SPECS["smile"].bins, 1.0])
    lo, hi = edges[bins], edges[bins + 1]
    return lo + (hi - lo) * torch.rand(bins.shape, generator=g)


def verification_pairs(n: int, seed: int, domains: str = "mixed", photo_prob: float = 0.6,
                       min_changed: int = 2) -> tuple[FaceParams, FaceParams, Tensor]:
    """n pairs (a, b, same) of held-out people: the first half the same person, the rest different people. b's
    attributes are drawn afresh and at least `min_changed` of them (chosen at random) are forced to another class
    than a's; poses are independent. `domains`: "mixed" (each image like the training data) or "photo"."""
    g = torch.Generator().manual_seed(seed)
    people = sample_identities(2 * n, generator=g)
    same = torch.arange(n) < n // 2
    dom = (lambda: training_domains(n, g, photo_prob)) if domains == "mixed" else (lambda: "photo")
    a = sample_params(n, generator=g, domain=dom(), identity=people[:n])
    b = sample_params(n, generator=g, domain=dom(),
                      identity=torch.where(same[:, None], people[:n], people[n:]))
    names = list(ATTRIBUTE_SPECS)
    forced = torch.rand(n, len(names), generator=g).argsort(1)[:, :min_changed]
    for j, name in enumerate(names):
        pick = (forced == j).any(1)
        spec = ATTRIBUTE_SPECS[name]
        cls_a = attribute_class(a, name)
        new = _other_class(cls_a, len(spec.values), g)
        value = _smile_in_bin(new, g) if spec.continuous else new
        b.attrs[name] = torch.where(pick, value.to(b.attrs[name].dtype), b.attrs[name])
    changed = sum((attribute_class(a, k) != attribute_class(b, k)).long() for k in names)
    assert bool((changed >= min_changed).all())
    return a, b, same


@torch.no_grad()
def pair_cosines(embed, a: FaceParams, b: FaceParams, batch: int = 250) -> Tensor:
    out = []
    for i in range(0, len(a), batch):
        ea, eb = embed(render(a[i:i + batch])), embed(render(b[i:i + batch]))
        out.append((F.normalize(ea, dim=-1) * F.normalize(eb, dim=-1)).sum(-1))
    return torch.cat(out)


def best_threshold(cos: Tensor, same: Tensor) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of `cos > threshold` == same."""
    values = torch.sort(cos).values
    candidates = torch.cat([values[:1] - 1e-4, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-4])
    accs = ((cos[None, :] > candidates[:, None]) == same[None, :]).float().mean(1)
    k = int(accs.argmax())
    return float(candidates[k]), float(accs[k])


def verification(embed, domains: str, n: int = EVAL_PAIRS, test_seed: int = EVAL_TEST_SEED) -> dict[str, float]:
    cal_a, cal_b, cal_same = verification_pairs(n, EVAL_CALIBRATION_SEED, domains)
    threshold, cal_acc = best_threshold(pair_cosines(embed, cal_a, cal_b), cal_same)
    a, b, same = verification_pairs(n, test_seed, domains)
    cos = pair_cosines(embed, a, b)
    return {"accuracy": float(((cos > threshold) == same).float().mean()), "threshold": threshold,
            "calibration_accuracy": cal_acc, "best_threshold_accuracy": best_threshold(cos, same)[1],
            "same_cos": float(cos[same].mean()), "different_cos": float(cos[~same].mean())}


def gates(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR, n: int = EVAL_PAIRS,
          test_seed: int = EVAL_TEST_SEED) -> list[dict]:
    """The gates on the test pairs of `test_seed`, the threshold calibrated on EVAL_CALIBRATION_SEED's pairs (other
    test seeds: tools/gate_draws.py)."""
    net = load_identity(device, weights_dir)
    results = []
    for domains in ("mixed", "photo"):
        v = verification(net, domains, n, test_seed)
        results += [
            {"name": f"verification accuracy, {domains} domains, >= 2 attributes changed (threshold "
                     f"{v['threshold']:.3f} from calibration pairs)", "value": v["accuracy"],
             "threshold": ">= 0.95", "passed": v["accuracy"] >= 0.95},
            {"name": f"best-threshold accuracy on the test pairs, {domains} (info)",
             "value": v["best_threshold_accuracy"], "threshold": "info", "passed": True},
            {"name": f"mean same-identity cosine, {domains}", "value": v["same_cos"], "threshold": "info",
             "passed": True},
            {"name": f"mean different-identity cosine, {domains}", "value": v["different_cos"], "threshold": "info",
             "passed": True},
            {"name": f"same minus different mean cosine, {domains}", "value": v["same_cos"] - v["different_cos"],
             "threshold": ">= 0.3", "passed": v["same_cos"] - v["different_cos"] >= 0.3},
        ]
    onnx_path = Path(weights_dir) / f"{NAME}.onnx"
    if onnx_path.exists():
        from zoo.identity import load_onnx_recognizer

        recognizer = load_onnx_recognizer(onnx_path)
        images = render(sample_params(64, seed=EVAL_TEST_SEED, domain=list(DOMAIN_NAMES)))
        with torch.no_grad():
            agree = (recognizer.embed(images) * net(images)).sum(-1).min().item()
        results.append({"name": "ONNX (insightface) vs PyTorch embedding cosine, min over 64 renders",
                        "value": agree, "threshold": ">= 0.999", "passed": agree >= 0.999})
    return results
