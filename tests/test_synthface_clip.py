"""The synthetic world's two CLIPs: open_clip configs, trainers, pruned float16 export, loading, zero-shot gates."""

import math
import random

import open_clip
import pytest
import torch

from zoo.clip import ClipBackbone, load_clip, load_templates, register_model_config
from zoo.synthface import (ATTRIBUTE_SPECS, DOMAIN_NAMES, EDIT_PROMPTS, captions, sample_params, train_clip,
                           train_judge_clip, training, wrap_in_template, zero_shot)
from zoo.synthface.params import attribute_class

TINY = "synthface-clip-test-tiny"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
ARCHS = {"clip": "synthface-clip", "judge_clip": "synthface-judge-clip"}


def tiny_config(trainer, **overrides):
    cfg = dict(trainer.DEFAULTS)
    cfg.update({"model": TINY, "batch_size": 10, "steps": 20, "warmup": 1, "lr": 3e-3, **overrides})
    return cfg


@pytest.fixture(scope="module")
def tiny_arch():
    return register_model_config(TINY, TINY_CFG, preprocess={"mean": [0.5] * 3, "std": [0.5] * 3})


# ------------------------------------------------------------------------------------------------ configs
def test_configs_register_and_build_through_open_clip():
    names = train_clip.register_configs()
    assert set(ARCHS.values()) <= set(names)
    widths = {}
    for network, arch in ARCHS.items():
        assert arch in open_clip.list_models()
        cfg, pre = train_clip.read_config(arch)
        assert open_clip.get_model_config(arch) == cfg  # registered without the preprocess section
        assert cfg["vision_cfg"]["image_size"] == 64 and cfg["text_cfg"]["vocab_size"] == 49408
        assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3
        widths[network] = (cfg["vision_cfg"]["width"], cfg["text_cfg"]["width"])
        backbone = load_clip(arch, pretrained=None)
        assert isinstance(backbone, ClipBackbone)
        assert backbone.image_size == 64 and backbone.mean == (0.5,) * 3 and backbone.std == (0.5,) * 3
        assert backbone.embed_dim == cfg["embed_dim"]
        direct = open_clip.create_model(arch)  # the same open_clip path
        assert direct.state_dict().keys() == backbone.model.state_dict().keys()
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        assert torch.equal(backbone.preprocess(x), (((x + 1) / 2) - 0.5) / 0.5)  # renders reach the ViT as-is
    assert widths["clip"] != widths["judge_clip"]
    for arch in ARCHS.values():  # the patch-8 variants (train_clip.finer_patches) differ in the patch size only
        coarse, _ = train_clip.read_config(arch)
        fine, _ = train_clip.read_config(f"{arch}-p8")
        assert f"{arch}-p8" in names and fine["vision_cfg"].pop("patch_size") == 8
        coarse["vision_cfg"].pop("patch_size")
        assert fine == coarse
    assert train_judge_clip.DEFAULTS["seed"] != train_clip.DEFAULTS["seed"]


def test_world_texts_fit_context_and_use_only_kept_tokens():
    train_clip.register_configs()
    arch = ARCHS["clip"]
    tok = open_clip.get_tokenizer(arch)
    context = train_clip.read_config(arch)[0]["text_cfg"]["context_length"]
    ids = set(train_clip.used_token_ids(arch))
    assert len(ids) < 400  # a few hundred rows instead of 49408
    longest = max(load_templates(), key=len)
    p = sample_params(400, seed=5, domain=list(DOMAIN_NAMES))
    rng = random.Random(0)
    texts = [wrap_in_template(c, rng) for c in captions(p, seed=3)]
    texts += [wrap_in_template(c, template=longest) for c in captions(p, seed=4)]
    texts += [e.target for e in EDIT_PROMPTS] + [t.format(v) for t in load_templates()
                                                 for table in zero_shot.VALUE_PROMPTS.values() for v in table.values()]
    texts += list(zero_shot.DOMAIN_CLASS_PROMPTS.values())
    for text in texts:
        enc = tok.encode(text)
        assert len(enc) + 2 <= context, text
        assert set(enc) <= ids, (text, set(enc) - ids)


