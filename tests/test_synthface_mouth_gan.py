"""The generator's mouth discriminator (zoo/synthface/mouth_gan.py): the crops, the losses, and its place in the
generator's training step and checkpoints."""

from __future__ import annotations

import pytest
import torch

from zoo.synthface import mouth_gan, sample_params, train_generator, training
from zoo.synthface.render import landmarks, render

from test_synthface_generator import TINY

FEATURES = dict(TINY, w_target="features", mapping_fit_steps=0, mapping_fit_batch=32, batch=6, mouth_gan_weight=0.1)


def test_mouth_crops_are_the_pixels_around_the_mouth_and_carry_gradients():
    params = sample_params(5, seed=4)
    images = render(params).requires_grad_(True)
    crops = mouth_gan.mouth_crops(images, params)
    assert crops.shape == (5, 3, 16, 16)
    centre = landmarks(params, 64)["mouth"].round().long()
    for i in range(5):
        x0, y0 = (int(c) - 8 for c in centre[i])
        assert torch.equal(crops[i], images[i, :, y0:y0 + 16, x0:x0 + 16])
    crops.sum().backward()
    assert images.grad.sum() == 5 * 3 * 16 * 16  # each pixel of each crop once, nothing else
    # a landmark near the border: the crop is shifted inside the image
    shifted = mouth_gan.mouth_crops(torch.arange(64.0).expand(1, 3, 64, 64).contiguous(), params[:1], crop=60)
    assert shifted.shape == (1, 3, 60, 60) and shifted[0, 0, 0, 0] in (0.0, 1.0, 2.0, 3.0, 4.0)


def test_smile_classes_follow_the_caption_bins():
    params = sample_params(3, seed=1)
    params.attrs["smile"] = torch.tensor([-0.9, 0.0, 0.9])
    assert mouth_gan.smile_classes(params).tolist() == [0, 1, 2]


def test_the_discriminator_learns_to_tell_render_mouths_from_blurred_ones():
    torch.manual_seed(0)
    params = sample_params(64, seed=2)
    real = render(params)
    blurred = torch.nn.functional.avg_pool2d(real, 5, stride=1, padding=2)
    classes = mouth_gan.smile_classes(params)
    real_crops, fake_crops = mouth_gan.mouth_crops(real, params), mouth_gan.mouth_crops(blurred, params)
    d = mouth_gan.MouthDiscriminator()
    optimizer = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.99))
    first = None
    for _ in range(60):
        loss, parts = mouth_gan.discriminator_loss(d, real_crops, fake_crops, classes, r1_gamma=0.1)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first
    assert parts["d_real"] > 0.7 and parts["d_fake"] < 0.3 and parts["r1"] >= 0
    # the generator's loss is high on the blurred crops and its gradient reaches the image
    fake = blurred.clone().requires_grad_(True)
    g_loss = mouth_gan.generator_loss(d, mouth_gan.mouth_crops(fake, params), classes)
    g_loss.backward()
    assert float(g_loss.detach()) > 0.7 and fake.grad.abs().sum() > 0


def test_generator_step_trains_the_discriminator_and_checkpoints_it(tmp_path):
    torch.manual_seed(0)
    trainable = train_generator.build(FEATURES)
    d = trainable.extra_state["mouth_d"]
    before = {k: v.clone() for k, v in d.state_dict().items()}
    g_before = trainable.model.state_dict()["to_rgbs.3.conv.weight"].clone()
    out = trainable.step(0)
    assert {"mouth_g", "mouth_d", "d_real", "d_fake", "r1"} <= set(out)
    assert any(not torch.equal(v, before[k]) for k, v in d.state_dict().items())
    assert not torch.equal(trainable.model.state_dict()["to_rgbs.3.conv.weight"], g_before)
    # the discriminator and its optimizer travel with the checkpoint; the export holds the generator only
    training.run_training(trainable, 3, run_dir=tmp_path, checkpoint_every=1, log_every=1)
    state = torch.load(tmp_path / "generator" / "last.pt", weights_only=False)
    assert "features.0.weight" in state["extra"]["mouth_d"] and state["extra"]["mouth_d_optimizer"]["state"]
    resumed = train_generator.build(FEATURES)
    training.load_checkpoint(tmp_path / "generator" / "last.pt", resumed)
    for k, v in trainable.extra_state["mouth_d"].state_dict().items():
        assert torch.equal(resumed.extra_state["mouth_d"].state_dict()[k], v)
    path = train_generator.export_generator(trainable.extra_state["g_ema"].model, trainable.config, tmp_path / "w")
    from safetensors.torch import load_file
    assert not any(k.startswith(("features.", "embed.", "score.")) for k in load_file(str(path)))


def test_mouth_gan_off_by_default_and_refused_without_the_teacher():
    assert train_generator.DEFAULTS["mouth_gan_weight"] == 0
    assert "mouth_d" not in train_generator.build(dict(FEATURES, mouth_gan_weight=0.0)).extra_state
    with pytest.raises(ValueError, match="mouth_gan_weight needs w_target 'features'"):
        train_generator.build(dict(FEATURES, w_target="mapping"))


def test_centred_crops_hide_the_mean_colour_only():
    params = sample_params(4, seed=6)
    crops = mouth_gan.mouth_crops(render(params), params)
    tinted = crops + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(mouth_gan.centred(tinted), mouth_gan.centred(crops), atol=1e-6)
    assert torch.allclose(mouth_gan.centred(crops).mean((2, 3)), torch.zeros(4, 3), atol=1e-6)
    assert not torch.allclose(mouth_gan.centred(crops), torch.zeros_like(crops))
    out = train_generator.build(dict(FEATURES, mouth_gan_centre=True)).step(0)
    assert float(out["mouth_g"]) > 0
