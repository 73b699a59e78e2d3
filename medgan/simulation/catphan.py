"""A digital Catphan 504 (CT/CBCT image-quality phantom) and its pylinac analysis.

:func:`make_catphan504` draws the four modules that pylinac's ``CatPhan504``
analysis reads, in Hounsfield units, on an axial grid:

* **CTP404** (z = 0): eight 12.2 mm sensitometry inserts on a 58.7 mm radius at
  pylinac's angles (Air twice, on the vertical axis, which pylinac uses to find
  the roll; PMP, LDPE, polystyrene, acrylic, Delrin, Teflon at pylinac's
  nominal HU), the four 3 mm geometry nodes on a 50 mm square (three air holes,
  one Teflon pin), and four 23 degree wire ramps 38 mm from the centre for the
  slice thickness.
* **CTP528** (z = +30 mm): the 1-21 lp/cm aluminium bar gauge on a 47 mm radius,
  groups 1-8 lp/cm exactly where pylinac's MTF profile looks for them.
* **CTP515** (z = -30 mm): supra-slice low-contrast discs (1.0 %, 0.5 %, 0.3 %;
  15 to 2 mm) on a 50 mm radius and 1 % sub-slice cylinders on a 25 mm radius.
* **CTP486** (z = -65 mm): uniform.

Angles follow pylinac: degrees in the image, ``x = cos``, ``y = sin`` with the
row index (y) pointing down, i.e. posterior; z is the scanner's z
(ImagePositionPatient[2]), increasing from CTP486 to CTP528.

Background HU of each module were measured on the real Varian OBI scan in
``../shared/data/cbct_catphan`` (see docs/data.md, "Digital Catphan 504"); the
inserts use pylinac 3.49's nominal values.  Edges are partial-volume averaged:
each pixel is the mean of ``supersample`` x ``supersample`` sub-samples in-plane,
and each slice the length-weighted mean of what lies between the shapes' ends
along z (a rectangular slice profile of width = slice spacing).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medgan.errors import InputError
from medgan.io.volume import Volume
from medgan.utils.optional import require

#: Nominal insert HU, as in pylinac 3.49 (``pylinac.ct`` module constants).
INSERT_HU = {"Air": -1000.0, "PMP": -196.0, "LDPE": -104.0, "Poly": -47.0,
             "Acrylic": 115.0, "Delrin": 365.0, "Teflon": 1000.0}
#: Material of each insert (names of medgan.simulation.materials), written into the material map.
INSERT_MATERIAL = {"Air": "air", "PMP": "pmp", "LDPE": "ldpe", "Poly": "polystyrene",
                   "Acrylic": "acrylic", "Delrin": "delrin", "Teflon": "teflon"}
#: Insert angles in the image (degrees, pylinac's ``CTP404CP504.roi_settings``); the second
#: air insert sits opposite the first, on the vertical axis, as in the real phantom.
INSERT_ANGLES = {"Air": -90.0, "PMP": -120.0, "LDPE": 180.0, "Poly": 120.0,
                 "Acrylic": 60.0, "Delrin": 0.0, "Teflon": -60.0}
SECOND_AIR_ANGLE = 90.0
INSERT_RING_MM = 58.7
INSERT_DIAMETER_MM = 12.2

#: Module centres along z relative to CTP404 (pylinac's ``CatPhan504.modules`` offsets).
MODULE_OFFSETS_MM = {"CTP404": 0.0, "CTP528": 30.0, "CTP515": -30.0, "CTP486": -65.0}
#: Module extents along z (mm).  The boundaries at -52.5, -12.5, +12.5 and +52.5 mm are
#: where the real scan's slice means step; CTP486 is given the manual's 50 mm.
MODULE_Z_MM = {"CTP486": (-102.5, -52.5), "CTP515": (-52.5, -12.5),
               "CTP404": (-12.5, 12.5), "CTP528": (12.5, 52.5)}
#: Background HU of each module and of the outer housing (annulus 76-100 mm), measured on the
#: real OBI scan (CBCT shading makes each vary by about +-10 HU across the module): CTP404 = mean
#: of pylinac's four background ROIs (87, 88, 90, 92); CTP486 = mean of its five uniformity ROIs
#: (5, -0.5, 6, 10, 14; median of the central 70 mm disc: 6); CTP515 = median of the 40-44 mm ring
#: between the disc sets (47); CTP528 = mean of the medians of the 20-40 mm and 55-70 mm rings
#: (86, 73); housing = median of the 80-90 mm ring over the four modules (44, 46, 46, 39).
BACKGROUND_HU = {"CTP404": 90.0, "CTP486": 7.0, "CTP515": 47.0, "CTP528": 80.0, "housing": 45.0}
PHANTOM_RADIUS_MM = 100.0
MODULE_RADIUS_MM = 76.0

GEOMETRY_NODE_HALF_SIDE_MM = 25.0  # nodes on a 50 mm square
GEOMETRY_NODE_DIAMETER_MM = 3.0
TEFLON_NODE_ANGLE = -45.0  # the one Teflon pin (upper right in the real scan); the others are air holes

RAMP_ANGLE_DEG = 23.0  # tan(23 deg) = 0.4245; pylinac assumes 0.42, so it reads the thickness ~1 % low
RAMP_RADIUS_MM = 38.0
RAMP_HALF_LENGTH_MM = 28.0
#: The wire is drawn as a 0.5 mm (radial) x 1 mm (along z) strip of 1000 HU: a real wire is thinner
#: and denser, blurred by the scanner; pylinac reads only the strip's length in the slice.
RAMP_WIDTH_MM = 0.5
RAMP_WIRE_Z_MM = 1.0
RAMP_HU = 1000.0

LINE_PAIR_RADIUS_MM = 47.0
LINE_PAIR_BAR_LENGTH_MM = 5.0  # radial length of each bar, as measured on the real scan (about 5 mm)
LINE_PAIR_THICKNESS_MM = 2.0
ALUMINIUM_HU = 2500.0  # aluminium at ~60 keV effective energy (NIST XCOM mu/rho); the bars of CTP528
#: pylinac's CTP528CP504 region boundaries (fraction of the circle from 180 deg, counter-clockwise
#: on screen) and bars per group; groups 9-21 lp/cm share the rest of the circle.
_LP_BOUNDARIES = (0, 0.107, 0.173, 0.236, 0.286, 0.335, 0.387, 0.434, 0.479)
_LP_BARS = (2, 3, 4, 4, 4, 5, 5, 5)

LOW_CONTRAST_RING_MM = 50.0
LOW_CONTRAST_DIAMETERS_MM = (15.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0)
#: pylinac's CTP515 angles of the 15, 9, 8, 7, 6, 5 mm discs; 4, 3, 2 mm continue the spacing.
LOW_CONTRAST_ANGLES = (-87.4, -69.1, -52.7, -38.5, -25.1, -12.9, -1.5, 9.3, 19.5)
LOW_CONTRAST_LEVELS_HU = (10.0, 5.0, 3.0)  # 1.0 %, 0.5 %, 0.3 % of the 1000 HU scale
SUBSLICE_RING_MM = 25.0
SUBSLICE_DIAMETERS_MM = (9.0, 7.0, 5.0, 3.0)
SUBSLICE_LENGTHS_MM = (3.0, 5.0, 7.0)


# ---------------------------------------------------------------------------- shapes
@dataclasses.dataclass(frozen=True)
class _Prism:
    """A 2D shape extruded along z from ``z0`` to ``z1`` (mm), filled with ``hu``.

    ``kind`` is ``disc`` (centre ``cx, cy``, radius ``a``) or ``bar`` (centre, half-length ``a``
    along ``angle``, half-width ``b`` across it).  Coordinates in mm from the phantom axis.
    """

    kind: str
    cx: float
    cy: float
    a: float
    z0: float
    z1: float
    hu: float
    b: float = 0.0
    angle: float = 0.0
    material: str = "water"  #: its material (medgan.simulation.materials), for the material map

    def reach(self) -> float:
        return self.a if self.kind == "disc" else math.hypot(self.a, self.b)

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.cx, y - self.cy
        if self.kind == "disc":
            return dx * dx + dy * dy <= self.a * self.a
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        return (np.abs(dx * c + dy * s) <= self.a) & (np.abs(-dx * s + dy * c) <= self.b)


@dataclasses.dataclass(frozen=True)
class _Ramp:
    """A wire rising at ``RAMP_ANGLE_DEG`` through the slice plane: seen in a slice as a short
    strip ``tan(23 deg)`` times longer than the slice is thick.  ``angle`` is its radial direction."""

    angle: float
    sign: float  # +1 / -1: which way the wire rises along the tangent
    hu: float = RAMP_HU

    def reach(self) -> float:
        return math.hypot(RAMP_RADIUS_MM + RAMP_WIDTH_MM, RAMP_HALF_LENGTH_MM)


def catphan504_objects(roll_deg: float = 0.0) -> list:
    """The digital Catphan 504 as an ordered list of shapes (parents before what they hold)."""

    def r(ang: float) -> float:
        return math.radians(ang + roll_deg)

    def polar(dist: float, ang: float) -> tuple[float, float]:
        return (dist * math.cos(r(ang)), dist * math.sin(r(ang)))

    z_all = (min(z for z, _ in MODULE_Z_MM.values()), max(z for _, z in MODULE_Z_MM.values()))
    objs: list = [_Prism("disc", 0.0, 0.0, PHANTOM_RADIUS_MM, *z_all, BACKGROUND_HU["housing"])]
    for name, (z0, z1) in MODULE_Z_MM.items():
        objs.append(_Prism("disc", 0.0, 0.0, MODULE_RADIUS_MM, z0, z1, BACKGROUND_HU[name]))

    # CTP404: sensitometry, geometry nodes, wire ramps
    z0, z1 = MODULE_Z_MM["CTP404"]
    for name, ang in [*INSERT_ANGLES.items(), ("Air", SECOND_AIR_ANGLE)]:
        objs.append(_Prism("disc", *polar(INSERT_RING_MM, ang), INSERT_DIAMETER_MM / 2, z0, z1, INSERT_HU[name],
                           material=INSERT_MATERIAL[name]))
    for ang in (-135.0, -45.0, 45.0, 135.0):
        node = "Teflon" if ang == TEFLON_NODE_ANGLE else "Air"
        objs.append(_Prism("disc", *polar(GEOMETRY_NODE_HALF_SIDE_MM * math.sqrt(2), ang),
                           GEOMETRY_NODE_DIAMETER_MM / 2, z0, z1, INSERT_HU[node], material=INSERT_MATERIAL[node]))
    for i, ang in enumerate((0.0, 90.0, 180.0, -90.0)):
        objs.append(_Ramp(ang + roll_deg, 1.0 if i % 2 == 0 else -1.0))

    # CTP528: bar groups 1-21 lp/cm, radial bars on a 47 mm circle
    z0 = MODULE_OFFSETS_MM["CTP528"] - LINE_PAIR_THICKNESS_MM / 2
    z1 = z0 + LINE_PAIR_THICKNESS_MM
    circumference = 2 * math.pi * LINE_PAIR_RADIUS_MM
    extra = np.linspace(_LP_BOUNDARIES[-1], 0.95, 21 - 8 + 1)
    groups = [(f + 1, _LP_BARS[f], _LP_BOUNDARIES[f], _LP_BOUNDARIES[f + 1]) for f in range(8)]
    groups += [(9 + i, 5, extra[i], extra[i + 1]) for i in range(13)]
    for lp_per_cm, n_bars, f0, f1 in groups:
        gap = 10.0 / (2 * lp_per_cm)  # bar width = gap width, mm
        mid = (f0 + f1) / 2 * circumference
        for k in range(n_bars):
            arc = mid + (k - (n_bars - 1) / 2) * 2 * gap
            ang = 180.0 - math.degrees(arc / LINE_PAIR_RADIUS_MM)  # pylinac's profile runs this way
            objs.append(_Prism("bar", *polar(LINE_PAIR_RADIUS_MM, ang), LINE_PAIR_BAR_LENGTH_MM / 2,
                               z0, z1, ALUMINIUM_HU, b=gap / 2, angle=ang + roll_deg, material="aluminium"))

    # CTP515: supra-slice discs (three contrast sets 120 deg apart) and sub-slice cylinders
    z0, z1 = MODULE_Z_MM["CTP515"]
    bg = BACKGROUND_HU["CTP515"]
    for level, turn in zip(LOW_CONTRAST_LEVELS_HU, (0.0, 120.0, 240.0), strict=True):
        for d, ang in zip(LOW_CONTRAST_DIAMETERS_MM, LOW_CONTRAST_ANGLES, strict=True):
            objs.append(_Prism("disc", *polar(LOW_CONTRAST_RING_MM, ang + turn), d / 2, z0, z1, bg + level))
    zc = MODULE_OFFSETS_MM["CTP515"]
    for j, length in enumerate(SUBSLICE_LENGTHS_MM):
        for i, d in enumerate(SUBSLICE_DIAMETERS_MM):
            ang = 150.0 + 120.0 * j + 25.0 * i
            objs.append(_Prism("disc", *polar(SUBSLICE_RING_MM, ang), d / 2, zc - length / 2, zc + length / 2,
                               bg + LOW_CONTRAST_LEVELS_HU[0]))
    return objs


# ---------------------------------------------------------------------------- rasterising
def _subsample_axis(n: int, start: float, step: float, factor: int) -> np.ndarray:
    """Sub-sample positions (``n * factor``) of the pixels ``start + i * step``."""
    offs = ((np.arange(factor) + 0.5) / factor - 0.5) * step
    return (start + np.arange(n)[:, None] * step + offs[None, :]).ravel()


class _Raster:
    """Pixel coverage (0..1) of shapes on one axial grid, computed in each shape's bounding box."""

    def __init__(self, nx: int, ny: int, x0: float, y0: float, sx: float, sy: float, factor: int):
        self.nx, self.ny, self.x0, self.y0, self.sx, self.sy, self.f = nx, ny, x0, y0, sx, sy, factor

    def box(self, cx: float, cy: float, reach: float):
        i0 = max(int(math.floor((cx - reach - self.x0) / self.sx)) - 1, 0)
        i1 = min(int(math.ceil((cx + reach - self.x0) / self.sx)) + 2, self.nx)
        j0 = max(int(math.floor((cy - reach - self.y0) / self.sy)) - 1, 0)
        j1 = min(int(math.ceil((cy + reach - self.y0) / self.sy)) + 2, self.ny)
        if i0 >= i1 or j0 >= j1:
            return None
        xs = _subsample_axis(i1 - i0, self.x0 + i0 * self.sx, self.sx, self.f)
        ys = _subsample_axis(j1 - j0, self.y0 + j0 * self.sy, self.sy, self.f)
        return (slice(j0, j1), slice(i0, i1)), xs[None, :], ys[:, None]

    def mean(self, inside: np.ndarray) -> np.ndarray:
        ny, nx = inside.shape[0] // self.f, inside.shape[1] // self.f
        fraction: np.ndarray = inside.reshape(ny, self.f, nx, self.f).mean(axis=(1, 3), dtype=np.float32)
        return fraction


