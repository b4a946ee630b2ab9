"""Random anatomy of one synthetic case: body, skeleton and organ parameters in world mm,
then textures, the portal-vein tree and tumours (Hu et al., CVPR 2023 style).

Cases come in three contrast phases (portal-venous, arterial, a fatty liver in the portal phase);
tumours range from 5 to 80 mm, sit deep or under the capsule, are mostly hypodense (hyper-
enhancing ones in the arterial phase), and large ones often have an enhancing rim around a
necrotic core."""

from __future__ import annotations

import math

import numpy as np

from livseg.synthetic.shapes import INF, SmoothField, body_depth, ellipsoid_box, liver_distance

# Contrast phases: share of cases, liver HU, tumour-liver contrast (HU darker than the liver).
PHASES = ("portal", "arterial", "fatty")
PHASE_SHARES = (0.6, 0.2, 0.2)
LIVER_HU = {"portal": (95.0, 130.0), "arterial": (70.0, 95.0), "fatty": (68.0, 88.0)}
TUMOUR_CONTRAST = {"portal": (20.0, 70.0), "arterial": (15.0, 40.0), "fatty": (15.0, 40.0)}


def draw_anatomy(rng: np.random.Generator, fov: float) -> dict:
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
    phase = str(rng.choice(PHASES, p=PHASE_SHARES))
    an.update(liver=liver, liver_k=10.0, liver_amp=U(4, 9), phase=phase)
    an["liver_hu"] = U(*LIVER_HU[phase])
    top = max(e[2] + e[5] for e in liver) - zc
    bot = min(e[2] - e[5] for e in liver) - zc
    an.update(liver_top=top, liver_bot=bot, liver_slack=2.5 * an["liver_amp"] + 10 * 1.1 + 2)
    ws, th = U(10, 35), U(-2.75, -2.35)  # spleen: left posterolateral, flattened on the wall
    a = a0 * (1 + an["a_amp"] * math.sin(ws / an["var_len"] + an["a_ph"]))
    b = b0 * (1 + an["b_amp"] * math.sin(ws / an["var_len"] + an["b_ph"]))
    px, py, sr = a * math.cos(th), b * math.sin(th), f * U(0.9, 1.1, 3) * (25, 55, 55)
    wall = float(body_depth(an, np.float32(ox + px), np.float32(oy + py), np.float32(zc + ws))[2])
    k = 1 - (wall + 4 + 0.8 * sr[0]) / math.hypot(px, py)
    ang = math.atan2(py, px) + rng.normal(0, 0.1)  # thin axis along the radius
    an["spleen"] = tuple(float(t) for t in (ox + k * px, oy + k * py, zc + ws, *sr, ang))
    an["spleen_hu"] = float(np.clip(an["liver_hu"] + U(-15, 15), 110, 130))
    if phase != "portal":  # a fatty liver is darker than the spleen; arterial spleens enhance
        an["spleen_hu"] = U(100, 135)
    left_top = liver[1][2] - zc + liver[1][5]
    an.update(heart=ell(-25, 30, left_top + 40, 55, 45, 50, 0.3), heart_hu=U(110, 160))
    kid = [ell(s * 65, -55, bot + U(10, 30) + 10 * (s < 0), 28, 25, 50, 0.4 * s) for s in (1, -1)]
    an.update(kidneys=kid, kidney_hu=U(150, 200), kidney_rim=U(4, 8))
    vs, vrx, vry = oy - 40 * fb, U(20, 24), U(15, 18)
    an.update(vert=(ox, vs, 0.0, vrx, vry, INF, 0.0), vert_period=U(27, 32), vert_ph=U(0, 30))
    an.update(cortex_hu=U(700, 1000), cancellous_hu=U(250, 350), disc_hu=U(70, 100))
    an["canal"] = (ox, vs - vry - 10, 0.0, 9.0, 9.0, INF, 0.0)
    an["spinous"] = (ox, vs - vry - 32, 0.0, 5.0, 16.0, INF, 0.0)
    an["transverse"] = (ox, vs - vry - 8, 0.0, 40.0 * fa, 6.0, INF, 0.0)
    r_ao = U(10, 12)
    an["aorta"] = (ox - 15 * fa, vs + vry + r_ao + 4, 0.0, r_ao, r_ao, INF, 0.0)
    an["paraspinal"] = [
        (ox + s * 38 * fa, oy - 78 * fb, 0, 26 * fa, 22 * fb, INF, 0) for s in (-1, 1)
    ]
    an["aorta_hu"] = U(250, 350) if phase == "arterial" else U(150, 200)
    an.update(rib_cortex_hu=U(600, 800), rib_marrow_hu=U(250, 350))
    an.update(rib_drop=U(50, 80), rib_period=U(24, 30), rib_ph=U(0, 30), rib_min=bot + U(20, 50))
    an.update(dome_w=top - U(5, 15), dome_k=U(50, 80), dome_u=ox + 30 * fa)
    an.update(bowel_t=U(0.0, 0.5), bowel_hu=U(20, 40))
    return an


