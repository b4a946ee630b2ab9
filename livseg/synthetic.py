"""Synthetic LiTS-like abdominal CT in Hounsfield units, with liver (1) and tumour (2) labels.

The phantom is drawn in world millimetres on a canonical RAS+ grid (nibabel convention: x grows
toward the patient's Right, y toward Anterior, z toward Superior), then stored in a per-case file
orientation so readers must honour the affine. Tumours follow the recipe of Hu et al., CVPR 2023
("Label-free liver tumor segmentation"): deformed ellipsoids, textured, darker than the liver,
with blurred edges. One random stream per (seed, case_id) draws the anatomy, so only the sampling
(and the voxel noise) depends on ``size``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

AIR_HU, FAT_HU, MUSCLE_HU, LUNG_HU, GAS_HU = -1000.0, -100.0, 50.0, -850.0, -900.0
HU_RANGE = (-1024, 3071)
FILE_AXCODES = ("RAS", "LAS", "LPS", "RPS", "LPI", "RAI")
LAYOUTS = ("flat", "kaggle")
VOLUMES_PER_PART = 50  # Kaggle LiTS: volume_pt1 .. volume_pt5
_SLAB_VOXELS = 1 << 22  # body and noise passes run in z-slabs of about this many voxels


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic CT; ``ct``/``labels`` have shape (X, Y, Z) in the FILE orientation."""

    case_id: int
    ct: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    truth: dict


