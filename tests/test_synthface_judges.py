"""The synthetic world's identity network and attribute judge: trainers, export round trips, the insightface ONNX
form, and (when the committed weights exist) a small accuracy sanity check on held-out renders."""

import argparse
import math

import pytest
import torch

from zoo.identity import IdentityLoss, load_onnx_recognizer
from zoo.synthface import ATTRIBUTES, DOMAIN_NAMES, render, sample_params, training
from zoo.synthface.params import ATTRIBUTE_SPECS
from zoo.synthface import train_attributes, train_identity

TINY_IDENTITY = dict(train_identity.DEFAULTS, batch=8, n_identities=16, widths=[8, 16, 16, 16], embed_dim=16,
                     steps=3, warmup=1)
TINY_ATTRIBUTES = dict(train_attributes.DEFAULTS, batch=8, widths=[8, 16, 16, 16], hidden=16, steps=3, warmup=1)
COMMITTED = training.WEIGHTS_DIR


def _train(module, config, run_dir, steps):
    training.seed_everything(config["seed"])
    trainable = module.build(config)
    result = training.run_training(trainable, steps, run_dir, checkpoint_every=1, log_every=1, threads=1)
    return trainable, result


@pytest.mark.parametrize("module,config", [(train_identity, TINY_IDENTITY), (train_attributes, TINY_ATTRIBUTES)],
                         ids=["identity", "attributes"])
def test_trainer_steps_finite_and_resume_deterministic(module, config, tmp_path):
    full, result = _train(module, config, tmp_path / "full", 3)
    assert result["finished"] and result["steps"] == 3
    assert math.isfinite(result["last"]["loss"])
    _train(module, config, tmp_path / "resumed", 2)
    resumed, result = _train(module, config, tmp_path / "resumed", 3)  # picks up the step-2 checkpoint
    assert result["start"] == 2 and result["steps"] == 3  # a fresh 3-step run would give the same weights
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def one_step_and_export(trainer, config, out):
    """Build a trainer's network, take one training step, export it to `out`; returns the trainable."""
    training.seed_everything(0)
    trainable = trainer.build(config)
    trainable.model.train()
    trainable.step(0)
    trainable.model.eval()
    trainer.export(trainable, out)
    return trainable


@pytest.fixture(scope="module")
def tiny_identity(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    return one_step_and_export(train_identity, TINY_IDENTITY, out), out


def test_identity_export_round_trip(tiny_identity):
    trainable, out = tiny_identity
    net = train_identity.load_identity(weights_dir=out)
    source = trainable.model.net.state_dict()
    for k, v in net.state_dict().items():  # float16 storage: exactly the float16-rounded trained values
        expected = source[k].half().float() if source[k].is_floating_point() else source[k]
        assert torch.equal(v, expected), k
    images = render(sample_params(6, seed=3, domain=list(DOMAIN_NAMES)))
    emb = net(images)
    assert emb.shape == (6, TINY_IDENTITY["embed_dim"])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(6), atol=1e-5)
    loss = IdentityLoss(net, crop=None)
    assert loss(images, images).abs().item() < 1e-5
    edited = images.clone().requires_grad_(True)
    loss(edited, images.flip(0)).backward()
    assert edited.grad is not None and torch.isfinite(edited.grad).all()


def test_identity_continues_an_export_with_warm_centres_and_read_out(tiny_identity):
    _, out = tiny_identity
    config = dict(TINY_IDENTITY, init_from=str(out))
    model = train_identity.build(config).model
    exported = train_identity.load_identity(weights_dir=out).state_dict()
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, exported[k]), k
    centres = model.arc.weight
    assert torch.allclose(centres.norm(dim=-1), torch.full((16,), TINY_IDENTITY["embed_dim"] ** 0.5), atol=1e-4)
    with pytest.raises(ValueError, match="does not match this config"):
        train_identity.build(dict(config, embed_dim=8))


