"""FID and KID of a set of edited images against a reference set (set metrics: one value per (method variant,
edit, seed) group, lower is better), plus the number of edited images each value used.

Outputs:
* `fid` — Fréchet distance between Gaussians fitted to the two feature sets:
  |mu_e - mu_r|^2 + tr(S_e) + tr(S_r) - 2 tr((S_e S_r)^(1/2)), with tr((S_e S_r)^(1/2)) = sum of the square roots
  of the eigenvalues of S_e S_r; means and (unbiased, n - 1) covariances in float64;
* `kid` — kernel inception distance, the unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3,
  averaged over `num_subsets` random subsets of size min(n_e, n_r, `max_subset_size`), drawn with a seeded
  `numpy.random.RandomState` in clean-fid's order (so it equals `cleanfid.fid.kernel_distance` after
  `np.random.seed(seed)`);
* `fid_n`, `kid_n` — the number of edited images in the set (small-sample FID is biased upwards: report it).

Features (`features`):
* `clip` (default, the embedded world): the judge CLIP's image encoder (role `role`, default "clip"), its
  un-normalised image embedding after the judge's standard preprocessing (antialiased bicubic resize + centre crop,
  its mean/std);
* `inception`: clean-fid's "clean" mode — images rounded to uint8, resized to 299 x 299 with PIL bicubic per
  channel (`cleanfid.resize.build_resizer("clean")`), clean-fid's TorchScript Inception-v3 pool features
  (clean-fid downloads inception-2015-12-05.pt into /tmp on first use; offline, a CheckpointError names that path
  and the URL), or the TorchScript file `inception_path` names (its content enters the reference cache key).

Reference (`reference`):
* `sources` (default): the group's source images;
* a folder path: every .png/.jpg/.jpeg/.webp image in it (sorted by name);
* `renders:<domain>`: `n_reference` (default 2000) renders of that synthetic-world domain,
  `zoo.synthface.render(sample_params(n_reference, seed=reference_seed, domain=<domain>))`;
  `renders:{domain}` takes the domain from each edit's `expect` (`{domain: zombie}` → `renders:zombie`).
Reference features are cached on disk (`cache_dir`, default $CLIPEDIT_BENCH_CACHE or ~/.cache/clipedit-bench,
sub-folder fid_reference/) under the SHA-256 of the feature extractor's fingerprint (CLIP: weights, non-persistent
buffers such as the preprocessing mean/std, input size, resize mode, antialiasing) and the reference content
(pixels, or the folder's file names and bytes), written atomically (`bench.cachefile`: a temp file of this process
+ rename); a damaged cache file is deleted and computed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.cachefile import load_array_or_none, save_array_atomic
from metrics.base import EditBatch, Metric, MetricOutput, ScoringContext
from metrics.judges import in_chunks, is_loss_network, judge_network

FEATURES = ("clip", "inception")


# -------------------------------------------------------------------------------------------- statistics
def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of [N, D] features."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians (float64); tr sqrt(S1 S2) from the eigenvalues of S1 S2.

    Not `cleanfid.fid.frechet_distance` (tested equal to it and to torchmetrics, rel 1e-6): clean-fid 0.1.35, its
    latest release, calls `scipy.linalg.sqrtm(..., disp=False)`, whose `disp` SciPy 1.17 deprecates with a warning
    on every call and says it removes in 1.18.0; clean-fid also prints to stdout when the product is singular."""
    import scipy.linalg

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    diff = mu1 - mu2
    eigenvalues = scipy.linalg.eigvals(sigma1 @ sigma2)
    tr_covmean = np.sqrt(eigenvalues.astype(np.complex128)).real.sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def kernel_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000,
                    seed: int = 0) -> float:
    """Unbiased polynomial-kernel MMD^2 averaged over random subsets (float64), clean-fid's subset order."""
    # Not cleanfid.fid.kernel_distance: it draws subsets from the global np.random; a seeded RandomState here keeps
    # KID reproducible without touching global state (the test seeds np.random and checks equality).
    feats1, feats2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    rng = np.random.RandomState(seed)
    d = feats1.shape[1]
    m = min(feats1.shape[0], feats2.shape[0], max_subset_size)
    if m < 2:
        return float("nan")
    total = 0.0
    for _ in range(num_subsets):
        x = feats2[rng.choice(feats2.shape[0], m, replace=False)]
        y = feats1[rng.choice(feats1.shape[0], m, replace=False)]
        k_xx, k_yy, k_xy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
        total += within / (m - 1) - 2 * k_xy.sum() / m
    return float(total / num_subsets / m)