def make_catphan504(
    spacing_mm: tuple[float, float, float] = (2.5, 0.5, 0.5),
    shape: tuple[int, int] = (512, 512),
    z_range_mm: tuple[float, float] = (-80.0, 77.5),
    *,
    centre_mm: tuple[float, float] = (0.0, 0.0),
    roll_deg: float = 0.0,
    supersample: int = 4,
    noise_hu: float = 0.0,
    blur_fwhm_mm: float = 0.0,
    seed: int | None = None,
) -> Volume:
    """Build a digital Catphan 504 in HU (float32) on an axial grid.

    ``spacing_mm`` is ``(z, y, x)``; slices are centred at ``z_range_mm[0] + k * dz`` up to
    ``z_range_mm[1]`` (inclusive), in the phantom's frame where CTP404 is at z = 0 (the
    default, -80 to +77.5 mm in 2.5 mm steps, is the real OBI scan's 64 slices, and puts a
    slice on each module centre).  ``shape`` is the in-plane ``(rows, columns)``; the phantom
    axis sits on the grid centre shifted by ``centre_mm`` = ``(x, y)`` and rotated by
    ``roll_deg`` (clockwise on screen, as pylinac reports it).  ``noise_hu`` adds white
    Gaussian noise (``seed``), ``blur_fwhm_mm`` an in-plane Gaussian blur; both default to 0
    (the ideal phantom).  The grid is axial, LPS, identity direction; air outside is -1000 HU.
    """
    dz, dy, dx = (float(s) for s in spacing_mm)
    ny, nx = (int(n) for n in shape)
    if min(dz, dy, dx) <= 0 or ny < 8 or nx < 8:
        raise InputError("make_catphan504: spacing must be positive and the slices at least 8x8 pixels")
    if supersample < 1:
        raise InputError("make_catphan504: supersample must be at least 1")
    z_first, z_last = (float(z) for z in z_range_mm)
    nz = int(math.floor((z_last - z_first) / dz + 1e-6)) + 1
    if nz < 1:
        raise InputError(f"make_catphan504: empty z range {z_range_mm}")
    # physical grid: the phantom axis at x = y = 0 when centre_mm is (0, 0)
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    cx, cy = (float(c) for c in centre_mm)
    raster = _Raster(nx, ny, x0 - cx, y0 - cy, dx, dy, int(supersample))

    objects = catphan504_objects(roll_deg)
    covers: list[tuple[Any, np.ndarray] | None] = []
    for obj in objects:
        if isinstance(obj, _Ramp):
            covers.append(None)
            continue
        box = raster.box(obj.cx, obj.cy, obj.reach())
        covers.append(None if box is None else (box[0], raster.mean(obj.inside(box[1], box[2]))))
    ramp_boxes = {id(o): raster.box(0.0, 0.0, o.reach()) for o in objects if isinstance(o, _Ramp)}
    tan_ramp = math.tan(math.radians(RAMP_ANGLE_DEG))

    out = np.empty((nz, ny, nx), np.float32)
    prisms = [(o, c) for o, c in zip(objects, covers, strict=True) if isinstance(o, _Prism) and c is not None]
    ramps = [o for o in objects if isinstance(o, _Ramp)]
    edges = sorted({z for o, _ in prisms for z in (o.z0, o.z1)})
    for k in range(nz):
        zk = z_first + k * dz
        lo, hi = zk - dz / 2, zk + dz / 2
        # the slice's stretches between shape ends along z: each is drawn once, weighted by its length
        cuts = [lo, *(e for e in edges if lo < e < hi), hi]
        acc = np.zeros((ny, nx), np.float64)
        for z0, z1 in itertools.pairwise(cuts):
            zs = (z0 + z1) / 2
            img = np.full((ny, nx), -1000.0, np.float32)
            for obj, (sl, a) in prisms:
                if obj.z0 <= zs < obj.z1:
                    region = img[sl]
                    region += (obj.hu - region) * a
            acc += img * ((z1 - z0) / dz)
        img = acc.astype(np.float32)
        wire_top = tan_ramp * RAMP_HALF_LENGTH_MM + RAMP_WIRE_Z_MM / 2
        # the wire's share of each pixel: its in-plane strip times its z-overlap with the slice
        for obj in ramps if -wire_top < hi and lo < wire_top else ():
            sl, xs, ys = ramp_boxes[id(obj)]
            c, s = math.cos(math.radians(obj.angle)), math.sin(math.radians(obj.angle))
            u, v = xs * c + ys * s, -xs * s + ys * c  # radial, tangential (mm from the phantom axis)
            z_wire = obj.sign * tan_ramp * v
            overlap = np.clip(np.minimum(z_wire + RAMP_WIRE_Z_MM / 2, hi) - np.maximum(z_wire - RAMP_WIRE_Z_MM / 2, lo),
                              0.0, None) / dz
            strip = (np.abs(u - RAMP_RADIUS_MM) <= RAMP_WIDTH_MM / 2) & (np.abs(v) <= RAMP_HALF_LENGTH_MM)
            a = raster.mean(np.where(strip, overlap, 0.0))
            if a.any():
                region = img[sl]
                region += (obj.hu - region) * a
        out[k] = img

    if blur_fwhm_mm > 0:
        from scipy import ndimage

        sigma = blur_fwhm_mm / (2 * math.sqrt(2 * math.log(2)))
        out = ndimage.gaussian_filter(out, (0, sigma / dy, sigma / dx)).astype(np.float32)
    if noise_hu > 0:
        rng = np.random.default_rng(seed)
        out += rng.normal(0.0, noise_hu, out.shape).astype(np.float32)
    meta = {"modality": "CT (digital Catphan 504)", "series_description": "medgan digital Catphan 504"}
    return Volume(out, (dx, dy, dz), (x0, y0, z_first), meta=meta)


