"""StyleGAN2 generator in pure PyTorch, loading rosinality `stylegan2-pytorch` checkpoints.

The backbone registry points at ``zoo.stylegan2:load_generator``.
"""

from zoo.stylegan2.checkpoint import (FORMAT, SOURCE, generator_from_state_dict, infer_config, load_generator,
                                      random_rosinality_state_dict, read_checkpoint, rosinality_shapes,
                                      save_generator)
from zoo.stylegan2.generator import Generator, StyleLayer, latent_split, rosinality_channels

__all__ = ["FORMAT", "SOURCE", "Generator", "StyleLayer", "generator_from_state_dict", "infer_config",
           "latent_split", "load_generator", "random_rosinality_state_dict", "read_checkpoint",
           "rosinality_channels", "rosinality_shapes", "save_generator"]