# -------------------------------------------------------------------------------------------- features
class ClipFeatures:
    """The judge CLIP's un-normalised image embeddings, after its standard preprocessing (`PREPROCESSING`)."""

    # passed explicitly, so that the fingerprint names what ran, not what `encode_images` defaults to today
    PREPROCESSING = {"resize": "bicubic", "antialias": True}

    def __init__(self, clip, batch_size: int):
        self.clip, self.batch_size = clip, batch_size
        self._fingerprint: str | None = None

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        device = getattr(self.clip, "device", "cpu")
        feats = in_chunks(lambda x: self.clip.encode_images(x.to(device), normalize_embeddings=False,
                                                            **self.PREPROCESSING).float().cpu(),
                          images, self.batch_size)
        return feats.numpy()

    def fingerprint(self) -> str:
        """`zoo.checkpoints.state_hash` of the CLIP (weights and non-persistent buffers: the preprocessing mean/std)
        with its input size and the resize settings: a change to any of them changes what the features are."""
        if self._fingerprint is None:
            from zoo.checkpoints import state_hash

            extra = {"features": "clip-image-embedding", "image_hw": list(getattr(self.clip, "image_hw", ())),
                     **self.PREPROCESSING}
            self._fingerprint = state_hash(self.clip, extra=extra)
        return self._fingerprint


INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")  # cleanfid.downloads_helper.inception_url


def cleanfid_inception_file() -> Path:
    """Where clean-fid keeps its Inception weights and downloads them when missing: `inception-2015-12-05.pt` in
    /tmp, in the working directory on Windows (`cleanfid.features.feature_extractor`, clean-fid 0.1.35)."""
    import platform

    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_FILE


def _load_inception_file(path: Path, device: str):
    """clean-fid's `InceptionV3W` (its "clean" forward) on the TorchScript file `path`: its own constructor takes a
    folder and the fixed file name, so the attributes it sets are set here from the given file."""
    from cleanfid.inception_torchscript import InceptionV3W

    class LocalInceptionV3W(InceptionV3W):
        def __init__(self, file: Path):
            torch.nn.Module.__init__(self)
            self.base = torch.jit.load(str(file), map_location="cpu").eval()
            self.layers = self.base.layers
            self.resize_inside = False

    return LocalInceptionV3W(path).to(torch.device(device)).eval()


