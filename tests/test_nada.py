"""StyleGAN-NADA (methods/nada.py, methods/nada_layers.py) on tiny random networks."""

import pytest
import torch

from bench.backbone_set import BackboneSet, Weighted
from bench.suite import Edit
from methods.base import SourceBatch
from methods.losses import clip_networks
from methods.nada import StyleGANNada, directional_loss, image_direction
from methods.nada_layers import (candidate_modules, modules_for_w_indices, phase_modules, set_trainable,
                                 top_w_indices, w_plus_change)
from zoo.stylegan2.checkpoint import generator_from_state_dict, load_generator, random_rosinality_state_dict
from zoo.stylegan2.generator import Generator

EDIT = Edit(name="zombie", target="a zombie face", neutral="a realistic face")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions gain nothing from a second thread, and on a shared, loaded machine two threads wait for
    each other (measured: 0.5 s against 12 ms per 32 px forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tiny_world):
    from zoo.clip import load_clip

    generator = load_generator(tiny_world["generator"])  # 32 px: n_latent 8, convs.0-5
    return BackboneSet({"generator": generator, "clip": load_clip(tiny_world["clip"])})


def small(**params):
    base = {"iterations": 2, "auto_layer_batch": 2, "source_image_count": 4, "target_image_count": 4,
            "mapper_iterations": 2}
    return StyleGANNada(**{**base, **params})


def states(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed_modules(before, after):
    """Top-level module names (input, conv1, convs.3, to_rgbs.1, style.2, noises) whose tensors differ."""
    names = set()
    for key in before:
        if not torch.equal(before[key], after[key]):
            parts = key.split(".")
            names.add(".".join(parts[:2]) if parts[0] in ("convs", "to_rgbs", "style") else parts[0])
    return names


# ------------------------------------------------------------------------------------------------- directions
class FakeClip:
    """Hand-made embeddings: one fixed embedding per image batch row."""

    def encode_images(self, images, **_):
        return torch.nn.functional.normalize(images.flatten(1), dim=-1)


def test_text_direction_uses_unrenormalised_template_means(tiny_world, monkeypatch):
    """NADA's ΔT goes through the shared `ClipBackbone.text_direction` with renormalize=False: means of unequal
    norms are differenced as they are (no re-normalisation first)."""
    from zoo.clip import load_clip
    clip = load_clip(tiny_world["clip"])
    means, asked = {"src": torch.tensor([1.0, 0.0, 0.0]), "tgt": torch.tensor([0.0, 0.5, 0.0])}, []

    def template_embedding(texts, templates=None, renormalize=True, **_):
        asked.append(renormalize)
        return torch.stack([means[t] for t in texts])
    monkeypatch.setattr(clip, "template_embedding", template_embedding)
    edit = Edit(name="x", target="tgt", neutral="src")
    (direction,) = small(guidance="text")._directions([(clip, 1.0)], edit, None)
    assert asked == [False]
    expected = torch.tensor([-1.0, 0.5, 0.0]) / torch.tensor([-1.0, 0.5, 0.0]).norm()
    assert torch.allclose(direction, expected)
    from bench.errors import BenchError
    means["same"] = means["src"]
    with pytest.raises(BenchError, match="text direction 'src' -> 'same' is zero"):
        small()._directions([(clip, 1.0)], Edit(name="x", target="same", neutral="src"), None)


def test_image_direction_is_difference_of_mean_embeddings():
    clip = FakeClip()
    style = torch.tensor([[0.0, 2.0], [0.0, 1.0]])  # both embed to (0, 1)
    sources = torch.tensor([[3.0, 0.0], [1.0, 0.0]])  # both embed to (1, 0)
    assert torch.allclose(image_direction(clip, style, sources), torch.tensor([-1.0, 1.0]) / 2 ** 0.5)


def test_directional_loss_values():
    direction = torch.tensor([0.0, 1.0])
    frozen = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    train = torch.tensor([[1.0, 1.0], [1.0, -1.0], [2.0, 0.0]])  # ΔI along, against, across ΔT
    assert torch.allclose(directional_loss(train, frozen, direction), torch.tensor([0.0, 2.0, 1.0]))


def test_several_clips_are_weighted(world):
    single = clip_networks(world)
    assert len(single) == 1 and single[0][1] == 1.0
    both = BackboneSet({"clip": [Weighted("a", 1.0), Weighted("b", 0.5)]})
    assert clip_networks(both) == [("a", 1.0), ("b", 0.5)]


def test_losses_sum_over_clips_with_their_weights(world):
    clip, g = world["clip"], world["generator"]
    w = g.mapping(torch.randn(2, g.style_dim)).detach()
    with torch.no_grad():
        images, frozen_images = g(w) + 0.1 * torch.randn(2, 3, 32, 32), g(w)
    direction = clip.text_direction(EDIT.neutral, EDIT.target, renormalize=False)
    target = clip.encode_text(EDIT.target)[0]
    method = small(global_weight=0.5)
    one = method._loss([(clip, 1.0)], [direction], [target], images, frozen_images)
    two = method._loss([(clip, 1.0), (clip, 0.5)], [direction] * 2, [target] * 2, images, frozen_images)
    assert float(two) == pytest.approx(1.5 * float(one), rel=1e-5)
    expected = (directional_loss(clip.encode_images(images), clip.encode_images(frozen_images), direction).mean()
                + 0.5 * (1 - clip.encode_images(images) @ target).mean())
    assert float(one) == pytest.approx(float(expected), rel=1e-5)


# ---------------------------------------------------------------------------------------------- layer choice
def test_w_plus_change_ranks_the_indices_the_loss_moves_most():
    # the "image" scales W+ index i by scale[i]: the loss gradient on index i is scale[i], so SGD moves it by
    # lr * scale[i] and the top-3 indices are those of the three largest scales
    scale = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.05, 4.0, 0.3, 0.0])
    change = w_plus_change(lambda w: w * scale[None, :, None], lambda images: images.sum(),
                           torch.randn(4, 6), n_latent=8, iters=1, lr=0.01)
    assert torch.allclose(change, 0.01 * scale)
    assert top_w_indices(change, 3) == [1, 3, 5]
    two_steps = w_plus_change(lambda w: w * scale[None, :, None], lambda images: images.sum(),
                              torch.randn(4, 6), n_latent=8, iters=2, lr=0.01)
    assert torch.allclose(two_steps, 0.02 * scale)