def draw_detail(an: dict, rng: np.random.Generator, max_tumours: int, gap: float) -> None:
    """Organ textures, liver fields and exclusion zones, portal-vein tree and tumours (in place)."""
    lo = np.min([ellipsoid_box(e, an["liver_slack"])[0] for e in an["liver"]], axis=0)
    hi = np.max([ellipsoid_box(e, an["liver_slack"])[1] for e in an["liver"]], axis=0)
    an.update(liver_lo=lo, liver_hi=hi, liver_field=SmoothField(rng, lo, hi, rng.uniform(25, 40)))
    an.update(
        liver_tex=SmoothField(rng, lo, hi, rng.uniform(4, 8)), liver_tex_amp=rng.uniform(5, 10)
    )
    an["kidney_rim"] = max(an["kidney_rim"], gap)  # the fat rim must survive the sampling
    soft = [*an["kidneys"], an["spleen"], an["heart"], an["aorta"]]  # liver-like intensities
    hard = [an["vert"], an["canal"], *an["paraspinal"]]
    gaps = (
        [an["kidney_rim"] + 2] * 2 + [max(g, gap) for g in (6.0, 8.0, 4.0)] + [8.0, 8.0, 3.0, 3.0]
    )
    an["exclude"] = list(zip(soft + hard, gaps, strict=True))  # liver keeps this far from them
    an["spleen_tex"] = SmoothField(rng, *ellipsoid_box(an["spleen"], 8), 6.0)
    an["kidney_tex"] = [SmoothField(rng, *ellipsoid_box(e, 8), 6.0) for e in an["kidneys"]]
    pts = rng.uniform(lo, hi, size=(4096, 3)).astype(np.float32)
    d = liver_distance(an, pts[:, 0], pts[:, 1], pts[:, 2])
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
    # Portal veins enhance in the portal phase, barely in the arterial one.
    vessel_hu = rng.uniform(-5, 15) if an["phase"] == "arterial" else rng.uniform(20, 40)
    an.update(vessels=vessels, vessel_hu=vessel_hu, tumours=[])
    n = 0 if rng.random() < 0.2 or max_tumours == 0 else int(rng.integers(1, max_tumours + 1))
    for _ in range(n):
        r = math.exp(rng.uniform(math.log(2.5), math.log(40)))  # diameter 5-80 mm, log-uniform
        # A quarter of the lesions sit under the capsule and bulge out of the liver's outline
        # (their label stops at the liver); the others lie deeper.
        surface = rng.random() < 0.25
        ok = (d > -0.6 * r) if surface else (d < -0.5 * min(r, 20))
        if not ok.any():
            continue
        ctr = pts[ok][rng.integers(ok.sum())].astype(float)
        radii = r * rng.uniform(0.75, 1.25, 3)
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        waves = [(n, rng.uniform(1, 2.5) * r, rng.uniform(0, 6.3)) for n in dirs]
        ext = radii.max() + 8
        contrast = rng.uniform(*TUMOUR_CONTRAST[an["phase"]])
        if an["phase"] == "arterial" and rng.random() < 0.4:
            contrast = -rng.uniform(15, 40)  # hyper-enhancing (HCC-like) in the arterial phase
        # Large lesions: often an enhancing rim and a necrotic core near water.
        ringed = r > 12 and contrast > 0 and rng.random() < 0.6
        core_floor = an["liver_hu"] - contrast - 15.0  # the core stays above ~15 HU
        an["tumours"].append(
            dict(
                e=tuple(float(v) for v in (*ctr, *radii, rng.uniform(0, math.pi))),
                contrast=contrast,
                edge=rng.uniform(0.5, 1.5),
                waves=waves,
                wobble=0.15 * r,
                tex_amp=rng.uniform(4, 12),
                tex=SmoothField(rng, ctr - ext, ctr + ext, rng.uniform(2, 5)),
                surface=surface,
                rim_hu=rng.uniform(20, 45) if ringed else 0.0,
                rim_mm=rng.uniform(2, 4),
                core_hu=min(rng.uniform(20, 50), max(core_floor, 0.0)) if ringed else 0.0,
                core_depth=rng.uniform(0.35, 0.6) * r,
            )
        )
