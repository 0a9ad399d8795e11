"""The parameter space of the synthetic face world: the one home of the identity, attribute and domain tables.

A face is a `FaceParams` batch:

* `identity` [N, N_ID] floats in [0, 1]: who the person is (face shape, skin, eyes, nose, mouth, ...);
  see `IDENTITY_PARAMS`. Sampled uniformly per person; an edit never changes it.
* `attrs` name -> [N] tensor: the editable attributes of `ATTRIBUTES`. Categorical and binary attributes are
  long class indices into their value names; `smile` is a float in [-1, 1] (frown .. big smile) whose caption
  class comes from `SMILE_BINS`.
* `pose` [N, 3] floats in [-1, 1]: nuisance (horizontal shift, vertical shift, light direction); a few pixels.
* `domain` [N] long: index into `DOMAIN_NAMES` (`zoo.synthface.domains`).

Captions (`captions.py`), attribute judges and editing suites read their vocabularies from `ATTRIBUTES`,
`ATTRIBUTE_SPECS` and `DOMAINS` here, never from their own copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .domains import DOMAIN_NAMES, DOMAINS, domain_index

__all__ = [
    "IDENTITY_PARAMS", "N_ID", "ATTRIBUTE_SPECS", "ATTRIBUTES", "CONTINUOUS_ATTRIBUTES", "SMILE_BINS",
    "DOMAINS", "DOMAIN_NAMES", "AttributeSpec", "FaceParams", "sample_identities", "sample_attributes",
    "sample_params", "with_attribute", "with_domain", "with_identity", "vary", "attribute_class",
    "value_index", "value_name", "as_dict", "from_dict",
]

# Identity parameters, each a float in [0, 1]; render.py maps them to geometry and colours.
IDENTITY_PARAMS: tuple[str, ...] = (
    "face_width",      # half-width of the face ellipse
    "face_length",     # half-height of the face ellipse
    "jaw",             # 0 rounded jaw .. 1 narrow pointed chin
    "skin_tone",       # 0 light .. 1 dark
    "skin_warmth",     # 0 pinkish .. 1 olive/yellowish
    "eye_size",
    "eye_spacing",
    "eye_height",      # vertical position of the eyes
    "iris_color",      # 0 dark brown, hazel, green, blue, 1 grey-blue
    "brow_thickness",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_thickness",
    "masculinity",     # 0 feminine .. 1 masculine: jaw breadth, brow weight, lip fullness; caption noun
)
N_ID = len(IDENTITY_PARAMS)


@dataclass(frozen=True)
class AttributeSpec:
    """An editable attribute. `values`: the value names (class order). `kind`: "categorical", "binary" or
    "continuous". For the continuous `smile`: `bins` are the class boundaries and `centers` the float written
    by `with_attribute(p, "smile", "smiling")`. `probs`: sampling probabilities of the classes (categorical and
    binary). `neutral`: the value an edit starts from in a controlled suite."""

    name: str
    values: tuple[str, ...]
    kind: str
    neutral: str
    probs: tuple[float, ...] | None = None
    bins: tuple[float, ...] | None = None
    centers: tuple[float, ...] | None = None
    region: str = ""

    @property
    def continuous(self) -> bool:
        return self.kind == "continuous"


HAIR_COLORS = ("black", "brown", "blond", "red", "grey", "blue", "purple", "green", "pink")
BACKGROUNDS = ("beige", "teal", "lavender", "orange", "olive", "slate")
SMILE_BINS = (-0.35, 0.35)  # smile < -0.35: frowning; > 0.35: smiling; else neutral

ATTRIBUTE_SPECS: dict[str, AttributeSpec] = {s.name: s for s in (
    AttributeSpec("hair_color", HAIR_COLORS, "categorical", "brown", region="hair, eyebrows excluded, beard"),
    AttributeSpec("hair_style", ("bald", "short", "long", "curly", "mohawk"), "categorical", "short",
                  probs=(0.12, 0.26, 0.26, 0.2, 0.16), region="hair"),
    AttributeSpec("smile", ("frowning", "neutral", "smiling"), "continuous", "neutral",
                  bins=SMILE_BINS, centers=(-0.8, 0.0, 0.8), region="mouth, brows"),
    AttributeSpec("eyewear", ("none", "glasses", "sunglasses"), "categorical", "none",
                  probs=(0.6, 0.2, 0.2), region="eyes"),
    AttributeSpec("facial_hair", ("none", "beard", "moustache"), "categorical", "none",
                  probs=(0.6, 0.2, 0.2), region="lower face"),
    AttributeSpec("eyes_closed", ("open", "closed"), "binary", "open", probs=(0.8, 0.2), region="eyes"),
    AttributeSpec("lipstick", ("none", "lipstick"), "binary", "none", probs=(0.75, 0.25), region="mouth"),
    AttributeSpec("hat", ("none", "hat", "cap"), "categorical", "none", probs=(0.6, 0.2, 0.2),
                  region="top of the head"),
    AttributeSpec("age", ("young", "old"), "binary", "young", probs=(0.7, 0.3),
                  region="hair tint, wrinkles"),
    AttributeSpec("background", BACKGROUNDS, "categorical", "beige", region="background"),
)}
# name -> value names (class order); `ATTRIBUTE_SPECS` holds kinds, bins and sampling probabilities.
ATTRIBUTES: dict[str, tuple[str, ...]] = {k: s.values for k, s in ATTRIBUTE_SPECS.items()}
CONTINUOUS_ATTRIBUTES: tuple[str, ...] = tuple(k for k, s in ATTRIBUTE_SPECS.items() if s.continuous)


def _spec(name: str) -> AttributeSpec:
    try:
        return ATTRIBUTE_SPECS[name]
    except KeyError:
        raise KeyError(f"unknown attribute {name!r}; known: {', '.join(ATTRIBUTE_SPECS)}") from None


def value_index(name: str, value: str | int) -> int:
    """Class index of a value of an attribute (by name or index)."""
    spec = _spec(name)
    if isinstance(value, str):
        if value not in spec.values:
            raise ValueError(f"attribute {name!r} has no value {value!r}; values: {', '.join(spec.values)}")
        return spec.values.index(value)
    value = int(value)
    if not 0 <= value < len(spec.values):
        raise ValueError(f"attribute {name!r} class {value} out of range 0..{len(spec.values) - 1}")
    return value


def value_name(name: str, index: int) -> str:
    return _spec(name).values[value_index(name, index)]


def attribute_class(params: "FaceParams", name: str) -> Tensor:
    """[N] long class indices of an attribute (continuous attributes are binned)."""
    spec = _spec(name)
    v = params.attrs[name]
    if spec.continuous:
        return torch.bucketize(v.float(), torch.tensor(spec.bins, dtype=torch.float32, device=v.device))
    return v.long()


@dataclass
class FaceParams:
    """A batch of faces (see the module docstring)."""

    identity: Tensor
    attrs: dict[str, Tensor]
    pose: Tensor
    domain: Tensor

    def __post_init__(self) -> None:
        n = self.identity.shape[0]
        if self.identity.shape != (n, N_ID):
            raise ValueError(f"identity must be [N, {N_ID}], got {tuple(self.identity.shape)}")
        missing = set(ATTRIBUTE_SPECS) - set(self.attrs)
        if missing:
            raise ValueError(f"missing attributes: {', '.join(sorted(missing))}")
        for k, v in self.attrs.items():
            if v.shape != (n,):
                raise ValueError(f"attribute {k!r} must be [N={n}], got {tuple(v.shape)}")
        if self.pose.shape != (n, 3) or self.domain.shape != (n,):
            raise ValueError("pose must be [N, 3] and domain [N]")

    def __len__(self) -> int:
        return self.identity.shape[0]

    def __getitem__(self, idx) -> "FaceParams":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return FaceParams(self.identity[idx], {k: v[idx] for k, v in self.attrs.items()},
                          self.pose[idx], self.domain[idx])

    def clone(self) -> "FaceParams":
        return FaceParams(self.identity.clone(), {k: v.clone() for k, v in self.attrs.items()},
                          self.pose.clone(), self.domain.clone())

    def to(self, device) -> "FaceParams":
        return FaceParams(self.identity.to(device), {k: v.to(device) for k, v in self.attrs.items()},
                          self.pose.to(device), self.domain.to(device))

    def repeat_interleave(self, k: int) -> "FaceParams":
        """Each face k times in a row (then edit or vary the copies)."""
        return FaceParams(self.identity.repeat_interleave(k, 0),
                          {n: v.repeat_interleave(k, 0) for n, v in self.attrs.items()},
                          self.pose.repeat_interleave(k, 0), self.domain.repeat_interleave(k, 0))

    @staticmethod
    def cat(batches: Sequence["FaceParams"]) -> "FaceParams":
        return FaceParams(torch.cat([b.identity for b in batches]),
                          {k: torch.cat([b.attrs[k] for b in batches]) for k in ATTRIBUTE_SPECS},
                          torch.cat([b.pose for b in batches]), torch.cat([b.domain for b in batches]))

    def labels(self) -> dict[str, Tensor]:
        """Attribute class indices (smile binned) plus `domain`: the targets of an attribute judge."""
        out = {k: attribute_class(self, k) for k in ATTRIBUTE_SPECS}
        out["domain"] = self.domain.clone()
        return out

    def describe(self, i: int) -> dict[str, object]:
        """Readable values of face i."""
        d: dict[str, object] = {"domain": DOMAIN_NAMES[int(self.domain[i])]}
        for k, spec in ATTRIBUTE_SPECS.items():
            c = int(attribute_class(self[i], k)[0])
            d[k] = spec.values[c] if not spec.continuous else (spec.values[c], round(float(self.attrs[k][i]), 3))
        return d


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def sample_identities(n: int, seed: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """[n, N_ID] identity parameters, uniform in [0, 1]."""
    return torch.rand(n, N_ID, generator=_generator(seed, generator))


def sample_attributes(n: int, seed: int | None = None, generator: torch.Generator | None = None
                      ) -> dict[str, Tensor]:
    """Independent attribute draws (categorical: the spec's probabilities, uniform if none; smile: uniform)."""
    g = _generator(seed, generator)
    out: dict[str, Tensor] = {}
    for name, spec in ATTRIBUTE_SPECS.items():
        if spec.continuous:
            out[name] = torch.rand(n, generator=g) * 2 - 1
        else:
            probs = torch.tensor(spec.probs if spec.probs else [1.0] * len(spec.values), dtype=torch.float64)
            cdf = (probs.cumsum(0) / probs.sum())[:-1]
            out[name] = torch.bucketize(torch.rand(n, generator=g, dtype=torch.float64), cdf, right=True)
    return out


def _domain_tensor(domain, n: int, g: torch.Generator) -> Tensor:
    if isinstance(domain, (str, int)):
        return torch.full((n,), domain_index(domain), dtype=torch.long)
    if isinstance(domain, Tensor):
        return domain.long().expand(n).clone()
    choices = torch.tensor([domain_index(d) for d in domain])  # a list: draw uniformly among these
    return choices[torch.randint(len(choices), (n,), generator=g)]


def sample_params(n: int, seed: int | None = None, generator: torch.Generator | None = None,
                  domain: str | int | Sequence[str] | Tensor = "photo", identity: Tensor | None = None,
                  pose_scale: float = 1.0, **fixed) -> FaceParams:
    """A random batch of n faces. `domain`: one domain for all, or a list to draw from. `identity`: [n, N_ID]
    (or [N_ID]) to reuse people. `fixed`: attribute values (name, index or float) applied to every face, e.g.
    `sample_params(8, seed=1, hair_style="bald")`. `pose_scale=0` centres every face."""
    g = _generator(seed, generator)
    ident = sample_identities(n, generator=g)
    if identity is not None:
        ident = identity.float().reshape(-1, N_ID).expand(n, N_ID).clone()
    attrs = sample_attributes(n, generator=g)
    pose = (torch.rand(n, 3, generator=g) * 2 - 1) * pose_scale
    p = FaceParams(ident, attrs, pose, _domain_tensor(domain, n, g))
    for name, value in fixed.items():
        p = with_attribute(p, name, value)
    return p


def _value_tensor(name: str, value, n: int) -> Tensor:
    spec = _spec(name)
    if isinstance(value, Tensor):
        v = value.expand(n).clone()
        return v.float().clamp(-1, 1) if spec.continuous else v.long()
    if spec.continuous:
        if isinstance(value, str):
            value = spec.centers[value_index(name, value)]
        return torch.full((n,), float(value)).clamp(-1, 1)
    if isinstance(value, bool):
        value = int(value)
    return torch.full((n,), value_index(name, value), dtype=torch.long)


def with_attribute(params: FaceParams, name: str, value) -> FaceParams:
    """An edited copy: same identity, pose and domain, one attribute set to `value` (a value name, a class index,
    a bool for binary attributes, a float for smile, or a per-face [N] tensor)."""
    out = params.clone()
    out.attrs[name] = _value_tensor(name, value, len(params)).to(params.identity.device)
    return out


def with_domain(params: FaceParams, domain: str | int) -> FaceParams:
    out = params.clone()
    out.domain = torch.full_like(out.domain, domain_index(domain))
    return out


def with_identity(params: FaceParams, identity: Tensor) -> FaceParams:
    out = params.clone()
    out.identity = identity.float().reshape(-1, N_ID).expand(len(params), N_ID).clone()
    return out


def vary(params: FaceParams, seed: int | None = None, generator: torch.Generator | None = None,
         attributes: bool | Sequence[str] = True, pose: bool = True,
         domains: Sequence[str] | None = None) -> FaceParams:
    """Same people, other looks: resample the named attributes (True: all), the pose, and the domain (drawn
    from `domains` if given). The identity network's positive pairs are `params` and `vary(params, ...)`."""
    g = _generator(seed, generator)
    n = len(params)
    fresh = sample_attributes(n, generator=g)
    out = params.clone()
    names = list(ATTRIBUTE_SPECS) if attributes is True else list(attributes or [])
    for k in names:
        out.attrs[k] = fresh[k]
    if pose:
        out.pose = torch.rand(n, 3, generator=g) * 2 - 1
    if domains is not None:
        out.domain = _domain_tensor(list(domains), n, g)
    return out


def as_dict(params: FaceParams) -> Mapping[str, Tensor]:
    """Flat dict of tensors (for saving next to a data set)."""
    d = {"identity": params.identity, "pose": params.pose, "domain": params.domain}
    d.update({f"attr.{k}": v for k, v in params.attrs.items()})
    return d


def from_dict(d: Mapping[str, Tensor]) -> FaceParams:
    return FaceParams(d["identity"], {k[5:]: v for k, v in d.items() if k.startswith("attr.")},
                      d["pose"], d["domain"])
