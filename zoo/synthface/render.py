"""Procedural, vectorised renderer of the synthetic face world.

`render(params)` turns a `FaceParams` batch into [N, 3, S, S] RGB in [-1, 1] (S = 64 by default). Every shape is a
signed distance field on the pixel grid (x right, y down, both in [-1, 1]), turned into a soft coverage mask with a
one-pixel smooth step and composited back to front:

  background, shirt, long/curly back hair, neck, ears, face, (zombie eye sockets), wrinkles, nose, brows, eyes,
  beard, mouth, moustache, front hair, eyewear, hat

then the image domain (`domains.apply_domain`) restyles the photo render. All work is batched torch ops on one
device; nothing is random at render time, so the same parameters give bit-identical images.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .domains import DOMAIN_NAMES, apply_domain
from .params import ATTRIBUTE_SPECS, IDENTITY_PARAMS, FaceParams

__all__ = ["render", "render_with_masks", "landmarks", "HAIR_RGB", "BACKGROUND_RGB", "SKIN_STOPS"]

# Palettes (RGB in [0, 1]), in the class order of params.ATTRIBUTES.
HAIR_RGB = {
    "black": (0.07, 0.06, 0.06), "brown": (0.42, 0.25, 0.12), "blond": (0.93, 0.80, 0.42),
    "red": (0.78, 0.22, 0.06), "grey": (0.74, 0.74, 0.76), "blue": (0.12, 0.32, 0.92),
    "purple": (0.55, 0.18, 0.78), "green": (0.12, 0.66, 0.24), "pink": (1.00, 0.50, 0.74),
}
BACKGROUND_RGB = {
    "beige": (0.91, 0.86, 0.73), "teal": (0.18, 0.56, 0.56), "lavender": (0.76, 0.72, 0.92),
    "orange": (0.96, 0.60, 0.22), "olive": (0.52, 0.54, 0.22), "slate": (0.34, 0.40, 0.50),
}
SKIN_STOPS = ((0.98, 0.85, 0.75), (0.82, 0.60, 0.45), (0.42, 0.27, 0.18))  # light, medium, dark
IRIS_STOPS = ((0.30, 0.17, 0.08), (0.52, 0.38, 0.14), (0.25, 0.55, 0.25), (0.20, 0.45, 0.85), (0.55, 0.62, 0.70))
SHIRT_RGB = (0.26, 0.26, 0.30)
HAT_RGB, HAT_BAND_RGB = (0.20, 0.18, 0.17), (0.78, 0.12, 0.10)
CAP_RGB, CAP_VISOR_RGB = (0.94, 0.94, 0.91), (0.14, 0.20, 0.38)
LIPSTICK_RGB = (0.80, 0.04, 0.30)
RIM_RGB = (0.08, 0.07, 0.07)
OLD_HAIR_RGB = (0.82, 0.82, 0.82)

_ZOOM, _YOFF = 1.16, 0.04  # face units -> image: x_img = x * _ZOOM, y_img = (y - _YOFF) * _ZOOM
_ZOMBIE = DOMAIN_NAMES.index("zombie")
_MARBLE = DOMAIN_NAMES.index("marble")


# ---------------------------------------------------------------------------------------------- sdf helpers
@functools.lru_cache(maxsize=8)
def _grid(size: int, device: str) -> tuple[Tensor, Tensor]:
    c = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size * 2 - 1
    return c.view(1, 1, size), c.view(1, size, 1)


def _ellipse(x: Tensor, y: Tensor, a, b) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse with half-axes a, b (x, y relative to its centre)."""
    px, py = x / a, y / b
    k0 = torch.sqrt(px * px + py * py)
    k1 = torch.sqrt((px / a) ** 2 + (py / b) ** 2)
    return k0 * (k0 - 1) / (k1 + 1e-6)


def _box(x: Tensor, y: Tensor, hx, hy, r=0.0) -> Tensor:
    """Signed distance to a rounded box with half extents hx, hy and corner radius r."""
    qx = x.abs() - hx + r
    qy = y.abs() - hy + r
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.minimum(torch.maximum(qx, qy), torch.zeros_like(qx)) - r


def _segment(x: Tensor, y: Tensor, ax, ay, bx, by) -> Tensor:
    """Distance to the segment (ax, ay)-(bx, by)."""
    pax, pay = x - ax, y - ay
    bax, bay = bx - ax, by - ay
    h = ((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-8)).clamp(0, 1)
    return torch.sqrt((pax - bax * h) ** 2 + (pay - bay * h) ** 2)


def _rgb(c, n: int | None = None) -> Tensor:
    t = torch.tensor(c, dtype=torch.float32)
    return t.view(1, 3) if n is None else t.view(1, 3).expand(n, 3)


def _lerp3(stops, t: Tensor) -> Tensor:
    """Piecewise-linear colour ramp through `stops` at t in [0, 1]: [N] -> [N, 3]."""
    s = torch.tensor(stops, dtype=torch.float32)
    pos = t.clamp(0, 1) * (len(stops) - 1)
    i = pos.floor().long().clamp(max=len(stops) - 2)
    f = (pos - i.float()).unsqueeze(1)
    return s[i] * (1 - f) + s[i + 1] * f


