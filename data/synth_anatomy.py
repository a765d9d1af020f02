"""Procedural anatomy of joints for synthetic plain films, as X-ray attenuation maps.

    from calcidet.data.synth_anatomy import render_anatomy
    anatomy = render_anatomy(shape_rng, pose_rng, "knee", "ap", "R", 1800, 1440, spacing=0.17)

Used by ``calcidet synth`` (``data/synth.py``). Shapes are outlines in millimetres in a joint-centred
frame (right side, lateral to -x, distal down); a canvas mirrors, rotates and scales them onto the film.
Projection is physical: a bone is a tube with a cortical shell, so its attenuation is the chord length
through cortex and through trabecular marrow (``_chord``); that gives bright cortical margins, a darker
textured medulla and thin-cortex epiphyses. Soft tissue is a rounded limb with a subcutaneous fat layer.
Everything is rendered at a working resolution of at most ``WORK_MAX`` px and upsampled by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MU_SOFT, MU_FAT = 0.020, 0.016  # attenuation per mm above air (water-like tissue, fat)
MU_CORTEX, MU_MARROW = 0.080, 0.016  # per mm, in excess of the soft tissue that bone displaces
WORK_MAX = 1000  # longest side of the working maps, px
JOINT_WEIGHTS = {("knee", "ap"): 0.21, ("knee", "lat"): 0.11, ("hip", "ap"): 0.18, ("shoulder", "ap"): 0.18,
                 ("elbow", "ap"): 0.11, ("elbow", "lat"): 0.07, ("hand", "pa"): 0.08, ("foot", "dp"): 0.06}
FIELD_OF_VIEW_MM = {"knee": (260, 400), "hip": (300, 420), "shoulder": (260, 380), "elbow": (200, 300),
                    "hand": (200, 280), "foot": (220, 300)}


@dataclass
class Anatomy:
    """One film's anatomy at working resolution, and where look-alikes belong (working pixels)."""

    attenuation: np.ndarray  # float32 H x W, line integral of attenuation (0 = air)
    body: np.ndarray  # bool: inside the skin
    bone: np.ndarray  # bool: inside bone
    medulla: np.ndarray  # bool: inside bone, deep to the cortex
    spacing: float  # mm per working pixel
    joint: str
    view: str
    centre: tuple[float, float] | None  # the joint, (x, y); None: unknown (a real film)
    margins: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, dx, dy
    insertions: list[tuple[float, float, float, float]] = field(default_factory=list)
    vessels: list[np.ndarray] = field(default_factory=list)  # polylines (k, 2)
    keepout: np.ndarray | None = None  # bool: soft tissue that is not periarticular (pelvis, chest)


class _Canvas:
    """Maps joint-frame millimetres to working pixels: mirror, rotate, scale, translate."""

    def __init__(self, centre: tuple[float, float], angle: float, mirror: bool, mm_per_px: float) -> None:
        c, s = np.cos(angle), np.sin(angle)
        self.turn = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
        self.matrix = self.turn / mm_per_px
        self.centre = np.asarray(centre, np.float64)

    def px(self, pts: np.ndarray) -> np.ndarray:
        return np.asarray(pts, np.float64).reshape(-1, 2) @ self.matrix.T + self.centre

    def site(self, point: tuple[float, float], direction: tuple[float, float]) -> tuple[float, float, float, float]:
        p = self.px(point)[0]
        d = self.turn @ np.asarray(direction, np.float64)
        d /= np.linalg.norm(d) + 1e-9
        return float(p[0]), float(p[1]), float(d[0]), float(d[1])


# ---- Geometry: outlines in mm, joint-centred, right side (lateral to -x), distal down ----------

@dataclass
class Bone:
    """A bone: union of outlines (mm), max half-depth ``cap`` and shaft cortex thickness (mm)."""

    polys: list[np.ndarray]
    cap: float
    cortex: float
    shaft: float = 0.0  # shaft radius (mm); the cortex thins where the bone is wider than this
    holes: list[np.ndarray] = field(default_factory=list)
    thin: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (outline, kept fraction)
    lines: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (open polyline, width mm)
    density: float = 1.0
    smooth: float = 2.5  # mm: how much the union of outlines is rounded


@dataclass
class Plan:
    """A joint: its bones, skin outline, limb half-depth, fat layer and where look-alikes go."""

    bones: list[Bone]
    body: list[np.ndarray]
    depth: float
    fat: float
    lucent: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (outline, mm of air)
    margins: list = field(default_factory=list)  # ((x, y), (dx, dy)): osteophyte sites
    insertions: list = field(default_factory=list)  # tendon insertions: calcific tendinitis sites
    vessels: list[np.ndarray] = field(default_factory=list)  # arterial courses
    keepout: list[np.ndarray] = field(default_factory=list)  # no calcinosis here (pelvic cavity, chest)