def make_catphan504_materials(
    spacing_mm: tuple[float, float, float] = (2.5, 0.5, 0.5),
    shape: tuple[int, int] = (512, 512),
    z_range_mm: tuple[float, float] = (-80.0, 77.5),
    *,
    centre_mm: tuple[float, float] = (0.0, 0.0),
    roll_deg: float = 0.0,
) -> Volume:
    """The material map (uint8 labels of :data:`medgan.simulation.materials.MATERIAL_LABELS`) of
    :func:`make_catphan504` on the same grid (same arguments).

    A pixel takes the material of the last shape covering at least half of it in the slice's centre
    plane: the inserts' plastics and air, the Teflon geometry pin, the aluminium bars; the phantom
    body, modules and low-contrast discs are ``water`` (their density then follows their HU).  The
    wire ramps and the air around the phantom are 0: material from the HU table.
    """
    from medgan.simulation.materials import HU_TABLE_LABEL, label_of

    dz, dy, dx = (float(s) for s in spacing_mm)
    ny, nx = (int(n) for n in shape)
    z_first, z_last = (float(z) for z in z_range_mm)
    nz = int(math.floor((z_last - z_first) / dz + 1e-6)) + 1
    if min(dz, dy, dx) <= 0 or ny < 8 or nx < 8 or nz < 1:
        raise InputError("make_catphan504_materials: spacing must be positive and the slices at least 8x8 pixels")
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    cx, cy = (float(c) for c in centre_mm)
    raster = _Raster(nx, ny, x0 - cx, y0 - cy, dx, dy, 2)
    shapes = []
    for obj in catphan504_objects(roll_deg):
        if isinstance(obj, _Prism):
            box = raster.box(obj.cx, obj.cy, obj.reach())
            if box is not None:
                shapes.append((obj, box[0], raster.mean(obj.inside(box[1], box[2])) >= 0.5, label_of(obj.material)))
    out = np.full((nz, ny, nx), HU_TABLE_LABEL, np.uint8)
    for k in range(nz):
        zk = z_first + k * dz
        for obj, sl, inside, label in shapes:
            if obj.z0 <= zk < obj.z1:
                out[k][sl][inside] = label
    meta = {"modality": "labels (materials)", "series_description": "medgan digital Catphan 504 materials"}
    return Volume(out, (dx, dy, dz), (x0, y0, z_first), meta=meta)


