"""Training the synthetic world's inversion encoder (`encoder.py`, e4e-style image -> W+) on the frozen generator.

Each step (batch `batch`: a `render_fraction` of renders, the rest generator samples):

* generator samples: z ~ N(0, I), w = mapping(z) (known), x = G(w); the encoder's W+ is pulled to w (latent loss,
  mean squared error) and, with `sample_image_loss` (off by default: it doubles the generator's backward cost on
  2 shared cores), G(E(x)) to x;
* renders: random photo renders (`sample_params(domain="photo")`), the "real" photos the methods invert: the image
  loss through the frozen generator (weight `image_weight`; 0 skips the generator) and, optionally, a latent loss
  towards W* of the render's parameters (`FeatureW.fit(generator)`);

    loss = latent_weight * MSE(E(x), w)  [samples]
         + image_weight * (L1(G(E(x)), x) + L1 at 1/2 and 1/4 scale + edge_weight * L1 of image gradients) [renders]
         + render_latent_weight * MSE(E(x), W*)  [renders]
         + feature_weight * MSE((E(x) - target) @ decode)  [both: the error in the parameter features]
         + delta_weight * mean(delta^2)   (e4e's delta regularisation: keeps W+ close to W)
         + id_weight * (1 - cos(identity(x), identity(G(E(x)))))  [optional, needs weights/identity]

AdamW, warmup + cosine decay, `torch.set_num_threads(1)`. The encoder's `latent_avg` buffer is the generator's.
The export records the generator's W scale (`generator_w_std`, `zoo.stylegan2.w_scale.w_coordinate_std`); an
`init_from` encoder trained against a generator of another W scale is rescaled to this one's (`Encoder.scale_w`).
Gates (500 held-out photo renders): identity cosine between a render and its reconstruction (mean >= 0.8) with
`train_identity.load_identity`, and attribute-judge agreement between the render and its reconstruction (mean over
attributes >= 0.9) with `train_attributes.load_attribute_judge`; each is skipped with a message when the network's
weights are absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.stylegan2.w_scale import w_coordinate_std
from zoo.synthface import training
from zoo.synthface.encoder import NAME, Encoder, load_encoder
from zoo.synthface.params import ATTRIBUTE_SPECS, sample_params
from zoo.synthface.render import render
from zoo.synthface.train_generator import FeatureW, distillation_loss, load as load_synthetic_generator

__all__ = ["DEFAULTS", "SUMMARY", "build", "export", "gates", "load_encoder", "reconstruct"]

DEFAULTS = {
    "seed": 0,
    "steps": 1000,
    "batch": 16,
    "render_fraction": 0.5,
    "widths": [32, 48, 64, 96, 128],
    "hidden": 192,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "warmup": 100,
    "latent_weight": 1.0,
    "sample_image_loss": False,
    "delta_weight": 1e-3,
    "edge_weight": 0.5,
    "id_weight": 0.0,
    # > 0: the renders also get a latent loss towards W* of their parameters, W* = FeatureW.fit(generator) (the
    # least-squares map from the renderer's parameters to the generator's W; exact for a generator trained with
    # w_target "features", whose mapping regresses such a W*)
    "render_latent_weight": 0.0,
    # > 0: the latent error (renders: to W* of their parameters; samples: to their w) is also measured in the
    # teacher's parameter features ((E(x) - W*) @ decode, the per-feature error): W-space MSE weighs a feature by
    # its basis row's length, and 14 of the 15 identity rows are 2.2-3.3 long (one 7.2) where the categorical ones
    # are 11-75: under W-space MSE alone the encoder learnt identity far slower (cards/encoder.md: 0.167 against
    # 0.573 after 1,000 steps of the same run)
    "feature_weight": 0.0,
    # 0: no image loss and no generator pass (a pure regression of W*: 77 images/s on 2 threads against 41 with
    # the generator in the loop); needs render_latent_weight or feature_weight
    "image_weight": 1.0,
    "init_from": None,  # "weights" (the committed export) or a weights folder: continue that encoder (a second leg)
    "render_device": "cpu",  # "model": render the batches on the training device (a GPU), see training.render_device
}

SUMMARY = """e4e-style inversion encoder for the synthetic generator: a small residual CNN pyramid with coarse/medium/
fine heads predicting a base code w and per-W+-index deltas (W+ = latent_avg + w + delta, delta_0 = 0, deltas L2-
regularised). Trainable on generator samples (known w: latent loss) and photo renders (image loss through the
frozen generator, and with `render_latent_weight` / `feature_weight` a latent loss towards W* of the render's
parameters, in W and in the parameter features). The committed fit: a regression of the renders' W* without the
generator, then a short leg with the image loss. Gates: identity cosine and attribute-judge agreement between 500
held-out photo renders and their reconstructions, each beside the generator's bound G(W*)."""

EVAL_SEED = 9_201
EVAL_RENDERS = 500