class InceptionFeatures:
    """clean-fid's "clean" Inception features (uint8 → PIL bicubic 299 → TorchScript Inception-v3), from clean-fid's
    own file (`cleanfid_inception_file`, downloaded on first use) or from `path` (the metric's `inception_path`)."""

    def __init__(self, device: str, batch_size: int, model=None, path: str | None = None):
        from zoo.checkpoints import require_file

        self.device, self.batch_size = device, batch_size
        self.model = model
        self.path = None if path is None else require_file(path, f"clean-fid's Inception-v3 ({INCEPTION_FILE})",
                                                           INCEPTION_URL)
        self._fingerprint: str | None = None
        from cleanfid.resize import build_resizer

        self.resize = build_resizer("clean")

    def _model(self):
        if self.model is None:
            self.model = self._load_local() if self.path is not None else self._load_cleanfid()
        return self.model

    def _load_local(self):
        from bench.errors import CheckpointError
        from zoo.checkpoints import error_detail

        try:
            return _load_inception_file(self.path, self.device)
        except Exception as exc:
            raise CheckpointError(f"fid/kid: cannot read the Inception weights inception_path {self.path} "
                                  f"({error_detail(exc)}); it must be clean-fid's TorchScript "
                                  f"{INCEPTION_FILE} ({INCEPTION_URL})") from exc

    def _load_cleanfid(self):
        from bench.errors import CheckpointError
        from zoo.checkpoints import error_detail
        from cleanfid.features import build_feature_extractor

        expected = cleanfid_inception_file()
        try:
            return build_feature_extractor("clean", device=torch.device(self.device), use_dataparallel=False)
        except Exception as exc:
            if expected.exists():  # clean-fid leaves a cut-off download in place, and fails on it every time
                why = f"{expected} exists but cannot be read ({error_detail(exc)}); delete it to download it again"
            else:
                offline = "; HF_HUB_OFFLINE=1 is set" if _offline() else ""
                why = f"{expected} is missing and clean-fid could not download it ({error_detail(exc)}{offline})"
            raise CheckpointError(f"fid/kid: cannot build clean-fid's Inception: {why}. Download {INCEPTION_URL} "
                                  f"to {expected}, or set the metric parameter inception_path: FILE, or use "
                                  "features: clip") from exc

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB → clean-fid's [N, 3, 299, 299] float input in 0..255."""
        from bench.images import to_uint8

        resized = [self.resize(img) for img in to_uint8(images)]
        return torch.from_numpy(np.stack(resized).transpose(0, 3, 1, 2).astype(np.float32))

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        model = self._model()
        return in_chunks(lambda x: model(self.preprocess(x).to(self.device)).float().cpu(), images,
                         self.batch_size).numpy()

    def fingerprint(self) -> str:
        """clean-fid's own file is taken as the official one; a file given by path enters by content."""
        if self._fingerprint is None:
            from bench.cachefile import content_hash

            local = "" if self.path is None else f"|{content_hash(self.path)}"
            self._fingerprint = f"cleanfid-clean-inception-v3{local}"
        return self._fingerprint


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# -------------------------------------------------------------------------------------------- references
def default_cache_dir() -> Path:
    root = os.environ.get("CLIPEDIT_BENCH_CACHE") or Path.home() / ".cache" / "clipedit-bench"
    return Path(root) / "fid_reference"


def read_image_folder(folder: Path) -> list[torch.Tensor]:
    """Every image of a folder as [3, H, W] RGB in [-1, 1] at its own size, sorted by file name
    (`bench.images.read_image`: turned upright by its EXIF orientation, transparency onto white)."""
    from bench.images import image_files_in, read_image

    return [read_image(path, what="FID reference image") for path in image_files_in(folder)]


def _folder_digest(folder: Path) -> str:
    from bench.images import image_files_in

    digest = hashlib.sha256(b"upright-rgb-white")  # how `read_image_folder` reads them (EXIF, alpha onto white)
    for path in image_files_in(folder):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _tensor_digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _features_by_size(extract, images: list[torch.Tensor]) -> np.ndarray:
    """Features of images of possibly different sizes, in order (runs of equal size are batched)."""
    out, start = [], 0
    while start < len(images):
        end = start
        while end < len(images) and images[end].shape == images[start].shape:
            end += 1
        out.append(extract(torch.stack(images[start:end])))
        start = end
    return np.concatenate(out)


def render_reference(domain: str, n: int, seed: int) -> torch.Tensor:
    from zoo.synthface import render, sample_params

    return render(sample_params(n, seed=seed, domain=domain))


