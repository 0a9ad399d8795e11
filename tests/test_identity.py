"""zoo.identity: IR-SE50 in the model_ir_se50.pth layout, the identity loss, insightface ONNX recognizers."""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError, CheckpointError
from zoo.identity import IRSE50, IdentityLoss, load_irse50, load_onnx_recognizer, stylegan_face_crop
from conftest import TinyRecognizer


# ------------------------------------------------------------------------------------------------------- IR-SE50
def _randomise_bn(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    return net


@pytest.fixture(scope="module")
def irse50_file(tmp_path_factory):
    torch.manual_seed(3)
    net = _randomise_bn(IRSE50())
    path = tmp_path_factory.mktemp("irse50") / "model_ir_se50.pth"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture(scope="module")
def irse50(irse50_file):
    return load_irse50(irse50_file[1])


def test_irse50_layout_matches_model_ir_se50():
    state = IRSE50().state_dict()
    # 7 input-layer entries, 3 projected shortcuts x 6, 24 residual branches x 15 (2 BN, 2 conv, PReLU, SE fc1/fc2),
    # 12 output-layer entries (BN2d, Linear, BN1d)
    assert len(state) == 7 + 3 * 6 + 24 * 15 + 12 == 397
    assert sum(not k.endswith("num_batches_tracked") for k in state) == 343
    assert {k.split(".")[1] for k in state if k.startswith("body.")} == {str(i) for i in range(24)}
    shortcuts = sorted({int(k.split(".")[1]) for k in state if ".shortcut_layer." in k})
    assert shortcuts == [3, 7, 21]  # first unit of the 128, 256 and 512 stages (64 -> 64 is a MaxPool)
    shapes = {
        "input_layer.0.weight": (64, 3, 3, 3),
        "input_layer.1.running_var": (64,),
        "input_layer.2.weight": (64,),
        "body.0.res_layer.0.weight": (64,),
        "body.0.res_layer.1.weight": (64, 64, 3, 3),
        "body.0.res_layer.2.weight": (64,),
        "body.0.res_layer.3.weight": (64, 64, 3, 3),
        "body.0.res_layer.4.bias": (64,),
        "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.0.res_layer.5.fc2.weight": (64, 4, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.3.shortcut_layer.1.running_mean": (128,),
        "body.23.res_layer.5.fc1.weight": (32, 512, 1, 1),
        "output_layer.0.weight": (512,),
        "output_layer.3.weight": (512, 512 * 7 * 7),
        "output_layer.3.bias": (512,),
        "output_layer.4.weight": (512,),  # BatchNorm1d(affine=True)
        "output_layer.4.running_mean": (512,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("body.0.shortcut_layer") for k in state)
    assert sum(p.numel() for p in IRSE50().parameters()) == 43_797_696
    # by hand from TreB1eN's bottleneck_IR_SE: BN(in), conv3x3 in->d, PReLU(d), conv3x3 d->d, BN(d), SE d->d/16->d,
    # plus conv1x1 + BN when the depth changes; input conv 3->64 + BN + PReLU; output BN2d, Linear 25088->512, BN1d

    def unit(i, d):
        return 2 * i + 9 * i * d + d + 9 * d * d + 2 * d + 2 * d * (d // 16) + (0 if i == d else i * d + 2 * d)

    total, channels = 27 * 64 + 128 + 64, 64
    for depth, count in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for _ in range(count):
            total, channels = total + unit(channels, depth), depth
    assert total + 1024 + 512 * 7 * 7 * 512 + 512 + 1024 == 43_797_696


def test_load_irse50_is_strict_frozen_and_normalised(irse50_file, irse50):
    net, _ = irse50_file
    ref = net.state_dict()
    got = irse50.state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert not irse50.training and not any(p.requires_grad for p in irse50.parameters())
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        emb = irse50(x)
    assert emb.shape == (2, 512)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="112x112"):
        irse50(torch.zeros(1, 3, 128, 128))


def test_load_irse50_accepts_files_without_num_batches_tracked(irse50_file, tmp_path):
    net, _ = irse50_file
    old = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    loaded = load_irse50(tmp_path / "old.pth")
    for key, value in old.items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_load_irse50_errors(irse50_file, tmp_path):
    net, _ = irse50_file
    state = net.state_dict()
    wrong = {k.replace("res_layer", "residual"): v for k, v in state.items()}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"not a valid IR-SE50.*missing keys.*unexpected keys.*model_ir_se50"):
        load_irse50(tmp_path / "wrong.pth")
    ir50 = {k: v for k, v in state.items() if ".res_layer.5." not in k}  # IR-50 without SE
    torch.save(ir50, tmp_path / "ir50.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: body\.0\.res_layer\.5\.fc1\.weight"):
        load_irse50(tmp_path / "ir50.pth")
    with pytest.raises(CheckpointError, match=r"not found.*model_ir_se50\.pth"):
        load_irse50(tmp_path / "missing.pth")


def test_stylegan_face_crop():
    x = torch.randn(2, 3, 1024, 1024)
    out = stylegan_face_crop(x)
    assert out.shape == (2, 3, 112, 112)
    ref = F.adaptive_avg_pool2d(F.adaptive_avg_pool2d(x, 256)[:, :, 35:223, 32:220], 112)
    assert torch.allclose(out, ref, atol=1e-6)
    small = torch.randn(1, 3, 256, 256)
    assert torch.allclose(stylegan_face_crop(small), F.adaptive_avg_pool2d(small[:, :, 35:223, 32:220], 112))


def test_identity_loss_with_irse50(irse50):
    loss = IdentityLoss(irse50)
    src = torch.rand(2, 3, 256, 256) * 2 - 1
    assert float(loss(src, src)) == pytest.approx(0.0, abs=1e-5)
    x = (src + 0.3 * torch.randn_like(src)).requires_grad_(True)
    src.requires_grad_(True)
    per = loss.per_sample(x, src)
    assert per.shape == (2,) and (per > 0).all() and (per <= 2).all()
    per.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert src.grad is None  # the source side is a fixed target
    assert all(p.grad is None for p in irse50.parameters())


class _TinyEmbedder(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, dim))

    def forward(self, x):
        return self.net(x)


def test_identity_loss_accepts_any_embedder():
    emb = _TinyEmbedder()
    loss = IdentityLoss(emb, crop=None)
    assert not emb.training and not any(p.requires_grad for p in emb.parameters())
    loss.train()
    assert not emb.training  # the embedding network stays in eval mode
    a, b = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    expected = 1 - F.cosine_similarity(emb(a), emb(b), dim=-1)
    assert torch.allclose(loss.per_sample(a, b), expected, atol=1e-6)
    assert torch.allclose(loss(a, b), expected.mean(), atol=1e-6)
    with pytest.raises(ValueError, match="batch sizes"):
        loss(a, b[:2])


# ----------------------------------------------------------------------------------------------------------- ONNX
def _export(model: nn.Module, path, size=112, dynamic=True):
    model.eval()
    with warnings.catch_warnings():  # the TorchScript exporter (no onnxscript needed) is deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(path), dynamo=False, input_names=["data"],
                          output_names=["embedding"],
                          dynamic_axes={"data": {0: "N"}, "embedding": {0: "N"}} if dynamic else None)
    return path


