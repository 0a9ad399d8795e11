"""`python -m zoo.synthface.standardise_w`: give the committed generator W of coordinate std 1 and rescale the
committed encoder to match, without changing one image either draws (idempotent).

Every generator export standardises W since 2026-11-28 (`train_generator.export_generator`); this command brought
the weights exported before that to the same scale, and keeps any older pair usable. The encoder's sidecar records
the W scale it was trained against (`generator_w_std`); an encoder without that record is taken to match the
generator as it was before this command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from zoo.stylegan2.w_scale import w_coordinate_std
from zoo.synthface import train_encoder, train_generator, training
from zoo.synthface.encoder import NAME as ENCODER, load_encoder


def standardise(weights_dir: Path = training.WEIGHTS_DIR) -> dict[str, float]:
    weights_dir = Path(weights_dir)
    g = train_generator.load(weights_dir=weights_dir)
    before = w_coordinate_std(g)
    config = json.loads((weights_dir / f"{train_generator.NAME}.json").read_text())
    facts = {"generator_w_std_before": before}
    if abs(before - 1.0) > 1e-3:
        train_generator.export_generator(g, config, weights_dir)
    after = w_coordinate_std(train_generator.load(weights_dir=weights_dir))
    facts["generator_w_std_after"] = after
    if (weights_dir / f"{ENCODER}.safetensors").exists():
        enc = load_encoder(weights_dir=weights_dir)
        _, enc_config = training.load_weights(ENCODER, weights_dir)
        facts["encoder_factor"] = train_encoder.follow_w_scale(enc, enc_config.get("generator_w_std", before), after)
        enc_config["generator_w_std"] = round(after, 6)
        training.export_weights(ENCODER, enc.state_dict(), enc_config, weights_dir)
    return facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=training.WEIGHTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(standardise(args.weights_dir), indent=2))


if __name__ == "__main__":
    main()
