"""InsightFace ONNX face recognizers (e.g. buffalo_l's `w600k_r50.onnx`) for the identity *metric*.

`load_onnx_recognizer(path)` loads through `insightface.model_zoo.get_model(path, providers=...)`, exactly as
insightface itself does, and keeps the result only if it is its ArcFace recognizer (`taskname == "recognition"`).
Public weights: insightface downloads model packs into ~/.insightface/models/<pack>/ (buffalo_l holds
w600k_r50.onnx), e.g. with `insightface.app.FaceAnalysis(name="buffalo_l")` on a machine with internet.

What insightface assumes about the input (verified on insightface 2.1, `model_zoo/model_zoo.py` and
`model_zoo/arcface_onnx.py`):
    * Routing: `get_model` builds an onnxruntime session and returns `ArcFaceONNX` when the graph has fewer than 5
      outputs and its first input is N x 3 x S x S with a *static* S >= 112, S % 16 == 0 (192, 96 and two-input
      128 graphs are routed to landmark / attribute / swapper models); for any other graph it returns None.
      The input size is the graph's (`input_size = (W, H)`), 112 x 112 for the public recognizers.
    * Normalisation: `input_mean = input_std = 127.5`, unless among the first 8 graph nodes there is one whose
      *name* starts with "Sub"/"_minus" and one whose name starts with "Mul"/"_mul" (old MXNet exports that
      normalise inside the graph), in which case 0 and 1. Manifest-backed model packages set them explicitly
      (and may declare uint8 input).
    * Colour and layout: `get_feat` takes OpenCV BGR uint8 crops and calls
      `cv2.dnn.blobFromImages(imgs, 1/input_std, input_size, (input_mean,)*3, swapRB=True)`, so the network
      receives NCHW **RGB** float32 `(pixel - input_mean) / input_std`, pixels in 0..255; `forward(batch)` applies
      the same `(batch - input_mean) / input_std` to an NCHW RGB array.
    * The crops are faces aligned by 5 landmarks to insightface's ArcFace template (`face_align.norm_crop`).

`OnnxRecognizer.embed` converts our RGB [-1, 1] tensors to that: optional `crop`, resize to the graph's input size
(area average when shrinking by an integer factor, else antialiased bilinear), pixels = (x + 1) / 2 * 255 (kept as
float, not rounded to uint8, unless the graph takes uint8), then the recognizer's own (pixels - mean) / std, so the
result equals a direct onnxruntime run on ((x + 1) / 2 * 255 - 127.5) / 127.5 for the standard models. The
embeddings are L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import CheckpointError
from zoo.checkpoints import error_detail, require_file

_ROUTING = ("insightface routes a graph to its ArcFace recognizer when it has one output and its input is "
            "N x 3 x S x S with a fixed S >= 112 divisible by 16")
ONNX_SOURCE = ("insightface model packs, downloaded into ~/.insightface/models/<pack>/ by "
               "insightface.app.FaceAnalysis(name='buffalo_l') on a machine with internet (buffalo_l/w600k_r50.onnx)")


def _resize(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    h, w = images.shape[-2:]
    if (h, w) == hw:
        return images
    if h % hw[0] == 0 and w % hw[1] == 0:
        return F.adaptive_avg_pool2d(images, hw)
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False, antialias=True)


def to_pixels(images: torch.Tensor, hw: tuple[int, int], crop: Callable | None = None) -> np.ndarray:
    """[N, 3, H, W] RGB in [-1, 1] → cropped, resized [N, 3, h, w] float32 RGB in 0..255 (what recognizers take)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W] RGB images, got shape {tuple(images.shape)}")
    x = images.detach().float()
    if crop is not None:
        x = crop(x)
    x = _resize(x, hw)
    return np.ascontiguousarray(((x + 1) / 2 * 255).cpu().numpy(), dtype=np.float32)


class OnnxRecognizer:
    """An insightface `ArcFaceONNX` recognizer taking RGB tensors in [-1, 1]."""

    def __init__(self, recognizer, crop: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = 32):
        self.recognizer = recognizer
        self.crop = crop
        self.batch_size = batch_size
        width, height = recognizer.input_size
        self.input_hw = (int(height), int(width))
        self.input_mean = float(recognizer.input_mean)
        self.input_std = float(recognizer.input_std)
        self.input_dtype = np.dtype(getattr(recognizer, "input_dtype", np.float32))
        fixed = recognizer.input_shape[0]
        self._fixed_batch = int(fixed) if isinstance(fixed, int) and fixed > 0 else None

    @property
    def model_file(self) -> str:
        return self.recognizer.model_file

    def pixels(self, images: torch.Tensor) -> np.ndarray:
        """[N, 3, H, W] RGB in [-1, 1] -> the [N, 3, h, w] RGB 0..255 array insightface's `forward` expects."""
        pix = to_pixels(images, self.input_hw, self.crop)
        if self.input_dtype == np.uint8:
            pix = np.clip(np.rint(pix), 0, 255).astype(np.uint8)
        return pix

    def _run(self, blob: np.ndarray) -> np.ndarray:
        step = self._fixed_batch or self.batch_size
        outs = [np.asarray(self.recognizer.forward(blob[i:i + step]), dtype=np.float32)
                for i in range(0, len(blob), step)]
        return np.concatenate(outs).reshape(len(blob), -1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [N, D] (float32, on the images' device; no gradients)."""
        pix = self.pixels(images)
        if len(pix) == 0:
            return torch.zeros(0, int(self.recognizer.output_shape[-1]), device=images.device)
        feats = torch.from_numpy(self._run(pix))
        return F.normalize(feats, dim=-1).to(images.device)

    __call__ = embed

    def similarity(self, images: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N] between paired images."""
        return (self.embed(images) * self.embed(other)).sum(dim=-1)


def default_providers(device: str | torch.device = "cpu") -> list[str]:
    """onnxruntime execution providers for a torch device: CUDA first for "cuda…" when this onnxruntime has it,
    then CPU."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return providers


def load_onnx_recognizer(path, providers=None, crop: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                         device: str | torch.device = "cpu") -> OnnxRecognizer:
    """Load an insightface ArcFace ONNX recognizer (e.g. w600k_r50.onnx) via `insightface.model_zoo.get_model`.

    `device` picks the onnxruntime providers (`default_providers`) unless `providers` names them; the embeddings
    are returned on the images' device either way."""
    path = require_file(path, "ONNX face recognizer", ONNX_SOURCE)
    if path.suffix.lower() != ".onnx":
        raise CheckpointError(f"ONNX face recognizer {path} must be an .onnx file (public weights: {ONNX_SOURCE})")
    from insightface import model_zoo

    if providers is None:
        providers = default_providers(device)

    try:
        model = model_zoo.get_model(str(path), providers=list(providers))
    except Exception as exc:  # not an ONNX graph, unsupported ops, unusable provider...
        raise CheckpointError(f"cannot load ONNX face recognizer {path}: {error_detail(exc)} ({_ROUTING}; "
                              f"public weights: {ONNX_SOURCE})") from exc
    task = getattr(model, "taskname", None)
    if model is None or task != "recognition":
        what = "no insightface model" if model is None else f"a {type(model).__name__} (task {task!r})"
        raise CheckpointError(f"ONNX file {path} is {what}, not a face recognizer: {_ROUTING} "
                              f"(public recognizers: {ONNX_SOURCE})")
    return OnnxRecognizer(model, crop=crop)


__all__ = ["OnnxRecognizer", "default_providers", "load_onnx_recognizer", "ONNX_SOURCE"]