# ------------------------------------------------------------------------------------------------ trainers
@pytest.mark.parametrize("trainer", [train_clip, train_judge_clip], ids=["clip", "judge_clip"])
def test_trainer_steps_are_finite_and_fit_a_batch(trainer, tiny_arch):
    training.seed_everything(0)
    trainable = trainer.build(tiny_config(trainer))
    assert trainable.name == trainer.NAME
    assert trainable.config["model"] == TINY and trainable.config["seed"] == trainer.DEFAULTS["seed"]
    out = trainable.step(1)
    assert all(math.isfinite(v) for v in out.values())
    if trainer is train_clip:  # the judge runs the same step function
        losses = [trainable.step(0)["loss"] for _ in range(3)]  # step 0's batch again and again: it is learnt
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < losses[0]


def test_batches_are_deterministic_and_positives_match_labels():
    cfg = tiny_config(train_clip, batch_size=24)
    a_img, a_txt, a_pos = train_clip.make_batch(cfg, 7)
    b_img, b_txt, b_pos = train_clip.make_batch(cfg, 7)
    assert torch.equal(a_img, b_img) and a_txt == b_txt and torch.equal(a_pos, b_pos)
    assert a_img.shape == (24, 3, 64, 64) and a_pos.diagonal().all()
    assert train_clip.make_batch(cfg, 8)[1] != a_txt
    g = training.step_generator(cfg["seed"], 7)
    domains = ["photo"] * cfg["photo_weight"] + [d for d in DOMAIN_NAMES if d != "photo"]
    params = sample_params(24, generator=g, domain=domains)  # the same draw as make_batch's
    labels = params.labels()
    multi = [j for j in range(24) if a_pos[:, j].sum() > 1]
    assert multi  # prompt captions shared by several faces
    for j in multi:  # the positives of a prompt caption: every face with that (visible) value
        sets = [(labels[a] == labels[a][j]) & train_clip._visible(params, labels, a) for a in ATTRIBUTE_SPECS]
        sets.append(params.domain == params.domain[j])
        assert any(torch.equal(a_pos[:, j], s) for s in sets), a_txt[j]
    assert train_clip.lr_at({"lr": 1.0, "warmup": 10, "steps": 100, "min_lr_ratio": 0.0}, 99) < 1e-3


def test_contrastive_loss_multi_positive():
    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    eye = torch.eye(4, dtype=torch.bool)
    loss, acc = train_clip.contrastive_loss(img, img, torch.tensor(100.0), eye)
    assert loss < 0.05 and acc == 1
    ref = torch.nn.functional.cross_entropy(10 * img @ img.t(), torch.arange(4))
    loss10, _ = train_clip.contrastive_loss(img, img, torch.tensor(10.0), eye)
    assert torch.allclose(loss10, ref, atol=1e-6)  # one positive each: plain symmetric InfoNCE


# ------------------------------------------------------------------------------------------------ export / load
def test_init_from_exported_weights_continues_the_exported_network(tiny_arch, tmp_path):
    training.seed_everything(0)
    trainable = train_clip.build(tiny_config(train_clip))
    trainable.step(0)
    train_clip.export(trainable, weights_dir=tmp_path)
    training.seed_everything(1)  # another random init: only init_from can make the two agree
    resumed = train_clip.build(dict(tiny_config(train_clip), init_from=str(tmp_path)))
    exported = train_clip.load("clip", weights_dir=tmp_path).model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, exported[key].to(value.dtype)), key
    assert resumed.model.state_dict()["visual.proj"].dtype == torch.float32  # trains in float32
    resumed.step(1)


def test_export_checkpoint_writes_a_candidate_folder_beside_copies_of_the_committed(tiny_arch, tmp_path):
    """`python -m zoo.synthface.train clip --run-dir R --export-checkpoint DIR`: the checkpoint's network (built from
    the config it holds) exported into DIR, the other networks' files copied from the committed folder, none of the
    committed network's own (its zero-shot readings would be stale there)."""
    from bench.errors import CheckpointError
    from zoo.synthface.train import export_checkpoint, main

    committed = tmp_path / "committed"
    committed.mkdir()
    for name in ("generator.safetensors", "judge_clip.json", "clip.json", "clip.zero_shot.json"):
        (committed / name).write_text(name)
    training.seed_everything(0)
    trainable = train_clip.build(tiny_config(train_clip))
    training.run_training(trainable, 2, tmp_path / "run", checkpoint_every=1, log_every=1, threads=1)
    train_clip.export(trainable, weights_dir=tmp_path / "direct")
    assert export_checkpoint("clip", tmp_path / "run", tmp_path / "out", committed=committed) == 2
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == [
        "clip.json", "clip.safetensors", "generator.safetensors", "judge_clip.json"]
    assert (tmp_path / "out" / "generator.safetensors").read_text() == "generator.safetensors"
    direct, exported = (train_clip.load("clip", weights_dir=tmp_path / d).model.state_dict() for d in ("direct", "out"))
    for key, value in direct.items():
        assert torch.equal(value, exported[key]), key
    with pytest.raises(CheckpointError, match="no checkpoint .*judge_clip/last.pt"):
        export_checkpoint("judge_clip", tmp_path / "run", tmp_path / "out2", committed=committed)
    assert main(["clip", "--run-dir", str(tmp_path / "run"), "--export-checkpoint", str(tmp_path / "out3")]) == 0
    assert (tmp_path / "out3" / "clip.safetensors").read_bytes() == (tmp_path / "out" / "clip.safetensors").read_bytes()