class _SetDistance(Metric):
    """Shared plumbing of FID and KID: edited-image features, cached reference features."""

    per_sample = False

    def __init__(self, context: ScoringContext, features: str = "clip", role: str = "clip",
                 reference: str = "sources", n_reference: int = 2000, reference_seed: int = 0,
                 cache_dir: str | None = None, batch_size: int = 64, inception_path: str | None = None,
                 feature_extractor=None):
        from bench.errors import BenchError

        if features not in FEATURES:
            raise BenchError(f"{self.name}: unknown features {features!r}; valid: {', '.join(FEATURES)}")
        if inception_path is not None and features != "inception":
            raise BenchError(f"{self.name}: inception_path {inception_path!r} is for features: inception; the "
                             f"features are {features!r}")
        self.network = None
        if feature_extractor is not None:  # tests and custom extractors: images -> [N, D] array
            self.extract = feature_extractor
        elif features == "clip":
            self.network = judge_network(context, role, self.name)
            self.extract = ClipFeatures(self.network, batch_size)
        else:
            self.extract = InceptionFeatures(context.device, batch_size, path=inception_path)
        self.reference = str(reference)
        if not (self.reference == "sources" or self.reference.startswith("renders:")
                or Path(self.reference).is_dir()):
            raise BenchError(f"{self.name}: reference {self.reference!r} is not 'sources', 'renders:<domain>' "
                             "or an existing folder of images")
        if self.reference.startswith("renders:"):
            self._check_domain(self.reference.split(":", 1)[1], allow_template=True)
        self.n_reference, self.reference_seed = int(n_reference), int(reference_seed)
        if self.n_reference < 2:
            raise BenchError(f"{self.name}: n_reference must be >= 2 (a covariance needs two images), got "
                             f"{n_reference!r}")
        self.cache_dir = None if cache_dir in ("", False) else Path(cache_dir) if cache_dir else default_cache_dir()
        self._fixed_references: dict[str, np.ndarray] = {}
        super().__init__(context, features=features, role=role, reference=reference, n_reference=n_reference,
                         reference_seed=reference_seed, cache_dir=cache_dir, batch_size=batch_size,
                         inception_path=inception_path)

    def _check_domain(self, domain: str, allow_template: bool = False) -> None:
        from bench.errors import BenchError
        from zoo.synthface import DOMAIN_NAMES

        if domain in DOMAIN_NAMES or (allow_template and domain == "{domain}"):
            return
        raise BenchError(f"{self.name}: reference renders:{domain}: unknown domain; valid: "
                         f"{', '.join(DOMAIN_NAMES)} (or {{domain}}: the edit's expect.domain)")

    def reset(self) -> None:
        self._edited: list[np.ndarray] = []
        self._sources: list[torch.Tensor] = []
        self._resolved: str | None = None

    def _resolve(self, batch: EditBatch) -> str:
        """The reference of this batch: `renders:{domain}` takes the domain from the edit's `expect`."""
        from bench.errors import BenchError

        if "{domain}" not in self.reference:
            return self.reference
        domain = (batch.expect or {}).get("domain")
        if domain is None:
            raise BenchError(f"{self.name}: reference {self.reference!r} needs the edit's expect.domain; this edit "
                             f"expects {dict(batch.expect or {})}")
        self._check_domain(str(domain))
        return self.reference.replace("{domain}", str(domain))

    def update(self, batch: EditBatch) -> None:
        from bench.errors import BenchError

        resolved = self._resolve(batch)
        if self._resolved not in (None, resolved):
            raise BenchError(f"{self.name}: one set mixes references {self._resolved!r} and {resolved!r}")
        self._resolved = resolved
        self._edited.append(np.asarray(self.extract(batch.edited_images), dtype=np.float64))
        if self.reference == "sources":
            self._sources.append(batch.source_images.detach().cpu())

    # -- reference features, cached by content hash
    def _cached(self, key: str, compute) -> np.ndarray:
        key = hashlib.sha256(f"{self.extract.fingerprint()}|{key}".encode()).hexdigest()[:32]
        path = self.cache_dir / f"{key}.npy" if self.cache_dir is not None else None
        # a damaged file (a cut-off write, a foreign file) is deleted and computed again, not fatal to every run
        cached = load_array_or_none(path) if path is not None else None
        if cached is not None:
            return cached
        feats = np.asarray(compute(), dtype=np.float64)
        if path is not None:
            save_array_atomic(feats, path)
        return feats

    def reference_features(self) -> np.ndarray:
        from bench.errors import BenchError

        feats = self._reference_features()
        if len(feats) < 2:
            raise BenchError(f"{self.name}: the reference {self._resolved or self.reference!r} holds {len(feats)} "
                             "image(s); FID and KID need at least 2")
        return feats

    def _reference_features(self) -> np.ndarray:
        if self.reference == "sources":
            sources = torch.cat(self._sources)
            return self._cached(f"sources|{_tensor_digest(sources)}", lambda: self.extract(sources))
        reference = self._resolved or self.reference
        if reference not in self._fixed_references:
            if reference.startswith("renders:"):
                domain = reference.split(":", 1)[1]
                images = render_reference(domain, self.n_reference, self.reference_seed)
                key = f"renders|{domain}|{_tensor_digest(images)}"
                self._fixed_references[reference] = self._cached(key, lambda: self.extract(images))
            else:
                folder = Path(reference)

                def folder_features() -> np.ndarray:
                    images = read_image_folder(folder)
                    return _features_by_size(self.extract, images) if images else np.zeros((0, 0))

                self._fixed_references[reference] = self._cached(f"folder|{_folder_digest(folder)}", folder_features)
        return self._fixed_references[reference]

    def edited_features(self) -> np.ndarray:
        return np.concatenate(self._edited) if self._edited else np.zeros((0, 0))

    def judge_is_loss_network(self) -> bool:
        return self.network is not None and is_loss_network(self.context, self.network)


