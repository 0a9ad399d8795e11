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

from metrics.base import EditBatch, Metric, ScoringContext
from metrics.judges import is_loss_network, judge_network

NETS = ("alex", "vgg", "squeeze")


class Lpips(Metric):
    """LPIPS distance between source and edit (the `lpips` package, learned linear weights)."""

    name = "lpips"
    higher_is_better = False

    def __init__(self, context: ScoringContext, net: str = "alex", pnet_rand: bool = False, batch_size: int = 32):
        import lpips

        from bench.errors import BenchError

        if net not in NETS:
            raise BenchError(f"lpips: unknown net {net!r}; valid: {', '.join(NETS)}")
        self.net = net
        try:
            self.network = lpips.LPIPS(net=net, version="0.1", pnet_rand=pnet_rand, verbose=False)
        except Exception as exc:  # no cached torchvision backbone weights and no network
            first = (str(exc).splitlines() or [""])[0]
            raise BenchError(f"lpips: cannot build LPIPS-{net} ({type(exc).__name__}: {first}); torchvision "
                             f"downloads its ImageNet {net} weights on first use") from exc
        self.network = self.network.to(context.device).eval().requires_grad_(False)
        self.batch_size = batch_size
        super().__init__(context, net=net, pnet_rand=pnet_rand, batch_size=batch_size)

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        device = self.context.device
        values = [self.network(x.to(device), y.to(device)).reshape(-1).cpu()
                  for x, y in zip(a.split(self.batch_size), b.split(self.batch_size))]
        return torch.cat(values)

    def update(self, batch: EditBatch) -> None:
        self._values.append(self.distance(batch.source_images, batch.edited_images))

    def compute(self) -> torch.Tensor:
        return torch.cat(self._values) if self._values else torch.zeros(0)

    def judge_is_loss_network(self) -> bool:
        """LPIPS with the same backbone used as a loss in the run (built separately, so compared by kind)."""
        import lpips

        for value in self.context.losses.values():
            for member in value if isinstance(value, list) else [value]:
                member = getattr(member, "network", member)
                if isinstance(member, lpips.LPIPS) and getattr(member, "pnet_type", None) == self.net:
                    return True
        return False


class SynthFeatures:
    """Multi-layer features of the synthetic world's attribute judge trunk (stem + each stage), 64 x 64 input."""

    def __init__(self, judge):
        self.judge = judge
        trunk = judge.trunk
        self.layers = [trunk.stem, *trunk.stages]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        import lpips
        import torch.nn.functional as F

        from zoo.synthface.train_attributes import INPUT_SIZE

        device = next(self.judge.parameters()).device
        x = images.to(device).float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        feats = []
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

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([feature_distance(self.features(x), self.features(y)).cpu()
                          for x, y in zip(a.split(self.batch_size), b.split(self.batch_size))])

    def update(self, batch: EditBatch) -> None:
        self._values.append(self.distance(batch.source_images, batch.edited_images))

    def compute(self) -> torch.Tensor:
        return torch.cat(self._values) if self._values else torch.zeros(0)

    def judge_is_loss_network(self) -> bool:
        return is_loss_network(self.context, self.judge)


__all__ = ["Lpips", "LpipsSynthface", "SynthFeatures", "feature_distance"]