class _Field:
    """Unit-variance smooth random field on a coarse isotropic world grid, trilinear in between."""

    def __init__(self, rng: np.random.Generator, lo, hi, corr_mm: float) -> None:
        self.h = corr_mm / 2.0
        self.lo = np.asarray(lo, float) - 2 * self.h
        n = np.ceil((np.asarray(hi, float) + 2 * self.h - self.lo) / self.h).astype(int) + 2
        g = ndimage.gaussian_filter(rng.standard_normal(tuple(n)), 1.0, mode="wrap")
        self.g = (g / g.std()).astype(np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Field at broadcast grid axes (X,1,1),(1,Y,1),(1,1,Z) -> (X,Y,Z), or at points (n,)."""
        if x.shape[1:] == (1, 1) and y.shape[::2] == (1, 1) and z.shape[:2] == (1, 1):
            out = self.g  # separable interpolation: far cheaper than map_coordinates on grids
            for axis, q in enumerate((x.ravel(), y.ravel(), z.ravel())):
                t = np.clip((q - self.lo[axis]) / self.h, 0, self.g.shape[axis] - 1.001)
                i, shape = t.astype(int), [1, 1, 1]
                shape[axis] = -1
                w = (t - i).astype(np.float32).reshape(shape)
                out = np.take(out, i, axis) * (1 - w) + np.take(out, i + 1, axis) * w
            return out
        pts = np.stack(np.broadcast_arrays(x, y, z)).reshape(3, -1)
        t = (pts - self.lo[:, None]) / self.h
        return ndimage.map_coordinates(self.g, t, order=1, mode="nearest").reshape(np.shape(x))


def _ell_d(e: tuple, x, y, z):
    """Lower bound of the signed distance (mm) to ellipsoid e=(cx,cy,cz,rx,ry,rz,angle)."""
    cx, cy, cz, rx, ry, rz, ang = e
    dx, dy, c, s = x - cx, y - cy, math.cos(ang), math.sin(ang)
    p, q, r = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry, (z - cz) / rz
    return (np.sqrt(p * p + q * q + r * r) - 1.0) * min(rx, ry, rz)


def _body(an: dict, x, y, z):
    """(depth below the skin in mm, wall thickness in mm) at broadcastable world coordinates."""
    w = (z - an["zc"]) / an["var_len"]
    a = an["a0"] * (1 + an["a_amp"] * np.sin(w + an["a_ph"]))
    b = an["b0"] * (1 + an["b_amp"] * np.sin(w + an["b_ph"]))
    u, v = x - an["ox"], y - an["oy"]
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
    cq = v / b / rho  # +1 anterior, -1 posterior
    fat = an["fat"] * (1 + 0.3 * cq)
    return np.sqrt(u * u + v * v) * (1 / rho - 1), fat, fat + an["muscle"] * (1 + 0.5 * (cq < 0))


def _liver_d(an: dict, x, y, z):
    """Signed distance-like liver function (mm, < 0 inside), exclusion zones set to +100."""
    ds = [_ell_d(e, x, y, z) for e in an["liver"]]
    m, k = np.minimum.reduce(ds), an["liver_k"]
    d = m - k * np.log(sum(np.exp((m - di) / k) for di in ds))  # smooth union
    d = d + an["liver_amp"] * np.clip(an["liver_field"](x, y, z), -2.5, 2.5)
    keep = _body(an, x, y, z)[0] > _body(an, x, y, z)[2] + 6
    for e, gap in an["exclude"]:
        keep &= _ell_d(e, x, y, z) > gap
    return np.where(keep, d, np.float32(100))


class _Grid:
    """Canonical RAS grid: world = origin + step * index, axes increasing."""

    def __init__(self, origin, step, shape) -> None:
        self.origin, self.step, self.shape = np.asarray(origin), np.asarray(step), tuple(shape)

    def axes(self, sl: tuple) -> tuple[np.ndarray, ...]:
        out = []
        for a, s in enumerate(sl):
            v = self.origin[a] + self.step[a] * np.arange(self.shape[a])[s]
            out.append(v.astype(np.float32).reshape([-1 if i == a else 1 for i in range(3)]))
        return tuple(out)

    def box(self, lo, hi) -> tuple[slice, ...]:
        i0 = np.clip(np.ceil((np.asarray(lo) - self.origin) / self.step), 0, self.shape)
        i1 = np.clip(np.floor((np.asarray(hi) - self.origin) / self.step) + 1, 0, self.shape)
        return tuple(slice(int(a), int(max(a, b))) for a, b in zip(i0, i1))

    def slabs(self):
        n = max(1, _SLAB_VOXELS // (self.shape[0] * self.shape[1]))
        for k in range(0, self.shape[2], n):
            yield (slice(None), slice(None), slice(k, min(k + n, self.shape[2])))


def _ell_box(e: tuple, margin: float) -> tuple[np.ndarray, np.ndarray]:
    r = max(e[3], e[4]) + margin
    c, half = np.array(e[:3]), np.array([r, r, e[5] + margin])
    return c - half, c + half


def _draw_anatomy(rng: np.random.Generator, fov: float) -> dict:
    """Body, skeleton and organ parameters in world mm (body centre ox, oy; liver centre zc)."""
    U = rng.uniform
    ox, oy = U(-0.04, 0.04) * fov, U(-0.06, 0.02) * fov
    a0 = min(U(140, 180), (fov / 2 - abs(ox) - 6) / 1.05)
    b0 = min(U(100, 130), (fov / 2 - abs(oy) - 6) / 1.05)
    an = dict(ox=ox, oy=oy, zc=U(-400, 400), a0=a0, b0=b0, var_len=U(60, 100))
    an.update(a_amp=U(0.02, 0.05), b_amp=U(0.02, 0.05), a_ph=U(0, 6.3), b_ph=U(0, 6.3))
    an.update(fat=U(10, 30), muscle=U(8, 15))
    fa, fb, zc = a0 / 160, b0 / 115, an["zc"]
    f = math.sqrt(fa * fb) * U(0.9, 1.1)

    def ell(u, v, w, rx, ry, rz, ang, jit=0.0, size=1.0):
        j = rng.normal(0, jit, 3) if jit else np.zeros(3)
        s = [size * U(0.9, 1.1) for _ in range(3)]
        return (ox + u * fa + j[0], oy + v * fb + j[1], zc + w + j[2],
                rx * s[0], ry * s[1], rz * s[2], ang + (rng.normal(0, 0.15) if jit else 0))  # fmt: skip

    liver = [ell(60, -5, 0, 65, 70, 75, 0.2, 6, f), ell(-30, 40, 25, 55, 30, 40, -0.3, 6, f)]
    if rng.random() < 0.7:
        liver.append(ell(15, -10, 15, 30, 30, 45, 0.0, 4, f))
    an.update(liver=liver, liver_k=10.0, liver_amp=U(4, 9), liver_hu=U(100, 130))
    top = max(e[2] + e[5] for e in liver) - zc
    bot = min(e[2] - e[5] for e in liver) - zc
    an.update(liver_top=top, liver_bot=bot, liver_slack=2.5 * an["liver_amp"] + 10 * 1.1 + 2)
    an["spleen"] = ell(-95, -35, U(10, 35), 25, 55, 55, 0.5, 5, f)
    an["spleen_hu"] = float(np.clip(an["liver_hu"] + U(-15, 15), 110, 130))
    an["kidneys"] = [ell(65, -55, bot + U(10, 30), 28, 25, 50, 0.4, 4, f),
                     ell(-65, -55, bot + U(20, 40), 28, 25, 50, -0.4, 4, f)]  # fmt: skip
    an.update(kidney_hu=U(150, 200), kidney_rim=U(4, 8))
    inf = math.inf
    vs, vrx, vry = oy - 40 * fb, U(20, 24), U(15, 18)
    an.update(vert=(ox, vs, 0.0, vrx, vry, inf, 0.0), vert_period=U(27, 32), vert_ph=U(0, 30))
    an.update(cortex_hu=U(700, 1000), cancellous_hu=U(250, 350), disc_hu=U(70, 100))
    an["canal"] = (ox, vs - vry - 10, 0.0, 9.0, 9.0, inf, 0.0)
    an["spinous"] = (ox, vs - vry - 32, 0.0, 5.0, 16.0, inf, 0.0)
    an["transverse"] = (ox, vs - vry - 8, 0.0, 40.0 * fa, 6.0, inf, 0.0)
    r_ao = U(10, 12)
    an["aorta"] = (ox - 15 * fa, vs + vry + r_ao + 4, 0.0, r_ao, r_ao, inf, 0.0)
    an["aorta_hu"] = U(150, 200)
    an["paraspinal"] = [(ox + s * 38 * fa, oy - 78 * fb, 0.0, 26 * fa, 22 * fb, inf, 0.0) for s in (-1, 1)]
    an.update(rib_drop=U(50, 80), rib_period=U(24, 30), rib_ph=U(0, 30), rib_min=bot + U(20, 50))
    an.update(rib_cortex_hu=U(600, 800), rib_marrow_hu=U(250, 350))
    an.update(dome_w=top - U(5, 15), dome_k=U(50, 80), dome_u=ox + 30 * fa)
    an.update(bowel_t=U(0.0, 0.5), bowel_hu=U(20, 40))
    return an


def _sample_liver_points(an: dict, rng: np.random.Generator, n: int = 4096):
    """Uniform points in the liver box with their liver function values: ((m, 3), (m,))."""
    p = rng.uniform(an["liver_lo"], an["liver_hi"], size=(n, 3)).astype(np.float32)
    d = _liver_d(an, p[:, 0], p[:, 1], p[:, 2])
    return p[d < -3], d[d < -3]


def _draw_liver_detail(an: dict, rng: np.random.Generator, max_tumours: int, gap: float) -> None:
    """Liver fields, exclusion zones, portal-vein tree and tumours (in place)."""
    lo = np.min([_ell_box(e, an["liver_slack"])[0] for e in an["liver"]], axis=0)
    hi = np.max([_ell_box(e, an["liver_slack"])[1] for e in an["liver"]], axis=0)
    an.update(liver_lo=lo, liver_hi=hi, liver_field=_Field(rng, lo, hi, rng.uniform(25, 40)))
    an.update(liver_tex=_Field(rng, lo, hi, rng.uniform(4, 8)), liver_tex_amp=rng.uniform(5, 10))
    an["kidney_rim"] = max(an["kidney_rim"], gap)
    an["exclude"] = [(e, an["kidney_rim"] + 2) for e in an["kidneys"]] + [
        (an["spleen"], 6.0), (an["aorta"], 4.0), (an["vert"], 8.0), (an["canal"], 8.0),
        (an["paraspinal"][0], 3.0), (an["paraspinal"][1], 3.0)]  # fmt: skip
    pts, d = _sample_liver_points(an, rng)
    deep = pts[d < -10]
    c = an["liver"][-1]  # the most medial lobe hosts the porta hepatis
    root = deep[np.argmin(np.linalg.norm(deep - [c[0], c[1], c[2] - 20], axis=1))]
    vessels = []
    far = deep[np.linalg.norm(deep - root, axis=1) > 50]
    for p1 in far[rng.choice(len(far), size=min(3, len(far)), replace=False)]:
        vessels.append((root, p1, rng.uniform(3, 4.5)))
        near = deep[np.linalg.norm(deep - p1, axis=1) < 45]
        for p2 in near[rng.choice(len(near), size=min(2, len(near)), replace=False)]:
            vessels.append((p1, p2, rng.uniform(1.5, 2.5)))
    an.update(vessels=vessels, vessel_hu=rng.uniform(20, 40))
    n = 0 if rng.random() < 0.2 or max_tumours == 0 else int(rng.integers(1, max_tumours + 1))
    an["tumours"] = []
    for _ in range(n):
        r = math.exp(rng.uniform(math.log(4), math.log(30)))
        ok = d < -0.5 * min(r, 20)
        if not ok.any():
            continue
        ctr = pts[ok][rng.integers(ok.sum())].astype(float)
        radii = r * rng.uniform(0.75, 1.25, 3)
        waves = [(rng.normal(size=3), rng.uniform(1, 2.5) * r, rng.uniform(0, 6.3)) for _ in range(3)]
        an["tumours"].append(dict(
            e=(*ctr, *radii, rng.uniform(0, math.pi)), contrast=rng.uniform(30, 80),
            edge=rng.uniform(0.5, 1.5), waves=waves, wobble=0.15 * r, tex_amp=rng.uniform(4, 10),
            tex=_Field(rng, ctr - radii.max() - 8, ctr + radii.max() + 8, rng.uniform(2, 5))))  # fmt: skip


def _paint_body(an: dict, g: _Grid, hu: np.ndarray) -> None:
    """Air, subcutaneous fat, muscle wall, visceral fat with bowel, lung bases, back muscles."""
    bowel = _Field(np.random.default_rng(an["bowel_seed"]), g.origin, g.origin + g.step * g.shape,
                   an["bowel_corr"])  # fmt: skip
    for sl in g.slabs():
        x, y, z = g.axes(sl)
        depth, fat, wall = _body(an, x, y, z)
        f = bowel(x, y, z)
        inner = np.where(f > an["bowel_t"] + 1.4, GAS_HU, an["bowel_hu"])
        inner = np.where(f > an["bowel_t"], inner, FAT_HU)
        dome = an["dome_w"] - an["dome_k"] * (((x - an["dome_u"]) / an["a0"]) ** 2
                                              + ((y - an["oy"]) / an["b0"]) ** 2)  # fmt: skip
        w = z - an["zc"]
        inner = np.where(w > dome - 5, np.where(w > dome, LUNG_HU, MUSCLE_HU), inner)
        for e in an["paraspinal"]:
            inner = np.where(_ell_d(e, x, y, z) < 0, MUSCLE_HU, inner)
        out = np.where(depth < wall, MUSCLE_HU, inner)
        hu[sl] = np.where(depth < 0, AIR_HU, np.where(depth < fat, FAT_HU, out))


def _paint_organ(an, g, hu, e, value, tex_amp, rng, rim=0.0) -> None:
    """Textured ellipsoid organ clipped to the abdominal cavity, optional fat rim around it."""
    sl = g.box(*_ell_box(e, max(rim, 5) + 1))
    x, y, z = g.axes(sl)
    d = _ell_d(e, x, y, z)
    sub = hu[sl]
    inside = _body(an, x, y, z)[0] > _body(an, x, y, z)[2] + 4
    sub[(d < 5) & (sub < -500)] = MUSCLE_HU  # diaphragm between organ and lung
    sub[(d < rim) & inside] = FAT_HU
    lo, hi = _ell_box(e, 4)
    tex = _Field(rng, lo, hi, 6.0)(x, y, z)
    sub[(d < 0) & inside] = (value + tex_amp * tex)[(d < 0) & inside]


def _paint_liver(an: dict, g: _Grid, hu: np.ndarray, lab: np.ndarray) -> list[int]:
    """Liver with texture, portal vessels and tumours; returns tumour voxel counts."""
    sl = g.box(an["liver_lo"], an["liver_hi"])
    x, y, z = g.axes(sl)
    d = _liver_d(an, x, y, z)
    sub, sub_lab = hu[sl], lab[sl]
    sub[(d < 5) & (sub < -500)] = MUSCLE_HU
    val = an["liver_hu"] + an["liver_tex_amp"] * an["liver_tex"](x, y, z)
    xv, yv, zv = x.ravel(), y.ravel(), z.ravel()

    def local(lo, hi):
        return tuple(slice(np.searchsorted(a, lo[i]), np.searchsorted(a, hi[i], "right"))
                     for i, a in enumerate((xv, yv, zv)))  # fmt: skip

    for p0, p1, r in an["vessels"]:
        b = local(np.minimum(p0, p1) - r - 2, np.maximum(p0, p1) + r + 2)
        vx, vy, vz = x[b[0]], y[:, b[1]], z[:, :, b[2]]
        seg = p1 - p0
        t = ((vx - p0[0]) * seg[0] + (vy - p0[1]) * seg[1] + (vz - p0[2]) * seg[2]) / (seg @ seg)
        t = np.clip(t, 0, 1)
        dist = np.sqrt((vx - p0[0] - t * seg[0]) ** 2 + (vy - p0[1] - t * seg[1]) ** 2
                       + (vz - p0[2] - t * seg[2]) ** 2)  # fmt: skip
        val[b] += an["vessel_hu"] * np.clip(r - dist + 0.5, 0, 1)
    tumour = np.zeros(d.shape, bool)
    counts = []
    for tm in an["tumours"]:
        c, rad = np.array(tm["e"][:3]), max(tm["e"][3:6]) + tm["wobble"] + 3 * tm["edge"]
        b = local(c - rad, c + rad)
        tx, ty, tz = x[b[0]], y[:, b[1]], z[:, :, b[2]]
        dt = _ell_d(tm["e"], tx, ty, tz)
        for n, lam, ph in tm["waves"]:
            arg = (n[0] * (tx - c[0]) + n[1] * (ty - c[1]) + n[2] * (tz - c[2])) * (6.2832 / lam)
            dt = dt + tm["wobble"] / 1.7 * np.sin(arg + ph)
        alpha = 1 / (1 + np.exp(np.clip(dt / tm["edge"], -50, 50)))
        inner = an["liver_hu"] - tm["contrast"] + tm["tex_amp"] * tm["tex"](tx, ty, tz)
        val[b] = val[b] * (1 - alpha) + alpha * inner
        grown = (alpha > 0.5) & (d[b] < 0)
        tumour[b] |= grown
        counts.append(int(grown.sum()))
    liver = d < 0
    sub[liver] = val[liver]
    sub_lab[liver] = np.where(tumour[liver], 2, 1)
    return counts


def _paint_skeleton(an: dict, g: _Grid, hu: np.ndarray, lab: np.ndarray) -> None:
    """Vertebrae with discs and posterior elements, aorta and ribs; never over labelled voxels."""
    for sl in g.slabs():
        x, y, z = g.axes(sl)
        out, free = hu[sl], lab[sl] == 0
        phase = ((z - an["zc"] + an["vert_ph"]) % an["vert_period"]) / an["vert_period"]
        bone = _ell_d(an["transverse"], x, y, z) < 0
        bone = (bone & (phase > 0.35) & (phase < 0.75)) | (_ell_d(an["spinous"], x, y, z) < 0)
        out[bone & free] = an["cortex_hu"] * 0.6
        canal = _ell_d(an["canal"], x, y, z)
        out[(canal < 5) & free] = an["cortex_hu"] * 0.7
        out[(canal < 0) & free] = 15.0
        dv = _ell_d(an["vert"], x, y, z)
        body = np.where(dv > -2.5, an["cortex_hu"], an["cancellous_hu"])
        body = np.where(phase < 0.25, an["disc_hu"], body)
        out[dv < 0] = np.broadcast_to(body, out.shape)[dv < 0]
        out[(_ell_d(an["aorta"], x, y, z) < 0) & free] = an["aorta_hu"]
        depth, _, wall = _body(an, x, y, z)
        band = (np.abs(depth - wall + 1) < 4) & free
        w = np.broadcast_to(z - an["zc"], band.shape)[band]
        u = np.broadcast_to(x - an["ox"], band.shape)[band] / an["a0"]
        v = np.broadcast_to(y - an["oy"], band.shape)[band] / an["b0"]
        psi = np.arccos(np.clip(-v / np.sqrt(u * u + v * v + 1e-9), -1, 1)) / math.pi  # 0 = back
        zph = (w + an["rib_drop"] * psi + an["rib_ph"]) % an["rib_period"] - 5.0
        r2 = ((depth - wall + 1)[band] / 4) ** 2 + (zph / 5) ** 2
        rib = (r2 < 1) & (psi > 0.12) & (psi < 0.85) & (w > an["rib_min"] + 30 * psi**2)
        vals = np.where(r2 > 0.45, an["rib_cortex_hu"], an["rib_marrow_hu"])
        out[band] = np.where(rib, vals, out[band])
