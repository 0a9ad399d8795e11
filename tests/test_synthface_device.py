"""The world's trainers on another device: `python -m zoo.synthface.train NETWORK --device cuda` trains the model
there while the data are drawn on the CPU (and rendered there too, unless render_device is "model"), so a GPU run
sees the same batches as a CPU run, up to the last float bits of GPU renders.
The CUDA tests run only where a GPU is present (e.g. the lent GPU machine); the argument check runs everywhere."""

import pytest
import torch

from zoo.synthface import (train, train_attributes, train_clip, train_encoder, train_generator, train_identity,
                           training)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = {
    "generator": (train_generator, dict(train_generator.DEFAULTS, batch=4, channels={"4": 16, "8": 16, "16": 16, "32": 8, "64": 8},
                                        style_dim=32, n_mlp=2, probe_pretrain_steps=2, probe_pretrain_batch=8,
                                        mapping_fit_steps=5, mapping_fit_batch=16)),
    "identity": (train_identity, dict(train_identity.DEFAULTS, batch=8, n_identities=16, widths=[8, 16, 16, 16],
                                      embed_dim=16, warmup=1)),
    "attributes": (train_attributes, dict(train_attributes.DEFAULTS, batch=8, widths=[8, 16, 16, 16], hidden=16,
                                          warmup=1)),
    "encoder": (train_encoder, dict(train_encoder.DEFAULTS, batch=4, warmup=1, hidden=32, widths=[8, 8, 8, 8, 8],
                                    id_weight=0.1)),  # against the committed generator and identity network
    "clip": (train_clip, dict(train_clip.DEFAULTS, batch_size=8, warmup=1, p_minimal_batch=0.5,
                              prompt_set_weight=1.0)),
    # the edit-ranking term runs StyleCLIP optimisation of the committed generator beside the CLIP, on its device
    "clip-edit-ranking": (train_clip, dict(train_clip.DEFAULTS, batch_size=8, warmup=1, edit_rank_weight=2.0,
                                           edit_rank_pairs=2, edit_rank_attack_steps=2, edit_rank_domain_share=0.5)),
}


def test_an_unavailable_device_is_refused_with_the_valid_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["identity", "--steps", "1", "--device", "tpu:7", "--no-export"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--device 'tpu:7' is not available here" in err and "valid: cpu" in err


@needs_cuda
@pytest.mark.parametrize("network", sorted(TINY))
def test_training_on_cuda_matches_the_cpu_and_returns_the_model_to_the_cpu(network, tmp_path):
    module, config = TINY[network]
    losses = {}
    for device in ("cpu", "cuda"):
        training.seed_everything(config["seed"])
        trainable = module.build(dict(config, steps=3))
        result = training.run_training(trainable, 3, tmp_path / device, checkpoint_every=1, log_every=1,
                                       device=device)
        assert result["finished"]
        assert training.device_of(trainable.model).type == "cpu"
        losses[device] = result["last"]["loss"]
    # same batches, same initial weights: only kernel-level float differences separate the two runs
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.05, abs=1e-3)


def test_an_unknown_render_device_is_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"render_device: unknown value 'gpu'; valid: cpu, model"):
        train_generator.build(dict(TINY["generator"][1], render_device="gpu"))


def test_rendering_ignores_the_callers_default_device():
    """The renderer puts its constants on the params' device through a device context of its own, so a caller's
    default device (here meta, where any stray tensor would fail) changes nothing, in every domain."""
    from zoo.synthface.domains import DOMAIN_NAMES
    from zoo.synthface.params import sample_params
    from zoo.synthface.render import render
    params = [sample_params(6, seed=11, domain=d) for d in DOMAIN_NAMES]
    expected = [render(p) for p in params]
    with torch.device("meta"):
        got = [render(p, device="cpu") for p in params]
    for d, a, b in zip(DOMAIN_NAMES, got, expected):
        assert a.device.type == "cpu" and torch.equal(a, b), d


@needs_cuda
def test_rendering_on_cuda_draws_what_the_cpu_draws():
    from zoo.synthface.domains import DOMAIN_NAMES
    from zoo.synthface.params import sample_params
    from zoo.synthface.render import render
    for d in DOMAIN_NAMES:
        p = sample_params(16, seed=12, domain=d)
        on_gpu = render(p, device="cuda")
        assert on_gpu.device.type == "cuda"
        assert (on_gpu.cpu() - render(p)).abs().max().item() < 1e-3, d


@needs_cuda
@pytest.mark.parametrize("network", ["generator", "encoder"])
def test_training_with_batches_rendered_on_cuda_runs_and_returns_to_the_cpu(network, tmp_path):
    module, config = TINY[network]
    trainable = module.build(dict(config, steps=2, render_device="model"))
    result = training.run_training(trainable, 2, tmp_path, checkpoint_every=1, log_every=1, device="cuda")
    assert result["finished"] and training.device_of(trainable.model).type == "cpu"