def test_w_indices_map_to_the_convs_they_drive(world):
    g = world["generator"]  # W+ 0 conv1 | 1 to_rgb1, convs.0 | 2 convs.1 | 3 to_rgbs.0, convs.2 | ... | 7 to_rgbs.2
    assert modules_for_w_indices(g, [0, 1, 3]) == ["conv1", "convs.0", "convs.2"]
    assert modules_for_w_indices(g, [7]) == []  # the last index drives only a ToRGB, which stays frozen
    assert modules_for_w_indices(g, range(8)) == ["conv1"] + [f"convs.{j}" for j in range(6)]


def test_phases_in_convs_and_w_indices():
    with torch.device("meta"):
        big = Generator(1024, 8, 1, channels=4)
    convs = lambda names: [n for n in names if n.startswith("convs")]  # noqa: E731
    assert convs(phase_modules(big, "shape")) == ["convs.0", "convs.1"]
    assert convs(phase_modules(big, "texture")) == [f"convs.{j}" for j in range(2, 10)]
    assert convs(phase_modules(big, "no_fine")) == [f"convs.{j}" for j in range(10)]
    assert convs(phase_modules(big, "all")) == [f"convs.{j}" for j in range(16)]
    for phase in ("shape", "texture", "no_fine", "all"):
        assert phase_modules(big, phase)[:2] == ["input", "conv1"]
    # no_fine = W+ 0..10 = resolutions up to 128 at 1024
    layers = {layer.name: layer for layer in big.style_layers}
    assert max(layers[n].resolution for n in convs(phase_modules(big, "no_fine"))) == 128
    assert {layers[n].w_index for n in phase_modules(big, "texture")[1:]} == {0, *range(3, 11)}
    with torch.device("meta"):
        tiny = Generator(32, 8, 1, channels=4)  # convs.0-5: indices past the last conv are dropped
    assert convs(phase_modules(tiny, "texture")) == [f"convs.{j}" for j in range(2, 6)]


