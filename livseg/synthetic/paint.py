"""Painting the anatomy into HU and label arrays, one structure at a time, then scanner noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from livseg.synthetic.shapes import (
    Grid,
    body_depth,
    ellipsoid_box,
    ellipsoid_distance,
    liver_distance,
)

AIR_HU, FAT_HU, MUSCLE_HU, LUNG_HU, GAS_HU = -1000.0, -100.0, 50.0, -850.0, -900.0


def paint_body(an: dict, g: Grid, hu: np.ndarray) -> None:
    """Air, subcutaneous fat, muscle wall, visceral fat and bowel, lungs, heart, back muscles."""
    for sl in g.slabs():
        x, y, z = g.axes(sl)
        depth, fat, wall = body_depth(an, x, y, z)
        f = an["bowel"](x, y, z)
        inner = np.where(f > an["bowel_t"] + 1.4, GAS_HU, an["bowel_hu"])
        inner = np.where(f > an["bowel_t"], inner, FAT_HU)
        r2 = ((x - an["dome_u"]) / an["a0"]) ** 2 + ((y - an["oy"]) / an["b0"]) ** 2
        w = z - an["zc"] - an["dome_w"] + an["dome_k"] * r2  # > 0 above the diaphragm
        inner = np.where(w > -5, np.where(w > 0, LUNG_HU, MUSCLE_HU), inner)
        dh = ellipsoid_distance(an["heart"], x, y, z)
        inner = np.where(dh < 0, an["heart_hu"], np.where(dh < 4, FAT_HU, inner))
        for e in an["paraspinal"]:
            inner = np.where(ellipsoid_distance(e, x, y, z) < 0, MUSCLE_HU, inner)
        out = np.where(depth < wall, MUSCLE_HU, inner)
        hu[sl] = np.where(depth < 0, AIR_HU, np.where(depth < fat, FAT_HU, out))


def paint_organ(an: dict, g: Grid, hu, e: tuple, value: float, tex, rim: float = 0.0) -> None:
    """Textured ellipsoid organ clipped to the abdominal cavity, optional fat rim around it."""
    sl = g.box(*ellipsoid_box(e, max(rim, 5) + 1))
    x, y, z = g.axes(sl)
    d, sub = ellipsoid_distance(e, x, y, z), hu[sl]
    depth, _, wall = body_depth(an, x, y, z)
    inside = depth > wall + 4
    sub[(d < 5) & (sub < -500) & inside] = MUSCLE_HU  # diaphragm between organ and lung
    sub[(d < rim) & inside] = FAT_HU
    organ = (d < 0) & inside
    sub[organ] = (value + 5.0 * tex(x, y, z))[organ]


def paint_liver(an: dict, g: Grid, hu: np.ndarray, lab: np.ndarray) -> list[int]:
    """Liver with texture, portal vessels and tumours; returns the voxel count of each tumour."""
    sl = g.box(an["liver_lo"], an["liver_hi"])
    x, y, z = g.axes(sl)
    d, sub, sub_lab = liver_distance(an, x, y, z), hu[sl], lab[sl]
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
        dt = ellipsoid_distance(tm["e"], tx, ty, tz)
        for n, lam, ph in tm["waves"]:  # elastic deformation of the boundary
            arg = (n[0] * (tx - c[0]) + n[1] * (ty - c[1]) + n[2] * (tz - c[2])) * (6.2832 / lam)
            dt = dt + np.float32(tm["wobble"] / 1.7) * np.sin(arg + ph).astype(np.float32)
        alpha = 1 / (1 + np.exp(np.clip(dt / tm["edge"], -50, 50)))  # blurred edge
        inner = an["liver_hu"] - tm["contrast"] + tm["tex_amp"] * tm["tex"](tx, ty, tz)
        if tm["rim_hu"]:  # enhancing rim inside the edge, necrotic core deeper in
            rim = np.exp(-(((dt + tm["rim_mm"] / 2) / (tm["rim_mm"] / 2)) ** 2))
            core = 1 / (1 + np.exp(np.clip((dt + tm["core_depth"]) / 1.5, -50, 50)))
            inner = inner + tm["rim_hu"] * rim - tm["core_hu"] * core
        val[b] = val[b] * (1 - alpha) + alpha * inner
        grown = (alpha > 0.5) & (d[b] < 0)
        tumour[b] |= grown
        counts.append(int(grown.sum()))
    liver = d < 0
    sub[liver] = val[liver]
    sub_lab[liver] = np.where(tumour[liver], 2, 1)
    return counts


def paint_skeleton(an: dict, g: Grid, hu: np.ndarray, lab: np.ndarray) -> None:
    """Vertebrae with discs and posterior elements, aorta and ribs; never over labelled voxels."""
    for sl in g.slabs():
        x, y, z = g.axes(sl)
        out, free = hu[sl], lab[sl] == 0
        phase = ((z - an["zc"] + an["vert_ph"]) % an["vert_period"]) / an["vert_period"]
        bone = (ellipsoid_distance(an["transverse"], x, y, z) < 0) & (phase > 0.35) & (phase < 0.75)
        out[(bone | (ellipsoid_distance(an["spinous"], x, y, z) < 0)) & free] = (
            an["cortex_hu"] * 0.6
        )
        canal = ellipsoid_distance(an["canal"], x, y, z)
        out[(canal < 5) & free] = an["cortex_hu"] * 0.7
        out[(canal < 0) & free] = 15.0
        dv = ellipsoid_distance(an["vert"], x, y, z)
        body = np.where(dv > -2.5, an["cortex_hu"], an["cancellous_hu"])
        body = np.broadcast_to(np.where(phase < 0.25, an["disc_hu"], body), out.shape)
        out[(dv < 0) & free] = body[(dv < 0) & free]
        out[(ellipsoid_distance(an["aorta"], x, y, z) < 0) & free] = an["aorta_hu"]
        depth, _, wall = body_depth(an, x, y, z)
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


def add_noise(hu: np.ndarray, g: Grid, sigma: float, corr: float, rng) -> None:
    """In-plane partial-volume blur, then in-plane correlated Gaussian noise of std ``sigma``."""
    imp = np.zeros((17, 17), np.float32)
    imp[8, 8] = 1
    gain = float(sigma / np.sqrt((ndimage.gaussian_filter(imp, corr) ** 2).sum()))
    for sl in g.slabs():
        noise = ndimage.gaussian_filter(
            rng.standard_normal(hu[sl].shape, np.float32), (corr,) * 2 + (0,)
        )
        hu[sl] = ndimage.gaussian_filter(hu[sl], (0.5, 0.5, 0)) + gain * noise
