"""Per-joint plans: the bones, skin and look-alike sites of one joint, drawn from its priors.

    from calcidet.data.synth_joints import BUILDERS
    plan = BUILDERS[("knee", "ap")](rng)                     # default priors
    plan = BUILDERS[("knee", "ap")](rng, stouter_knee)       # a ``KneeAPPriors`` of your own

Used by ``render_anatomy`` (``data/synth_anatomy.py``). Outlines are hand-placed templates in mm
(right side, lateral to -x, distal down); the sizes and spreads around them are the priors of
``data/synth_priors.py``. A builder draws from ``rng`` in a fixed order: keep it when editing, or the
films for a given seed change.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from calcidet.data.synth_digits import foot_dp, hand_pa
from calcidet.data.synth_priors import (
    ELBOW_AP,
    ELBOW_LAT,
    HIP,
    KNEE_AP,
    KNEE_LAT,
    SHOULDER,
    ElbowAPPriors,
    ElbowLatPriors,
    HipPriors,
    KneeAPPriors,
    KneeLatPriors,
    ShoulderPriors,
)
from calcidet.data.synth_shapes import Bone, Plan, arc, curved_tube, ellipse, points, smooth, tube


def knee_ap(rng: np.random.Generator, priors: KneeAPPriors = KNEE_AP) -> Plan:
    """Knee, antero-posterior."""
    gap, scale = rng.uniform(*priors.joint_space_mm), rng.uniform(*priors.width_scale)
    half_width = rng.uniform(*priors.soft_half_width_mm)
    femur = smooth(points((-15, -420), (-15, -110), (-19, -72), (-30, -46), (-39, -30), (-42, -17), (-40, -6),
                          (-34, -1), (-25, 0.5), (-15, -2), (-8, -9), (-3, -15), (3, -15), (8, -9), (15, -2),
                          (26, 1.5), (36, -1), (42, -8), (43, -20), (39, -33), (29, -49), (19, -73), (15, -110),
                          (15, -420)) * (scale, 1))
    tibia = smooth(points((-41, gap + 2), (-30, gap), (-15, gap + 1), (-7, gap - 1), (-4, gap - 6), (-1, gap - 2),
                          (1, gap - 2), (4, gap - 7), (7, gap - 1), (15, gap + 1), (30, gap), (41, gap + 2),
                          (43, gap + 9), (39, gap + 21), (29, gap + 38), (18, gap + 64), (15, gap + 110), (14, 420),
                          (-14, 420), (-15, gap + 110), (-17, gap + 64), (-27, gap + 38), (-38, gap + 22),
                          (-43, gap + 10)) * (scale, 1))
    fibula_x = -37 * scale
    scar = priors.physeal_scar_mm
    hw = half_width  # short: the skin outline below is a table of multiples of it
    return Plan(
        bones=[Bone([femur], priors.femur, lines=[(points((-36, -24), (0, -21), (37, -25)), scar)]),
               Bone([tibia], priors.tibia, lines=[(points((-36, gap + 22), (0, gap + 19), (36, gap + 22)), scar)]),
               Bone([ellipse(fibula_x, gap + 24, 10, 12), tube((fibula_x, gap + 28), (-33, gap + 70), 8, 6.5),
                     tube((-33, gap + 70), (-29, 420), 6.5, 6)], priors.fibula),
               Bone([ellipse(rng.uniform(*priors.patella_offset_mm), -30, 21, 25)], priors.patella)],
        body=[smooth(points((-hw * 1.35, -450), (-hw * 1.2, -200), (-hw * 1.02, -50), (-hw * 0.98, 20),
                            (-hw * 1.08, 140), (-hw * 0.85, 450), (hw * 0.88, 450), (hw * 1.1, 140),
                            (hw * 1.02, 20), (hw * 1.1, -50), (hw * 1.28, -200), (hw * 1.4, -450)))],
        depth=half_width * priors.depth_per_half_width, fat=rng.uniform(*priors.fat_mm),
        margins=[((-41 * scale, -10), (-1, 0.3)), ((42 * scale, -10), (1, 0.3)), ((-42 * scale, gap + 4), (-1, -0.2)),
                 ((42 * scale, gap + 4), (1, -0.2))],
        insertions=[((44 * scale, -22), (1, 0)), ((-43 * scale, -18), (-1, 0)), ((0, -56), (0, -1))],
        vessels=[points((4, -420), (6, -200), (3, -60), (0, 0), (-3, 80), (-6, 200), (-10, 420)),
                 points((half_width * 0.8, -420), (30, -250), (12, -120), (6, -40))])


def knee_lat(rng: np.random.Generator, priors: KneeLatPriors = KNEE_LAT) -> Plan:
    """Knee, lateral."""
    gap = rng.uniform(*priors.joint_space_mm)
    femur = smooth(points((-14, -420), (-14, -100), (-17, -70), (-24, -46), (-29, -30), (-30, -16), (-25, -5),
                          (-15, 0), (-3, 1.5), (9, -1), (18, -9), (22, -21), (21, -36), (17, -56), (14, -100),
                          (14, -420)))
    tibia = smooth(points((-26, gap + 4), (-14, gap + 1), (0, gap), (12, gap + 1), (22, gap + 3), (27, gap + 10),
                          (29, gap + 24), (32, gap + 36), (27, gap + 50), (17, gap + 80), (14, gap + 120), (13, 420),
                          (-13, 420), (-14, gap + 120), (-17, gap + 75), (-23, gap + 40), (-28, gap + 16)))
    roof = (arc(-12, -18, 19, 95, 215), priors.intercondylar_roof_mm)
    return Plan(
        bones=[Bone([femur], priors.femur,
                    lines=[roof, (points((-27, -22), (0, -27), (20, -30)), priors.physeal_scar_mm)]),
               Bone([tibia], priors.tibia),
               Bone([ellipse(-17, gap + 24, 9, 11), tube((-17, gap + 28), (-12, gap + 70), 7, 6),
                     tube((-12, gap + 70), (-8, 420), 6, 5.5)], priors.fibula),
               Bone([ellipse(30, -33, 10, 23, -12)], priors.patella)],
        body=[smooth(points((-72, -450), (-66, -200), (-60, -40), (-64, 40), (-80, 150), (-62, 450), (28, 450),
                            (36, 150), (42, gap + 40), (46, -5), (50, -35), (58, -150), (64, -450)))],
        depth=rng.uniform(*priors.soft_half_depth_mm), fat=rng.uniform(*priors.fat_mm),
        margins=[((34, -57), (0.3, -1)), ((27, -10), (0.3, 1)), ((-26, gap + 4), (-1, -0.3)),
                 ((23, gap + 3), (1, -0.5)), ((-29, -12), (-1, 0.2))],
        insertions=[((33, gap + 36), (1, 0)), ((27, -58), (0.4, -1))],
        vessels=[points((-38, -420), (-36, -200), (-38, -40), (-36, 40), (-30, 150), (-24, 420))])


def hip_ap(rng: np.random.Generator, priors: HipPriors = HIP) -> Plan:
    """Hip, antero-posterior."""
    angle = np.radians(rng.uniform(*priors.neck_shaft_angle_deg))
    # The base of the neck, from the head along the neck-shaft angle.
    neck_x, neck_y = -rng.uniform(*priors.neck_length_mm) * np.array([np.sin(angle), np.cos(angle)])
    habitus = rng.uniform(*priors.lateral_habitus)
    head = priors.femoral_head_radius_mm
    socket = np.vstack([arc(-3, 3, head + 13, 200, 390), arc(-3, 3, head + 4, 390, 200)])  # roof over the head
    ilium = smooth(points((-30, -16), (-36, -45), (-33, -58), (-50, -90), (-46, -120), (-20, -148), (30, -162),
                          (90, -160), (140, -140), (165, -105), (158, -65), (125, -38), (85, -15), (55, 0), (35, 5),
                          (28, -10)))
    # The obturator foramen is the gap left between the ischium and the two pubic rami.
    rami = smooth(points((5, 22), (35, 8), (80, 10), (125, 20), (140, 45), (135, 85), (110, 100), (75, 108),
                         (45, 120), (30, 124), (12, 116), (2, 95), (2, 55)))
    gas = [(ellipse(rng.uniform(*priors.gas_centre_x_mm), rng.uniform(*priors.gas_centre_y_mm),
                    rng.uniform(*priors.gas_half_width_mm), rng.uniform(*priors.gas_half_height_mm),
                    rng.uniform(0, 180)),
            rng.uniform(*priors.gas_depth_mm)) for _ in range(int(rng.integers(*priors.gas_pockets)))]
    femur = [ellipse(0, 0, head, head), tube((0, 0), (neck_x, neck_y), 15, 17),
             ellipse(neck_x - 15, neck_y - 22, 15, 24, 12),  # greater trochanter
             ellipse(neck_x + 2, neck_y + 12, 22, 28), tube((neck_x + 1, neck_y + 25), (neck_x + 12, 420), 17, 15),
             ellipse(neck_x + 19, neck_y + 40, 7, 11, -30)]  # lesser trochanter
    teardrop = points((26, 8), (28, 22), (33, 26), (36, 20), (35, 8))
    brim = points((150, -70), (115, -40), (80, -18), (55, -5), (45, 12))
    return Plan(
        bones=[Bone(femur, priors.femur, lines=[(points((-20, -12), (0, -3), (16, 14)), priors.physeal_scar_mm)]),
               Bone([socket], priors.acetabulum, lines=[(arc(-3, 3, head + 5.5, 200, 320), priors.acetabular_roof_mm),
                                                        (teardrop, priors.teardrop_mm)]),
               Bone([ilium], priors.ilium, lines=[(brim, priors.iliopectineal_line_mm)]),
               Bone([rami], priors.pubis, holes=[ellipse(62, 60, 25, 33, -20)])],
        body=[smooth(points((-112 * habitus, -450), (-118 * habitus, -150), (-121 * habitus, -40), (-126 * habitus, 20),
                            (-116 * habitus, 150), (-104 * habitus, 450), (62, 450), (70, 250), (88, 140), (110, 130),
                            (140, 145), (170, 250), (185, 450), (450, 450), (450, -450)))],
        depth=rng.uniform(*priors.soft_half_depth_mm), fat=rng.uniform(*priors.fat_mm), lucent=gas,
        margins=[((-29, -12), (-1, -0.3)), ((-21, 12), (-0.7, 0.4)), ((12, 22), (0.4, 1))],
        keepout=[points((40, 10), (90, -20), (150, -75), (170, -170), (450, -170), (450, 110), (140, 110), (60, 60)),
                 ellipse(62, 60, 26, 34, -20)],
        insertions=[((neck_x - 28, neck_y - 26), (-1, -0.6)), ((-36, -45), (-1, 0)), ((8, 112), (0, 1))],
        vessels=[points((55, -200), (40, -60), (28, 20), (18, 120), (5, 260), (-8, 420))])


def shoulder_ap(rng: np.random.Generator, priors: ShoulderPriors = SHOULDER) -> Plan:
    """Shoulder, antero-posterior."""
    ribs = []
    for k in range(priors.rib_count):
        y0 = -75 + priors.rib_spacing_mm * k + rng.uniform(*priors.rib_jitter_mm)
        course = points((280, y0), (170, y0 + 6), (110, y0 + 25), (75, y0 + 60))
        ribs.append(Bone(curved_tube(course, priors.rib_radius_mm, priors.rib_radius_mm), priors.rib))
    scapula = smooth(points((36, -26), (90, -38), (150, -50), (160, 60), (150, 160), (95, 165), (70, 120), (45, 30)))
    acromion = smooth(points((-34, -40), (-30, -50), (0, -56), (30, -59), (55, -57), (50, -44), (20, -42), (-5, -38),
                             (-25, -33)))
    clavicle = points((46, -56), (70, -64), (100, -70), (140, -68), (180, -62), (230, -58), (290, -62))
    lung = smooth(points((85, -60), (200, -80), (300, -60), (300, 400), (110, 400), (80, 200), (72, 60)))
    return Plan(
        bones=[Bone([ellipse(0, 0, 24, 26), ellipse(-19, -4, 12, 17, 10), ellipse(-6, 24, 19, 20),
                     tube((-6, 28), (-13, 420), 15, 13)], priors.humerus,
                    lines=[(points((-22, -10), (0, -2), (18, 10)), priors.physeal_scar_mm)]),
               Bone([ellipse(27, 2, 6, 19, 5), tube((30, 0), (52, 8), 14, 12)], priors.glenoid),
               Bone([scapula], priors.scapula),
               Bone([tube((42, 22), (95, 160), 8, 6)], priors.scapular_border),
               Bone([acromion, tube((45, -52), (160, -62), 8, 7)], priors.scapular_spine),
               Bone(curved_tube(clavicle, 7, 9), priors.clavicle),
               Bone([ellipse(46, -26, 8, 11, 20), tube((46, -26), (66, -40), 6)], priors.coracoid), *ribs],
        body=[smooth(points((140, -450), (138, -240), (60, -110), (-10, -80), (-48, -58), (-68, 0), (-66, 80),
                            (-58, 200), (-55, 450), (38, 450), (40, 200), (48, 110), (62, 115), (80, 200), (100, 450),
                            (450, 450), (450, -450)))],
        depth=rng.uniform(*priors.soft_half_depth_mm), fat=rng.uniform(*priors.fat_mm),
        lucent=[(lung, rng.uniform(*priors.lung_air_mm))],
        margins=[((16, 24), (0.3, 1)), ((30, 22), (0.2, 1)), ((40, -40), (0.2, 1)), ((-28, -36), (-1, 0.2))],
        keepout=[points((70, -60), (450, -90), (450, 450), (75, 450))],
        insertions=[((-22, -20), (-0.6, -1)), ((-31, -2), (-1, 0)), ((-20, 30), (-1, 0.2))],
        vessels=[points((120, -90), (80, -20), (50, 60), (32, 140), (22, 260), (18, 420))])


def elbow_ap(rng: np.random.Generator, priors: ElbowAPPriors = ELBOW_AP) -> Plan:
    """Elbow, antero-posterior."""
    gap = rng.uniform(*priors.joint_space_mm)
    distal = smooth(points((-11, -85), (11, -85), (14, -58), (22, -40), (34, -26), (41, -16), (38, -9), (27, -7),
                           (20, 3), (8, 6), (-2, 2), (-8, 4), (-20, 3), (-28, -3), (-34, -12), (-33, -22), (-24, -38),
                           (-15, -58)))
    ulna = smooth(points((5, -12), (12, -16), (19, -10), (24, gap + 4), (20, gap + 24), (4, gap + 24), (-2, gap + 6),
                         (1, gap)))
    return Plan(
        bones=[Bone([tube((0, -420), (0, -70), 11), distal], priors.humerus,
                    thin=[(ellipse(3, -24, 11, 9), priors.fossa_kept)],
                    lines=[(points((-30, -14), (-10, -8), (10, -10), (34, -16)), priors.physeal_scar_mm)]),
               Bone([ellipse(-15, gap + 11, 11, 6), tube((-15, gap + 14), (-14, gap + 34), 7, 6.5),
                     ellipse(-10, gap + 44, 5, 8), tube((-14, gap + 34), (-20, 420), 7, 9)], priors.radius),
               Bone([ulna, tube((10, gap + 18), (6, 420), 9, 6)], priors.ulna)],
        body=[smooth(points((-44, -450), (-41, -60), (-45, 0), (-43, 80), (-35, 450), (37, 450), (45, 80), (50, 0),
                            (44, -60), (44, -450)))],
        depth=rng.uniform(*priors.soft_half_depth_mm), fat=rng.uniform(*priors.fat_mm),
        margins=[((-27, gap + 10), (-1, 0)), ((24, gap + 3), (1, 0)), ((40, -18), (1, -0.3))],
        insertions=[((-35, -14), (-1, 0)), ((42, -16), (1, 0)), ((-6, gap + 46), (1, 0))],
        vessels=[points((28, -420), (20, -150), (10, -20), (2, 60), (-8, 200), (-18, 420))])


def elbow_lat(rng: np.random.Generator, priors: ElbowLatPriors = ELBOW_LAT) -> Plan:
    """Elbow, lateral; the forearm is drawn in its own frame, turned by the flexion angle."""
    flexion, gap = np.radians(rng.uniform(*priors.flexion_deg)), rng.uniform(*priors.joint_space_mm)
    trochlea = np.array([9.0, -4.0])
    # The forearm's axis and its flexor side.
    axis, flexor = np.array([np.sin(flexion), np.cos(flexion)]), np.array([np.cos(flexion), -np.sin(flexion)])
    deg = float(np.degrees(np.arctan2(axis[1], axis[0])))

    def fore(along: float, side: float) -> tuple[float, float]:  # a point in the forearm's frame
        return tuple(trochlea + along * axis + side * flexor)

    notch_side = points(fore(-1, -2), fore(-1, 60), fore(-60, 60), fore(-60, -2))
    ulna = [tube(fore(8, -4), fore(420, 0), 13, 7), ellipse(*fore(-12, -17), 11, 14, deg),
            ellipse(*fore(10, 14), 7, 9, deg), ellipse(*fore(6, -12), 30, 20, deg)]
    radius = [ellipse(*fore(23, 9), 5, 10, deg), tube(fore(25, 9), fore(60, 7), 6, 6.5),
              ellipse(*fore(48, 3), 6, 5, deg),
              tube(fore(60, 7), fore(420, 4), 6.5, 9)]
    return Plan(
        bones=[Bone([tube((0, -420), (0, -40), 11), tube((0, -60), (7, -14), 12, 14), ellipse(*trochlea, 16, 16)],
                    priors.humerus, thin=[(ellipse(1, -26, 8, 11), priors.fossa_kept)]),
               Bone(ulna, priors.ulna, holes=[ellipse(*trochlea, 16 + gap, 16 + gap), notch_side]),
               Bone(radius, priors.radius)],
        body=[tube((0, -450), (0, -10), 40, 42), tube(fore(0, 0), fore(450, 0), 42, 34),
              ellipse(*fore(-18, -10), 30, 28, deg)],
        depth=rng.uniform(*priors.soft_half_depth_mm), fat=rng.uniform(*priors.fat_mm),
        margins=[(fore(-24, -14), tuple(-axis)), (fore(16, 16), tuple(flexor - 0.3 * axis))],
        insertions=[(fore(-25, -6), tuple(-axis)), (fore(48, 0), tuple(-flexor))],
        vessels=[np.vstack([points((26, -420), (24, -150), (26, -30)),
                            points(fore(40, 30), fore(200, 26), fore(420, 24))])])


BUILDERS: dict[tuple[str, str], Callable[..., Plan]] = {
    ("knee", "ap"): knee_ap, ("knee", "lat"): knee_lat, ("hip", "ap"): hip_ap, ("shoulder", "ap"): shoulder_ap,
    ("elbow", "ap"): elbow_ap, ("elbow", "lat"): elbow_lat, ("hand", "pa"): hand_pa, ("foot", "dp"): foot_dp}