def test_warm_start_heads_are_the_mean_embedding_and_the_least_squares_read_out(monkeypatch):
    from zoo.synthface.params import N_ID
    config = dict(TINY_IDENTITY)
    model = train_identity._Training(config)
    mix = torch.randn(N_ID, config["embed_dim"], generator=torch.Generator().manual_seed(0))

    class Linear(torch.nn.Module):  # an "embedding" that is a fixed linear map of the person's parameters
        def features(self, images):
            return images[:, :, 0, 0] @ mix

    model.net = Linear()
    monkeypatch.setattr(train_identity, "render", lambda params: params.identity[:, :, None, None].clone())
    people = train_identity.training_identities(config)
    train_identity.warm_start_heads(model, people, config, renders_per_person=3)
    expected = torch.nn.functional.normalize(people @ mix, dim=-1) * config["embed_dim"] ** 0.5
    assert torch.allclose(model.arc.weight, expected, atol=1e-5)
    with torch.no_grad():
        fitted = model.aux(people @ mix)
    assert torch.allclose(fitted, (people - 0.5) * math.sqrt(12), atol=1e-3)


def test_identity_onnx_loads_in_insightface_and_agrees(tiny_identity):
    _, out = tiny_identity
    recognizer = load_onnx_recognizer(out / "identity.onnx")
    assert recognizer.recognizer.taskname == "recognition"
    assert recognizer.input_hw == (TINY_IDENTITY["onnx_size"],) * 2
    assert (recognizer.input_mean, recognizer.input_std) == (127.5, 127.5)  # the graph sees the [-1, 1] image
    net = train_identity.load_identity(weights_dir=out)
    images = render(sample_params(8, seed=4, domain=list(DOMAIN_NAMES)))
    with torch.no_grad():
        cos = (recognizer.embed(images) * net(images)).sum(-1)
    assert cos.min().item() >= 0.999


def test_verification_pairs_change_two_attributes():
    from zoo.synthface import attribute_class

    a, b, same = train_identity.verification_pairs(40, seed=1)
    assert same.sum().item() == 20
    changed = sum((attribute_class(a, k) != attribute_class(b, k)).long() for k in ATTRIBUTES)
    assert (changed >= 2).all()
    assert torch.equal(a.identity[same], b.identity[same])
    assert not torch.isclose(a.identity[~same], b.identity[~same]).all(1).any()


def test_attribute_judge_heads_and_round_trip(tmp_path):
    trainable = one_step_and_export(train_attributes, TINY_ATTRIBUTES, tmp_path)
    judge = train_attributes.load_attribute_judge(weights_dir=tmp_path)
    images = render(sample_params(5, seed=5, domain=list(DOMAIN_NAMES)))
    logits, pred = judge.logits(images), judge.predict(images)
    assert set(logits) == set(pred) == set(ATTRIBUTES) | {"domain"}
    for name, values in {**ATTRIBUTES, "domain": DOMAIN_NAMES}.items():
        assert logits[name].shape == (5, len(values)), name
        assert pred[name].dtype == torch.long and pred[name].shape == (5,)
        assert judge.classes[name] == tuple(values)
    with torch.no_grad():
        reference = trainable.model.half().float().logits(images)
    for name in logits:
        assert torch.equal(logits[name], reference[name]), name


def test_smile_logits_pick_exactly_the_caption_bin_of_the_value():
    lo, hi = ATTRIBUTE_SPECS["smile"].bins
    values = torch.tensor([-1.0, lo - 1e-3, lo + 1e-3, 0.0, hi - 1e-3, hi + 1e-3, 1.0])
    assert train_attributes.smile_logits(values).argmax(-1).tolist() == [0, 0, 1, 1, 1, 2, 2]
    p = sample_params(200, seed=3)
    assert torch.equal(train_attributes.smile_logits(p.attrs["smile"]).argmax(-1), p.labels()["smile"])


def test_smile_value_head_decides_smile_round_trips_and_continues_the_committed_judge(tmp_path):
    config = dict(TINY_ATTRIBUTES, smile_regression_weight=1.0)
    trainable = one_step_and_export(train_attributes, config, tmp_path / "first")
    judge = train_attributes.load_attribute_judge(weights_dir=tmp_path / "first")
    assert judge.smile_value is not None
    images = render(sample_params(5, seed=5))
    with torch.no_grad():
        _, value = judge.outputs(images)
        reference = trainable.model.half().float().logits(images)
    assert torch.equal(judge.logits(images)["smile"], train_attributes.smile_logits(value))
    assert torch.equal(judge.logits(images)["smile"], reference["smile"])
    # init_from: a judge without the value head continues with a new one; every other weight is copied
    plain = one_step_and_export(train_attributes, TINY_ATTRIBUTES, tmp_path / "plain")
    continued = train_attributes.build(dict(config, init_from=str(tmp_path / "plain")))
    exported = train_attributes.load_attribute_judge(weights_dir=tmp_path / "plain").state_dict()
    for k, v in continued.model.state_dict().items():
        if not k.startswith("smile_value."):
            assert torch.equal(v, exported[k].to(v.dtype)), k
    assert math.isfinite(continued.step(0)["loss"]) and plain.model.smile_value is None
    with pytest.raises(ValueError, match="does not match"):
        train_attributes.build(dict(TINY_ATTRIBUTES, hidden=32, init_from=str(tmp_path / "plain")))