def test_set_trainable_never_unfreezes_mapping_or_torgb(world):
    g = generator_from_state_dict(random_rosinality_state_dict(32, style_dim=16, n_mlp=2, channels=8))
    set_trainable(g, ["conv1", "convs.2"])
    trainable = {n for n, p in g.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("conv1.", "convs.2.")) for n in trainable)
    assert set(candidate_modules(g)) == {"input", "conv1", *[f"convs.{j}" for j in range(6)]}
    with pytest.raises(ValueError, match="not trainable"):
        set_trainable(g, ["to_rgb1"])


# ----------------------------------------------------------------------------------------------- fine-tuning
def test_one_step_changes_exactly_the_trainable_layers(world):
    before = states(world["generator"])
    method = small(iterations=1, auto_layer_k=0, phase="shape")
    method.prepare(world, EDIT)
    assert changed_modules(before, states(method.adapted_generator())) == {"input", "conv1", "convs.0", "convs.1"}
    assert changed_modules(before, states(world["generator"])) == set()  # the suite's generator is untouched


def test_adaptive_step_trains_only_the_chosen_layers(world):
    before = states(world["generator"])
    method = small(iterations=1, auto_layer_k=2)
    method.prepare(world, EDIT)
    chosen = method.history[0]["trained"]
    assert 1 <= len(chosen) <= 2 and all(n == "conv1" or n.startswith("convs.") for n in chosen)
    assert changed_modules(before, states(method.adapted_generator())) == set(chosen)


def test_k_covering_every_index_trains_every_styled_conv(world):
    method = small(iterations=1)  # the default k = 18 > n_latent = 8
    method.prepare(world, EDIT)
    assert method.history[0]["trained"] == ["conv1"] + [f"convs.{j}" for j in range(6)]


@pytest.mark.parametrize("params", [{"auto_layer_k": 0, "phase": "all"}, {"auto_layer_k": 3, "mixing": 0.9},
                                    {"direction_weight": 0.0, "global_weight": 1.0, "mine": True}])
def test_mapping_torgb_and_noise_never_change(world, params):
    before = states(world["generator"])
    method = small(iterations=3, **params)
    method.prepare(world, EDIT)
    changed = changed_modules(before, states(method.adapted_generator()))
    assert changed and all(n in ("input", "conv1") or n.startswith("convs.") for n in changed)


def test_fine_tuning_reduces_the_directional_loss(world):
    frozen = world["generator"]
    clip = world["clip"]
    direction = clip.text_direction(EDIT.neutral, EDIT.target, renormalize=False)
    w = frozen.mapping(torch.randn(8, frozen.style_dim, generator=torch.Generator().manual_seed(1))).detach()

    def loss_of(generator):
        with torch.no_grad():
            return float(directional_loss(clip.encode_images(generator(w)), clip.encode_images(frozen(w)),
                                          direction).mean())

    method = small(iterations=10, auto_layer_k=0)  # the default lr
    method.prepare(world, EDIT)
    assert loss_of(frozen) == pytest.approx(1.0)  # ΔI = 0: cosine 0
    assert loss_of(method.adapted_generator()) < 0.9


def test_every_step_keeps_moving_the_weights(world, monkeypatch):
    """The twins draw fresh, independent noise as the official code does: at the first step (equal weights) ΔI is
    then nonzero. With shared fixed noise ΔI is exactly 0 there, the first gradient is ~10⁶ times normal, it fills
    Adam's second moment, and every later update is a small fraction of the first (training stalls after one
    step)."""
    updates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        params = [q for group in self.param_groups for q in group["params"] if q.grad is not None]
        before = [q.detach().clone() for q in params]
        out = step(self, *args, **kwargs)
        updates.append(float(torch.cat([(q.detach() - b).flatten() for q, b in zip(params, before)]).norm()))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    method = small(iterations=6, auto_layer_k=0)
    method.prepare(world, EDIT)
    # each step's update (L2 norm over the trained weights) against the first: 0.69-1.01 here; 0.003-0.015 with
    # the shared fixed noise this guards against
    assert len(updates) == 6 and all(u > 0.2 * updates[0] for u in updates[1:]), [u / updates[0] for u in updates]