def _p(*pts: tuple[float, float]) -> np.ndarray:
    return np.array(pts, np.float64)


def _smooth(pts: np.ndarray, passes: int = 3) -> np.ndarray:
    """Chaikin corner cutting of a closed outline: hand-placed points become a smooth contour."""
    for _ in range(passes):
        nxt = np.roll(pts, -1, 0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], 1).reshape(-1, 2)
    return pts


def _ell(cx: float, cy: float, ax: float, ay: float, deg: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    x, y = ax * np.cos(t), ay * np.sin(t)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _tube(p0, p1, r0: float, r1: float | None = None, n: int = 10) -> np.ndarray:
    """A tapered capsule from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``): a bone shaft."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    r1 = r0 if r1 is None else r1
    d = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
    nrm = np.array([-d[1], d[0]])
    a = np.linspace(-np.pi / 2, np.pi / 2, n)[:, None]
    arc = np.cos(a) * d + np.sin(a) * nrm
    return np.vstack([p1 + r1 * arc, p0 - r0 * arc])


def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 24) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _limb(path: np.ndarray, r0: float, r1: float) -> list[np.ndarray]:
    """Tubes along a smoothed open path, radius ``r0`` to ``r1``: a curved bone (clavicle, rib)."""
    for _ in range(2):
        a, b = path[:-1], path[1:]
        path = np.vstack([path[:1], np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2), path[-1:]])
    radii = np.linspace(r0, r1, len(path))
    return [_tube(path[i], path[i + 1], radii[i], radii[i + 1], n=6) for i in range(len(path) - 1)]


def _knee_ap(r: np.random.Generator) -> Plan:
    g, wc, hw = r.uniform(4, 7), r.uniform(0.93, 1.07), r.uniform(50, 64)
    femur = _smooth(_p((-15, -420), (-15, -110), (-19, -72), (-30, -46), (-39, -30), (-42, -17), (-40, -6),
                       (-34, -1), (-25, 0.5), (-15, -2), (-8, -9), (-3, -15), (3, -15), (8, -9), (15, -2),
                       (26, 1.5), (36, -1), (42, -8), (43, -20), (39, -33), (29, -49), (19, -73), (15, -110),
                       (15, -420)) * (wc, 1))
    tibia = _smooth(_p((-41, g + 2), (-30, g), (-15, g + 1), (-7, g - 1), (-4, g - 6), (-1, g - 2), (1, g - 2),
                       (4, g - 7), (7, g - 1), (15, g + 1), (30, g), (41, g + 2), (43, g + 9), (39, g + 21),
                       (29, g + 38), (18, g + 64), (15, g + 110), (14, 420), (-14, 420), (-15, g + 110),
                       (-17, g + 64), (-27, g + 38), (-38, g + 22), (-43, g + 10)) * (wc, 1))
    fx = -37 * wc
    return Plan(
        bones=[Bone([femur], 32, 5.5, 15, lines=[(_p((-36, -24), (0, -21), (37, -25)), 1.0)]),
               Bone([tibia], 28, 4.5, 14, lines=[(_p((-36, g + 22), (0, g + 19), (36, g + 22)), 1.0)]),
               Bone([_ell(fx, g + 24, 10, 12), _tube((fx, g + 28), (-33, g + 70), 8, 6.5),
                     _tube((-33, g + 70), (-29, 420), 6.5, 6)], 8, 2.5),
               Bone([_ell(r.uniform(-3, 5), -30, 21, 25)], 11, 1.2, density=0.45)],
        body=[_smooth(_p((-hw * 1.35, -450), (-hw * 1.2, -200), (-hw * 1.02, -50), (-hw * 0.98, 20),
                         (-hw * 1.08, 140), (-hw * 0.85, 450), (hw * 0.88, 450), (hw * 1.1, 140),
                         (hw * 1.02, 20), (hw * 1.1, -50), (hw * 1.28, -200), (hw * 1.4, -450)))],
        depth=hw * 0.95, fat=r.uniform(4, 14),
        margins=[((-41 * wc, -10), (-1, 0.3)), ((42 * wc, -10), (1, 0.3)), ((-42 * wc, g + 4), (-1, -0.2)),
                 ((42 * wc, g + 4), (1, -0.2))],
        insertions=[((44 * wc, -22), (1, 0)), ((-43 * wc, -18), (-1, 0)), ((0, -56), (0, -1))],
        vessels=[_p((4, -420), (6, -200), (3, -60), (0, 0), (-3, 80), (-6, 200), (-10, 420)),
                 _p((hw * 0.8, -420), (30, -250), (12, -120), (6, -40))])


def _knee_lat(r: np.random.Generator) -> Plan:
    g = r.uniform(4, 7)
    femur = _smooth(_p((-14, -420), (-14, -100), (-17, -70), (-24, -46), (-29, -30), (-30, -16), (-25, -5),
                       (-15, 0), (-3, 1.5), (9, -1), (18, -9), (22, -21), (21, -36), (17, -56), (14, -100),
                       (14, -420)))
    tibia = _smooth(_p((-26, g + 4), (-14, g + 1), (0, g), (12, g + 1), (22, g + 3), (27, g + 10), (29, g + 24),
                       (32, g + 36), (27, g + 50), (17, g + 80), (14, g + 120), (13, 420), (-13, 420),
                       (-14, g + 120), (-17, g + 75), (-23, g + 40), (-28, g + 16)))
    return Plan(
        bones=[Bone([femur], 40, 5.5, 14, lines=[(_arc(-12, -18, 19, 95, 215), 0.8),
                                                 (_p((-27, -22), (0, -27), (20, -30)), 1.0)]),
               Bone([tibia], 36, 4.5, 13),
               Bone([_ell(-17, g + 24, 9, 11), _tube((-17, g + 28), (-12, g + 70), 7, 6),
                     _tube((-12, g + 70), (-8, 420), 6, 5.5)], 8, 2.5),
               Bone([_ell(30, -33, 10, 23, -12)], 20, 1.5)],
        body=[_smooth(_p((-72, -450), (-66, -200), (-60, -40), (-64, 40), (-80, 150), (-62, 450), (28, 450),
                         (36, 150), (42, g + 40), (46, -5), (50, -35), (58, -150), (64, -450)))],
        depth=r.uniform(48, 60), fat=r.uniform(4, 12),
        margins=[((34, -57), (0.3, -1)), ((27, -10), (0.3, 1)), ((-26, g + 4), (-1, -0.3)),
                 ((23, g + 3), (1, -0.5)), ((-29, -12), (-1, 0.2))],
        insertions=[((33, g + 36), (1, 0)), ((27, -58), (0.4, -1))],
        vessels=[_p((-38, -420), (-36, -200), (-38, -40), (-36, 40), (-30, 150), (-24, 420))])


def _hip_ap(r: np.random.Generator) -> Plan:
    a = np.radians(r.uniform(122, 138))
    jx, jy = -r.uniform(46, 54) * np.array([np.sin(a), np.cos(a)])  # neck base, from the neck-shaft angle
    lat = r.uniform(0.9, 1.3)  # habitus: lateral soft tissue over the trochanter
    socket = np.vstack([_arc(-3, 3, 37, 200, 390), _arc(-3, 3, 28, 390, 200)])  # the roof over the femoral head
    ilium = _smooth(_p((-30, -16), (-36, -45), (-33, -58), (-50, -90), (-46, -120), (-20, -148), (30, -162),
                       (90, -160), (140, -140), (165, -105), (158, -65), (125, -38), (85, -15), (55, 0), (35, 5),
                       (28, -10)))
    # The obturator foramen is the gap left between the ischium and the two pubic rami.
    rami = _smooth(_p((5, 22), (35, 8), (80, 10), (125, 20), (140, 45), (135, 85), (110, 100), (75, 108), (45, 120),
                      (30, 124), (12, 116), (2, 95), (2, 55)))
    gas = [(_ell(r.uniform(40, 170), r.uniform(-170, -40), r.uniform(10, 30), r.uniform(8, 20), r.uniform(0, 180)),
            r.uniform(15, 50)) for _ in range(int(r.integers(0, 5)))]
    return Plan(
        bones=[Bone([_ell(0, 0, 24, 24), _tube((0, 0), (jx, jy), 15, 17), _ell(jx - 15, jy - 22, 15, 24, 12),
                     _ell(jx + 2, jy + 12, 22, 28), _tube((jx + 1, jy + 25), (jx + 12, 420), 17, 15),
                     _ell(jx + 19, jy + 40, 7, 11, -30)], 26, 5.5, 16, smooth=5.5,
                    lines=[(_p((-20, -12), (0, -3), (16, 14)), 0.8)]),
               Bone([socket], 9, 1.5, density=0.45, lines=[(_arc(-3, 3, 29.5, 200, 320), 2.0),
                                              (_p((26, 8), (28, 22), (33, 26), (36, 20), (35, 8)), 1.2)]),
               Bone([ilium], 7, 1.5, lines=[(_p((150, -70), (115, -40), (80, -18), (55, -5), (45, 12)), 1.8)]),
               Bone([rami], 8, 2.0, density=0.9, holes=[_ell(62, 60, 25, 33, -20)])],
        body=[_smooth(_p((-112 * lat, -450), (-118 * lat, -150), (-121 * lat, -40), (-126 * lat, 20),
                         (-116 * lat, 150), (-104 * lat, 450), (62, 450), (70, 250), (88, 140), (110, 130),
                         (140, 145), (170, 250), (185, 450), (450, 450), (450, -450)))],
        depth=r.uniform(90, 115), fat=r.uniform(10, 30), lucent=gas,
        margins=[((-29, -12), (-1, -0.3)), ((-21, 12), (-0.7, 0.4)), ((12, 22), (0.4, 1))],
        keepout=[_p((40, 10), (90, -20), (150, -75), (170, -170), (450, -170), (450, 110), (140, 110), (60, 60)),
                 _ell(62, 60, 26, 34, -20)],
        insertions=[((jx - 28, jy - 26), (-1, -0.6)), ((-36, -45), (-1, 0)), ((8, 112), (0, 1))],
        vessels=[_p((55, -200), (40, -60), (28, 20), (18, 120), (5, 260), (-8, 420))])


def _shoulder_ap(r: np.random.Generator) -> Plan:
    ribs = []
    for k in range(6):
        y0 = -75 + 38 * k + r.uniform(-4, 4)
        ribs.append(Bone(_limb(_p((280, y0), (170, y0 + 6), (110, y0 + 25), (75, y0 + 60)), 5.5, 5.5), 5, 1.5,
                         density=0.9, smooth=3))
    return Plan(
        bones=[Bone([_ell(0, 0, 24, 26), _ell(-19, -4, 12, 17, 10), _ell(-6, 24, 19, 20),
                     _tube((-6, 28), (-13, 420), 15, 13)], 26, 4.5, 14, smooth=3.5,
                    lines=[(_p((-22, -10), (0, -2), (18, 10)), 0.8)]),
               Bone([_ell(27, 2, 6, 19, 5), _tube((30, 0), (52, 8), 14, 12)], 10, 2.0, density=0.8),
               Bone([_smooth(_p((36, -26), (90, -38), (150, -50), (160, 60), (150, 160), (95, 165), (70, 120),
                                (45, 30)))], 4, 1.5),
               Bone([_tube((42, 22), (95, 160), 8, 6)], 8, 2.0),
               Bone([_smooth(_p((-34, -40), (-30, -50), (0, -56), (30, -59), (55, -57), (50, -44), (20, -42),
                                (-5, -38), (-25, -33))), _tube((45, -52), (160, -62), 8, 7)], 8, 2.0),
               Bone(_limb(_p((46, -56), (70, -64), (100, -70), (140, -68), (180, -62), (230, -58), (290, -62)),
                          7, 9), 9, 2.5, smooth=3),
               Bone([_ell(46, -26, 8, 11, 20), _tube((46, -26), (66, -40), 6)], 8, 2.0), *ribs],
        body=[_smooth(_p((140, -450), (138, -240), (60, -110), (-10, -80), (-48, -58), (-68, 0), (-66, 80),
                         (-58, 200), (-55, 450), (38, 450), (40, 200), (48, 110), (62, 115), (80, 200), (100, 450),
                         (450, 450), (450, -450)))],
        depth=r.uniform(80, 100), fat=r.uniform(5, 20),
        lucent=[(_smooth(_p((85, -60), (200, -80), (300, -60), (300, 400), (110, 400), (80, 200), (72, 60))),
                 r.uniform(80, 140))],
        margins=[((16, 24), (0.3, 1)), ((30, 22), (0.2, 1)), ((40, -40), (0.2, 1)), ((-28, -36), (-1, 0.2))],
        keepout=[_p((70, -60), (450, -90), (450, 450), (75, 450))],
        insertions=[((-22, -20), (-0.6, -1)), ((-31, -2), (-1, 0)), ((-20, 30), (-1, 0.2))],
        vessels=[_p((120, -90), (80, -20), (50, 60), (32, 140), (22, 260), (18, 420))])


def _elbow_ap(r: np.random.Generator) -> Plan:
    g = r.uniform(2.5, 4.5)
    distal = _smooth(_p((-11, -85), (11, -85), (14, -58), (22, -40), (34, -26), (41, -16), (38, -9), (27, -7), (20, 3),
                        (8, 6), (-2, 2), (-8, 4), (-20, 3), (-28, -3), (-34, -12), (-33, -22), (-24, -38), (-15, -58)))
    return Plan(
        bones=[Bone([_tube((0, -420), (0, -70), 11), distal], 20, 3.5, 11, thin=[(_ell(3, -24, 11, 9), 0.6)],
                    lines=[(_p((-30, -14), (-10, -8), (10, -10), (34, -16)), 0.8)]),
               Bone([_ell(-15, g + 11, 11, 6), _tube((-15, g + 14), (-14, g + 34), 7, 6.5), _ell(-10, g + 44, 5, 8),
                     _tube((-14, g + 34), (-20, 420), 7, 9)], 11, 2.8, 7),
               Bone([_smooth(_p((5, -12), (12, -16), (19, -10), (24, g + 4), (20, g + 24), (4, g + 24), (-2, g + 6),
                                (1, g))),
                     _tube((10, g + 18), (6, 420), 9, 6)], 9, 3.0, 7, density=0.6)],
        body=[_smooth(_p((-44, -450), (-41, -60), (-45, 0), (-43, 80), (-35, 450), (37, 450), (45, 80), (50, 0),
                         (44, -60), (44, -450)))],
        depth=r.uniform(34, 42), fat=r.uniform(3, 10),
        margins=[((-27, g + 10), (-1, 0)), ((24, g + 3), (1, 0)), ((40, -18), (1, -0.3))],
        insertions=[((-35, -14), (-1, 0)), ((42, -16), (1, 0)), ((-6, g + 46), (1, 0))],
        vessels=[_p((28, -420), (20, -150), (10, -20), (2, 60), (-8, 200), (-18, 420))])


def _elbow_lat(r: np.random.Generator) -> Plan:
    phi, g = np.radians(r.uniform(75, 110)), r.uniform(2.5, 4.0)
    c0 = np.array([9.0, -4.0])
    u, v = np.array([np.sin(phi), np.cos(phi)]), np.array([np.cos(phi), -np.sin(phi)])  # forearm axis, its flexor side
    deg = float(np.degrees(np.arctan2(u[1], u[0])))

    def o(a: float, b: float) -> tuple[float, float]:  # a point in the forearm's frame
        return tuple(c0 + a * u + b * v)

    notch_side = _p(o(-1, -2), o(-1, 60), o(-60, 60), o(-60, -2))
    return Plan(
        bones=[Bone([_tube((0, -420), (0, -40), 11), _tube((0, -60), (7, -14), 12, 14), _ell(*c0, 16, 16)], 20, 3.5, 11,
                    thin=[(_ell(1, -26, 8, 11), 0.4)]),
               Bone([_tube(o(8, -4), o(420, 0), 13, 7), _ell(*o(-12, -17), 11, 14, deg), _ell(*o(10, 14), 7, 9, deg),
                     _ell(*o(6, -12), 30, 20, deg)], 16, 3.0, 8, holes=[_ell(*c0, 16 + g, 16 + g), notch_side]),
               Bone([_ell(*o(23, 9), 5, 10, deg), _tube(o(25, 9), o(60, 7), 6, 6.5), _ell(*o(48, 3), 6, 5, deg),
                     _tube(o(60, 7), o(420, 4), 6.5, 9)], 10, 2.8, 7)],
        body=[_tube((0, -450), (0, -10), 40, 42), _tube(o(0, 0), o(450, 0), 42, 34), _ell(*o(-18, -10), 30, 28, deg)],
        depth=r.uniform(34, 42), fat=r.uniform(3, 10),
        margins=[(o(-24, -14), tuple(-u)), (o(16, 16), tuple(v - 0.3 * u))],
        insertions=[(o(-25, -6), tuple(-u)), (o(48, 0), tuple(-v))],
        vessels=[np.vstack([_p((26, -420), (24, -150), (26, -30)), _p(o(40, 30), o(200, 26), o(420, 24))])])


def _digits(r: np.random.Generator, foot: bool) -> Plan:
    """Hand (PA) or foot (DP): rays of tubular bones with flared ends, carpals/tarsals, soft tissue."""
    if foot:
        bases, angles = [(-30, 42), (-12, 36), (1, 38), (14, 42), (27, 48)], [-8, -3, 3, 9, 17]
        lengths = [(62, 30, 24), (74, 24, 9, 8), (70, 21, 8, 8), (66, 19, 8, 7), (62, 17, 7, 7)]
        radii = [(9.5, 8.5, 7.5), (5.8, 5, 4.6, 4.4), (5.6, 4.8, 4.4, 4.2), (5.5, 4.7, 4.3, 4.1), (6, 4.7, 4.2, 4)]
        blocks = [(-29, 60, 12, 16, 0), (-13, 55, 7, 12, 0), (1, 57, 8, 13, 0), (21, 70, 13, 17, 10),
                  (-15, 82, 24, 10, -10), (-10, 104, 20, 16, 0)]
    else:
        bases, angles = [(-28, 30), (-14, 28), (-2, 26), (10, 28), (21, 32)], [-38, -9, 0, 8, 17]
        lengths = [(44, 30, 22), (66, 42, 25, 18), (63, 46, 29, 19), (58, 43, 27, 19), (53, 34, 20, 17)]
        radii = [(6, 5.5, 5), (5.5, 5.2, 4.5, 4), (5.5, 5.3, 4.6, 4.1), (5.2, 5, 4.4, 3.9), (5, 4.7, 4, 3.7)]
        blocks = [(-21, 50, 11, 7, 55), (-7, 54, 8, 8, 0), (7, 52, 7, 7, 0), (12, 47, 5, 5, 0), (-26, 35, 9, 8, 30),
                  (-14, 36, 6, 7, 0), (-2, 40, 7, 11, 0), (11, 39, 8, 10, 0)]
    spread, gap = r.uniform(0.8, 1.3), 2.5 if foot else 2.2
    bones = [Bone([_ell(b[0], b[1], 0.88 * b[2], 0.88 * b[3], b[4])], max(b[2], b[3]), 1.2, smooth=1) for b in blocks]
    body, margins, palm = [], [], []
    for k in range(5):
        a = np.radians(angles[k] * spread + r.uniform(-3, 3))
        p = np.array(bases[k], np.float64)
        for i, (length, rad) in enumerate(zip(lengths[k], radii[k])):
            d = np.array([np.sin(a), -np.cos(a)])
            q = p + d * length * r.uniform(0.95, 1.05)
            deg = float(np.degrees(np.arctan2(d[1], d[0])))
            tip = i == len(lengths[k]) - 1
            polys = [_tube(p, q, rad * 0.75), _ell(*(p + d * rad * 0.7), rad * 0.9, rad * 1.2, deg),
                     _ell(*(q - d * rad * 0.6), rad * 0.8, rad * (0.85 if tip else 1.05), deg)]
            bones.append(Bone(polys, rad * 1.1, rad * 0.35, rad * 0.75, smooth=1.0))
            margins.append((tuple(q + np.array([-d[1], d[0]]) * rad), (-d[1], d[0])))
            if i == 0:
                palm += [p, q]
            p = q + d * gap
            a += np.radians(r.uniform(-2, 4) * (1 if angles[k] >= 0 else -1))
        body.append(_tube(palm[-1], p - d * 2, radii[k][1] + (6 if foot else 4), radii[k][-1] + 4))
    if foot:
        hx, hy = palm[1] - np.array([np.sin(np.radians(angles[0])), -np.cos(np.radians(angles[0]))]) * 8
        bones += [Bone([_ell(hx - 5, hy, 4, 5)], 4, 1), Bone([_ell(hx + 5, hy, 4, 5)], 4, 1),
                  Bone([_ell(18, 118, 20, 30)], 22, 1.5, density=0.7)]
        vessel = _p((-2, 450), (-4, 120), (-8, 60), (-14, 20))
    else:
        bones += [Bone([_tube((-9, 95), (-8, 420), 11, 10), _smooth(_p((-30, 68), (-22, 62), (-5, 62), (4, 66), (6, 80),
                                                                      (0, 100), (-20, 100), (-28, 85)))], 12, 3, 10),
                  Bone([_tube((18, 88), (16, 420), 6, 7), _ell(17, 80, 7, 6), _ell(21, 72, 2.5, 4)], 7, 2.5)]
        vessel = _p((-30, 450), (-32, 150), (-34, 70), (-40, 40))
    pts = np.vstack(palm + [_p((-30, 90), (28, 90))])
    hull = cv2.convexHull(pts.astype(np.float32))[:, 0].astype(np.float64)
    out = hull - hull.mean(0)
    body += [hull + 9 * out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9),
             _tube((0, 70), (0, 450), 40 if foot else 33, 38 if foot else 36)]
    return Plan(bones=bones, body=body, depth=24 if foot else 14, fat=r.uniform(2, 5), margins=margins[::2],
                insertions=[((bases[0][0] - 8, bases[0][1] + 5), (-1, 0)), ((bases[4][0] + 7, bases[4][1] + 5), (1, 0))],
                vessels=[vessel])


BUILDERS = {("knee", "ap"): _knee_ap, ("knee", "lat"): _knee_lat, ("hip", "ap"): _hip_ap,
            ("shoulder", "ap"): _shoulder_ap, ("elbow", "ap"): _elbow_ap, ("elbow", "lat"): _elbow_lat,
            ("hand", "pa"): lambda r: _digits(r, False), ("foot", "dp"): lambda r: _digits(r, True)}


def _chord(d: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Path length through a cylinder of ``radius`` at depth ``d`` inside its silhouette (mm)."""
    dd = np.minimum(np.maximum(d, 0), radius)
    return 2.0 * np.sqrt(np.maximum(dd * (2.0 * radius - dd), 0))


def distance_mm(mask: np.ndarray, mm_per_px: float) -> np.ndarray:
    """Distance (mm) from each pixel of ``mask`` to the nearest pixel outside it; the image border
    does not count as outside. Without any outside pixel OpenCV returns FLT_MAX: capped at 10 m."""
    return np.minimum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5), 1e4 / mm_per_px) * mm_per_px


