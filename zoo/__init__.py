"""Networks and weights: StyleGAN2 (rosinality checkpoints), CLIP via open_clip, identity networks, the
synthetic face world. The backbone registry lives in `zoo.backbones`."""