def _direct(path, blob: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {sess.get_inputs()[0].name: blob[i:i + 1]})[0] for i in range(len(blob))]
    out = np.concatenate(outs)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_identity_crop_is_one_rule_for_the_loss_and_the_metric():
    from types import SimpleNamespace

    from bench.backbone_set import Weighted
    from zoo.identity import identity_crop, identity_crop_name
    from zoo.identity.irse50 import ARCFACE_LAYOUT
    from zoo.synthface.train_generator import FACE_LAYOUT

    assert FACE_LAYOUT == ARCFACE_LAYOUT  # the synthetic world's loader marks its generator with this layout
    synthetic, ffhq = SimpleNamespace(face_layout=FACE_LAYOUT, size=64), SimpleNamespace(size=128)
    assert identity_crop_name(synthetic) == identity_crop_name(Weighted(synthetic, 1.0)) == "none"
    assert identity_crop(synthetic) is None
    for size in (128, 256, 1024):  # any FFHQ size: the crop pools to 256 first, as StyleCLIP's IDLoss
        assert identity_crop(SimpleNamespace(size=size)) is stylegan_face_crop
    assert identity_crop_name(ffhq) == "stylegan"


def test_identity_loss_of_a_128px_ffhq_generator_crops_like_the_metric(irse50):
    """Below 256 px the loss used to skip the crop, and IR-SE50 refused the 128 x 128 input."""
    from bench.backbone_set import BackboneSet
    from methods.losses import identity_loss
    from zoo.stylegan2.checkpoint import random_generator

    generator = random_generator(128, style_dim=16, n_mlp=1, channel_multiplier=1)
    loss = identity_loss(BackboneSet({"generator": generator, "identity": irse50}))
    assert loss.crop is stylegan_face_crop
    src = torch.rand(2, 3, 128, 128) * 2 - 1
    x = (src + 0.3 * torch.randn_like(src)).requires_grad_(True)
    per = loss.per_sample(x, src)
    expected = 1 - (irse50(stylegan_face_crop(x)) * irse50(stylegan_face_crop(src))).sum(-1)
    torch.testing.assert_close(per, expected, atol=1e-5, rtol=0)
    per.mean().backward()
    assert x.grad.abs().sum() > 0