def test_image_aux_heads_learn_train_only_and_resume(tiny_arch, tmp_path):
    config = tiny_config(train_clip, image_aux_heads=["smile"], image_aux_weight=1.0, steps=3)
    training.seed_everything(0)
    trainable = train_clip.build(config)
    aux = trainable.extra_state["image_aux"]
    assert list(aux) == ["smile"] and aux["smile"].out_features == 3
    logs = trainable.step(0)
    assert math.isfinite(logs["aux"]) and "aux_acc_smile" in logs  # its value: image_aux_loss, below
    # the head sees only the visible faces; its loss is the cross-entropy of its logits there
    img = torch.nn.functional.normalize(torch.randn(6, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    labels = {"smile": torch.tensor([0, 1, 2, 0, 1, 2])}
    visible = {"smile": torch.tensor([True, True, False, False, True, True])}
    loss, accs = train_clip.image_aux_loss(aux, img, labels, visible)
    m = visible["smile"]
    expected = torch.nn.functional.cross_entropy(aux["smile"](train_clip.AUX_SCALE * img[m]), labels["smile"][m])
    assert torch.allclose(loss, expected) and set(accs) == {"aux_acc_smile"}
    # not exported: the weights hold the CLIP only
    train_clip.export(trainable, weights_dir=tmp_path)
    stored, _ = training.load_weights("clip", tmp_path)
    assert not any("aux" in k or k.startswith("smile") for k in stored)
    # checkpointed with the run: a resumed run continues the same head
    training.seed_everything(0)
    full = train_clip.build(config)
    training.run_training(full, 3, tmp_path / "full", checkpoint_every=1, threads=1)
    training.seed_everything(0)
    part = train_clip.build(config)
    training.run_training(part, 2, tmp_path / "part", checkpoint_every=1, threads=1)
    training.seed_everything(5)
    resumed = train_clip.build(config)
    training.run_training(resumed, 3, tmp_path / "part", checkpoint_every=1, threads=1)
    for (k, a), b in zip(full.extra_state["image_aux"].state_dict().items(),
                         resumed.extra_state["image_aux"].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    with pytest.raises(ValueError, match="'smiles'.*valid: .*smile"):
        train_clip.build(dict(config, image_aux_heads=["smiles"]))


def test_image_aux_smile_regression_head(tiny_arch):
    config = tiny_config(train_clip, image_aux_smile_regression=2.0, steps=2)
    training.seed_everything(0)
    trainable = train_clip.build(config)
    aux = trainable.extra_state["image_aux"]
    assert list(aux) == ["smile_value"] and aux["smile_value"].out_features == 1  # no class head asked for
    batch = train_clip.make_labelled_batch(config, 0)
    edges = train_clip.ATTRIBUTE_SPECS["smile"].bins
    assert torch.equal(torch.bucketize(batch.smile, torch.tensor(edges)), batch.labels["smile"])  # value and bin agree
    logs = trainable.step(0)
    assert math.isfinite(logs["aux"]) and logs["aux_smile_l1"] > 0
    # the loss: the regression weight x smooth L1 (beta 0.1) of the head's output against the continuous value
    img = torch.nn.functional.normalize(torch.randn(4, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    smile = torch.tensor([-0.9, -0.2, 0.3, 0.8])
    loss, accs = train_clip.image_aux_loss(aux, img, {}, {}, smile, 2.0)
    value = aux["smile_value"](train_clip.AUX_SCALE * img).squeeze(-1)
    assert torch.allclose(loss, 2.0 * torch.nn.functional.smooth_l1_loss(value, smile, beta=0.1))
    assert accs["aux_smile_l1"] == pytest.approx(float((value - smile).abs().mean()), rel=1e-5)
    with pytest.raises(ValueError, match="continuous smile"):
        train_clip.image_aux_loss(aux, img, {}, {})


def test_export_load_round_trip_with_pruned_embedding(tiny_arch, tmp_path):
    training.seed_everything(0)
    trainable = train_clip.build(tiny_config(train_clip))
    trainable.step(0)
    path = train_clip.export(trainable, weights_dir=tmp_path)
    assert path == tmp_path / "clip.safetensors" and (tmp_path / "clip.json").is_file()
    stored, config = training.load_weights("clip", tmp_path)
    assert train_clip.EMBEDDING_KEY not in stored and config["model"] == TINY
    loaded = train_clip.load("clip", weights_dir=tmp_path)
    assert isinstance(loaded, ClipBackbone) and not any(p.requires_grad for p in loaded.parameters())
    trained = {k: v.detach().half().float() for k, v in trainable.model.state_dict().items()}
    got = loaded.model.state_dict()
    assert got.keys() == trained.keys()
    ids = torch.tensor(train_clip.used_token_ids(TINY))
    for key, value in trained.items():
        if key == train_clip.EMBEDDING_KEY:
            unused = torch.ones(value.shape[0], dtype=torch.bool)
            unused[ids] = False
            assert torch.equal(got[key][ids], value[ids])
            assert not got[key][unused].any()
        else:
            assert torch.equal(got[key], value), key
    # texts of the world's words embed exactly as in the trained model (fp16-rounded), whatever the unused rows hold
    ref = train_clip.build_backbone(TINY)
    ref.model.load_state_dict(trained)
    texts = ["a bad photo of a face with purple hair.", "a zombie face", "a person with no hat"]
    assert torch.equal(loaded.encode_text(texts), ref.encode_text(texts))


def test_load_without_weights_says_how_to_train(tmp_path):
    from bench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="zoo.synthface.train judge_clip"):
        train_judge_clip.load(weights_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ zero-shot
def test_value_prompts_cover_every_value_and_use_edit_prompts():
    for attr, spec in ATTRIBUTE_SPECS.items():
        assert list(zero_shot.VALUE_PROMPTS[attr]) == list(spec.values)
    for e in EDIT_PROMPTS:
        assert zero_shot.VALUE_PROMPTS[e.attribute][e.value] == e.target
    assert list(zero_shot.DOMAIN_CLASS_PROMPTS) == list(DOMAIN_NAMES)


def test_heldout_sets_are_balanced_and_visible():
    for attr, spec in ATTRIBUTE_SPECS.items():
        p = zero_shot.heldout_attribute_params(attr, 60)
        counts = torch.bincount(attribute_class(p, attr), minlength=len(spec.values))
        assert counts.max() - counts.min() <= 1, attr
    assert not (zero_shot.heldout_attribute_params("hair_color", 60).attrs["hair_style"] == 0).any()
    assert not (zero_shot.heldout_attribute_params("hair_style", 60).attrs["hat"] != 0).any()
    assert not (zero_shot.heldout_attribute_params("eyes_closed", 60).attrs["eyewear"] == 2).any()
    a = zero_shot.heldout_attribute_params("smile", 30)
    assert torch.equal(a.attrs["smile"], zero_shot.heldout_attribute_params("smile", 30).attrs["smile"])
    d = zero_shot.heldout_domain_params(16)
    assert torch.bincount(d.domain, minlength=8).tolist() == [2] * 8


def test_zero_shot_gates_structure(tiny_arch, tmp_path):
    training.seed_everything(0)
    trainable = train_clip.build(tiny_config(train_clip))
    train_clip.export(trainable, weights_dir=tmp_path)
    backbone = train_clip.load("clip", weights_dir=tmp_path)
    report = zero_shot.evaluate(backbone, n=9, domains=("photo", "zombie"), n_other=3, n_domain=8,
                                attributes=["hair_color", "eyewear"])
    assert set(report["attributes"]) == {"photo", "zombie"}
    assert sum(map(sum, report["attributes"]["photo"]["hair_color"]["confusion"])) == 9
    gates = zero_shot.gates_from_report(report, prefix="clip")
    assert [g["name"] for g in gates] == ["clip.zero_shot.hair_color", "clip.zero_shot.eyewear",
                                         "clip.zero_shot.domain"]
    for g in gates:
        assert set(g) == {"name", "value", "threshold", "passed"} and 0 <= g["value"] <= 1
        assert isinstance(g["passed"], bool) and g["passed"] == (g["value"] >= g["threshold"])
    assert [g["threshold"] for g in gates] == [0.9, 0.9, 0.95]
    assert "hair_color" in zero_shot.format_report(report)


# ------------------------------------------------------------------------------------------------ committed weights
@pytest.mark.parametrize("network", ["clip", "judge_clip"])
def test_committed_weights_zero_shot_sanity(network):
    path = training.WEIGHTS_DIR / f"{network}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} absent: train it with `python -m zoo.synthface.train {network}`")
    assert path.stat().st_size <= 6 * 2 ** 20
    backbone = train_clip.load(network)
    # what both committed CLIPs read reliably (their cards: domain and background >= 0.98 on 1,000 faces); the
    # small attributes (smile, facial hair, closed eyes, lipstick) are at chance and are not asserted here
    p = zero_shot.heldout_attribute_params("background", 64)
    emb = zero_shot.image_embeddings(backbone, p)
    pred = zero_shot.classify(backbone, emb, list(zero_shot.VALUE_PROMPTS["background"].values()))
    assert float((pred == p.attrs["background"]).float().mean()) >= 0.9
    d = zero_shot.heldout_domain_params(64)
    emb = zero_shot.image_embeddings(backbone, d)
    pred = zero_shot.classify(backbone, emb, [zero_shot.DOMAIN_CLASS_PROMPTS[n] for n in DOMAIN_NAMES])
    assert float((pred == d.domain).float().mean()) >= 0.9


def test_minimal_pair_batch_groups_differ_in_one_attribute_and_positives_follow_labels(monkeypatch):
    seen = {}
    real_render = train_clip.render

    def spy(p):
        seen["params"] = p
        return real_render(p)

    monkeypatch.setattr(train_clip, "render", spy)
    cfg = dict(train_clip.DEFAULTS, batch_size=16, minimal_group=4, p_minimal_batch=1.0, p_template=0.0)
    images, texts, pos = train_clip.make_batch(cfg, 3)
    p = seen["params"]
    labels = p.labels()
    assert images.shape == (16, 3, 64, 64) and len(texts) == 16 and pos.diagonal().all()
    prompt_of = {(a, v): t for a, table in zero_shot.VALUE_PROMPTS.items() for v, t in table.items()}
    for j in range(4):
        group = slice(4 * j, 4 * j + 4)
        assert torch.equal(p.identity[group], p.identity[4 * j].expand(4, -1))
        assert (p.domain[group] == p.domain[4 * j]).all()
        (attr, value), = [k for k, t in prompt_of.items() if t == texts[4 * j]]
        for other in ATTRIBUTE_SPECS:
            if other not in (attr, "hair_style", "hat", "eyewear"):  # the occluder fixes may touch these
                assert (p.attrs[other][group] == p.attrs[other][4 * j]).all(), (attr, other)
        i = 4 * j
        v = ATTRIBUTE_SPECS[attr].values.index(value)
        assert int(labels[attr][i]) == v
        assert bool(pos[i, i]) and not any(bool(pos[k, i]) for k in range(16) if labels[attr][k] != v)


def test_minimal_attributes_focus_the_groups_and_reject_unknown_names():
    focus = ["smile", "lipstick"]
    prompts = {t: a for a, table in zero_shot.VALUE_PROMPTS.items() for t in table.values()}
    cfg = dict(train_clip.DEFAULTS, batch_size=32, minimal_group=4, p_minimal_batch=1.0, p_template=0.0,
               minimal_attributes=focus)
    varied = {prompts[t] for step in range(3) for t in train_clip.make_batch(cfg, step)[1]}
    assert varied == set(focus)
    with pytest.raises(ValueError, match="'lipstik'.*valid: .*lipstick"):
        train_clip.make_batch(dict(cfg, minimal_attributes=["lipstik"]), 0)


def test_generator_fraction_draws_the_last_faces_with_the_generator_and_their_latents_labels():
    from zoo.synthface.latent_params import params_from_z
    from zoo.synthface.render import render
    cfg = dict(train_clip.DEFAULTS, batch_size=16, p_hard_batch=0.0, p_minimal_batch=0.0, generator_fraction=0.25)
    plain = train_clip.make_labelled_batch(dict(cfg, generator_fraction=0.0), 0)
    mixed = train_clip.make_labelled_batch(cfg, 0)
    assert torch.equal(mixed.images[:12], plain.images[:12])
    g = training.step_generator(int(cfg["seed"]), 0)  # replay the draws: sample_params, text seed, then z
    sample_params(16, generator=g, domain=["photo"] * int(cfg["photo_weight"]) +
                  [d for d in DOMAIN_NAMES if d != "photo"])
    torch.randint(2 ** 31 - 1, (1,), generator=g)
    z = torch.randn(4, 128, generator=g)
    truth = params_from_z(z)
    for name, value in truth.labels().items():
        assert torch.equal(mixed.labels[name][12:], value), name
    drawn = mixed.images[12:]
    assert torch.allclose(drawn, train_clip.generator_images(z))
    assert float((drawn - render(truth)).abs().mean()) < 0.15  # the generator's drawing of those faces
    with pytest.raises(ValueError, match="generator_fraction must be in"):
        train_clip.make_labelled_batch(dict(cfg, generator_fraction=2.0), 0)


def test_augment_shifts_each_image_within_the_bound_and_adds_noise():
    images = torch.randn(6, 3, 16, 16)
    rng = torch.Generator().manual_seed(0)
    assert train_clip.augment(images, 0, 0.0, rng) is images
    shifted = train_clip.augment(images, 2, 0.0, rng)
    for k in range(6):  # the interior of each image is the original moved by at most 2 pixels
        found = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)
                 if torch.equal(shifted[k, :, 4:12, 4:12], images[k, :, 4 - dy:12 - dy, 4 - dx:12 - dx])]
        assert found, k
    noisy = train_clip.augment(images, 0, 0.1, rng)
    assert abs(float((noisy - images).std()) - 0.1) < 0.01
    with pytest.raises(ValueError, match="must be >= 0"):
        train_clip.augment(images, -1, 0.0, rng)


def test_prompt_set_loss_prefers_the_right_value_and_skips_hidden_attributes():
    rng = random.Random(0)
    texts, keys = train_clip.prompt_set_texts(rng, p_template=0.0)
    assert len(texts) == sum(len(s.values) for s in ATTRIBUTE_SPECS.values()) + len(DOMAIN_NAMES)
    emb = torch.nn.functional.normalize(torch.randn(len(texts), 64, generator=torch.Generator().manual_seed(0)), dim=-1)
    n = 6
    labels = {a: torch.randint(len(s.values), (n,), generator=torch.Generator().manual_seed(1))
              for a, s in ATTRIBUTE_SPECS.items()}
    labels["domain"] = torch.randint(len(DOMAIN_NAMES), (n,), generator=torch.Generator().manual_seed(2))
    visible = {a: torch.ones(n, dtype=torch.bool) for a in ATTRIBUTE_SPECS}
    index = {k: j for j, k in enumerate(keys)}
    # images pointing at the sum of their own values' prompt embeddings score a lower loss than random images
    aligned = torch.nn.functional.normalize(torch.stack([
        sum(emb[index[(a, int(labels[a][i]))]] for a in list(ATTRIBUTE_SPECS) + ["domain"]) for i in range(n)]), dim=-1)
    rand = torch.nn.functional.normalize(torch.randn(n, 64, generator=torch.Generator().manual_seed(3)), dim=-1)
    scale = torch.tensor(20.0)
    good = train_clip.prompt_set_loss(aligned, emb, keys, scale, labels, visible)
    bad = train_clip.prompt_set_loss(rand, emb, keys, scale, labels, visible)
    assert good < bad
    # a hidden attribute does not contribute: changing its labels changes nothing
    hidden = dict(visible, hair_color=torch.zeros(n, dtype=torch.bool))
    shuffled = dict(labels, hair_color=(labels["hair_color"] + 1) % len(ATTRIBUTE_SPECS["hair_color"].values))
    assert torch.allclose(train_clip.prompt_set_loss(aligned, emb, keys, scale, labels, hidden),
                          train_clip.prompt_set_loss(aligned, emb, keys, scale, shuffled, hidden))
    # per-attribute weights: weighting one term by w adds (w - 1) x that term / number of terms
    smile_idx = [j for j, (a, _) in enumerate(keys) if a == "smile"]
    smile_term = torch.nn.functional.cross_entropy(scale * rand @ emb[smile_idx].t(), labels["smile"])
    terms = len(ATTRIBUTE_SPECS) + 1
    weighted = train_clip.prompt_set_loss(rand, emb, keys, scale, labels, visible, {"smile": 10.0})
    assert torch.allclose(weighted, bad + 9.0 * smile_term / terms, atol=1e-5)
    with pytest.raises(ValueError, match="'smiling'.*valid: .*smile"):
        train_clip.prompt_set_loss(rand, emb, keys, scale, labels, visible, {"smiling": 2.0})


def test_restarted_schedule_warms_up_and_decays_from_schedule_start():
    cfg = dict(train_clip.DEFAULTS, lr=1e-3, warmup=10, steps=1100, schedule_start=100, min_lr_ratio=0.02)
    assert math.isclose(train_clip.lr_at(cfg, 100), 1e-4)
    assert math.isclose(train_clip.lr_at(cfg, 109), 1e-3)
    assert math.isclose(train_clip.lr_at(cfg, 1100), 2e-5)


TINY_P8 = "synthface-clip-test-tiny-p8"


def test_finer_patches_carry_a_trained_clip_to_patch_8(tiny_arch, tmp_path):
    cfg = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "patch_size": 8}}
    register_model_config(TINY_P8, cfg, preprocess={"mean": [0.5] * 3, "std": [0.5] * 3})
    training.seed_everything(0)
    coarse = train_clip.build(tiny_config(train_clip))
    coarse.step(0)
    train_clip.export(coarse, weights_dir=tmp_path)
    exported = train_clip.load("clip", weights_dir=tmp_path).model
    fine = train_clip.build(tiny_config(train_clip, model=TINY_P8, init_from=str(tmp_path))).model
    # the patch embedding is exactly the old one on a 2x nearest-upsampled image
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(fine.visual.conv1(x), exported.visual.conv1.float()(up), atol=1e-5)
    assert fine.visual.positional_embedding.shape == (1 + 8 * 8, 32)  # 4 x 4 grid resized to 8 x 8
    assert torch.equal(fine.visual.positional_embedding[0], exported.visual.positional_embedding[0].float())
    # everything else (both towers' transformers, the text tower) carries over unchanged
    carried = {k: v for k, v in exported.state_dict().items()
               if k not in ("visual.conv1.weight", "visual.positional_embedding")}
    for key, value in carried.items():
        assert torch.equal(fine.state_dict()[key], value.to(torch.float32)), key
    # the same patch size: nothing to do; a patch that does not divide the old one: a clear error
    state = exported.state_dict()
    assert train_clip.finer_patches(state, exported) is state
    odd = {**state, "visual.conv1.weight": torch.zeros(32, 3, 12, 12)}
    with pytest.raises(ValueError, match="8 must divide 12"):
        train_clip.finer_patches(odd, fine)


