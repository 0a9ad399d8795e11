"""The CLIP trainer's edit-ranking term (zoo/synthface/edit_ranking.py): pairs, adversary, loss, one trainer step."""

import math

import pytest
import torch
import torch.nn.functional as F

from methods.losses import prompt_features, styleclip_clip_loss
from zoo.clip import register_model_config
from zoo.synthface import ATTRIBUTE_SPECS, edit_ranking, train_clip, training
from zoo.synthface.domains import DOMAINS
from zoo.synthface.latent_params import params_from_z
from zoo.synthface.render import render
from zoo.synthface.train_generator import CATEGORICAL, CATEGORICAL_SIZES, N_CONTINUOUS
from zoo.synthface.zero_shot import VALUE_PROMPTS


@pytest.fixture(scope="module")
def tiny_clip():
    """A one-layer CLIP architecture for trainer steps (the name of its registered config)."""
    return register_model_config("synthface-clip-rank-tiny", {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
        "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }, preprocess={"mean": [0.5] * 3, "std": [0.5] * 3})


@pytest.fixture(scope="module")
def world():
    return train_clip._committed_generator(), train_clip._committed_teacher()


def test_editable_attributes_leave_out_what_an_occluder_hides():
    values = {"hair_style": "bald", "eyewear": "sunglasses", "hat": "cap"}
    plain = {"hair_style": "short"}  # face 1: short hair, every other attribute at its first value
    labels = {a: torch.tensor([ATTRIBUTE_SPECS[a].values.index(values.get(a, ATTRIBUTE_SPECS[a].values[0])),
                               ATTRIBUTE_SPECS[a].values.index(plain.get(a, ATTRIBUTE_SPECS[a].values[0]))])
              for a in ATTRIBUTE_SPECS}
    hidden = set(ATTRIBUTE_SPECS) - set(edit_ranking.editable_attributes(labels, 0))
    assert hidden == {"hair_color", "eyes_closed", "hair_style"}
    assert set(edit_ranking.editable_attributes(labels, 1)) == set(ATTRIBUTE_SPECS)


def test_pairs_ask_for_a_value_the_source_lacks_and_the_truth_writes_it(world):
    generator, teacher = world
    g = torch.Generator().manual_seed(5)
    pairs = edit_ranking.sample_edit_pairs(generator, teacher, 12, g, p_template=0.0)
    replay = torch.Generator().manual_seed(5)
    labels = params_from_z(torch.randn(12, generator.style_dim, generator=replay)).labels()
    assert pairs.w_source.shape == pairs.w_truth.shape == (12, generator.n_latent, generator.style_dim)
    features = pairs.w_truth[:, 0] @ teacher.decode
    for i, (attribute, value) in enumerate(pairs.edits):
        assert pairs.texts[i] == VALUE_PROMPTS[attribute][value]
        index = ATTRIBUTE_SPECS[attribute].values.index(value)
        assert index != int(labels[attribute][i])
        assert attribute in edit_ranking.editable_attributes(labels, i)
        assert not torch.allclose(pairs.w_truth[i], pairs.w_source[i])
        assert torch.allclose(pairs.truth[i], generator(pairs.w_truth[i:i + 1], input_space="w+").clamp(-1, 1)[0],
                              atol=1e-4)
        if attribute in CATEGORICAL:  # the teacher reads the new value back from the true edit
            k = CATEGORICAL.index(attribute)
            start = N_CONTINUOUS + sum(CATEGORICAL_SIZES[:k])
            assert int(features[i, start:start + CATEGORICAL_SIZES[k]].argmax()) == index


def test_domain_pairs_ask_for_a_nada_prompt_and_the_truth_is_the_same_face_in_that_domain(world):
    generator, teacher = world
    pairs = edit_ranking.sample_edit_pairs(generator, teacher, 16, torch.Generator().manual_seed(2), 0.0,
                                           p_domain=0.5)
    replay = torch.Generator().manual_seed(2)
    z = torch.randn(16, generator.style_dim, generator=replay)
    domains = [(i, value) for i, (kind, value) in enumerate(pairs.edits) if kind == "domain"]
    assert 0 < len(domains) < 16
    for i, domain in domains:
        assert domain != "photo" and pairs.texts[i] == DOMAINS[domain].prompt
        assert torch.equal(pairs.w_truth[i], pairs.w_source[i])
        assert torch.allclose(pairs.truth[i], render(params_from_z(z[i:i + 1], domain=domain))[0])
    everything = edit_ranking.sample_edit_pairs(generator, teacher, 16, torch.Generator().manual_seed(2), 0.0,
                                                p_domain=1.0)
    assert {kind for kind, _ in everything.edits} == {"domain"}
    plain = edit_ranking.sample_edit_pairs(generator, teacher, 16, torch.Generator().manual_seed(2), 0.0)
    assert "domain" not in {kind for kind, _ in plain.edits}


def test_ranking_loss_is_the_cross_entropy_towards_the_true_edit():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(4, 16), dim=-1)
    noise = [F.normalize(torch.randn(4, 16), dim=-1) for _ in range(2)]
    scale = torch.tensor(10.0)

    def encode(x):
        return F.normalize(x, dim=-1)

    loss, right = edit_ranking.ranking_loss(encode, text, [text, *noise], scale)
    assert right == 1.0
    logits = scale * torch.stack([(text * t).sum(-1) for t in (text, *noise)], dim=1)
    assert torch.allclose(loss, F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    wrong, right = edit_ranking.ranking_loss(encode, text, [noise[0], text, noise[1]], scale)
    assert right == 0.0 and float(wrong) > float(loss)


def test_attack_is_styleclip_optimisation_and_leaves_the_clip_untouched(world):
    generator, teacher = world
    clip = train_clip.load()
    pairs = edit_ranking.sample_edit_pairs(generator, teacher, 2, torch.Generator().manual_seed(1), 0.0)
    w_adv = edit_ranking.attack(generator, clip, pairs, steps=5)
    text = prompt_features(clip, pairs.texts)
    with torch.no_grad():
        before = styleclip_clip_loss(clip, generator(pairs.w_source, input_space="w+"), text)
        after = styleclip_clip_loss(clip, generator(w_adv, input_space="w+"), text)
    assert bool((after < before).all())
    assert all(p.grad is None for p in clip.model.parameters())


def test_trainer_step_with_edit_ranking_logs_it_and_trains(tiny_clip):
    config = dict(train_clip.DEFAULTS, model=tiny_clip, batch_size=8, steps=2, warmup=1,
                  edit_rank_weight=2.0, edit_rank_pairs=2, edit_rank_attack_steps=2)
    training.seed_everything(0)
    trainable = train_clip.build(config)
    before = trainable.model.visual.proj.detach().clone()
    logs = trainable.step(0)
    assert math.isfinite(logs["loss"]) and math.isfinite(logs["edit_rank"])
    assert "edit_rank_acc" in logs  # its value: test_ranking_loss_is_the_cross_entropy_towards_the_true_edit
    assert not torch.equal(before, trainable.model.visual.proj)
    plain = train_clip.build(dict(config, edit_rank_weight=0.0))
    assert "edit_rank" not in plain.step(0)


def test_anchor_holds_embeddings_at_the_starting_network(tiny_clip):
    config = dict(train_clip.DEFAULTS, model=tiny_clip, batch_size=8, steps=3, warmup=1, lr=1e-2,
                  anchor_weight=5.0)
    training.seed_everything(0)
    trainable = train_clip.build(config)
    first = trainable.step(0)
    assert first["anchor"] == pytest.approx(0.0, abs=1e-5)  # the step starts from the copy itself
    later = trainable.step(1)
    assert later["anchor"] > 1e-4  # the first update moved the embeddings away from the copy
    assert "anchor" not in train_clip.build(dict(config, anchor_weight=0.0)).step(0)