def test_mining_trains_styleclips_mapper_on_the_adapted_generator(world, monkeypatch):
    """NADA's mining is StyleCLIP's mapper trainer on the adapted generator: the global CLIP loss against the plain
    target text (1.0), ID 0.1 (off without an identity network), latent MSE 0.8, NADA's norm term 0.5, Ranger lr
    0.5, batch 2, latents at truncation 0.7; the untrained mapper is never the one kept."""
    import methods.nada as nada
    from methods.losses import prompt_features
    seen = {}
    real = nada.train_mapper

    def spy(generator, networks, texts, mapper, sampler, steps, **kwargs):
        seen.update(generator=generator, texts=texts, truncation=sampler.truncation, steps=steps, **kwargs)
        return real(generator, networks, texts, mapper, sampler, steps, **kwargs)

    monkeypatch.setattr(nada, "train_mapper", spy)
    method = small(auto_layer_k=0, mine=True, mapper_iterations=3, mapper_val_interval=2, mapper_val_count=2)
    method.prepare(world, EDIT)
    assert seen["generator"] is method.adapted_generator() and seen["steps"] == 3
    assert torch.equal(seen["texts"][0], prompt_features(world["clip"], EDIT.target)[0])
    assert (seen["truncation"], seen["lr"], seen["batch_size"], seen["val_interval"]) == (0.7, 0.5, 2, 2)
    assert (seen["clip_lambda"], seen["id_lambda"], seen["latent_l2_lambda"], seen["norm_lambda"]) == \
        (1.0, 0.1, 0.8, 0.5)
    assert seen["id_loss"] is None  # the tiny set has no identity network
    assert [step for step, _ in method.mining_record["val"]] == [0, 2, 3]
    assert method.mining_record["best_step"] in (2, 3)
    assert StyleGANNada.defaults()["mapper_iterations"] == 50000  # the official default; CPU suites set fewer


def test_mining_with_a_set_identity_weight_needs_an_identity_network(world):
    from bench.errors import BenchError
    with pytest.raises(BenchError, match="identity"):
        small(auto_layer_k=0, mine=True, mapper_id_weight=0.1).prepare(world, EDIT)


def test_style_mixing_crosses_over(world):
    w_plus = small(mixing=1.0)._sample_w_plus(world["generator"], 4)
    same_as_first = [bool(torch.equal(w_plus[:, i], w_plus[:, 0])) for i in range(w_plus.shape[1])]
    crossover = same_as_first.index(False)  # indices before the crossover keep w1, the rest take w2
    assert 1 <= crossover and not any(same_as_first[crossover:])
    assert all(torch.equal(w_plus[:, i], w_plus[:, -1]) for i in range(crossover, w_plus.shape[1]))
    unmixed = small(mixing=0.0)._sample_w_plus(world["generator"], 4)
    assert all(torch.equal(unmixed[:, i], unmixed[:, 0]) for i in range(unmixed.shape[1]))


# ------------------------------------------------------------------------------------------ state and output
def test_saved_generator_reloads_bit_identically(world, tmp_path):
    method = small(auto_layer_k=0)
    method.prepare(world, EDIT)
    path = method.save_adapted(tmp_path / "zombie.pt")
    reloaded = load_generator(path)
    adapted = method.adapted_generator()
    saved, original = reloaded.state_dict(), adapted.state_dict()
    assert saved.keys() == original.keys() and all(torch.equal(saved[k], original[k]) for k in saved)
    assert torch.equal(reloaded.latent_avg, adapted.latent_avg)
    w = torch.randn(2, adapted.style_dim)
    assert torch.equal(reloaded(w), adapted(w))
    # `bench generate` renders the same images from the saved file as `apply` does from the method
    from bench.commands.generate import main as generate
    latents = adapted.to_w_plus(adapted.mapping(torch.randn(3, adapted.style_dim))).detach()
    torch.save(latents, tmp_path / "latents.pt")
    assert generate(["--generator", str(path), "--latents", str(tmp_path / "latents.pt"), "--out",
                     str(tmp_path / "out")]) == 0
    edited = method.apply(world, SourceBatch(images=torch.zeros(3, 3, 32, 32), latents=latents), EDIT).edited_images
    assert torch.equal(torch.load(tmp_path / "out" / "images.pt"), edited.clamp(-1, 1))