class _Canvas:
    """Back-to-front compositing of soft masks on a batch of images; tracks the person (foreground) coverage.

    Layers are drawn on a band of rows (`band`) and, for optional features, on the subset of faces that have
    them (`_on_subset`), so a layer costs only the pixels it can touch."""

    def __init__(self, img: Tensor, person: Tensor, X: Tensor, Y: Tensor, size: int, masks: bool):
        self.img = img
        self.person = person
        self.X, self.Y = X, Y  # [1,1,S] and [1,S,1] in face units
        self.size = size
        self.px = 2.0 / (size * _ZOOM)  # one pixel in face units
        self.want_masks = masks
        self.masks: dict[str, Tensor] = {}

    def band(self, lo, hi) -> tuple[Tensor, int]:
        """Rows covering face-unit heights lo..hi of every face (plus a margin): (Y rows [1,h,1], first row)."""
        s = self.size
        lo_f = float(lo.min()) if isinstance(lo, Tensor) else float(lo)
        hi_f = float(hi.max()) if isinstance(hi, Tensor) else float(hi)
        r0 = max(0, math.floor(((lo_f - _YOFF) * _ZOOM + 1) * s / 2) - 2)
        r1 = min(s, math.ceil(((hi_f - _YOFF) * _ZOOM + 1) * s / 2) + 2)
        r1 = max(r1, r0 + 1)
        return self.Y[:, r0:r1, :], r0

    def cover(self, sdf: Tensor, soft: float = 1.0) -> Tensor:
        t = (0.5 - sdf / (self.px * soft)).clamp(0, 1)
        return t * t * (3 - 2 * t)

    def paint(self, alpha: Tensor, color: Tensor, r0: int = 0, foreground: bool = True) -> None:
        """alpha [N,h,W] over rows r0..r0+h; color [N,3] / [1,3] or [N,3,h,W]."""
        h = alpha.shape[-2]
        if color.dim() == 2:
            color = color[:, :, None, None]
        img = self.img[:, :, r0:r0 + h]
        img.addcmul_(color - img, alpha.unsqueeze(1))
        if foreground:
            person = self.person[:, r0:r0 + h]
            person.addcmul_(1 - person, alpha)

    def record(self, name: str, alpha: Tensor, r0: int = 0) -> None:
        if not self.want_masks:
            return
        full = self.masks.setdefault(name, torch.zeros_like(self.person))
        h = alpha.shape[-2]
        full[:, r0:r0 + h] = torch.maximum(full[:, r0:r0 + h], alpha.expand(full.shape[0], h, -1))


def _on_subset(cv: _Canvas, G: dict[str, Tensor], cond: Tensor, fn) -> None:
    """Run the drawing function fn(canvas, G) on the faces where cond [N] (bool) holds."""
    idx = cond.reshape(-1).nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    if idx.numel() == cond.numel():
        fn(cv, G)
        return
    sub = _Canvas(cv.img.index_select(0, idx), cv.person.index_select(0, idx), cv.X, cv.Y, cv.size,
                  cv.want_masks)
    fn(sub, {k: v.index_select(0, idx) for k, v in G.items()})
    cv.img.index_copy_(0, idx, sub.img)
    cv.person.index_copy_(0, idx, sub.person)
    for name, m in sub.masks.items():
        full = cv.masks.setdefault(name, torch.zeros_like(cv.person))
        full.index_copy_(0, idx, torch.maximum(full.index_select(0, idx), m))


def _col(v: Tensor) -> Tensor:
    """[N] -> [N,1,1] for broadcasting against the grid."""
    return v.view(-1, 1, 1)


# ---------------------------------------------------------------------------------------------- geometry
def _geometry(p: FaceParams) -> dict[str, Tensor]:
    """Per-face layout in grid units ([N] tensors), shared by the renderer and `landmarks`."""
    idn = {k: p.identity[:, i] for i, k in enumerate(IDENTITY_PARAMS)}
    masc = idn["masculinity"]
    g: dict[str, Tensor] = {}
    g["cx"] = 0.06 * p.pose[:, 0]
    g["fy"] = 0.08 + 0.05 * p.pose[:, 1]
    g["a"] = 0.38 + 0.13 * idn["face_width"] + 0.03 * masc
    g["b"] = 0.50 + 0.11 * idn["face_length"]
    g["taper"] = 0.12 + 0.32 * idn["jaw"] - 0.10 * masc
    g["ey"] = g["fy"] - 0.05 + 0.07 * (idn["eye_height"] - 0.5)
    g["ex"] = 0.15 + 0.07 * idn["eye_spacing"] + 0.25 * (g["a"] - 0.45)
    g["ew"] = 0.080 + 0.035 * idn["eye_size"]
    g["eh"] = 0.55 * g["ew"]
    g["ny"] = g["ey"] + 0.14 + 0.08 * idn["nose_length"]
    g["nw"] = 0.045 + 0.035 * idn["nose_width"] + 0.01 * masc
    g["my"] = torch.minimum(g["ny"] + 0.115, g["fy"] + 0.80 * g["b"])
    g["mw"] = 0.10 + 0.07 * idn["mouth_width"] + 0.12 * (g["a"] - 0.45)
    g["lip"] = 0.013 + 0.016 * idn["lip_thickness"] + 0.008 * (1 - masc)
    g["brow_t"] = 0.012 + 0.020 * idn["brow_thickness"] + 0.008 * masc
    g["by"] = g["ey"] - g["eh"] - 0.065
    g["yh"] = g["fy"] - 0.62 * g["b"]  # hairline at the centre of the forehead
    g["y_brim"] = g["fy"] - 0.55 * g["b"]  # hat brim
    g["y_cap"] = g["fy"] - 0.62 * g["b"]  # lower edge of a cap's dome
    return g