def test_identity_loss_refuses_an_onnx_recognizer(onnx_file):
    from bench.backbone_set import BackboneSet
    from methods.losses import identity_loss

    recognizer = load_onnx_recognizer(onnx_file)
    with pytest.raises(BenchError, match=r"differentiable PyTorch network.*arcface_irse50.*got a OnnxRecognizer"
                                         r".*insightface_onnx, sface.*judges only"):
        IdentityLoss(recognizer)
    with pytest.raises(BenchError, match="judges only"):
        identity_loss(BackboneSet({"generator": object(), "identity": recognizer}))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(4)
    return _export(TinyRecognizer(), tmp_path_factory.mktemp("onnx") / "recognizer.onnx")


def test_onnx_recognizer_matches_direct_onnxruntime(onnx_file):
    rec = load_onnx_recognizer(onnx_file)
    assert rec.recognizer.taskname == "recognition"
    assert rec.input_hw == (112, 112) and rec.input_mean == 127.5 and rec.input_std == 127.5
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    got = rec.embed(x)
    assert got.shape == (3, 24)
    blob = (((x + 1) / 2 * 255 - 127.5) / 127.5).numpy().astype(np.float32)  # RGB, insightface's normalisation
    assert np.allclose(got.numpy(), _direct(onnx_file, blob), atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-5)
    # larger inputs are resized to the graph's 112 x 112 (an integer factor: area average)
    big = F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(rec.embed(big), got, atol=1e-5)


@pytest.mark.parametrize("graph", ["plain", "in_graph_normalised"])
def test_onnx_recognizer_equals_insightface_get_feat_on_bgr_uint8(onnx_file, tmp_path, graph):
    """insightface's own entry point, `ArcFaceONNX.get_feat` on a BGR uint8 crop (cv2.dnn.blobFromImages with its
    input_mean / input_std and swapRB), is the reference; not a restatement of the normalisation we believe in."""
    arcface_onnx = pytest.importorskip("insightface.model_zoo.arcface_onnx")
    path = onnx_file
    if graph == "in_graph_normalised":
        torch.manual_seed(6)
        path = _export(_InGraphNormalised(), tmp_path / "mxnet_like.onnx")
        _rename_normalisation_nodes(path)
    rec = load_onnx_recognizer(path)
    assert isinstance(rec.recognizer, arcface_onnx.ArcFaceONNX)
    assert (rec.input_mean, rec.input_std) == ((127.5, 127.5) if graph == "plain" else (0.0, 1.0))
    bgr = np.random.default_rng(7).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    reference = rec.recognizer.get_feat(list(bgr))
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(0, 3, 1, 2).float()
    got = rec.embed(rgb / 127.5 - 1)
    np.testing.assert_allclose(got.numpy(), reference, atol=2e-6, rtol=0)