def insert_positions_mm(roll_deg: float = 0.0) -> dict[str, tuple[float, float]]:
    """Centres ``(x, y)`` in mm from the phantom axis of the seven pylinac inserts."""
    return {name: (INSERT_RING_MM * math.cos(math.radians(ang + roll_deg)),
                   INSERT_RING_MM * math.sin(math.radians(ang + roll_deg)))
            for name, ang in INSERT_ANGLES.items()}


# ---------------------------------------------------------------------------- pylinac
def _pylinac():
    pylinac = require("pylinac", "Catphan analysis", "pylinac", "qa", attributes=("CatPhan504",))
    return pylinac, pylinac.CatPhan504


def analyse_catphan(source: Volume | str | Path, **analyze_kwargs: Any) -> dict[str, Any]:
    """Run pylinac's ``CatPhan504`` analysis and return its numbers as a plain dict.

    ``source`` is a :class:`Volume` (written to a temporary DICOM series with medgan's writer,
    int16 HU), a DICOM folder, a DICOM ``.zip`` or any volume file medgan reads.  Extra keyword
    arguments go to pylinac's ``analyze()`` (e.g. ``hu_tolerance=40``).

    Returns ``insert_hu`` / ``insert_nominal_hu`` / ``insert_sd`` (per insert), ``hu_passed``,
    ``uniformity_hu`` / ``uniformity_sd`` (Top, Right, Bottom, Left, Center), ``noise_hu`` (SD of
    the centre uniformity ROI), ``uniformity_passed``, ``uniformity_index``,
    ``geometry_mm`` (the four 50 mm node distances), ``geometry_passed``, ``slice_thickness_mm``,
    ``thickness_passed``, ``mtf_lp_mm`` (relative MTF % -> lp/mm) and ``mtf50_lp_mm``,
    ``low_contrast_seen``, ``origin_slice``, ``roll_deg`` and ``pylinac_version``.
    """
    pylinac, CatPhan504 = _pylinac()
    with tempfile.TemporaryDirectory(prefix="medgan-catphan-") as tmp:
        if isinstance(source, Volume):
            from medgan.io import write_volume

            folder = write_volume(source, Path(tmp) / "series", "dicom")
            make = functools.partial(CatPhan504, str(folder))
        else:
            path = Path(source)
            if not path.exists():
                raise InputError(f"{path} does not exist")
            if path.is_dir():
                make = functools.partial(CatPhan504, str(path))
            elif path.suffix.lower() == ".zip":
                make = functools.partial(CatPhan504.from_zip, str(path))
            else:
                from medgan.io import read_volume, write_volume

                folder = write_volume(read_volume(path), Path(tmp) / "series", "dicom")
                make = functools.partial(CatPhan504, str(folder))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cat = make()
                cat.analyze(**analyze_kwargs)
                return _collect(cat, pylinac.__version__)
            except (ValueError, FileNotFoundError, IndexError) as exc:
                what = "the volume" if isinstance(source, Volume) else str(source)
                why = str(exc)
                if isinstance(exc, IndexError):
                    why = ("the scan ends too close to a module (pylinac reads 3 slices on each side of CTP528, "
                           "30 mm above CTP404)")
                raise InputError(f"pylinac could not analyse {what} as a Catphan 504: {why}") from None