@pytest.mark.parametrize("mine", [False, True])
def test_prepared_state_round_trip(world, tmp_path, mine):
    method = small(auto_layer_k=0, mine=mine)
    method.prepare(world, EDIT)
    torch.save({"state": method.prepared_state()}, tmp_path / "cache.pt")
    restored = small(auto_layer_k=0, mine=mine)
    restored.load_prepared_state(torch.load(tmp_path / "cache.pt", weights_only=True)["state"])
    g = world["generator"]
    latents = g.to_w_plus(g.mapping(torch.randn(3, g.style_dim)))
    sources = SourceBatch(images=g(latents), latents=latents)
    first, second = method.apply(world, sources, EDIT), restored.apply(world, sources, EDIT)
    assert torch.equal(first.edited_images, second.edited_images)
    assert torch.equal(first.edited_latents, second.edited_latents)
    assert torch.equal(first.edited_latents, latents) is (not mine)  # the mined mapper moves the latents
    assert not torch.equal(first.edited_images, sources.images)


def test_image_guided_target_from_synthface_renders(world):
    edit = Edit(name="zombie", target="a zombie face", neutral="a realistic face", target_images="synthface:zombie")
    method = small(iterations=1, auto_layer_k=0)
    style = method._style_images(edit, 32, "cpu")
    assert style.shape == (4, 3, 64, 64) and style.min() >= -1 and style.max() <= 1
    text, image = method._directions(clip_networks(world), EDIT, world["generator"]), \
        method._directions(clip_networks(world), edit, world["generator"])
    assert not torch.allclose(text[0], image[0]) and image[0].norm() == pytest.approx(1.0)
    method.prepare(world, edit)
    assert len(method.history) == 1


def test_bad_parameters_are_rejected_naming_the_value():
    from bench.errors import BenchError
    with pytest.raises(BenchError, match="phase 'fine' unknown"):
        StyleGANNada(phase="fine", auto_layer_k=0)
    # a phase set beside adaptive selection would be ignored silently: an error instead
    with pytest.raises(BenchError, match="phase 'shape' is used only with auto_layer_k: 0"):
        StyleGANNada(phase="shape")
    assert StyleGANNada(phase="shape", auto_layer_k=0).params["phase"] == "shape"
    for k in (-3, 2.5, True):
        with pytest.raises(BenchError, match=f"auto_layer_k must be an integer >= 0.*got {k!r}"):
            StyleGANNada(auto_layer_k=k)
    for betas in ([0.9], 0.9, [0.0, 1.0], ["a", 0.9]):
        with pytest.raises(BenchError, match=r"betas must be two numbers in \[0, 1\)"):
            StyleGANNada(betas=betas)


def test_guidance_text_ignores_target_images_and_image_requires_them(world):
    edit = Edit(name="zombie", target="a zombie face", neutral="a realistic face", target_images="synthface:zombie")
    clips = clip_networks(world)
    text = small(guidance="text")._directions(clips, edit, world["generator"])
    assert torch.allclose(text[0], world["clip"].text_direction(edit.neutral, edit.target, renormalize=False))
    from bench.errors import BenchError
    with pytest.raises(BenchError, match="has no target_images"):
        small(guidance="image")._directions(clips, EDIT, world["generator"])


