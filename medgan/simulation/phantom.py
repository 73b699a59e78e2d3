"""Procedural abdomen/pelvis CT phantoms with labels, randomly varied per seed.

Label values follow TotalSegmentator where it has the structure (so
``simulate_contrast`` works on phantoms too); the tissues it has no label for
use values above 200.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from medgan.io.volume import Volume

LABEL_NAMES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 29: "vertebrae",
               52: "aorta", 77: "hip", 200: "fat", 201: "muscle", 202: "bowel_gas"}
#: material of each label (medgan.simulation.materials) for the material map; bones are left to the HU table
LABEL_MATERIALS = {200: "adipose", 201: "soft_tissue", 5: "soft_tissue", 1: "soft_tissue", 2: "soft_tissue",
                   3: "soft_tissue", 52: "blood", 202: "air"}
TISSUE_HU = {200: -100.0, 201: 45.0, 5: 60.0, 1: 48.0, 2: 32.0, 3: 32.0, 52: 42.0, 29: 450.0, 77: 500.0, 202: -950.0}


def _ellipsoid(shape, spacing, centre_mm, radii_mm):
    zz, yy, xx = [np.arange(n) * s for n, s in zip(shape, spacing, strict=True)]
    z, y, x = np.meshgrid(zz, yy, xx, indexing="ij", sparse=True)
    cz, cy, cx = centre_mm
    rz, ry, rx = radii_mm
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def make_phantom(seed: int = 0, shape=(48, 128, 128), spacing_zyx=(3.0, 3.0, 3.0),
                 noise_hu: float = 12.0) -> tuple[Volume, Volume]:
    """Return ``(ct, labels)``: int16 HU and int16 labels on the same grid (LPS, origin at a corner)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    sz, sy, sx = spacing_zyx
    ext = np.array(shape) * np.array(spacing_zyx)
    c = ext / 2.0

    # random size factor
    def j(scale=0.08):
        return 1.0 + rng.uniform(-scale, scale)

    labels = np.zeros(shape, np.int16)
    body_r = (ext[0] * 10, ext[1] * 0.36 * j(), ext[2] * 0.44 * j())
    body = _ellipsoid(shape, spacing_zyx, c, body_r)
    labels[body] = 200
    inner = _ellipsoid(shape, spacing_zyx, c, (ext[0] * 10, body_r[1] - 12 * j(0.3), body_r[2] - 15 * j(0.3)))
    labels[inner] = 201
    cavity = _ellipsoid(shape, spacing_zyx, c + [0, -0.02 * ext[1], 0],
                        (ext[0] * 10, body_r[1] * 0.72, body_r[2] * 0.8))
    labels[cavity] = 200  # visceral fat around the organs

    def z_frac(f):
        return c[0] + (f - 0.5) * ext[0]

    spine_y = c[1] + body_r[1] * 0.55
    organs = [  # (label, centre z/y/x in mm, radii mm)
        (5, (z_frac(0.25), c[1] - 0.1 * ext[1], c[2] - 0.16 * ext[2]), (ext[0] * 0.3, 0.16 * ext[1], 0.16 * ext[2])),
        (1, (z_frac(0.22), c[1] + 0.05 * ext[1], c[2] + 0.22 * ext[2]), (ext[0] * 0.15, 0.08 * ext[1], 0.06 * ext[2])),
        (2, (z_frac(0.45), spine_y - 0.06 * ext[1], c[2] - 0.12 * ext[2]),
         (ext[0] * 0.14, 0.05 * ext[1], 0.04 * ext[2])),
        (3, (z_frac(0.42), spine_y - 0.06 * ext[1], c[2] + 0.12 * ext[2]),
         (ext[0] * 0.14, 0.05 * ext[1], 0.04 * ext[2])),
    ]
    for lab, centre, radii in organs:
        at = np.array(centre) + rng.normal(0, 3, 3)
        labels[_ellipsoid(shape, spacing_zyx, at, np.array(radii) * j())] = lab
    # aorta and spine run the full length
    aorta = _ellipsoid(shape, spacing_zyx, (c[0], spine_y - 0.11 * ext[1], c[2] - 0.03 * ext[2]),
                       (ext[0] * 10, 9 * j(), 9 * j()))
    labels[aorta] = 52
    labels[_ellipsoid(shape, spacing_zyx, (c[0], spine_y, c[2]), (ext[0] * 10, 16 * j(), 18 * j()))] = 29
    # pelvic bones in the lower third
    lower = np.zeros(shape, bool)
    lower[int(shape[0] * 0.7):] = True
    for side in (-1, 1):
        hip = _ellipsoid(shape, spacing_zyx, (c[0], spine_y - 0.05 * ext[1], c[2] + side * 0.27 * ext[2]),
                         (ext[0] * 10, 0.14 * ext[1] * j(), 0.05 * ext[2] * j()))
        labels[hip & lower] = 77
    # bowel gas pockets in the abdominal cavity
    for _ in range(rng.integers(3, 7)):
        centre = c + rng.uniform(-0.25, 0.25, 3) * ext * [1.6, 0.8, 0.8]
        gas = _ellipsoid(shape, spacing_zyx, centre, rng.uniform(4, 14, 3)) & cavity & (labels == 200)
        labels[gas] = 202

    hu = np.full(shape, -1000.0, np.float32)
    for lab, value in TISSUE_HU.items():
        hu[labels == lab] = value + rng.normal(0, 6)
    bone = np.isin(labels, (29, 77))
    cortex = bone & ~ndimage.binary_erosion(bone, iterations=1)
    hu[cortex] += 500.0
    hu = ndimage.gaussian_filter(hu, 0.6) + rng.normal(0, noise_hu, shape)
    hu = np.clip(hu, -1024, 3071)
    spacing = (sx, sy, sz)
    origin = (-ext[2] / 2, -ext[1] / 2, -ext[0])
    ct = Volume(np.rint(hu).astype(np.int16), spacing, origin, meta={"modality": "CT (phantom)"})
    return ct, Volume(labels, spacing, origin, meta={"modality": "labels"})


def phantom_materials(labels: Volume) -> Volume:
    """The material map (uint8, :data:`medgan.simulation.materials.MATERIAL_LABELS`) of a phantom's labels:
    fat, muscle and organs, blood, gas; bones and the air around the body take their material from the
    HU table (label 0)."""
    from medgan.simulation.materials import HU_TABLE_LABEL, label_of

    out = np.full(labels.shape, HU_TABLE_LABEL, np.uint8)
    for lab, name in LABEL_MATERIALS.items():
        out[np.asarray(labels.array) == lab] = label_of(name)
    return labels.with_array(out, modality="labels (materials)")