def test_near_edges_redraws_only_the_requested_share_next_to_a_smile_bin_edge():
    g = torch.Generator().manual_seed(0)
    params = sample_params(200, seed=1)
    before = params.clone()
    train_attributes.near_edges(params, 0.25, g)
    smile = params.attrs["smile"]
    edge = torch.stack([(smile - b).abs() for b in ATTRIBUTE_SPECS["smile"].bins]).min(0).values
    assert bool((edge[:50] <= train_attributes.SMILE_CLEAR_MARGIN).all())
    assert torch.equal(smile[50:], before.attrs["smile"][50:])
    assert {int(c) for c in params.labels()["smile"][:50]} == {0, 1, 2}  # both sides of both edges
    for k, v in params.attrs.items():
        if k != "smile":
            assert torch.equal(v, before.attrs[k]), k
    train_attributes.near_edges(params, 0.0, g)
    with pytest.raises(ValueError, match="smile_edge_fraction must be in"):
        train_attributes.near_edges(params, 1.5, g)


def test_blur_some_softens_only_the_last_share_of_the_batch():
    images = render(sample_params(8, seed=2))
    out = train_attributes.blur_some(images, 0.25, 1.2, torch.Generator().manual_seed(0))
    assert torch.equal(out[:6], images[:6])
    for i in (6, 7):  # blurred: less high-frequency energy, same mean colour (up to the border)
        assert out[i].diff(dim=-1).abs().mean() < 0.8 * images[i].diff(dim=-1).abs().mean()
        assert torch.allclose(out[i].mean((1, 2)), images[i].mean((1, 2)), atol=0.02)
    assert train_attributes.blur_some(images, 0.0, 1.2, torch.Generator()) is images
    with pytest.raises(ValueError, match="blur_fraction must be in"):
        train_attributes.blur_some(images, -0.1, 1.2, torch.Generator())


def test_hair_colour_masked_in_colourless_domains():
    logits = {k: torch.zeros(2, len(v)) for k, v in {**ATTRIBUTES, "domain": DOMAIN_NAMES}.items()}
    labels = {k: torch.zeros(2, dtype=torch.long) for k in logits}
    labels["domain"] = torch.tensor([DOMAIN_NAMES.index(d) for d in train_attributes.COLOURLESS_DOMAINS])
    _, accs = train_attributes.judge_loss(logits, labels)
    assert "hair_color" not in accs and "smile" in accs


def test_head_weights_scale_only_their_head_and_reject_unknown_heads():
    g = torch.Generator().manual_seed(0)
    logits = {k: torch.randn(5, len(v), generator=g) for k, v in {**ATTRIBUTES, "domain": DOMAIN_NAMES}.items()}
    labels = {k: torch.randint(v.shape[1], (5,), generator=g) for k, v in logits.items()}
    labels["domain"] = torch.zeros(5, dtype=torch.long)  # photo: every head counts
    plain, _ = train_attributes.judge_loss(logits, labels)
    smile = torch.nn.functional.cross_entropy(logits["smile"], labels["smile"])
    weighted, _ = train_attributes.judge_loss(logits, labels, {"smile": 3.0})
    assert float(weighted - plain) == pytest.approx(2 * float(smile), rel=1e-5)
    with pytest.raises(ValueError, match="'smiles'.*valid: .*smile"):
        train_attributes.judge_loss(logits, labels, {"smiles": 2.0})