class Fid(_SetDistance):
    """Fréchet distance of edited-image and reference features (judge CLIP or clean-fid Inception)."""

    name = "fid"
    higher_is_better = False

    def compute(self) -> dict[str, torch.Tensor]:
        edited = self.edited_features()
        n = len(edited)
        value = float("nan")
        if n >= 2:
            reference = self.reference_features()
            value = frechet_distance(*feature_stats(edited), *feature_stats(reference))
        return {"fid": torch.tensor(value, dtype=torch.float64), "fid_n": torch.tensor(float(n))}


class Kid(_SetDistance):
    """Kernel inception distance (unbiased polynomial MMD^2) of edited-image and reference features."""

    name = "kid"
    higher_is_better = False

    def __init__(self, context: ScoringContext, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0,
                 **params: Any):
        from bench.errors import BenchError

        self.num_subsets, self.max_subset_size, self.seed = int(num_subsets), int(max_subset_size), int(seed)
        if self.num_subsets < 1 or self.max_subset_size < 2:
            raise BenchError(f"kid: num_subsets must be >= 1 and max_subset_size >= 2 (an unbiased MMD needs two "
                             f"images a subset), got num_subsets={num_subsets!r}, max_subset_size={max_subset_size!r}")
        super().__init__(context, **params)
        self.params.update(num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)

    def compute(self) -> dict[str, torch.Tensor]:
        edited = self.edited_features()
        n = len(edited)
        value = float("nan")
        if n >= 2:
            value = kernel_distance(edited, self.reference_features(), self.num_subsets, self.max_subset_size,
                                    self.seed)
        return {"kid": torch.tensor(value, dtype=torch.float64), "kid_n": torch.tensor(float(n))}


FID_N = MetricOutput("fid_n", True, "number of edited images in the FID set", "fid", per_sample=False, kind="info")
KID_N = MetricOutput("kid_n", True, "number of edited images in the KID set", "kid", per_sample=False, kind="info")


def _with_shared_params(cls: type, shared: Any) -> type:
    """Give `cls` the signature of its own parameters followed by `shared`'s (which it passes on as **params), so
    that the suite checks (`bench.suite_checks.metric_problem`, which reads signatures) name an unknown parameter
    instead of accepting anything behind **params."""
    import inspect

    own = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:] if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    more = [p.replace(kind=p.KEYWORD_ONLY) for p in list(inspect.signature(shared).parameters.values())[2:]
            if p.name not in names]
    cls.__signature__ = inspect.Signature(own + more)
    return cls


_with_shared_params(Kid, _SetDistance.__init__)
