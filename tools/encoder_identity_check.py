"""Check an encoder's identity gate with an identity network that was never its loss.

The encoder gate measures identity with the committed identity network, which the encoder's `id_weight` term also
trains against, so part of a gain there can be that network's blind spots. This script scores the same 500
held-out photo renders with a second identity network, trained only for the check (another seed):

    python -m zoo.synthface.train identity --threads 1 --run-dir runs/train/identity-check --steps 1500 \\
        --checkpoint-every 250 --no-export --set seed=1
    python tools/encoder_identity_check.py runs/train/identity-check/identity/last.pt zoo/synthface/weights [DIR ...]

Each DIR is a weights folder holding an `encoder.safetensors` (other networks come from zoo/synthface/weights).
Prints, per encoder, the identity cosine between render and reconstruction under both networks, with the
generator's bound G(W*) first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.synthface import train_encoder, train_identity, training  # noqa: E402
from zoo.synthface.encoder import load_encoder  # noqa: E402
from zoo.synthface.params import sample_params  # noqa: E402
from zoo.synthface.render import render  # noqa: E402


def identity_from_checkpoint(path: Path) -> torch.nn.Module:
    """The identity network of a training checkpoint (`runs/train/.../identity/last.pt`), frozen."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own checkpoint (holds RNG state)
    trainable = train_identity.build(state["config"])
    training.load_checkpoint(path, trainable)
    return trainable.model.net.eval().requires_grad_(False)


@torch.no_grad()
def mean_cosine(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(net(a), net(b), dim=-1).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("check_checkpoint", type=Path, help="checkpoint of the identity network trained for the check")
    parser.add_argument("encoders", type=Path, nargs="+", help="weights folders, each with an encoder.safetensors")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    check = identity_from_checkpoint(args.check_checkpoint)
    loss_net = train_identity.load_identity()
    g = train_encoder.load_synthetic_generator()
    params = sample_params(train_encoder.EVAL_RENDERS, seed=train_encoder.EVAL_SEED, domain="photo")
    x = render(params)
    bound = train_encoder.generator_bound(g, params).clamp(-1, 1)
    print("| encoder | pixel L1 | identity, committed network | identity, check network |\n|---|---|---|---|")
    print(f"| bound G(W*) | {(bound - x).abs().mean():.4f} | {mean_cosine(loss_net, x, bound):.4f} "
          f"| {mean_cosine(check, x, bound):.4f} |")
    for folder in args.encoders:
        recon = train_encoder.reconstruct(load_encoder("cpu", folder), g, x).clamp(-1, 1)
        print(f"| {folder} | {(recon - x).abs().mean():.4f} | {mean_cosine(loss_net, x, recon):.4f} "
              f"| {mean_cosine(check, x, recon):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
