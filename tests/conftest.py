import os

# A missing weight must fail at once instead of after hub retries.
os.environ["HF_HUB_OFFLINE"] = "1"  # set, not defaulted: an inherited HF_HUB_OFFLINE=0 must not turn it off
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class TinyRecognizer(torch.nn.Module):
    """A small CNN face-recognizer stand-in (image → embedding) for ONNX/insightface tests."""

    def __init__(self, dim=24):
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.PReLU(8), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, dim))

    def forward(self, x):
        return self.net(x)


TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """Random networks in their real formats for harness tests: a 32 px rosinality StyleGAN2 checkpoint and an
    open_clip `local-dir:` CLIP. Returns {"generator": path, "clip": "local-dir:..."}."""
    import json

    import open_clip

    from zoo.stylegan2.checkpoint import random_rosinality_state_dict

    root = tmp_path_factory.mktemp("tiny_world")
    state = random_rosinality_state_dict(32, style_dim=32, n_mlp=2, channel_multiplier=2, seed=3, channels=16)
    torch.save({"g_ema": state, "latent_avg": torch.zeros(32)}, root / "generator.pt")
    clip_dir = root / "clip"
    clip_dir.mkdir()
    (clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG}))
    torch.manual_seed(5)
    torch.save(open_clip.model.CLIP(**TINY_CLIP_CFG).state_dict(), clip_dir / "open_clip_pytorch_model.bin")
    return {"generator": str(root / "generator.pt"), "clip": f"local-dir:{clip_dir}"}