def _collect(cat, version: str) -> dict[str, Any]:
    """Numbers from an analysed ``CatPhan504``, read from its modules (pylinac's ``results_data()``
    divides by the insert noise for the low-contrast visibility, which fails on a noise-free image)."""
    c404 = cat.ctp404
    c486 = getattr(cat, "ctp486", None)
    c528 = getattr(cat, "ctp528", None)
    c515 = getattr(cat, "ctp515", None)
    mtf: dict[int, float | None] = {}
    if c528 is not None:
        for p in range(10, 100, 10):
            try:
                v = c528.mtf.relative_resolution(p)
            except (ValueError, IndexError):
                v = None
            mtf[p] = None if v is None else float(v)
    return {
        "insert_hu": {k: float(r.pixel_value) for k, r in c404.rois.items()},
        "insert_nominal_hu": {k: float(r.nominal_val) for k, r in c404.rois.items()},
        "insert_sd": {k: float(r.std) for k, r in c404.rois.items()},
        "hu_passed": bool(c404.passed_hu),
        "hu_tolerance": float(c404.hu_tolerance),
        "uniformity_hu": {k: float(r.pixel_value) for k, r in c486.rois.items()} if c486 else {},
        "uniformity_sd": {k: float(r.std) for k, r in c486.rois.items()} if c486 else {},
        "noise_hu": float(c486.rois["Center"].std) if c486 else None,
        "uniformity_passed": bool(c486.overall_passed) if c486 else None,
        "uniformity_index": float(c486.uniformity_index) if c486 else None,
        "geometry_mm": {k: float(line.length_mm) for k, line in c404.lines.items()},
        "geometry_passed": bool(c404.passed_geometry),
        "slice_thickness_mm": float(c404.meas_slice_thickness),
        "thickness_passed": bool(c404.passed_thickness),
        "mtf_lp_mm": mtf,
        "mtf50_lp_mm": mtf.get(50),
        "low_contrast_seen": int(c515.rois_visible) if c515 is not None else None,
        "origin_slice": int(cat.origin_slice),
        "origin_z_mm": float(cat.dicom_stack[cat.origin_slice].z_position),
        "roll_deg": float(cat.catphan_roll),
        "pylinac_version": str(version),
    }