def landmarks(params: FaceParams, size: int = 64) -> dict[str, Tensor]:
    """Pixel coordinates ([N, 2] as (x, y), origin top-left) of the face's landmarks and its bounding box
    ([N, 4] x0, y0, x1, y1), for region-restricted metrics and tests."""
    g = _geometry(params)

    def px(x, y):
        return torch.stack([(x * _ZOOM + 1) * size / 2, ((y - _YOFF) * _ZOOM + 1) * size / 2], 1)

    return {
        "left_eye": px(g["cx"] - g["ex"], g["ey"]),
        "right_eye": px(g["cx"] + g["ex"], g["ey"]),
        "nose": px(g["cx"], g["ny"]),
        "mouth": px(g["cx"], g["my"]),
        "face_box": torch.cat([px(g["cx"] - g["a"], g["fy"] - g["b"]), px(g["cx"] + g["a"], g["fy"] + g["b"])], 1),
    }


# ---------------------------------------------------------------------------------------------- renderer
MASK_NAMES = ("face", "eyes", "mouth", "facial_hair", "hair", "eyewear", "hat", "person", "background")


def _prepare(p: FaceParams) -> dict[str, Tensor]:
    """Every per-face quantity the layers need: geometry [N,1,1], switches [N,1,1] and colours [N,3]."""
    n = len(p)
    G = {k: _col(v) for k, v in _geometry(p).items()}
    idn = {k: p.identity[:, i] for i, k in enumerate(IDENTITY_PARAMS)}
    at = p.attrs

    def is_(name: str, value: str) -> Tensor:
        return (at[name] == ATTRIBUTE_SPECS[name].values.index(value)).float()

    old, zombie, marble = is_("age", "old"), (p.domain == _ZOMBIE).float(), (p.domain == _MARBLE).float()
    G.update(smile=_col(at["smile"].float().clamp(-1, 1)), light=_col(p.pose[:, 2]),
             masc=_col(idn["masculinity"]), old=_col(old), zombie=_col(zombie), marble=_col(marble),
             lipstick=_col(is_("lipstick", "lipstick")), long=_col(is_("hair_style", "long")),
             curly=_col(is_("hair_style", "curly")), sun=_col(is_("eyewear", "sunglasses")))
    # colours
    skin = _lerp3(SKIN_STOPS, idn["skin_tone"])
    skin = skin + torch.tensor([0.03, 0.02, -0.05]) * (idn["skin_warmth"] - 0.5).unsqueeze(1) * 2
    skin = torch.lerp(skin, skin.mean(1, keepdim=True) + torch.tensor([0.02, 0.0, -0.02]), 0.25 * old.unsqueeze(1))
    zskin = torch.tensor([0.50, 0.62, 0.44]) * (0.55 + 0.7 * skin.mean(1, keepdim=True))
    skin = torch.lerp(skin, zskin, 0.8 * zombie.unsqueeze(1)).clamp(0, 1)
    hair_tab = torch.tensor([HAIR_RGB[c] for c in ATTRIBUTE_SPECS["hair_color"].values])
    hair = torch.lerp(hair_tab[at["hair_color"]], torch.tensor(OLD_HAIR_RGB).expand(n, 3), 0.55 * old.unsqueeze(1))
    brow = torch.lerp(skin * 0.30, torch.tensor([0.13, 0.09, 0.07]).expand(n, 3), 0.6)
    brow = torch.lerp(brow, torch.tensor([0.62, 0.62, 0.62]).expand(n, 3), 0.6 * old.unsqueeze(1))
    iris = _lerp3(IRIS_STOPS, idn["iris_color"])
    iris = torch.lerp(iris, torch.tensor([0.85, 0.85, 0.62]).expand(n, 3), zombie.unsqueeze(1))
    sclera = torch.lerp(_rgb((0.97, 0.97, 0.95), n), skin * 0.97, marble.unsqueeze(1))
    lip = skin * torch.tensor([0.86, 0.58, 0.58]) + torch.tensor([0.07, 0.0, 0.0])
    lip = torch.lerp(lip, torch.tensor([0.32, 0.22, 0.30]).expand(n, 3), zombie.unsqueeze(1))
    lip = torch.lerp(lip, torch.tensor(LIPSTICK_RGB).expand(n, 3), is_("lipstick", "lipstick").unsqueeze(1))
    bg_tab = torch.tensor([BACKGROUND_RGB[c] for c in ATTRIBUTE_SPECS["background"].values])
    G.update(skin=skin, hair=hair, beard=hair * 0.80, brow=brow, iris=iris, sclera=sclera, lip_rgb=lip,
             bg=bg_tab[at["background"]])
    # the top of a hat or cap (a mohawk crest stays below it)
    hat_top = torch.where(_col(is_("hat", "hat")) > 0, G["y_brim"] - 0.40,
                          torch.where(_col(is_("hat", "cap")) > 0, G["y_cap"] - G["b"] * 0.52 + 0.02,
                                      torch.full_like(G["y_cap"], -9.0)))
    G["hat_top"] = hat_top
    return G