def _identity_or_none(device: str = "cpu"):
    try:
        from zoo.synthface.train_identity import load_identity
        return load_identity(device)
    except (ImportError, FileNotFoundError, OSError) as exc:
        print(f"identity network not available ({type(exc).__name__}: {exc})")
        return None


def build(config, generator=None) -> training.Trainable:
    g = (generator if generator is not None else load_synthetic_generator()).eval().requires_grad_(False)
    enc = Encoder(g.n_latent, g.style_dim, config["widths"], config["hidden"])
    enc.generator_w_std = w_coordinate_std(g)  # recorded by export
    source = training.init_dir(config.get("init_from"))
    if source is not None:
        state, saved = training.load_weights(NAME, source)
        try:
            enc.load_state_dict(state)
        except RuntimeError as exc:  # missing keys or shape mismatches
            raise ValueError(f"init_from {source}: the encoder there does not match this config: {exc}") from None
        follow_w_scale(enc, saved.get("generator_w_std"), enc.generator_w_std)
    enc.set_latent_avg(g.get_latent_avg())
    decay, no_decay = [], []
    for p in enc.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config["lr"])
    identity = _identity_or_none() if config["id_weight"] > 0 else None
    if config["id_weight"] > 0 and identity is None:
        raise FileNotFoundError("id_weight > 0 needs the identity network's weights (zoo/synthface/weights/identity)")
    training.render_device(config, torch.device("cpu"))  # an unknown render_device fails here, not at step 0
    use_teacher = config.get("render_latent_weight", 0) > 0 or config.get("feature_weight", 0) > 0
    teacher = FeatureW.fit(g).to(g.device) if use_teacher else None
    image_weight = float(config.get("image_weight", 1.0))
    if image_weight == 0 and teacher is None:
        raise ValueError("image_weight 0 leaves the renders no loss: set render_latent_weight or feature_weight > 0")
    if image_weight == 0 and config["id_weight"] > 0:
        raise ValueError("id_weight > 0 compares reconstructions, which image_weight 0 does not draw")
    steps = config["steps"]

    def step(i: int) -> dict[str, Any]:
        from zoo.synthface.nets import warmup_cosine
        rng = training.step_generator(config["seed"], i)
        n = config["batch"]
        n_render = int(round(n * config["render_fraction"]))
        n_sample = n - n_render
        dev = training.device_of(enc)
        g.to(dev)  # frozen helpers follow the encoder (no-ops after the first step)
        if identity is not None:
            identity.to(dev)
        with torch.no_grad():
            z = torch.randn(n_sample, g.style_dim, generator=rng)
            w = g.mapping(z.to(dev))
            x_sample = g(w) if n_sample else w.new_zeros(0, 3, g.size, g.size)  # render-only batches
            render_params = sample_params(n_render, generator=rng, domain="photo")
            x_render = render(render_params, device=training.render_device(config, dev)).to(dev)
            x = torch.cat([x_sample, x_render])
        lr = warmup_cosine(i, steps, config["warmup"], config["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        base, deltas = enc.parts(x)
        w_plus = enc.latent_avg + base.unsqueeze(1) + deltas
        first = 0 if config["sample_image_loss"] else n_sample  # the samples' image loss is optional (cost)
        latent_loss = (w_plus[:n_sample] - w.unsqueeze(1)).pow(2).mean() if n_sample else x.new_zeros(())
        delta_loss = deltas.pow(2).mean()
        loss = config["latent_weight"] * latent_loss + config["delta_weight"] * delta_loss
        out = {}
        recon = None
        if image_weight > 0:
            recon = g(w_plus[first:])
            image_loss, parts = distillation_loss(recon, x[first:], config["edge_weight"])
            loss = loss + image_weight * image_loss
            out["l1"] = parts["l1"]
        if teacher is not None:
            errors = [w_plus[:n_sample] - w.unsqueeze(1)]  # the samples' known w (empty without samples)
            if n_render:
                errors.append(w_plus[n_sample:] - teacher.to(dev).of_params(render_params).unsqueeze(1))
                render_latent = errors[-1].pow(2).mean()
                loss = loss + config["render_latent_weight"] * render_latent
                out["render_latent"] = render_latent.detach()
            feature = (torch.cat(errors) @ teacher.decode).pow(2).mean()  # samples and renders alike
            loss = loss + config["feature_weight"] * feature
            out["feature"] = feature.detach()
        if identity is not None and recon is not None:
            cos = F.cosine_similarity(identity(x[first:]), identity(recon), dim=-1).mean()
            loss = loss + config["id_weight"] * (1 - cos)
            out["id_cos"] = cos.detach()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if recon is not None and n_render:
            with torch.no_grad():
                out["l1_render"] = (recon[n_sample - first:] - x_render).abs().mean()
        # detached tensors, read by the trainer only when it logs (a GPU step never waits for them)
        return {"loss": loss.detach(), "latent": latent_loss.detach(), "delta": delta_loss.detach(), "lr": lr, **out}

    return training.Trainable(NAME, enc, optimizer, step, dict(config))


def follow_w_scale(enc: Encoder, trained_std: float | None, current_std: float, tolerance: float = 1e-3) -> float:
    """Rescale ``enc`` (in place) from the W scale it was trained against to the generator's current one (a
    generator re-exported with standardised W draws the same images from W scaled by the ratio); returns the
    factor applied (1 when the scales agree or the encoder's export predates the record)."""
    if trained_std is None or abs(current_std / trained_std - 1) <= tolerance:
        return 1.0
    factor = current_std / trained_std
    print(f"encoder: trained against W of coordinate std {trained_std:.4g}, the generator's is {current_std:.4g}; "
          f"its codes are rescaled by {factor:.4g}")
    enc.scale_w(factor)
    return factor


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    config = dict(trainable.config)
    config["architecture"] = trainable.model.config()
    config["parameters"] = sum(p.numel() for p in trainable.model.parameters())
    config["generator"] = "zoo/synthface/weights/generator.safetensors"
    config["generator_w_std"] = round(float(trainable.model.generator_w_std), 6)  # set by build
    return training.export_weights(NAME, trainable.model, config, weights_dir)


@torch.no_grad()
def reconstruct(enc: Encoder, g, images: Tensor, batch: int = 100) -> Tensor:
    """G(E(images)), in batches."""
    return torch.cat([g(enc(images[i:i + batch])) for i in range(0, len(images), batch)])


@torch.no_grad()
def generator_bound(g, params, batch: int = 100) -> Tensor:
    """G(W*) of each face's own parameters (no encoder): what an exact inversion into the teacher's W would give,
    the bound an encoder's reconstructions are compared with."""
    w_star = FeatureW.fit(g).of_params(params).to(g.device)
    return torch.cat([g(w_star[i:i + batch], input_space="w") for i in range(0, len(params), batch)])


def gates(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR, n: int = EVAL_RENDERS) -> list[dict]:
    g = load_synthetic_generator(device, weights_dir)
    enc = load_encoder(device, weights_dir)
    params = sample_params(n, seed=EVAL_SEED, domain="photo")
    images = render(params).to(device)
    recon = reconstruct(enc, g, images)
    bound = generator_bound(g, params)  # info rows beside each gate
    results = [{"name": f"pixel L1 render vs G(E(render)), {n} held-out photo renders (info)",
                "value": float((recon - images).abs().mean()), "threshold": "info", "passed": True},
               {"name": "pixel L1 render vs G(W* of its parameters), the generator's bound (info)",
                "value": float((bound - images).abs().mean()), "threshold": "info", "passed": True}]
    identity = _identity_or_none(device)
    if identity is None:
        print("identity gate SKIPPED: zoo/synthface/weights/identity.* absent")
    else:
        cos = F.cosine_similarity(identity(images), identity(recon.clamp(-1, 1)), dim=-1)
        results.append({"name": f"identity cosine render vs reconstruction, mean of {n} held-out photo renders",
                        "value": float(cos.mean()), "threshold": ">= 0.8", "passed": float(cos.mean()) >= 0.8})
        results.append({"name": "identity cosine, 10th percentile (info)", "value": float(cos.quantile(0.1)),
                        "threshold": "info", "passed": True})
        bound_cos = F.cosine_similarity(identity(images), identity(bound.clamp(-1, 1)), dim=-1).mean()
        results.append({"name": "identity cosine render vs G(W*), the generator's bound (info)",
                        "value": float(bound_cos), "threshold": "info", "passed": True})
    from zoo.synthface.train_attributes import attribute_judge_or_none
    judge = attribute_judge_or_none(device, "attribute gate")
    if judge is None:
        return results
    pred_x, pred_r = judge.predict(images), judge.predict(recon.clamp(-1, 1))
    labels = params.labels()
    agree = {k: float((pred_x[k] == pred_r[k]).float().mean()) for k in ATTRIBUTE_SPECS}
    mean_agree = sum(agree.values()) / len(agree)
    results.append({"name": f"attribute agreement judge(render) == judge(reconstruction), mean over attributes, "
                            f"{n} held-out photo renders", "value": mean_agree, "threshold": ">= 0.9",
                    "passed": mean_agree >= 0.9})
    pred_b = judge.predict(bound.clamp(-1, 1))
    results.append({"name": "attribute agreement judge(render) == judge(G(W*)), the generator's bound (info)",
                    "value": sum(float((pred_x[k] == pred_b[k]).float().mean()) for k in ATTRIBUTE_SPECS) / len(agree),
                    "threshold": "info", "passed": True})
    for k, v in agree.items():
        results.append({"name": f"{k}: judge agreement render vs reconstruction (info)", "value": v,
                        "threshold": "info", "passed": True})
        results.append({"name": f"{k}: judge(reconstruction) == true label (info)",
                        "value": float((pred_r[k].cpu() == labels[k]).float().mean()), "threshold": "info",
                        "passed": True})
    return results