def test_runs_in_a_suite_and_caches_the_adapted_generator(tmp_path, tiny_world):
    from bench.runner import RunOptions, Runner
    from bench.suite import load_suite

    path = tmp_path / "nada.yaml"
    path.write_text(f"""name: nada-tiny
backbones:
  generator: {{stylegan2: {tiny_world['generator']}}}
  clip: {{clip: "{tiny_world['clip']}"}}
sources: {{kind: generator, count: 3, seed: 1, batch_size: 2}}
edits:
  - {{name: zombie, target: a zombie face, neutral: a realistic face, target_images: "synthface:zombie"}}
methods:
  - {{name: nada, params: {{iterations: 2, auto_layer_k: 3, auto_layer_batch: 2, source_image_count: 2,
                           target_image_count: 2}}}}
metrics: [latency_apply_ms]
""")
    store = Runner(load_suite(path), path, RunOptions(tmp_path / "run")).run()
    assert (store.cells()["status"] == "ok").all()
    (cached,) = (tmp_path / "run" / "cache" / "prepare").glob("*.pt")
    blob = torch.load(cached, weights_only=True)
    assert set(blob["state"]) == {"generator"} and "convs.0.conv.weight" in blob["state"]["generator"]


def test_missing_generator_and_bad_style_images_name_what_is_wrong(world, tmp_path):
    from bench.errors import BenchError
    with pytest.raises(BenchError, match=r"needs a 'generator' backbone \(the suite provides \['clip'\]\)"):
        small().prepare(BackboneSet({"clip": world["clip"]}), EDIT)
    cached = small()
    cached.load_prepared_state({"generator": {}})
    with pytest.raises(BenchError, match=r"needs a 'generator' backbone \(the suite provides \['clip'\]\)"):
        cached.adapted_generator(BackboneSet({"clip": world["clip"]}))
    method = small()
    missing = tmp_path / "no-such-folder"
    edit = Edit(name="zombie", target="a zombie face", target_images=str(missing))
    with pytest.raises(BenchError, match=rf"nada: edit 'zombie': target_images folder {missing} does not exist"):
        method._style_images(edit, 32, "cpu")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    edit = Edit(name="zombie", target="a zombie face", target_images=str(tmp_path / "empty"))
    with pytest.raises(BenchError, match=rf"target_images folder {tmp_path / 'empty'} holds no images \(.png"):
        method._style_images(edit, 32, "cpu")
    edit = Edit(name="zombie", target="a zombie face", target_images="synthface:zomby")
    with pytest.raises(BenchError, match=r"target_images 'synthface:zomby': unknown domain 'zomby'; known: photo"):
        method._style_images(edit, 32, "cpu")


# ------------------------------------------------------------------------------- faithfulness pins (review, s23)
def test_defaults_are_the_official_ones():
    """reference-defaults.md: Adam lr 0.002·4/5, betas (0, 0.99^(4/5)), batch 2, 301 iterations, mixing 0; adaptive
    layers k 18 from 1 SGD step (lr 0.01) on 8 latents; mining as StyleCLIP's mapper (Ranger lr 0.5, 50,000 steps)."""
    d = StyleGANNada.defaults()
    assert (d["iterations"], d["batch"], d["mixing"], d["truncation"]) == (301, 2, 0.0, 1.0)
    assert d["lr"] == pytest.approx(0.0016) and d["betas"] == pytest.approx([0.0, 0.99 ** 0.8])
    assert (d["auto_layer_k"], d["auto_layer_iters"], d["auto_layer_batch"], d["auto_layer_lr"]) == (18, 1, 8, 0.01)
    assert (d["mapper_lr"], d["mapper_iterations"], d["mapper_batch"], d["mapper_scale"]) == (0.5, 50000, 2, 0.1)
    assert (d["mapper_clip_weight"], d["mapper_id_weight"], d["mapper_l2_weight"]) == (1.0, 0.1, 0.8)


