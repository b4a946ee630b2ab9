"""Synthetic LiTS-like abdominal CT in Hounsfield units with liver (1) and tumour (2) labels.

Drawn in world mm on a canonical RAS+ grid (nibabel: x toward patient Right, y Anterior, z
Superior), then stored in a per-case file orientation, so readers must honour the affine. Tumours
follow Hu et al., CVPR 2023 ("Label-free liver tumor segmentation"): deformed, textured ellipsoids,
darker than the liver, with blurred edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy import ndimage

AIR_HU, FAT_HU, MUSCLE_HU, LUNG_HU, GAS_HU = -1000.0, -100.0, 50.0, -850.0, -900.0
HU_RANGE = (-1024, 3071)
FILE_AXCODES = ("RAS", "LAS", "LPS", "RPS", "LPI", "RAI")
_SLAB_VOXELS = 1 << 22  # body, skeleton and noise passes run in z-slabs of about this many voxels
_INF = math.inf


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
        """Field on grid axes (X,1,1), (1,Y,1), (1,1,Z) -> (X, Y, Z), or at points (n,) -> (n,)."""
        if x.shape[1:] == (1, 1) and y.shape[::2] == (1, 1) and z.shape[:2] == (1, 1):
            out = self.g  # separable interpolation: far cheaper than map_coordinates on grids
            for axis, q in enumerate((x.ravel(), y.ravel(), z.ravel())):
                t = np.clip((q - self.lo[axis]) / self.h, 0, self.g.shape[axis] - 1.001)
                i, shape = t.astype(int), [1, 1, 1]
                shape[axis] = -1
                w = (t - i).astype(np.float32).reshape(shape)
                out = np.take(out, i, axis) * (1 - w) + np.take(out, i + 1, axis) * w
            return out
        t = (np.stack(np.broadcast_arrays(x, y, z)).reshape(3, -1) - self.lo[:, None]) / self.h
        return ndimage.map_coordinates(self.g, t, order=1, mode="nearest").reshape(np.shape(x))


def _ell_d(e: tuple, x, y, z):
    """Lower bound of the signed distance (mm) to ellipsoid e=(cx,cy,cz,rx,ry,rz,angle about z)."""
    cx, cy, cz, rx, ry, rz, ang = e
    dx, dy, c, s = x - cx, y - cy, math.cos(ang), math.sin(ang)
    p, q = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
    r2 = p * p + q * q if math.isinf(rz) else p * p + q * q + ((z - cz) / rz) ** 2  # inf: cylinder
    return (np.sqrt(r2) - 1.0) * min(rx, ry, rz)


def _body(an: dict, x, y, z):
    """(depth below the skin, fat thickness, fat + muscle wall thickness), all mm, broadcast."""
    w = (z - an["zc"]) / an["var_len"]
    a = an["a0"] * (1 + an["a_amp"] * np.sin(w + an["a_ph"]))
    b = an["b0"] * (1 + an["b_amp"] * np.sin(w + an["b_ph"]))
    u, v = x - an["ox"], y - an["oy"]
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
    cq = v / b / rho  # +1 anterior, -1 posterior
    fat = an["fat"] * (1 + 0.3 * cq)
    muscle = np.where(cq < 0, np.float32(1.5 * an["muscle"]), np.float32(an["muscle"]))
    return np.sqrt(u * u + v * v) * (1 / rho - 1), fat, fat + muscle


def _liver_d(an: dict, x, y, z):
    """Liver function (mm, < 0 inside): smooth union of lobes + boundary noise; +100 if excluded."""
    ds = [_ell_d(e, x, y, z) for e in an["liver"]]
    m, k = np.minimum.reduce(ds), an["liver_k"]
    d = m - k * np.log(sum(np.exp((m - di) / k) for di in ds))
    d = d + an["liver_amp"] * np.clip(an["liver_field"](x, y, z), -2.5, 2.5)
    depth, _, wall = _body(an, x, y, z)
    keep = depth > wall + 6
    for e, gap in an["exclude"]:
        keep = keep & (_ell_d(e, x, y, z) > gap)
    return np.where(keep, d, np.float32(100))


class _Grid:
    """Canonical RAS grid: world = origin + step * index, all axes increasing."""

    def __init__(self, origin, step, shape) -> None:
        self.origin, self.step, self.shape = np.asarray(origin), np.asarray(step), tuple(shape)

    def axes(self, sl: tuple) -> tuple[np.ndarray, ...]:
        """World coordinates of a box as broadcastable float32 axes (X,1,1), (1,Y,1), (1,1,Z)."""
        out = []
        for a, s in enumerate(sl):
            v = self.origin[a] + self.step[a] * np.arange(self.shape[a])[s]
            out.append(v.astype(np.float32).reshape([-1 if i == a else 1 for i in range(3)]))
        return tuple(out)

    def box(self, lo, hi) -> tuple[slice, ...]:
        i0 = np.clip(np.ceil((np.asarray(lo) - self.origin) / self.step), 0, self.shape)
        i1 = np.clip(np.floor((np.asarray(hi) - self.origin) / self.step) + 1, 0, self.shape)
        return tuple(slice(int(a), int(max(a, b))) for a, b in zip(i0, i1, strict=True))

    def slabs(self):
        n = max(1, _SLAB_VOXELS // (self.shape[0] * self.shape[1]))
        for k in range(0, self.shape[2], n):
            yield (slice(None), slice(None), slice(k, min(k + n, self.shape[2])))


def _ell_box(e: tuple, margin: float) -> tuple[np.ndarray, np.ndarray]:
    r = max(e[3], e[4]) + margin
    half = np.array([r, r, e[5] + margin])
    return np.array(e[:3]) - half, np.array(e[:3]) + half


def _draw_anatomy(rng: np.random.Generator, fov: float) -> dict:
    """Body, skeleton and organ parameters in world mm (body centre ox, oy; liver centre zc)."""
    U = rng.uniform
    ox, oy = U(-0.04, 0.04) * fov, U(-0.06, 0.02) * fov
    a0 = min(U(140, 180), (fov / 2 - abs(ox) - 6) / 1.05)  # whole body inside the field of view
    b0 = min(U(100, 130), (fov / 2 - abs(oy) - 6) / 1.05, a0 * U(0.68, 0.82))
    an = dict(ox=ox, oy=oy, zc=U(-400, 400), a0=a0, b0=b0, var_len=U(60, 100), fat=U(10, 30))
    an.update(a_amp=U(0.02, 0.05), b_amp=U(0.02, 0.05), a_ph=U(0, 6.3), b_ph=U(0, 6.3))
    fa, fb, zc, an["muscle"] = a0 / 160, b0 / 115, an["zc"], U(8, 15)
    f = math.sqrt(fa * fb) * U(0.9, 1.1)

    def ell(u, v, w, rx, ry, rz, ang, jit=4.0, size=f):
        j, s = rng.normal(0, jit, 3), U(0.9, 1.1, 3) * size
        c = (ox + u * fa + j[0], oy + v * fb + j[1], zc + w + j[2])
        return tuple(float(t) for t in (*c, *(s * (rx, ry, rz)), ang + rng.normal(0, 0.15)))

    liver = [ell(60, -5, 0, 65, 70, 75, 0.2, 6), ell(-30, 40, 15, 55, 30, 40, -0.3, 6)]
    if rng.random() < 0.7:
        liver.append(ell(15, -10, 5, 30, 30, 45, 0.0))
    an.update(liver=liver, liver_k=10.0, liver_amp=U(4, 9), liver_hu=U(100, 130))
    top = max(e[2] + e[5] for e in liver) - zc
    bot = min(e[2] - e[5] for e in liver) - zc
    an.update(liver_top=top, liver_bot=bot, liver_slack=2.5 * an["liver_amp"] + 10 * 1.1 + 2)
    ws, th = U(10, 35), U(-2.75, -2.35)  # spleen: left posterolateral, flattened on the wall
    a = a0 * (1 + an["a_amp"] * math.sin(ws / an["var_len"] + an["a_ph"]))
    b = b0 * (1 + an["b_amp"] * math.sin(ws / an["var_len"] + an["b_ph"]))
    px, py, sr = a * math.cos(th), b * math.sin(th), f * U(0.9, 1.1, 3) * (25, 55, 55)
    wall = float(_body(an, np.float32(ox + px), np.float32(oy + py), np.float32(zc + ws))[2])
    k = 1 - (wall + 4 + 0.8 * sr[0]) / math.hypot(px, py)
    ang = math.atan2(py, px) + rng.normal(0, 0.1)  # thin axis along the radius
    an["spleen"] = tuple(float(t) for t in (ox + k * px, oy + k * py, zc + ws, *sr, ang))
    an["spleen_hu"] = float(np.clip(an["liver_hu"] + U(-15, 15), 110, 130))
    left_top = liver[1][2] - zc + liver[1][5]
    an.update(heart=ell(-25, 30, left_top + 40, 55, 45, 50, 0.3), heart_hu=U(110, 160))
    kid = [ell(s * 65, -55, bot + U(10, 30) + 10 * (s < 0), 28, 25, 50, 0.4 * s) for s in (1, -1)]
    an.update(kidneys=kid, kidney_hu=U(150, 200), kidney_rim=U(4, 8))
    vs, vrx, vry = oy - 40 * fb, U(20, 24), U(15, 18)
    an.update(vert=(ox, vs, 0.0, vrx, vry, _INF, 0.0), vert_period=U(27, 32), vert_ph=U(0, 30))
    an.update(cortex_hu=U(700, 1000), cancellous_hu=U(250, 350), disc_hu=U(70, 100))
    an["canal"] = (ox, vs - vry - 10, 0.0, 9.0, 9.0, _INF, 0.0)
    an["spinous"] = (ox, vs - vry - 32, 0.0, 5.0, 16.0, _INF, 0.0)
    an["transverse"] = (ox, vs - vry - 8, 0.0, 40.0 * fa, 6.0, _INF, 0.0)
    r_ao = U(10, 12)
    an["aorta"] = (ox - 15 * fa, vs + vry + r_ao + 4, 0.0, r_ao, r_ao, _INF, 0.0)
    an["paraspinal"] = [
        (ox + s * 38 * fa, oy - 78 * fb, 0, 26 * fa, 22 * fb, _INF, 0) for s in (-1, 1)
    ]
    an.update(aorta_hu=U(150, 200), rib_cortex_hu=U(600, 800), rib_marrow_hu=U(250, 350))
    an.update(rib_drop=U(50, 80), rib_period=U(24, 30), rib_ph=U(0, 30), rib_min=bot + U(20, 50))
    an.update(dome_w=top - U(5, 15), dome_k=U(50, 80), dome_u=ox + 30 * fa)
    an.update(bowel_t=U(0.0, 0.5), bowel_hu=U(20, 40))
    return an


def _draw_detail(an: dict, rng: np.random.Generator, max_tumours: int, gap: float) -> None:
    """Organ textures, liver fields and exclusion zones, portal-vein tree and tumours (in place)."""
    lo = np.min([_ell_box(e, an["liver_slack"])[0] for e in an["liver"]], axis=0)
    hi = np.max([_ell_box(e, an["liver_slack"])[1] for e in an["liver"]], axis=0)
    an.update(liver_lo=lo, liver_hi=hi, liver_field=_Field(rng, lo, hi, rng.uniform(25, 40)))
    an.update(liver_tex=_Field(rng, lo, hi, rng.uniform(4, 8)), liver_tex_amp=rng.uniform(5, 10))
    an["kidney_rim"] = max(an["kidney_rim"], gap)  # the fat rim must survive the sampling
    soft = [*an["kidneys"], an["spleen"], an["heart"], an["aorta"]]  # liver-like intensities
    hard = [an["vert"], an["canal"], *an["paraspinal"]]
    gaps = (
        [an["kidney_rim"] + 2] * 2 + [max(g, gap) for g in (6.0, 8.0, 4.0)] + [8.0, 8.0, 3.0, 3.0]
    )
    an["exclude"] = list(zip(soft + hard, gaps, strict=True))  # liver keeps this far from them
    an["spleen_tex"] = _Field(rng, *_ell_box(an["spleen"], 8), 6.0)
    an["kidney_tex"] = [_Field(rng, *_ell_box(e, 8), 6.0) for e in an["kidneys"]]
    pts = rng.uniform(lo, hi, size=(4096, 3)).astype(np.float32)
    d = _liver_d(an, pts[:, 0], pts[:, 1], pts[:, 2])
    pts, d = pts[d < -3], d[d < -3]
    deep, c, vessels = pts[d < -10], an["liver"][-1], []
    if len(deep):  # portal tree: root near the porta hepatis under the medial lobe
        root = deep[np.argmin(np.linalg.norm(deep - [c[0], c[1], c[2] - 20], axis=1))]
        far = deep[np.linalg.norm(deep - root, axis=1) > 50]
        for p1 in far[rng.choice(len(far), size=min(3, len(far)), replace=False)]:
            vessels.append((root, p1, rng.uniform(3, 4.5)))
            dist = np.linalg.norm(deep - p1, axis=1)
            near = deep[(dist > 10) & (dist < 45)]
            for p2 in near[rng.choice(len(near), size=min(2, len(near)), replace=False)]:
                vessels.append((p1, p2, rng.uniform(1.5, 2.5)))
    an.update(vessels=vessels, vessel_hu=rng.uniform(20, 40), tumours=[])
    n = 0 if rng.random() < 0.2 or max_tumours == 0 else int(rng.integers(1, max_tumours + 1))
    for _ in range(n):
        r = math.exp(rng.uniform(math.log(4), math.log(30)))  # log-uniform 4..30 mm
        ok = d < -0.5 * min(r, 20)
        if not ok.any():
            continue
        ctr = pts[ok][rng.integers(ok.sum())].astype(float)
        radii = r * rng.uniform(0.75, 1.25, 3)
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        waves = [(n, rng.uniform(1, 2.5) * r, rng.uniform(0, 6.3)) for n in dirs]
        ext = radii.max() + 8
        an["tumours"].append(
            dict(
                e=tuple(float(v) for v in (*ctr, *radii, rng.uniform(0, math.pi))),
                contrast=rng.uniform(30, 80),
                edge=rng.uniform(0.5, 1.5),
                waves=waves,
                wobble=0.15 * r,
                tex_amp=rng.uniform(4, 10),
                tex=_Field(rng, ctr - ext, ctr + ext, rng.uniform(2, 5)),
            )
        )


def _paint_body(an: dict, g: _Grid, hu: np.ndarray) -> None:
    """Air, subcutaneous fat, muscle wall, visceral fat and bowel, lungs, heart, back muscles."""
    for sl in g.slabs():
        x, y, z = g.axes(sl)
        depth, fat, wall = _body(an, x, y, z)
        f = an["bowel"](x, y, z)
        inner = np.where(f > an["bowel_t"] + 1.4, GAS_HU, an["bowel_hu"])
        inner = np.where(f > an["bowel_t"], inner, FAT_HU)
        r2 = ((x - an["dome_u"]) / an["a0"]) ** 2 + ((y - an["oy"]) / an["b0"]) ** 2
        w = z - an["zc"] - an["dome_w"] + an["dome_k"] * r2  # > 0 above the diaphragm
        inner = np.where(w > -5, np.where(w > 0, LUNG_HU, MUSCLE_HU), inner)
        dh = _ell_d(an["heart"], x, y, z)
        inner = np.where(dh < 0, an["heart_hu"], np.where(dh < 4, FAT_HU, inner))
        for e in an["paraspinal"]:
            inner = np.where(_ell_d(e, x, y, z) < 0, MUSCLE_HU, inner)
        out = np.where(depth < wall, MUSCLE_HU, inner)
        hu[sl] = np.where(depth < 0, AIR_HU, np.where(depth < fat, FAT_HU, out))


def _paint_organ(an: dict, g: _Grid, hu, e: tuple, value: float, tex, rim: float = 0.0) -> None:
    """Textured ellipsoid organ clipped to the abdominal cavity, optional fat rim around it."""
    sl = g.box(*_ell_box(e, max(rim, 5) + 1))
    x, y, z = g.axes(sl)
    d, sub = _ell_d(e, x, y, z), hu[sl]
    depth, _, wall = _body(an, x, y, z)
    inside = depth > wall + 4
    sub[(d < 5) & (sub < -500) & inside] = MUSCLE_HU  # diaphragm between organ and lung
    sub[(d < rim) & inside] = FAT_HU
    organ = (d < 0) & inside
    sub[organ] = (value + 5.0 * tex(x, y, z))[organ]


def _paint_liver(an: dict, g: _Grid, hu: np.ndarray, lab: np.ndarray) -> list[int]:
    """Liver with texture, portal vessels and tumours; returns the voxel count of each tumour."""
    sl = g.box(an["liver_lo"], an["liver_hi"])
    x, y, z = g.axes(sl)
    d, sub, sub_lab = _liver_d(an, x, y, z), hu[sl], lab[sl]
    sub[(d < 5) & (sub < -500)] = MUSCLE_HU
    val = an["liver_hu"] + an["liver_tex_amp"] * an["liver_tex"](x, y, z)
    axes = (x.ravel(), y.ravel(), z.ravel())

    def local(lo, hi) -> tuple:
        b = [
            slice(np.searchsorted(a, lo[i]), np.searchsorted(a, hi[i], "right"))
            for i, a in enumerate(axes)
        ]
        return tuple(b), x[b[0]], y[:, b[1]], z[:, :, b[2]]

    for p0, p1, r in an["vessels"]:  # tubes with a 1 mm linear edge
        b, vx, vy, vz = local(np.minimum(p0, p1) - r - 2, np.maximum(p0, p1) + r + 2)
        s = p1 - p0
        t = np.clip(
            ((vx - p0[0]) * s[0] + (vy - p0[1]) * s[1] + (vz - p0[2]) * s[2]) / (s @ s), 0, 1
        )
        dist = np.sqrt(
            (vx - p0[0] - t * s[0]) ** 2
            + (vy - p0[1] - t * s[1]) ** 2
            + (vz - p0[2] - t * s[2]) ** 2
        )
        val[b] += an["vessel_hu"] * np.clip(r - dist + 0.5, 0, 1)
    tumour, counts = np.zeros(d.shape, bool), []
    for tm in an["tumours"]:
        c = np.array(tm["e"][:3], np.float32)
        b, tx, ty, tz = local(c - max(tm["e"][3:6]) - 8, c + max(tm["e"][3:6]) + 8)
        dt = _ell_d(tm["e"], tx, ty, tz)
        for n, lam, ph in tm["waves"]:  # elastic deformation of the boundary
            arg = (n[0] * (tx - c[0]) + n[1] * (ty - c[1]) + n[2] * (tz - c[2])) * (6.2832 / lam)
            dt = dt + np.float32(tm["wobble"] / 1.7) * np.sin(arg + ph).astype(np.float32)
        alpha = 1 / (1 + np.exp(np.clip(dt / tm["edge"], -50, 50)))  # blurred edge
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
        bone = (_ell_d(an["transverse"], x, y, z) < 0) & (phase > 0.35) & (phase < 0.75)
        out[(bone | (_ell_d(an["spinous"], x, y, z) < 0)) & free] = an["cortex_hu"] * 0.6
        canal = _ell_d(an["canal"], x, y, z)
        out[(canal < 5) & free] = an["cortex_hu"] * 0.7
        out[(canal < 0) & free] = 15.0
        dv = _ell_d(an["vert"], x, y, z)
        body = np.where(dv > -2.5, an["cortex_hu"], an["cancellous_hu"])
        body = np.broadcast_to(np.where(phase < 0.25, an["disc_hu"], body), out.shape)
        out[(dv < 0) & free] = body[(dv < 0) & free]
        out[(_ell_d(an["aorta"], x, y, z) < 0) & free] = an["aorta_hu"]
        depth, _, wall = _body(an, x, y, z)
        rd = depth - wall + 1  # ribs sit at the inner edge of the muscle wall
        band = (np.abs(rd) < 4) & free
        w = np.broadcast_to(z - an["zc"], band.shape)[band]
        u = np.broadcast_to(x - an["ox"], band.shape)[band] / an["a0"]
        v = np.broadcast_to(y - an["oy"], band.shape)[band] / an["b0"]
        psi = np.arccos(np.clip(-v / np.sqrt(u * u + v * v + 1e-9), -1, 1)) / math.pi  # 0 = back
        zph = (w + an["rib_drop"] * psi + an["rib_ph"]) % an["rib_period"] - 5.0
        r2 = (rd[band] / 4) ** 2 + (zph / 5) ** 2
        rib = (r2 < 1) & (psi > 0.12) & (psi < 0.85) & (w > an["rib_min"] + 30 * psi**2)
        vals = np.where(r2 > 0.45, an["rib_cortex_hu"], an["rib_marrow_hu"])
        out[band] = np.where(rib, vals, out[band])


def _add_noise(hu: np.ndarray, g: _Grid, sigma: float, corr: float, rng) -> None:
    """In-plane partial-volume blur, then in-plane correlated Gaussian noise of std ``sigma``."""
    imp = np.zeros((17, 17), np.float32)
    imp[8, 8] = 1
    gain = float(sigma / np.sqrt((ndimage.gaussian_filter(imp, corr) ** 2).sum()))
    for sl in g.slabs():
        noise = ndimage.gaussian_filter(
            rng.standard_normal(hu[sl].shape, np.float32), (corr,) * 2 + (0,)
        )
        hu[sl] = ndimage.gaussian_filter(hu[sl], (0.5, 0.5, 0)) + gain * noise


def check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        want = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name}={value!r}: expected an integer {want}")


def generate_case(
    case_id: int, seed: int = 0, size: int = 128, *, max_tumours: int = 5
) -> SyntheticCase:
    """Deterministic for (case_id, seed, size); different case_ids give different anatomy.

    Shape: (size, size, Z) in a random file orientation. ``truth`` holds liver_hu, spleen_hu,
    kidney_hu, spleen {center_mm, radii_mm}, tumours [{center_mm, radii_mm, contrast_hu, voxels}]
    (world RAS mm; ``voxels`` = labelled voxels, 0 for a tumour lost to coarse sampling),
    noise_sigma, axcodes, seed and size.
    """
    check_int("case_id", case_id, 0)
    check_int("seed", seed, 0)
    check_int("size", size, 32, 1024)
    check_int("max_tumours", max_tumours, 0, 50)
    rng = np.random.default_rng([seed, case_id])  # same draws for every size: similar anatomy
    sp = rng.uniform(0.6, 1.0) * 512 / size
    dz = rng.uniform(0.8, 5.0)  # real CT: thin or thick slices, whatever the in-plane matrix
    fov = sp * size
    an = _draw_anatomy(rng, fov)
    _draw_detail(an, rng, max_tumours, gap=max(1.5 * sp, dz))
    lo_w, hi_w = an["liver_bot"] - an["liver_slack"], an["liver_top"] + an["liver_slack"]
    need = 2 * dz + 5  # guarantees liver-free slices at both ends
    total = max(rng.uniform(180, 260), hi_w - lo_w + 2 * need)
    z0 = an["zc"] + lo_w - need - rng.uniform(0.3, 0.7) * (total - (hi_w - lo_w) - 2 * need)
    an["bowel"] = _Field(rng, (-fov / 2, -fov / 2, z0), (fov / 2, fov / 2, z0 + total), 16.0)
    shape = (size, size, math.ceil(total / dz))
    g = _Grid((-fov / 2 + sp / 2, -fov / 2 + sp / 2, z0 + dz / 2), (sp, sp, dz), shape)
    hu, lab = np.empty(shape, np.float32), np.zeros(shape, np.uint8)
    _paint_body(an, g, hu)
    for e, tex in zip(an["kidneys"], an["kidney_tex"], strict=True):
        _paint_organ(an, g, hu, e, an["kidney_hu"], tex, rim=an["kidney_rim"])
    _paint_organ(an, g, hu, an["spleen"], an["spleen_hu"], an["spleen_tex"])
    counts = _paint_liver(an, g, hu, lab)
    _paint_skeleton(an, g, hu, lab)
    sigma, corr = rng.uniform(10, 25), rng.uniform(0.4, 0.8)
    _add_noise(hu, g, sigma, corr, np.random.default_rng([seed, case_id, size]))
    ct = np.clip(np.rint(hu), *HU_RANGE).astype(np.int16)
    axcodes = FILE_AXCODES[int(rng.integers(len(FILE_AXCODES)))]
    t = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(axcodes)))
    affine = np.diag([sp, sp, dz, 1.0])
    affine[:3, 3] = g.origin
    tumours = [
        {
            "center_mm": list(tm["e"][:3]),
            "radii_mm": list(tm["e"][3:6]),
            "contrast_hu": tm["contrast"],
            "voxels": n,
        }
        for tm, n in zip(an["tumours"], counts, strict=True)
    ]
    truth = {
        "liver_hu": an["liver_hu"],
        "spleen_hu": an["spleen_hu"],
        "kidney_hu": an["kidney_hu"],
        "spleen": {"center_mm": list(an["spleen"][:3]), "radii_mm": list(an["spleen"][3:6])},
        "tumours": tumours,
        "noise_sigma": sigma,
        "axcodes": axcodes,
        "seed": seed,
        "size": size,
    }
    return SyntheticCase(
        case_id=case_id,
        ct=np.ascontiguousarray(apply_orientation(ct, t)),
        labels=np.ascontiguousarray(apply_orientation(lab, t)),
        affine=affine @ inv_ornt_aff(t, shape),
        spacing=(float(sp), float(sp), float(dz)),
        truth=truth,
    )