def test_hair_colour_invisible_exactly_when_bald_and_shaven():
    from zoo.synthface import with_attribute

    params = sample_params(24, seed=6, hair_style="bald")
    params.attrs["facial_hair"] = torch.arange(24) % 3  # none, beard, moustache
    visible = train_attributes.hair_colour_visible(params)
    assert visible.tolist() == [i % 3 != 0 for i in range(24)]
    blue = render(with_attribute(params, "hair_color", "blue"))
    brown = render(with_attribute(params, "hair_color", "brown"))
    changed = (blue - brown).abs().amax(dim=(1, 2, 3)) > 0
    assert changed.tolist() == visible.tolist()


# ---------------------------------------------------------------------------------------------- committed weights
def _committed(name):
    if not (COMMITTED / f"{name}.safetensors").exists():
        pytest.skip(f"no committed {name} weights in {COMMITTED} (train with `python -m zoo.synthface.train {name}`)")


def test_committed_identity_separates_held_out_people():
    _committed("identity")
    net = train_identity.load_identity()
    a, b, same = train_identity.verification_pairs(64, seed=train_identity.EVAL_TEST_SEED + 100, domains="photo")
    cos = train_identity.pair_cosines(net, a, b)
    assert cos[same].mean() > cos[~same].mean() + 0.3
    assert train_identity.best_threshold(cos, same)[1] >= 0.85
    if (COMMITTED / "identity.onnx").exists():
        recognizer = load_onnx_recognizer(COMMITTED / "identity.onnx")
        images = render(a[:16])
        with torch.no_grad():
            assert (recognizer.embed(images) * net(images)).sum(-1).min().item() >= 0.999


def test_committed_attribute_judge_on_held_out_renders():
    _committed("attributes")
    judge = train_attributes.load_attribute_judge()
    hits = train_attributes.accuracies(judge, sample_params(64, seed=train_attributes.EVAL_PHOTO_SEED + 100))
    for name in ATTRIBUTES:
        assert hits[name].float().mean().item() >= 0.85, name
    hits = train_attributes.accuracies(judge, sample_params(64, seed=train_attributes.EVAL_DOMAINS_SEED + 100,
                                                            domain=list(DOMAIN_NAMES)))
    assert hits["domain"].float().mean().item() >= 0.85


def test_model_card_rewrite_keeps_the_hand_written_sections(tmp_path):
    gate = {"name": "g", "value": 0.5, "threshold": 0.9, "passed": False}
    training.write_model_card("net", "Summary one.", {"steps": 10}, [gate], cards_dir=tmp_path)
    path = tmp_path / "net.md"
    path.write_text(path.read_text() + "\n## Training history\n\nLeg 1: 0-10.\n\n## Diagnostics\n\nA note.\n")
    training.write_model_card("net", "Summary two.", {"steps": 20}, [dict(gate, value=0.95, passed=True)],
                              cards_dir=tmp_path)
    text = path.read_text()
    assert "Summary two." in text and "Summary one." not in text
    assert "| steps | 20 |" in text and "| steps | 10 |" not in text
    assert "| g | 0.9500 | 0.9 | True |" in text and "0.5000" not in text and text.count("## Gates") == 1
    assert text.index("## Gates") < text.index("## Training history") < text.index("## Diagnostics")
    assert "Leg 1: 0-10." in text and "A note." in text


def test_card_facts_record_the_command_as_typed_and_label_a_resumed_leg():
    from zoo.synthface import train
    argv = ["clip", "--steps", "300", "--set", 'minimal_attributes=["smile"]', "lr=0.0003"]
    args = argparse.Namespace(device="cpu")
    fresh = train.card_facts(args, argv, {"lr": 3e-4}, {"start": 0, "steps": 300, "elapsed_s": 12.3})
    assert fresh["command"] == "python -m zoo.synthface.train clip --steps 300 --set " \
                               "'minimal_attributes=[\"smile\"]' lr=0.0003"
    assert fresh["config"] == '{"lr": 0.0003}' and fresh["steps"] == 300 and fresh["wall time (s)"] == "12"
    resumed = train.card_facts(args, argv, {"lr": 3e-4}, {"start": 200, "steps": 300, "elapsed_s": 12.3})
    assert resumed["command (last leg: steps 200-300; earlier legs in the history below)"] == fresh["command"]
    assert resumed["config (last leg)"] == fresh["config"] and "command" not in resumed