def test_adversarial_images_stay_in_the_ball_raise_the_loss_and_train(tiny_arch):
    torch.manual_seed(0)
    target = torch.randn(6, 8)
    proj = torch.randn(3 * 64 * 64, 8) / 64

    def encode(images):
        return images.flatten(1) @ proj

    def loss_of(emb):  # a loss the clean images do well on
        return (emb - target).pow(2).sum()

    images = (torch.rand(6, 3, 64, 64) * 2 - 1).clamp(-0.98, 0.98)
    eps = 0.03
    moved = train_clip.adversarial_images(encode, loss_of, images, eps, 4, torch.Generator().manual_seed(1))
    assert moved.shape == (4, 3, 64, 64) and not moved.requires_grad
    assert (moved - images[:4]).abs().max() <= eps + 1e-6 and moved.abs().max() <= 1
    attacked = torch.cat([moved, images[4:]])
    assert loss_of(encode(attacked)) > loss_of(encode(images))
    # a trainer step on half-adversarial batches stays finite and moves the model
    config = tiny_config(train_clip, adversarial_eps=eps, adversarial_fraction=0.5, steps=2)
    training.seed_everything(0)
    trainable = train_clip.build(config)
    before = trainable.model.visual.proj.detach().clone()
    logs = trainable.step(0)
    assert math.isfinite(logs["loss"]) and not torch.equal(before, trainable.model.visual.proj)