def _face_sdf(G, dx: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    fdy = Y - G["fy"]
    t = (fdy / G["b"]).clamp(0, 1)
    a_eff = G["a"] * (1 - G["taper"] * t * t)
    return _ellipse(dx, fdy, a_eff, G["b"]), a_eff


def _strands(cv: _Canvas, dx: Tensor) -> Tensor:
    return 1 + 0.10 * torch.sin(dx * cv.size * 1.3)


def _curl_tex(cv: _Canvas, Y: Tensor) -> Tensor:
    s = cv.size
    return 1 - 0.22 * (0.5 + 0.5 * torch.sin(cv.X * s * 0.95) * torch.sin(Y * s * 0.95))


def _back_long_sdf(G, dx: Tensor, Y: Tensor) -> Tensor:
    a, b, fy = G["a"], G["b"], G["fy"]
    return torch.minimum(_ellipse(dx, Y - fy + 0.03, a + 0.09, b + 0.08),
                         _box(dx, Y - (fy + b * 0.55), a + 0.13, b * 0.75, 0.10))


def _curl_sdf(G, dx: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    bumps = 0.025 * torch.sin(torch.atan2(Y - G["fy"] + 0.06, dx) * 16)
    return _ellipse(dx, Y - G["fy"] + 0.06, G["a"] + 0.17, G["b"] + 0.11) + bumps, bumps


def _hairline(G, dx: Tensor) -> Tensor:
    side = ((dx.abs() / G["a"] - 0.45) / 0.5).clamp(0, 1)
    return G["yh"] + (G["ey"] - 0.03 - G["yh"]) * side ** 1.5


def _hair_cap_sdf(G, dx: Tensor, Y: Tensor) -> Tensor:
    return torch.maximum(_ellipse(dx, Y - G["fy"] + 0.03, G["a"] + 0.055, G["b"] + 0.06), Y - _hairline(G, dx))


# ---- layers, back to front
def _shirt_neck(cv: _Canvas, G) -> None:
    dx = cv.X - G["cx"]
    Y, r0 = cv.band(0.70, 9.0)
    cv.paint(cv.cover(_ellipse(dx, Y - 1.34, 0.95, 0.56)), _rgb(SHIRT_RGB), r0)


def _back_hair(cv: _Canvas, G) -> None:
    fy, b = G["fy"], G["b"]
    Y, r0 = cv.band(fy - b - 0.3, fy + 1.3 * b + 0.1)
    dx = cv.X - G["cx"]
    curly = G["curly"]
    m = cv.cover(_back_long_sdf(G, dx, Y)) * G["long"] + \
        cv.cover(_curl_sdf(G, dx, Y)[0]) * curly * cv.cover(Y - fy - 0.25)
    tex = curly * _curl_tex(cv, Y) + (1 - curly) * _strands(cv, dx)
    cv.paint(m, G["hair"][:, :, None, None] * (0.85 * tex).unsqueeze(1), r0)
    cv.record("hair", m, r0)


def _neck(cv: _Canvas, G) -> None:
    Y, r0 = cv.band(G["fy"] + 0.5 * G["b"], 9.0)
    neck = _box(cv.X - G["cx"], Y - (G["fy"] + G["b"] + 0.12), 0.14 + 0.12 * G["a"], 0.32, 0.05)
    cv.paint(cv.cover(neck), G["skin"] * 0.80, r0)


def _ears_face(cv: _Canvas, G) -> None:
    cx, a, ey, skin = G["cx"], G["a"], G["ey"], G["skin"]
    Y, r0 = cv.band(ey - 0.06, ey + 0.2)
    for s in (-1.0, 1.0):
        cv.paint(cv.cover(_ellipse(cv.X - (cx + s * (a + 0.005)), Y - (ey + 0.07), 0.065, 0.115)), skin * 0.88, r0)
        inner = cv.cover(_ellipse(cv.X - (cx + s * (a + 0.015)), Y - (ey + 0.07), 0.03, 0.07), 2.0)
        cv.paint(inner * 0.5, skin * 0.68, r0)
    Y, r0 = cv.band(G["fy"] - G["b"], G["fy"] + G["b"])
    dx = cv.X - cx
    sdf, a_eff = _face_sdf(G, dx, Y)
    m = cv.cover(sdf)
    r = torch.sqrt((dx / a_eff) ** 2 + ((Y - G["fy"]) / G["b"]) ** 2).clamp(0, 1)
    shading = (1 - 0.22 * r ** 4) * (1 + 0.08 * G["light"] * dx / a)
    cv.paint(m, skin[:, :, None, None] * shading.unsqueeze(1), r0)
    cv.record("face", m, r0)


def _zombie_sockets(cv: _Canvas, G) -> None:
    ey, eh = G["ey"], G["eh"]
    Y, r0 = cv.band(ey - 2.2 * eh - 0.03, ey + 2.2 * eh + 0.05)
    for s in (-1.0, 1.0):
        sock = cv.cover(_ellipse(cv.X - (G["cx"] + s * G["ex"]), Y - ey - 0.01, G["ew"] * 1.45, eh * 2.1), 3.0)
        cv.paint(sock * 0.85, _rgb((0.22, 0.16, 0.20)), r0)


def _wrinkles(cv: _Canvas, G) -> None:
    cx, a, by, ey, ex, ew, eh = G["cx"], G["a"], G["by"], G["ey"], G["ex"], G["ew"], G["eh"]
    ny, nw, my, mw = G["ny"], G["nw"], G["my"], G["mw"]
    X = cv.X
    Y, r0 = cv.band(by - 0.17, my + 0.09)
    dx = X - cx
    wr = None
    for k, off in enumerate((0.075, 0.13)):  # forehead lines
        hw = a * (0.42 - 0.06 * k)
        arc = (Y - (by - off + 0.035 * (dx / hw) ** 2)).abs()
        line = torch.maximum(arc, dx.abs() - hw)
        wr = line if wr is None else torch.minimum(wr, line)
    for s in (-1.0, 1.0):
        wr = torch.minimum(wr, _segment(X, Y, cx + s * (nw + 0.035), ny - 0.02, cx + s * (mw + 0.035), my + 0.06))
        wr = torch.minimum(wr, _segment(X, Y, cx + s * (ex + ew + 0.01), ey - 0.005,
                                        cx + s * (ex + ew + 0.07), ey - 0.035))
        wr = torch.minimum(wr, _segment(X, Y, cx + s * (ex + ew + 0.01), ey + 0.01,
                                        cx + s * (ex + ew + 0.07), ey + 0.04))
        bag = torch.maximum(_ellipse(X - (cx + s * ex), Y - ey - 0.005, ew * 0.95, eh * 2.0).abs(), ey + eh - Y)
        wr = torch.minimum(wr, bag)
    m_face = cv.cover(_face_sdf(G, dx, Y)[0])
    cv.paint(cv.cover(wr - 0.011) * m_face * 0.75, G["skin"] * 0.55, r0)


def _nose(cv: _Canvas, G) -> None:
    cx, ey, ny, nw, skin = G["cx"], G["ey"], G["ny"], G["nw"], G["skin"]
    X = cv.X
    Y, r0 = cv.band(ey + 0.02, ny + 0.05)
    sgn = torch.where(G["light"] >= 0, -1.0, 1.0)
    bridge = _segment(X, Y, cx + sgn * 0.035, ey + 0.04, cx + sgn * 0.03, ny - 0.03)
    cv.paint(cv.cover(bridge - 0.012, 2.0) * 0.35, skin * 0.70, r0)
    cv.paint(cv.cover(_ellipse(X - cx, Y - ny, nw, 0.03), 2.0) * 0.55, skin * 0.78, r0)
    for s in (-1.0, 1.0):
        cv.paint(cv.cover(_ellipse(X - (cx + s * nw * 0.5), Y - ny - 0.01, 0.018, 0.011)) * 0.85, skin * 0.40, r0)
    cv.paint(cv.cover(_ellipse(X - cx, Y - ny + 0.03, 0.02, 0.02), 2.0) * 0.35, (skin * 1.12).clamp(max=1), r0)


def _brows(cv: _Canvas, G) -> None:
    """Brow arcs; a frown pulls the inner ends down, a smile raises them."""
    smile, by = G["smile"], G["by"]
    Y, r0 = cv.band(by - 0.09, by + 0.08)
    frown, joy = (-smile).clamp(min=0), smile.clamp(min=0)
    for s in (-1.0, 1.0):
        bw = G["ew"] * 1.3
        u = (cv.X - (G["cx"] + s * G["ex"])) / bw
        yb = by - 0.028 * (1 - u * u) + frown * 0.035 * (-u * s) - 0.012 * joy
        thick = G["brow_t"] * (1 - 0.35 * u * u)
        cv.paint(cv.cover(torch.maximum((Y - yb).abs() - thick, (u.abs() - 1) * bw)), G["brow"], r0)


def _eyes_open(cv: _Canvas, G) -> None:
    ey, ew, eh = G["ey"], G["ew"], G["eh"]
    Y, r0 = cv.band(ey - eh - 0.03, ey + eh + 0.03)
    iris_a = 1 - G["marble"]  # statues have blank eyes
    lid_t = 0.010 + 0.010 * (1 - G["masc"])
    for s in (-1.0, 1.0):
        ex_, ey_ = cv.X - (G["cx"] + s * G["ex"]), Y - ey
        e_sdf = _ellipse(ex_, ey_, ew, eh)
        m_e = cv.cover(e_sdf)
        cv.paint(m_e, G["sclera"], r0)
        ir = eh
        rad = torch.sqrt(ex_ ** 2 + ey_ ** 2)
        m_i = m_e * iris_a
        cv.paint(cv.cover(rad - ir) * m_i, G["iris"], r0)
        cv.paint(cv.cover(rad - ir * 0.45) * m_i, _rgb((0.03, 0.03, 0.03)), r0)
        glint = torch.sqrt((ex_ - ir * 0.35) ** 2 + (ey_ + ir * 0.35) ** 2) - ir * 0.28
        cv.paint(cv.cover(glint, 1.5) * 0.8 * m_i, _rgb((1.0, 1.0, 1.0)), r0)
        lid = torch.maximum(e_sdf.abs() - lid_t, ey_ + eh * 0.25)
        cv.paint(cv.cover(lid), _rgb((0.10, 0.07, 0.06)), r0)


def _eyes_closed(cv: _Canvas, G) -> None:
    ey, ew, eh = G["ey"], G["ew"], G["eh"]
    Y, r0 = cv.band(ey - eh - 0.03, ey + eh + 0.04)
    for s in (-1.0, 1.0):
        ex_, ey_ = cv.X - (G["cx"] + s * G["ex"]), Y - ey
        cv.paint(cv.cover(_ellipse(ex_, ey_, ew, eh)), G["skin"] * 0.90, r0)
        lash = torch.maximum(_ellipse(ex_, ey_ + eh * 0.35, ew * 0.95, eh * 0.75).abs() - 0.012, eh * 0.1 - ey_)
        cv.paint(cv.cover(lash), _rgb((0.10, 0.07, 0.06)), r0)


def _eye_region(cv: _Canvas, G) -> None:
    ey, ew, eh = G["ey"], G["ew"], G["eh"]
    top, bot = G["by"] - 0.10, ey + 1.9 * eh + 0.05  # brows to the bottom of the glasses
    Y, r0 = cv.band(top, bot)
    m = None
    for s in (-1.0, 1.0):
        box = cv.cover(_box(cv.X - (G["cx"] + s * G["ex"]), Y - (top + bot) / 2, ew * 1.6 + 0.03, (bot - top) / 2))
        m = box if m is None else torch.maximum(m, box)
    cv.record("eyes", m, r0)


def _beard_tex(cv: _Canvas, Y: Tensor) -> Tensor:
    return 1 + 0.12 * torch.sin(cv.X * cv.size * 2.1) * torch.sin(Y * cv.size * 1.7)


def _beard(cv: _Canvas, G) -> None:
    cx, a, ey, ny = G["cx"], G["a"], G["ey"], G["ny"]
    Y, r0 = cv.band(ey + 0.02, G["fy"] + G["b"] + 0.08)
    dx = cv.X - cx
    ad = (dx.abs() / a).clamp(0, 1)
    y_top = (ny + 0.01) - (ny + 0.01 - (ey + 0.06)) * ad * ad  # rises to sideburns at the sides
    fdy = Y - G["fy"]
    t = (fdy / G["b"]).clamp(0, 1)
    a_eff = a * (1 - G["taper"] * t * t)
    sdf = torch.maximum(_ellipse(dx, fdy - 0.02, a_eff + 0.012, G["b"] + 0.03), y_top - Y)
    m = cv.cover(sdf)
    cv.paint(m * 0.97, G["beard"][:, :, None, None] * _beard_tex(cv, Y).unsqueeze(1), r0)
    cv.record("facial_hair", m, r0)


def _mouth_lines(G, dx: Tensor):
    """Mouth centre line yc(x) (smile lifts the corners), opening height and upper lip thickness."""
    smile, mw = G["smile"], G["mw"]
    u = dx / mw
    inside = (1 - u * u).clamp(min=0)
    yc = G["my"] - smile * 0.055 * u * u + smile * 0.02
    ho = ((smile - 0.3).clamp(min=0) / 0.7 * 0.07) * inside
    lt = G["lip"] * torch.sqrt(inside) * (1 + 0.3 * G["lipstick"])
    return u, yc, ho, lt


def _mouth(cv: _Canvas, G) -> None:
    my, mw = G["my"], G["mw"]
    Y, r0 = cv.band(my - 0.1, my + 0.16)
    dx = cv.X - G["cx"]
    u, yc, ho, lt = _mouth_lines(G, dx)
    outer = torch.maximum(torch.maximum(yc - lt - Y, Y - (yc + ho + 1.35 * lt)), (u.abs() - 1) * mw)
    cv.paint(cv.cover(outer), G["lip_rgb"], r0)
    gap = torch.maximum(torch.maximum(yc - 0.008 - Y, Y - (yc + ho + 0.008)), (u.abs() - 0.95) * mw)
    cv.paint(cv.cover(gap) * 0.9, _rgb((0.22, 0.06, 0.07)), r0)
    teeth = torch.maximum(torch.maximum(yc + 0.004 - Y, Y - (yc + ho * 0.65)), (u.abs() - 0.8) * mw)
    cv.paint(cv.cover(teeth) * (ho > 0.012).float(), _rgb((0.96, 0.95, 0.90)), r0)
    if cv.want_masks:
        cv.record("mouth", cv.cover(_box(dx, Y - my - 0.025, mw + 0.05, 0.145)), r0)


def _moustache(cv: _Canvas, G) -> None:
    my, mw, smile = G["my"], G["mw"], G["smile"]
    Y, r0 = cv.band(my - 0.16, my + 0.08)
    dx = cv.X - G["cx"]
    _, yc, _, lt = _mouth_lines(G, dx)
    um = dx / (mw * 1.15)
    top = yc - lt - 0.065 + 0.015 * um * um
    bot = my - smile * 0.055 * um.clamp(-1, 1) ** 2 + smile * 0.02 - lt * 0.4 + 0.03 * um * um
    m = cv.cover(torch.maximum(torch.maximum(top - Y, Y - bot), (um.abs() - 1) * mw))
    cv.paint(m, G["beard"][:, :, None, None] * _beard_tex(cv, Y).unsqueeze(1), r0)
    cv.record("facial_hair", m, r0)


def _hair_short(cv: _Canvas, G) -> None:
    Y, r0 = cv.band(G["fy"] - G["b"] - 0.1, G["ey"])
    dx = cv.X - G["cx"]
    m = cv.cover(_hair_cap_sdf(G, dx, Y))
    cv.paint(m, G["hair"][:, :, None, None] * _strands(cv, dx).unsqueeze(1), r0)
    cv.record("hair", m, r0)


def _hair_long(cv: _Canvas, G) -> None:
    """Short-hair cap plus side curtains that hang over the edges of the face down to the shoulders."""
    fy, b, a = G["fy"], G["b"], G["a"]
    Y, r0 = cv.band(fy - b - 0.1, fy + 1.3 * b + 0.1)
    dx = cv.X - G["cx"]
    window = _ellipse(dx, Y - fy - 0.08, a * 0.80, b * 0.98)
    curtains = torch.maximum(_back_long_sdf(G, dx, Y), torch.maximum(-window, _hairline(G, dx) - Y))
    m = torch.maximum(cv.cover(_hair_cap_sdf(G, dx, Y)), cv.cover(curtains))
    cv.paint(m, G["hair"][:, :, None, None] * _strands(cv, dx).unsqueeze(1), r0)
    cv.record("hair", m, r0)


def _hair_curly(cv: _Canvas, G) -> None:
    Y, r0 = cv.band(G["fy"] - G["b"] - 0.25, G["ey"] + 0.05)
    dx = cv.X - G["cx"]
    outline, bumps = _curl_sdf(G, dx, Y)
    m = cv.cover(torch.maximum(outline, Y - _hairline(G, dx) - 0.02 + bumps))
    cv.paint(m, G["hair"][:, :, None, None] * _curl_tex(cv, Y).unsqueeze(1), r0)
    cv.record("hair", m, r0)


def _hair_mohawk(cv: _Canvas, G) -> None:
    """A spiky crest on shaved (tinted) sides; under a hat the crest stops at the hat's top."""
    fy, b = G["fy"], G["b"]
    Y, r0 = cv.band(fy - b - 0.32, G["ey"])
    dx = cv.X - G["cx"]
    stubble = cv.cover(_hair_cap_sdf(G, dx, Y)) * 0.25
    cv.paint(stubble, G["hair"], r0)
    cv.record("hair", stubble, r0)
    tri = ((dx / 0.05) - torch.floor(dx / 0.05) - 0.5).abs() * 2
    crest_top = torch.maximum(fy - b - 0.30 + 0.07 * tri, G["hat_top"])
    crest = torch.maximum(torch.maximum(dx.abs() - 0.085, crest_top - Y), Y - G["yh"] - 0.04)
    m = cv.cover(crest)
    cv.paint(m, G["hair"][:, :, None, None] * _strands(cv, dx).unsqueeze(1), r0)
    cv.record("hair", m, r0)


def _bald_shine(cv: _Canvas, G) -> None:
    y = G["fy"] - G["b"] * 0.78
    Y, r0 = cv.band(y - 0.06, y + 0.06)
    shine = cv.cover(_ellipse(cv.X - G["cx"] + 0.12, Y - y, 0.10, 0.045), 3.0)
    cv.paint(shine * 0.35, _rgb((1.0, 1.0, 1.0)), r0)


def _eyewear(cv: _Canvas, G) -> None:
    """Glasses: dark rims, a faint lens tint. Sunglasses: the same frame with dark lenses and a glare streak."""
    cx, a, ey, ex, ew, eh, sun = G["cx"], G["a"], G["ey"], G["ex"], G["ew"], G["eh"], G["sun"]
    gw = ew * 1.30 + 0.02
    gh = eh * 1.5 + 0.035 + 0.01 * sun
    Y, r0 = cv.band(ey - gh - 0.04, ey + gh + 0.04)
    X = cv.X
    rim = lens = glare = None
    for s in (-1.0, 1.0):
        lx, ly = X - (cx + s * ex), Y - ey - 0.005
        l_sdf = _box(lx, ly, gw, gh, 0.045)
        arm_x0 = ex + gw
        arm_len = (a - arm_x0).clamp(min=0.01)
        arm = _box(X - (cx + s * (arm_x0 + arm_len / 2)), Y - ey + 0.02, arm_len / 2 + 0.01, 0.012)
        streak = torch.maximum((lx + ly * 0.9 + gw * 0.3).abs() - 0.016, l_sdf + 0.025)
        parts = (torch.minimum(l_sdf.abs() - 0.018, arm), l_sdf, streak)
        rim = parts[0] if rim is None else torch.minimum(rim, parts[0])
        lens = parts[1] if lens is None else torch.minimum(lens, parts[1])
        glare = parts[2] if glare is None else torch.minimum(glare, parts[2])
    rim = torch.minimum(rim, _box(X - cx, Y - ey + 0.015, ex - gw + 0.01, 0.013))  # bridge
    m_lens, m_rim = cv.cover(lens), cv.cover(rim)
    cv.paint(m_lens * (0.12 + 0.82 * sun), torch.lerp(_rgb((0.9, 0.95, 1.0)), _rgb((0.05, 0.05, 0.08)),
                                                      sun.view(-1, 1)), r0)
    cv.paint(cv.cover(glare) * 0.40 * sun, _rgb((0.85, 0.9, 1.0)), r0)
    cv.paint(m_rim, _rgb(RIM_RGB), r0)
    cv.record("eyewear", torch.maximum(m_lens, m_rim), r0)


def _hat(cv: _Canvas, G) -> None:
    """A felt hat: crown with a red band and a wide brim at the forehead."""
    a, y_brim = G["a"], G["y_brim"]
    Y, r0 = cv.band(y_brim - 0.45, y_brim + 0.08)
    dx = cv.X - G["cx"]
    crown = _box(dx, Y - (y_brim - 0.21), a * 0.80, 0.21, 0.08)
    m_crown = cv.cover(crown)
    cv.paint(m_crown, _rgb(HAT_RGB), r0)
    band = torch.maximum(crown, (Y - (y_brim - 0.055)).abs() - 0.04)
    cv.paint(cv.cover(band), _rgb(HAT_BAND_RGB), r0)
    m_brim = cv.cover(_ellipse(dx, Y - y_brim, a + 0.24, 0.065))
    cv.paint(m_brim, _rgb(HAT_RGB) * 1.25, r0)
    cv.record("hat", torch.maximum(m_crown, m_brim), r0)


def _cap(cv: _Canvas, G) -> None:
    """A baseball cap seen from the front: light dome with a seam and button, dark visor below it."""
    a, b, y_cap = G["a"], G["b"], G["y_cap"]
    Y, r0 = cv.band(y_cap - 0.55 * b - 0.04, y_cap + 0.11)
    dx = cv.X - G["cx"]
    dome = torch.maximum(_ellipse(dx, Y - y_cap, a + 0.06, b * 0.52), Y - y_cap - 0.01)
    m_dome = cv.cover(dome)
    shade = 1 - 0.18 * ((dx / (a + 0.06)) ** 2)
    cv.paint(m_dome, _rgb(CAP_RGB)[:, :, None, None] * shade.unsqueeze(1), r0)
    seam = torch.maximum(dx.abs() - 0.012, dome + 0.02)
    cv.paint(cv.cover(seam) * 0.6, _rgb(CAP_VISOR_RGB), r0)
    m_visor = cv.cover(torch.maximum(_ellipse(dx, Y - y_cap - 0.005, a * 0.92, 0.10), y_cap - 0.005 - Y))
    cv.paint(m_visor, _rgb(CAP_VISOR_RGB), r0)
    cv.paint(cv.cover(_ellipse(dx, Y - (y_cap - b * 0.52), 0.04, 0.025)), _rgb(CAP_VISOR_RGB), r0)
    cv.record("hat", torch.maximum(m_dome, m_visor), r0)


def _render_chunk(p: FaceParams, size: int, masks: bool) -> tuple[Tensor, dict[str, Tensor]]:
    n = len(p)
    Xg, Yg = _grid(size, str(p.domain.device))
    X, Y = Xg / _ZOOM, Yg / _ZOOM + _YOFF
    G = _prepare(p)
    at = p.attrs
    shade_bg = 1.06 - 0.10 * (Yg + 1) / 2 - 0.05 * (Xg * Xg)
    img = G["bg"][:, :, None, None] * shade_bg.unsqueeze(1)
    cv = _Canvas(img, torch.zeros(n, size, size), X, Y, size, masks)

    def has(name: str, *values: str) -> Tensor:
        spec = ATTRIBUTE_SPECS[name]
        return torch.stack([at[name] == spec.values.index(v) for v in values]).any(0)

    _shirt_neck(cv, G)
    _on_subset(cv, G, has("hair_style", "long", "curly"), _back_hair)
    _neck(cv, G)
    _ears_face(cv, G)
    _on_subset(cv, G, p.domain == _ZOMBIE, _zombie_sockets)
    _on_subset(cv, G, has("age", "old"), _wrinkles)
    _nose(cv, G)
    _brows(cv, G)
    _on_subset(cv, G, has("eyes_closed", "open"), _eyes_open)
    _on_subset(cv, G, has("eyes_closed", "closed"), _eyes_closed)
    if masks:
        _eye_region(cv, G)
    _on_subset(cv, G, has("facial_hair", "beard"), _beard)
    _mouth(cv, G)
    _on_subset(cv, G, has("facial_hair", "moustache"), _moustache)
    _on_subset(cv, G, has("hair_style", "short"), _hair_short)
    _on_subset(cv, G, has("hair_style", "long"), _hair_long)
    _on_subset(cv, G, has("hair_style", "curly"), _hair_curly)
    _on_subset(cv, G, has("hair_style", "mohawk"), _hair_mohawk)
    _on_subset(cv, G, has("hair_style", "bald"), _bald_shine)
    _on_subset(cv, G, has("eyewear", "glasses", "sunglasses"), _eyewear)
    _on_subset(cv, G, has("hat", "hat"), _hat)
    _on_subset(cv, G, has("hat", "cap"), _cap)

    img = apply_domain(cv.img.clamp(0, 1), cv.person.unsqueeze(1), p.domain)
    out_masks: dict[str, Tensor] = {}
    if masks:
        for k in MASK_NAMES:
            out_masks[k] = cv.masks.get(k, torch.zeros_like(cv.person))
        out_masks["person"] = cv.person.clone()
        out_masks["background"] = 1 - cv.person
    return img * 2 - 1, out_masks


@torch.no_grad()
def render_with_masks(params: FaceParams, size: int = 64, chunk: int = 256,
                      device: str | torch.device = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
    """`render` plus soft region masks [N, S, S] in [0, 1] (shape coverage, before occlusion): face, eyes (a box
    around each eye and brow, as far as glasses reach), mouth (a box the lips stay in at any smile),
    facial_hair, hair, eyewear, hat, person and background (1 - person)."""
    return _render(params, size, chunk, True, device)


@torch.no_grad()
def render(params: FaceParams, size: int = 64, chunk: int = 256, device: str | torch.device = "cpu") -> Tensor:
    """Render a batch: [N, 3, size, size] float32 RGB in [-1, 1], on `device` (default the CPU). Deterministic on
    one device; another device's kernels may differ in the last float bits (a GPU trainer renders its own batches
    there, see train_generator's `render_device`). `chunk` only bounds memory (images are rendered `chunk` at a
    time)."""
    return _render(params, size, chunk, False, device)[0]


def _render(params: FaceParams, size: int, chunk: int, masks: bool, device: str | torch.device = "cpu"):
    params = params.to(device)
    n = len(params)
    if n == 0:
        return torch.zeros(0, 3, size, size, device=device), {}
    imgs, all_masks = [], []
    # the drawing code builds its colour constants with plain torch.tensor(...): the device context puts them, and
    # every other factory call, on the params' device
    with torch.device(device):
        for i in range(0, n, chunk):
            im, m = _render_chunk(params[i:i + chunk], size, masks)
            imgs.append(im)
            all_masks.append(m)
    out = torch.cat(imgs)
    mk = {k: torch.cat([m[k] for m in all_masks]) for k in all_masks[0]} if masks else {}
    return out, mk
