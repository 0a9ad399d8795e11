"""``bench generate``: render latents with a StyleGAN2 generator.

    bench generate --generator CKPT --latents FILE.pt --out DIR [--truncation 0.7] [--batch-size 8]
                   [--device cpu] [--random-noise] [--seed 0]

FILE.pt holds one tensor, or a dict with one of the keys ``w_plus`` / ``latents`` / ``w`` / ``z``:

* W+ ``[N, n_latent, style_dim]`` (a bare tensor, ``w_plus`` or ``latents``): rendered as is;
* z ``[N, style_dim]`` (a bare 2-D tensor or ``z``): mapped to W, truncated with ``--truncation`` towards the
  checkpoint's ``latent_avg``, then rendered;
* W ``[N, style_dim]`` (only under the key ``w``, since a bare 2-D tensor means z): rendered as is.

Writes ``DIR/images.pt`` (float32 ``[N, 3, H, W]`` clamped to [-1, 1]) and ``DIR/000000.png`` ... (one per image).
Noise is the checkpoint's fixed noise unless ``--random-noise`` (seeded by ``--seed``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.errors import BenchError

_KEYS = {"w_plus": "w+", "latents": "auto", "w": "w", "z": "z"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, metavar="CKPT",
                        help="rosinality StyleGAN2 checkpoint (.pt with g_ema + latent_avg, or .safetensors)")
    parser.add_argument("--latents", required=True, metavar="FILE.pt",
                        help="W+ [N, n_latent, style_dim] or z [N, style_dim] tensor (or a dict with key "
                             "w_plus / latents / w / z)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (images.pt + PNGs)")
    parser.add_argument("--truncation", type=float, default=0.7,
                        help="truncation towards latent_avg for z inputs, in [0, 1] (default 0.7; 1 = none); "
                             "W / W+ latents are rendered as given")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--random-noise", action="store_true",
                        help="fresh per-image noise instead of the checkpoint's fixed noise buffers")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-noise (default 0)")


def read_latents(path: str | Path, n_latent: int, style_dim: int) -> tuple[torch.Tensor, str]:
    """``(latents, space)`` with space ``"w+"``, ``"w"`` or ``"z"``; BenchError for anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"latents file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(f"cannot read latents file {path}: {type(exc).__name__}: {exc}") from exc
    space = "auto"
    if isinstance(obj, dict):
        keys = [k for k in _KEYS if k in obj]
        if len(keys) != 1:
            raise BenchError(f"latents file {path} holds a dict with keys {sorted(map(str, obj))[:8]}; expected a "
                             f"tensor or a dict with exactly one of the keys {list(_KEYS)}")
        space, obj = _KEYS[keys[0]], obj[keys[0]]
    if not isinstance(obj, torch.Tensor):
        raise BenchError(f"latents file {path} holds a {type(obj).__name__}, expected a tensor")
    shape = list(obj.shape)
    is_w_plus = obj.ndim == 3 and shape[1:] == [n_latent, style_dim]
    is_flat = obj.ndim == 2 and shape[1] == style_dim
    ok = {"auto": is_w_plus or is_flat, "w+": is_w_plus, "w": is_flat, "z": is_flat}[space]
    if not ok or shape[0] == 0 or not obj.is_floating_point():
        accepted = (f"W+ [N, {n_latent}, {style_dim}] or z [N, {style_dim}]" if space == "auto" else
                    f"[N, {n_latent}, {style_dim}]" if space == "w+" else f"[N, {style_dim}]")
        raise BenchError(f"latents in {path} have shape {shape} ({obj.dtype}); this generator accepts {accepted} "
                         f"(floating point, N >= 1)")
    if space == "auto":
        space = "w+" if is_w_plus else "z"
    return obj.float(), space


def _progress(iterable, total: int, description: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return iterable
    return tqdm(iterable, total=total, desc=description, unit="batch", leave=False)


def run(args: argparse.Namespace) -> int:
    from zoo.stylegan2 import load_generator

    from bench.commands import checked_device
    from bench.images import save_pngs

    if args.batch_size < 1:
        raise BenchError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0.0 <= args.truncation <= 1.0:  # the suites' limit (bench/suite.py: sources.truncation)
        raise BenchError(f"--truncation must be in [0, 1] (1 = none, 0 = every image the average), got "
                         f"{args.truncation:g}")
    device = torch.device(checked_device(args.device))
    generator = load_generator(args.generator, device=device)
    latents, space = read_latents(args.latents, generator.n_latent, generator.style_dim)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    noise_rng = torch.Generator().manual_seed(args.seed) if args.random_noise else None
    truncation = args.truncation if space == "z" else 1.0
    n = latents.shape[0]
    batches = range(0, n, args.batch_size)
    images = []
    with torch.no_grad():
        for start in _progress(batches, len(batches), "generate"):
            batch = latents[start:start + args.batch_size].to(device)
            noise = generator.make_noise(batch.shape[0], noise_rng) if args.random_noise else None
            image = generator(batch, input_space=space, truncation=truncation, noise=noise)
            images.append(image.clamp(-1, 1).float().cpu())
    images = torch.cat(images)
    torch.save(images, out / "images.pt")
    save_pngs(images, out)
    print(f"wrote {n} images ({generator.size}x{generator.size}, {space} latents) to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m bench.commands.generate ...``)."""
    parser = argparse.ArgumentParser(prog="bench generate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