def _local_radius(d: np.ndarray, cap: float, mm_per_px: float) -> np.ndarray:
    """Half-width of the shape around each pixel (max inscribed depth nearby), capped at ``cap`` mm."""
    step = 4 if min(d.shape) >= 16 else 1
    k = max(1, int(cap / mm_per_px / step))
    coarse = cv2.dilate(d[::step, ::step], cv2.getStructuringElement(cv2.MORPH_RECT, (2 * k + 1, 2 * k + 1)))
    radius = cv2.resize(coarse, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.maximum(radius, d), 1e-3, cap)


def _fill(shape: tuple[int, int], polys: list[np.ndarray], offset: np.ndarray, value: int = 255) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for p in polys:  # one call per outline: fillPoly treats overlapping contours as holes (even-odd)
        cv2.fillPoly(mask, [np.round((p - offset) * 4).astype(np.int32)], value, cv2.LINE_8, 2)
    return mask


def _union(mask: np.ndarray, smooth_px: float) -> np.ndarray:
    """Round off the creases where overlapping shapes meet (a metaphysis flares, it has no corners)."""
    if smooth_px < 0.7:
        return mask > 127
    return cv2.GaussianBlur(mask, (0, 0), smooth_px) > 127


def _ridged_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """A network of thin bright ridges (zero crossings of smooth noise): trabecular-looking texture."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    n = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.exp(-((n / 0.45) ** 2))


def _render_bone(bone: Bone, cv: _Canvas, size: float, ws: float, trab: np.ndarray,
                 att: np.ndarray, bone_mask: np.ndarray, medulla: np.ndarray) -> None:
    """Add one bone's projected attenuation to ``att`` (in place) and mark its masks."""
    polys = [cv.px(p * size) for p in bone.polys]
    allp = np.vstack(polys)
    h, w = att.shape
    pad = int(3 * bone.smooth * size / ws) + 4
    x0, y0 = max(int(allp[:, 0].min()) - pad, 0), max(int(allp[:, 1].min()) - pad, 0)
    x1, y1 = min(int(allp[:, 0].max()) + pad, w), min(int(allp[:, 1].max()) + pad, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    off = np.array([x0, y0], np.float64)
    roi = (y1 - y0, x1 - x0)
    inside = _union(_fill(roi, polys, off), bone.smooth * size / ws)
    if bone.holes:
        inside &= _fill(roi, [cv.px(p * size) for p in bone.holes], off) == 0
    if not inside.any():
        return
    d = distance_mm(inside, ws)
    cap = bone.cap * size
    radius = _local_radius(d, cap, ws)
    shaft = (bone.shaft or bone.cap) * size
    cortex = np.maximum(1.0, bone.cortex * size * np.minimum(1.0, (shaft / radius) ** 2))
    outer = _chord(d, radius)
    inner = _chord(d - cortex, np.maximum(radius - cortex, 1e-3))
    texture = 0.7 + 0.6 * trab[y0:y1, x0:x1]
    a = MU_CORTEX * (outer - inner) + MU_MARROW * inner * texture
    for poly, keep in bone.thin:  # fossae: the bone is thinner there
        m = cv2.GaussianBlur(_fill(roi, [cv.px(poly * size)], off).astype(np.float32) / 255, (0, 0), 2.0 / ws)
        a *= 1.0 - (1.0 - keep) * m
    if bone.lines:  # sclerotic lines seen edge-on: physeal scars, acetabular roof, pelvic brim
        lines = np.zeros(roi, np.uint8)
        for line, width in bone.lines:
            pts = np.round((cv.px(line * size) - off) * 4).astype(np.int32)
            cv2.polylines(lines, [pts], False, 255, max(1, int(width * size / ws)), cv2.LINE_AA, 2)
        a += MU_CORTEX * 4.0 * cv2.GaussianBlur(lines, (0, 0), 0.8).astype(np.float32) / 255 * inside
    att[y0:y1, x0:x1] += bone.density * a * inside
    bone_mask[y0:y1, x0:x1] |= inside
    medulla[y0:y1, x0:x1] |= d > cortex + 1.0


def _soft_tissue(plan: Plan, cv: _Canvas, size: float, ws: float, shape: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation of the limb's soft tissue and the body mask; smooth, so made at half resolution."""
    h, w = shape
    h2, w2, ws2 = (h + 1) // 2, (w + 1) // 2, ws * 2
    half = _Canvas((0, 0), 0, False, 1.0)
    half.turn, half.matrix, half.centre = cv.turn, cv.matrix / 2, cv.centre / 2
    mask = _union(_fill((h2, w2), [half.px(p * size) for p in plan.body], np.zeros(2)), 3.0 / ws2)
    d = distance_mm(mask, ws2)
    radius = _local_radius(d, plan.depth * size, ws2)
    fat = plan.fat * size
    total = _chord(d, radius)
    fat_path = total - _chord(d - fat, np.maximum(radius - fat, 1e-3))
    soft = MU_SOFT * total - (MU_SOFT - MU_FAT) * fat_path
    soft *= 1.0 + 0.04 * (_ridged_noise(rng, h2, w2, 40 / ws2) - 0.3)  # fascial planes, muscle bundles
    for poly, depth_mm in plan.lucent:  # air in lung or bowel replaces tissue along the ray
        m = _fill((h2, w2), [half.px(poly * size)], np.zeros(2)).astype(np.float32) / 255
        soft -= MU_SOFT * depth_mm * cv2.GaussianBlur(m, (0, 0), 4.0 / ws2)
    soft = np.maximum(soft, 0) * mask
    full = cv2.resize(soft.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    body = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
    return full, body


def work_shape(height: int, width: int, spacing: float) -> tuple[int, int, float]:
    """Working-map size (h, w) and its mm per pixel for a film of ``height`` x ``width`` at ``spacing``."""
    ws = max(spacing, max(height, width) * spacing / WORK_MAX)
    return max(8, round(height * spacing / ws)), max(8, round(width * spacing / ws)), ws


def render_anatomy(shape_rng: np.random.Generator, pose_rng: np.random.Generator, joint: str, view: str,
                   side: str, height: int, width: int, spacing: float) -> Anatomy:
    """Render the soft tissue and bones of one joint on a film of ``height`` x ``width`` pixels.

    Args:
        shape_rng: draws the patient's anatomy (so a patient's two films show the same bones).
        pose_rng: draws this film's positioning (centre, rotation) and textures.
        joint: one of ``BUILDERS`` (knee, hip, shoulder, elbow, hand, foot).
        view: "ap" or "lat" (knee and elbow have both; others use "ap").
        side: "R" or "L"; a left joint is the mirror image of a right one.
        height, width: film size in pixels; spacing: mm per film pixel.

    Returns:
        The anatomy at working resolution (``work_shape``), attenuation 0 in air.
    """
    h, w, ws = work_shape(height, width, spacing)
    plan = BUILDERS[(joint, view)](shape_rng)
    size = float(shape_rng.uniform(0.9, 1.1))  # patient size
    centre = (w * pose_rng.uniform(0.38, 0.62), h * pose_rng.uniform(0.38, 0.62))
    cv = _Canvas(centre, np.radians(pose_rng.uniform(-14, 14)), side == "L", ws)
    att, body = _soft_tissue(plan, cv, size, ws, (h, w), pose_rng)
    trab = 0.6 * _ridged_noise(pose_rng, h, w, 1.0 / ws) + 0.4 * _ridged_noise(pose_rng, h, w, 2.5 / ws)
    bone, medulla = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for b in plan.bones:
        _render_bone(b, cv, size, ws, trab, att, bone, medulla)

    def sites(items: list) -> list[tuple[float, float, float, float]]:
        return [cv.site(np.asarray(p) * size, d) for p, d in items]

    keepout = _fill((h, w), [cv.px(p * size) for p in plan.keepout], np.zeros(2)) > 0
    return Anatomy(att.astype(np.float32), body, bone, medulla, ws, joint, view, (float(centre[0]), float(centre[1])),
                   sites(plan.margins), sites(plan.insertions), [cv.px(v * size) for v in plan.vessels], keepout)