def test_onnx_recognizer_with_fixed_batch_and_crop(tmp_path):
    torch.manual_seed(5)
    path = _export(TinyRecognizer(), tmp_path / "fixed.onnx", dynamic=False)
    from zoo.identity import stylegan_face_crop as crop

    rec = load_onnx_recognizer(path, crop=crop)
    x = torch.rand(3, 3, 256, 256) * 2 - 1
    blob = (((crop(x) + 1) / 2 * 255 - 127.5) / 127.5).numpy().astype(np.float32)
    assert np.allclose(rec.embed(x).numpy(), _direct(path, blob), atol=1e-5)


class _InGraphNormalised(nn.Module):
    """Like the old MXNet exports: the graph subtracts and scales itself, so insightface feeds 0..255 pixels."""

    def __init__(self):
        super().__init__()
        self.body = TinyRecognizer()

    def forward(self, x):
        return self.body((x - 127.5) * 0.0078125)


def _rename_normalisation_nodes(path) -> None:
    """Name the graph's first Sub / Mul nodes as MXNet exports do, which insightface reads as in-graph normalisation."""
    model = onnx.load(str(path))
    for node in model.graph.node[:8]:
        if node.op_type in ("Sub", "Mul"):
            node.name = f"_{'minus' if node.op_type == 'Sub' else 'mul'}{node.name.replace('/', '_')}"
    onnx.save(model, str(path))


def test_onnx_recognizer_with_in_graph_normalisation(tmp_path):
    torch.manual_seed(6)
    path = _export(_InGraphNormalised(), tmp_path / "mxnet_like.onnx")
    _rename_normalisation_nodes(path)
    rec = load_onnx_recognizer(path)
    assert (rec.input_mean, rec.input_std) == (0.0, 1.0)
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    pixels = ((x + 1) / 2 * 255).numpy().astype(np.float32)
    assert np.allclose(rec.embed(x).numpy(), _direct(path, pixels), atol=1e-5)


def test_onnx_non_recognizer_and_missing_files(tmp_path):
    path = _export(TinyRecognizer(), tmp_path / "small.onnx", size=64)
    with pytest.raises(BenchError, match="not a face recognizer"):
        load_onnx_recognizer(path)
    (tmp_path / "garbage.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(CheckpointError, match="cannot load ONNX face recognizer"):
        load_onnx_recognizer(tmp_path / "garbage.onnx")
    with pytest.raises(CheckpointError, match=r"not found.*buffalo_l"):
        load_onnx_recognizer(tmp_path / "w600k_r50.onnx")


def test_insightface_onnx_spec_loads_through_the_backbone_set(monkeypatch):
    """A suite's `judges: identity: {insightface_onnx: FILE}` goes through `load_spec`, which passes `device`."""
    from bench.backbone_set import load_spec
    from bench.suite import BackboneSpec
    from zoo.identity.onnx_recognizer import OnnxRecognizer, default_providers
    from zoo.synthface.backbones import ROLES, WEIGHTS_DIR, _call

    onnx_path = WEIGHTS_DIR / "identity.onnx"
    rec = load_spec(BackboneSpec.model_validate({"insightface_onnx": str(onnx_path)}), "cpu")
    assert isinstance(rec, OnnxRecognizer) and rec.model_file == str(onnx_path)
    assert rec.recognizer.session.get_providers() == ["CPUExecutionProvider"]
    # the synthetic world's judge goes through the same loader, with no special case
    judge = _call(ROLES["judge_identity"][1], "judge_identity", "cpu", WEIGHTS_DIR)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(judge.embed(x), rec.embed(x))

    # the device picks the providers: CUDA first on a CUDA device when onnxruntime has it, else CPU only
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert default_providers("cuda:0") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert default_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert default_providers("cuda") == ["CPUExecutionProvider"]
