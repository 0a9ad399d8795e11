"""Perceptual distance between each source and its edit, per edited image, lower is better.

* `lpips` — LPIPS (Zhang et al. 2018) computed by the `lpips` package itself: `lpips.LPIPS(net=…, version="0.1")`
  with its learned linear layers (shipped inside the package) on ImageNet-pretrained AlexNet / VGG / SqueezeNet
  features (torchvision weights, downloaded by torchvision on first use). Parameters: `net` ("alex" default,
  "vgg", "squeeze"); `pnet_rand` (random backbone, for tests only). Inputs are our [-1, 1] RGB images as is.
* `lpips_synthface` — a stand-in for the embedded synthetic world, **not LPIPS-alex**: the same recipe on the
  synthetic world's own features, without learned weights. Features are the outputs of the attribute judge's
  conv trunk (role "attributes": the stem and each residual stage, 64 x 64 input), each unit-normalised over
  channels (`lpips.normalize_tensor`), squared difference summed over channels, averaged over space, summed over
  layers — exactly `lpips.LPIPS(lpips=False)`'s arithmetic with the judge trunk in place of AlexNet. Its scale
  is not comparable to LPIPS numbers in papers.
"""

from __future__ import annotations

import torch

from metrics.base import EditBatch, Metric, ScoringContext, concat
from metrics.judges import in_chunks, is_loss_network, judge_network

NETS = ("alex", "vgg", "squeeze")
# torchvision's ImageNet weights each LPIPS backbone is built on (downloaded once into the torch hub cache)
TORCHVISION_WEIGHTS = {"alex": ("AlexNet", "alexnet-owt-7be5be79.pth"), "vgg": ("VGG16", "vgg16-397923af.pth"),
                       "squeeze": ("SqueezeNet 1.1", "squeezenet1_1-b8a52dc0.pth")}
TORCHVISION_URL = "https://download.pytorch.org/models/"


def build_lpips(net: str = "alex", pnet_rand: bool = False, device: str | torch.device = "cpu", who: str = "lpips",
                instead: str | None = None):
    """The `lpips` package's LPIPS v0.1 (learned linear layers) on `net`, frozen, in eval mode, on `device`: the one
    builder of the `lpips` metric and of the projection's LPIPS perceptual term (`methods.inversion`).

    `pnet_rand`: random backbone weights (tests only; needs no download). `who` prefixes the errors; `instead`
    names an alternative the error suggests. BenchError for an unknown net, or when the backbone's torchvision
    weights are not in the torch hub cache and cannot be downloaded."""
    import lpips

    from bench.errors import BenchError
    from zoo.checkpoints import error_detail

    if net not in NETS:
        raise BenchError(f"{who}: unknown net {net!r}; valid: {', '.join(NETS)}")
    try:
        network = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=pnet_rand, verbose=False)
    except Exception as exc:  # no cached torchvision backbone weights and no network
        label, file = TORCHVISION_WEIGHTS[net]
        raise BenchError(
            f"{who}: cannot build LPIPS-{net} ({error_detail(exc)}); it needs torchvision's ImageNet "
            f"{label} weights ({file}), downloaded once from {TORCHVISION_URL}{file} into the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints) on a machine that is online, plus the lpips package's own "
            "linear-layer weights (shipped with the package)" + (f"; or use {instead}" if instead else "")) from exc
    return network.to(device).eval().requires_grad_(False)


class Lpips(Metric):
    """LPIPS distance between source and edit (the `lpips` package, learned linear weights)."""

    name = "lpips"
    higher_is_better = False

    def __init__(self, context: ScoringContext, net: str = "alex", pnet_rand: bool = False, batch_size: int = 32):
        self.net = net
        self.network = build_lpips(net, pnet_rand, context.device)
        self.batch_size = batch_size
        super().__init__(context, net=net, pnet_rand=pnet_rand, batch_size=batch_size)

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        device = self.context.device
        return in_chunks(lambda x, y: self.network(x.to(device), y.to(device)).reshape(-1).cpu(), (a, b),
                         self.batch_size)

    def update(self, batch: EditBatch) -> None:
        self._values.append(self.distance(batch.source_images, batch.edited_images))

    def compute(self) -> torch.Tensor:
        return concat(self._values)

    def judge_is_loss_network(self) -> bool:
        """LPIPS with the same backbone used as a loss in the run (built separately, so compared by kind)."""
        import lpips

        return is_loss_network(self.context, self.network, same=lambda member: isinstance(member, lpips.LPIPS)
                               and getattr(member, "pnet_type", None) == self.net)


class SynthFeatures:
    """Multi-layer features of the synthetic world's attribute judge trunk (stem + each stage), unit-normalised
    over channels. The images go through the judge's own input handling (`AttributeJudge.resize`, to 64 x 64) and
    then the trunk's layers one by one; the judge's heads are not run."""

    def __init__(self, judge):
        self.judge = judge
        trunk = judge.trunk
        self.layers = [trunk.stem, *trunk.stages]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        import lpips

        device = next(self.judge.parameters()).device
        x = self.judge.resize(images.to(device).float())
        feats: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x)
            feats.append(lpips.normalize_tensor(x))
        return feats


def feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-without-weights distance [N] between unit-normalised feature lists (sum over layers of the spatial
    mean of the channel-summed squared difference)."""
    return sum(((x - y) ** 2).sum(dim=1).mean(dim=(1, 2)) for x, y in zip(a, b))


class LpipsSynthface(Metric):
    """LPIPS-style distance on the synthetic attribute judge's trunk features (no learned weights)."""

    name = "lpips_synthface"
    higher_is_better = False

    def __init__(self, context: ScoringContext, role: str = "attributes", batch_size: int = 64):
        self.judge = judge_network(context, role, self.name)
        self.features = SynthFeatures(self.judge)
        self.batch_size = batch_size
        super().__init__(context, role=role, batch_size=batch_size)

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return in_chunks(lambda x, y: feature_distance(self.features(x), self.features(y)).cpu(), (a, b),
                         self.batch_size)

    def update(self, batch: EditBatch) -> None:
        self._values.append(self.distance(batch.source_images, batch.edited_images))

    def compute(self) -> torch.Tensor:
        return concat(self._values)

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.judge)


__all__ = ["build_lpips", "Lpips", "LpipsSynthface", "SynthFeatures", "feature_distance"]
