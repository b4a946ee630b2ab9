"""Geometry the generator draws with: smooth random fields, ellipsoids, the body outline,
the liver's signed distance and the voxel grid, all in world mm (canonical RAS+)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

HU_RANGE = (-1024, 3071)
SLAB_VOXELS = 1 << 22  # body, skeleton and noise passes run in z-slabs of about this many voxels
INF = math.inf


class SmoothField:
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


def ellipsoid_distance(e: tuple, x, y, z):
    """Lower bound of the signed distance (mm) to ellipsoid e=(cx,cy,cz,rx,ry,rz,angle about z)."""
    cx, cy, cz, rx, ry, rz, ang = e
    dx, dy, c, s = x - cx, y - cy, math.cos(ang), math.sin(ang)
    p, q = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
    r2 = p * p + q * q if math.isinf(rz) else p * p + q * q + ((z - cz) / rz) ** 2  # inf: cylinder
    return (np.sqrt(r2) - 1.0) * min(rx, ry, rz)


def body_depth(an: dict, x, y, z):
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


def liver_distance(an: dict, x, y, z):
    """Liver function (mm, < 0 inside): smooth union of lobes + boundary noise; +100 if excluded."""
    ds = [ellipsoid_distance(e, x, y, z) for e in an["liver"]]
    m, k = np.minimum.reduce(ds), an["liver_k"]
    d = m - k * np.log(sum(np.exp((m - di) / k) for di in ds))
    d = d + an["liver_amp"] * np.clip(an["liver_field"](x, y, z), -2.5, 2.5)
    depth, _, wall = body_depth(an, x, y, z)
    keep = depth > wall + 6
    for e, gap in an["exclude"]:
        keep = keep & (ellipsoid_distance(e, x, y, z) > gap)
    return np.where(keep, d, np.float32(100))


class Grid:
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
        n = max(1, SLAB_VOXELS // (self.shape[0] * self.shape[1]))
        for k in range(0, self.shape[2], n):
            yield (slice(None), slice(None), slice(k, min(k + n, self.shape[2])))


def ellipsoid_box(e: tuple, margin: float) -> tuple[np.ndarray, np.ndarray]:
    r = max(e[3], e[4]) + margin
    half = np.array([r, r, e[5] + margin])
    return np.array(e[:3]) - half, np.array(e[:3]) + half