def test_the_generator_optimiser_gets_the_method_lr_and_betas(world, monkeypatch):
    seen = []
    real = torch.optim.Adam.__init__

    def spy(self, params, lr=1e-3, betas=(0.9, 0.999), **kw):
        seen.append((lr, tuple(betas)))
        real(self, params, lr=lr, betas=betas, **kw)
    monkeypatch.setattr(torch.optim.Adam, "__init__", spy)
    small(iterations=1, auto_layer_k=0, lr=0.003, betas=[0.1, 0.95]).prepare(world, EDIT)
    assert (0.003, (0.1, 0.95)) in seen


def test_training_latents_are_truncated_around_the_average(world):
    g = world["generator"]
    method = small(truncation=0.5)
    torch.manual_seed(7)
    w = method._sample_w(g, 3)
    torch.manual_seed(7)
    with torch.no_grad():
        raw = g.mapping(torch.randn(3, g.style_dim))
    avg = g.get_latent_avg()
    assert torch.allclose(w, avg + 0.5 * (raw - avg), atol=1e-6) and not torch.allclose(w, raw)


def test_adaptive_choice_is_the_top_k_of_the_probe(world, monkeypatch):
    """The k W+ indices that move most in the probe step choose the layers (not the least-moving ones), and the
    probe runs with the method's iters, lr and batch."""
    import methods.nada as nada
    scale = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.05, 4.0, 0.3, 0.0])
    seen = {}

    def fake_change(render, loss_fn, w, n_latent, iters, lr):
        seen.update(iters=iters, lr=lr, batch=len(w))
        return scale
    monkeypatch.setattr(nada, "w_plus_change", fake_change)
    method = small(iterations=1, auto_layer_k=3)
    method.prepare(world, EDIT)
    assert method.history[0]["trained"] == ["convs.0", "convs.2", "convs.4"]  # W+ 1, 3, 5 drive convs.0, .2, .4
    assert seen == {"iters": 1, "lr": 0.01, "batch": 2}


def test_mined_offset_is_mapper_scale_times_the_mapper(world):
    method = small(auto_layer_k=0, mine=True)
    method.prepare(world, EDIT)
    g = world["generator"]
    latents = g.to_w_plus(g.mapping(torch.randn(3, g.style_dim))).detach()
    src = SourceBatch(images=g(latents), latents=latents)
    a = method.apply(world, src, EDIT).edited_latents - latents
    assert torch.allclose(a, 0.1 * method._mapper(latents), atol=1e-6)
    method.params["mapper_scale"] = 0.3
    b = method.apply(world, src, EDIT).edited_latents - latents
    assert a.abs().max() > 0 and torch.allclose(b, 3 * a, atol=1e-6)


def test_frozen_twin_renders_the_source_generator_at_every_step(world, monkeypatch):
    """The frozen twin is the suite's generator at every step (not the trained one, not an alias of it)."""
    import copy
    g = copy.deepcopy(world["generator"])
    for m in g.modules():
        if type(m).__name__ == "NoiseInjection":
            m.weight.data.zero_()  # renders independent of the noise draw
    bb = BackboneSet({"generator": g, "clip": world["clip"]})
    seen, real_sample, real_loss = [], StyleGANNada._sample_w_plus, StyleGANNada._loss

    def sample(self, frozen, n, mixing=None):
        w = real_sample(self, frozen, n, mixing)
        seen.append(["w", w.clone()])
        return w

    def loss(self, clips, directions, targets, images, frozen_images):
        seen.append(["f", frozen_images.clone(), images.detach().clone()])
        return real_loss(self, clips, directions, targets, images, frozen_images)
    monkeypatch.setattr(StyleGANNada, "_sample_w_plus", sample)
    monkeypatch.setattr(StyleGANNada, "_loss", loss)
    small(iterations=3, auto_layer_k=0).prepare(bb, EDIT)
    pairs = [(seen[i][1], seen[i + 1][1], seen[i + 1][2]) for i in range(len(seen) - 1)
             if seen[i][0] == "w" and seen[i + 1][0] == "f"]
    assert len(pairs) == 3
    with torch.no_grad():
        for w, frozen_images, _ in pairs:
            assert torch.allclose(frozen_images, g(w), atol=1e-6)
    assert not torch.allclose(pairs[-1][2], pairs[-1][1], atol=1e-4)  # the trained twin moved away
