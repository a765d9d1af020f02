"""The knobs of the procedural anatomy: tissue attenuation, patient and pose, and each joint's priors.

    from dataclasses import replace
    from calcidet.data.synth_priors import KNEE_AP
    stout = replace(KNEE_AP, soft_half_width_mm=(60, 80))  # thicker soft tissue round the knee
    anatomy = render_anatomy(shape_rng, pose_rng, "knee", "ap", "R", 900, 720, 0.3, priors=stout)

Used by the joint builders (``data/synth_joints.py``, ``data/synth_digits.py``) and the renderer
(``data/synth_render.py``). Units: mm in the joint's frame (right side, lateral to -x, distal down),
degrees, fractions of the film, or attenuation per mm. A ``(low, high)`` range is drawn uniformly
(a ``Count``: ``low <= n < high``). Outlines stay in the builders as hand-placed templates in mm;
these are the sizes and spreads around them. Changing a default changes every film made with it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

Range = tuple[float, float]  # (low, high), drawn uniformly
Count = tuple[int, int]  # (low, high): an integer drawn from low <= n < high


class ValidatedRanges:
    """Mixin: every ``Range`` field must have ``low <= high``, every ``Count`` field ``low < high``."""

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            kind = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")
            if kind not in ("Range", "Count"):
                continue
            low, high = getattr(self, item.name)
            if low > high or (kind == "Count" and low == high):
                raise ValueError(f"{type(self).__name__}.{item.name}: empty range ({low}, {high})")


@dataclass(frozen=True)
class TissuePriors:
    """Linear attenuation per mm of path, above air (bone and calcium: above the soft tissue they displace).

    Relative values matter, not the absolute scale: the acquisition model maps the sum to pixels.
    """

    soft_per_mm: float = 0.020  # water-like muscle and skin
    fat_per_mm: float = 0.016  # subcutaneous fat: ~20% less than muscle, so the fat layer shows darker
    cortex_per_mm: float = 0.080  # compact bone, ~4x soft tissue at diagnostic energies
    marrow_per_mm: float = 0.016  # trabecular bone and marrow: a dark, textured medulla inside the cortex
    calcium_per_mm: float = 0.075  # calcium-phosphate paste of calcinosis: close to cortical bone


@dataclass(frozen=True)
class PosePriors(ValidatedRanges):
    """Patient size and how the joint lies on the film."""

    size_scale: Range = (0.9, 1.1)  # multiplies every length of the joint: small to large adult
    centre_frac: Range = (0.38, 0.62)  # joint centre, as a fraction of the film's width and height
    rotation_deg: Range = (-14.0, 14.0)  # in-plane tilt of the limb on the cassette


@dataclass(frozen=True)
class Section:
    """How one bone projects: a tube of ``half_depth_mm`` with a cortical shell.

    The cortex is ``cortex_mm`` thick where the bone is ``shaft_radius_mm`` wide and thins as the
    bone widens (epiphyses have thin cortex); ``shaft_radius_mm`` 0 means the half-depth.
    """

    half_depth_mm: float
    cortex_mm: float
    shaft_radius_mm: float = 0.0
    density: float = 1.0  # < 1: a thin or osteopenic bone (patella seen through the femur, pubic rami)
    rounding_mm: float = 2.5  # how much the union of the bone's outlines is rounded off


@dataclass(frozen=True)
class KneeAPPriors(ValidatedRanges):
    """Knee, antero-posterior: femur, tibia, fibula and the patella seen through the femur."""

    joint_space_mm: Range = (4.0, 7.0)  # tibiofemoral gap of a normal standing knee
    width_scale: Range = (0.93, 1.07)  # x the template's ~85 mm bicondylar width (adults: ~75-95 mm)
    soft_half_width_mm: Range = (50.0, 64.0)  # skin to knee centre at the joint line
    depth_per_half_width: float = 0.95  # limb half-depth / half-width: the knee is nearly round in section
    fat_mm: Range = (4.0, 14.0)  # subcutaneous fat thickness
    patella_offset_mm: Range = (-3.0, 5.0)  # patella centre, medial (+) of the intercondylar notch
    femur: Section = Section(32, 5.5, 15)
    tibia: Section = Section(28, 4.5, 14)
    fibula: Section = Section(8, 2.5)
    patella: Section = Section(11, 1.2, density=0.45)  # superimposed on the femur: faint on an AP film
    physeal_scar_mm: float = 1.0  # width of the sclerotic line left by the closed growth plate


@dataclass(frozen=True)
class KneeLatPriors(ValidatedRanges):
    """Knee, lateral: condyles superimposed, patella in profile in front of the femur."""

    joint_space_mm: Range = (4.0, 7.0)
    soft_half_depth_mm: Range = (48.0, 60.0)  # half the limb's thickness across the film
    fat_mm: Range = (4.0, 12.0)
    femur: Section = Section(40, 5.5, 14)  # condyles are wider side to side than front to back
    tibia: Section = Section(36, 4.5, 13)
    fibula: Section = Section(8, 2.5)
    patella: Section = Section(20, 1.5)  # in profile: its full ~40 mm width lies along the ray
    intercondylar_roof_mm: float = 0.8  # Blumensaat's line, the roof of the notch seen edge-on
    physeal_scar_mm: float = 1.0


@dataclass(frozen=True)
class HipPriors(ValidatedRanges):
    """Hip, antero-posterior: proximal femur, acetabulum, ilium and pubic rami, bowel gas above."""

    neck_shaft_angle_deg: Range = (122.0, 138.0)  # normal adult ~125-135 (coxa vara/valga outside)
    neck_length_mm: Range = (46.0, 54.0)  # head centre to the base of the neck
    femoral_head_radius_mm: float = 24.0  # adult heads are ~45-50 mm across; the socket follows it
    lateral_habitus: Range = (0.9, 1.3)  # x the template's ~120 mm of soft tissue lateral to the head
    soft_half_depth_mm: Range = (90.0, 115.0)  # pelvis and buttock: the thickest part imaged
    fat_mm: Range = (10.0, 30.0)  # gluteal and trochanteric fat
    gas_pockets: Count = (0, 5)  # bowel gas over the iliac wing
    gas_centre_x_mm: Range = (40.0, 170.0)  # medial of the head: over the iliac fossa
    gas_centre_y_mm: Range = (-170.0, -40.0)  # above the acetabulum
    gas_half_width_mm: Range = (10.0, 30.0)
    gas_half_height_mm: Range = (8.0, 20.0)
    gas_depth_mm: Range = (15.0, 50.0)  # how much tissue the gas replaces along the ray
    femur: Section = Section(26, 5.5, 16, rounding_mm=5.5)  # the neck blends smoothly into both trochanters
    physeal_scar_mm: float = 0.8  # the closed capital growth plate, across the head
    acetabulum: Section = Section(9, 1.5, density=0.45)  # a thin roof seen through the head
    acetabular_roof_mm: float = 2.0  # the sourcil, the dense weight-bearing roof seen edge-on
    teardrop_mm: float = 1.2
    ilium: Section = Section(7, 1.5)
    iliopectineal_line_mm: float = 1.8  # the pelvic brim seen edge-on
    pubis: Section = Section(8, 2.0, density=0.9)


@dataclass(frozen=True)
class ShoulderPriors(ValidatedRanges):
    """Shoulder, antero-posterior: humerus, glenoid, scapula, clavicle, coracoid and ribs over the lung."""

    rib_count: int = 6
    rib_spacing_mm: float = 38.0  # rib to rib, vertically, over the upper chest
    rib_jitter_mm: Range = (-4.0, 4.0)
    rib_radius_mm: float = 5.5
    soft_half_depth_mm: Range = (80.0, 100.0)
    fat_mm: Range = (5.0, 20.0)
    lung_air_mm: Range = (80.0, 140.0)  # aerated lung along the ray, medial to the scapula
    humerus: Section = Section(26, 4.5, 14, rounding_mm=3.5)
    physeal_scar_mm: float = 0.8  # the closed proximal humeral growth plate
    glenoid: Section = Section(10, 2.0, density=0.8)
    scapula: Section = Section(4, 1.5)  # a thin blade seen face-on
    scapular_border: Section = Section(8, 2.0)
    scapular_spine: Section = Section(8, 2.0)
    clavicle: Section = Section(9, 2.5, rounding_mm=3)
    coracoid: Section = Section(8, 2.0)
    rib: Section = Section(5, 1.5, density=0.9, rounding_mm=3)


@dataclass(frozen=True)
class ElbowAPPriors(ValidatedRanges):
    """Elbow, antero-posterior: distal humerus with the olecranon fossa, radius and ulna."""

    joint_space_mm: Range = (2.5, 4.5)
    soft_half_depth_mm: Range = (34.0, 42.0)
    fat_mm: Range = (3.0, 10.0)
    humerus: Section = Section(20, 3.5, 11)
    fossa_kept: float = 0.6  # bone left where the olecranon fossa thins the humerus
    physeal_scar_mm: float = 0.8
    radius: Section = Section(11, 2.8, 7)
    ulna: Section = Section(9, 3.0, 7, density=0.6)  # overlaps the radius and the humerus in this view


@dataclass(frozen=True)
class ElbowLatPriors(ValidatedRanges):
    """Elbow, lateral: the ulna hooks round the trochlea; the forearm at a flexion angle."""

    flexion_deg: Range = (75.0, 110.0)  # forearm to arm; 90 is the standard lateral
    joint_space_mm: Range = (2.5, 4.0)
    soft_half_depth_mm: Range = (34.0, 42.0)
    fat_mm: Range = (3.0, 10.0)
    humerus: Section = Section(20, 3.5, 11)
    fossa_kept: float = 0.4  # coronoid and olecranon fossae superimposed: thinner still
    ulna: Section = Section(16, 3.0, 8)
    radius: Section = Section(10, 2.8, 7)


@dataclass(frozen=True)
class DigitsPriors(ValidatedRanges):
    """Hand (PA) or foot (DP): five rays of tubular bones on a row of carpals or tarsals.

    Per ray (thumb or hallux first): base position (mm), angle (deg, + towards the fifth ray), and per
    bone, proximal to distal (metacarpal/metatarsal, then phalanges), length and radius in mm.
    A block is a carpal/tarsal ellipse: (x, y, half-width, half-height, angle in deg).
    """

    ray_bases_mm: tuple[tuple[float, float], ...]
    ray_angles_deg: tuple[float, ...]
    bone_lengths_mm: tuple[tuple[float, ...], ...]
    bone_radii_mm: tuple[tuple[float, ...], ...]
    blocks_mm: tuple[tuple[float, float, float, float, float], ...]
    joint_space_mm: float  # between consecutive bones of a ray
    ray_soft_tissue_mm: float  # soft tissue around a ray's first phalanx, beyond its radius
    wrist_radius_mm: tuple[float, float]  # wrist or ankle soft tissue: at the carpus/tarsus, then 38 cm on
    soft_half_depth_mm: float
    fat_mm: Range = (2.0, 5.0)
    spread: Range = (0.8, 1.3)  # x each ray's angle: fingers or toes held together or splayed
    ray_jitter_deg: Range = (-3.0, 3.0)
    length_scale: Range = (0.95, 1.05)  # per bone
    curl_deg: Range = (-2.0, 4.0)  # per joint, away from the middle ray: a relaxed hand curls outward
    block_scale: float = 0.88  # carpals and tarsals drawn a little smaller than their spacing: joint gaps
    block_cortex_mm: float = 1.2
    half_depth_per_radius: float = 1.1  # tubular bones: slightly oval in section
    cortex_per_radius: float = 0.35  # diaphyseal cortex ~1/3 of the radius
    shaft_per_radius: float = 0.75  # shaft narrower than the flared ends
    tip_soft_tissue_mm: float = 4.0  # pulp of the finger or toe tip, beyond the bone's radius
    palm_margin_mm: float = 9.0  # soft tissue around the metacarpal or metatarsal bases


HAND = DigitsPriors(
    ray_bases_mm=((-28, 30), (-14, 28), (-2, 26), (10, 28), (21, 32)),
    ray_angles_deg=(-38, -9, 0, 8, 17),
    bone_lengths_mm=((44, 30, 22), (66, 42, 25, 18), (63, 46, 29, 19), (58, 43, 27, 19), (53, 34, 20, 17)),
    bone_radii_mm=((6, 5.5, 5), (5.5, 5.2, 4.5, 4), (5.5, 5.3, 4.6, 4.1), (5.2, 5, 4.4, 3.9), (5, 4.7, 4, 3.7)),
    blocks_mm=((-21, 50, 11, 7, 55), (-7, 54, 8, 8, 0), (7, 52, 7, 7, 0), (12, 47, 5, 5, 0), (-26, 35, 9, 8, 30),
               (-14, 36, 6, 7, 0), (-2, 40, 7, 11, 0), (11, 39, 8, 10, 0)),
    joint_space_mm=2.2, ray_soft_tissue_mm=4, wrist_radius_mm=(33, 36), soft_half_depth_mm=14)
FOOT = DigitsPriors(
    ray_bases_mm=((-30, 42), (-12, 36), (1, 38), (14, 42), (27, 48)),
    ray_angles_deg=(-8, -3, 3, 9, 17),
    bone_lengths_mm=((62, 30, 24), (74, 24, 9, 8), (70, 21, 8, 8), (66, 19, 8, 7), (62, 17, 7, 7)),
    bone_radii_mm=((9.5, 8.5, 7.5), (5.8, 5, 4.6, 4.4), (5.6, 4.8, 4.4, 4.2), (5.5, 4.7, 4.3, 4.1),
                   (6, 4.7, 4.2, 4)),
    blocks_mm=((-29, 60, 12, 16, 0), (-13, 55, 7, 12, 0), (1, 57, 8, 13, 0), (21, 70, 13, 17, 10),
               (-15, 82, 24, 10, -10), (-10, 104, 20, 16, 0)),
    joint_space_mm=2.5, ray_soft_tissue_mm=6, wrist_radius_mm=(40, 38), soft_half_depth_mm=24)

TISSUE = TissuePriors()
POSE = PosePriors()
KNEE_AP, KNEE_LAT, HIP, SHOULDER = KneeAPPriors(), KneeLatPriors(), HipPriors(), ShoulderPriors()
ELBOW_AP, ELBOW_LAT = ElbowAPPriors(), ElbowLatPriors()
JOINT_PRIORS = {("knee", "ap"): KNEE_AP, ("knee", "lat"): KNEE_LAT, ("hip", "ap"): HIP, ("shoulder", "ap"): SHOULDER,
                ("elbow", "ap"): ELBOW_AP, ("elbow", "lat"): ELBOW_LAT, ("hand", "pa"): HAND, ("foot", "dp"): FOOT}
JointPriors = KneeAPPriors | KneeLatPriors | HipPriors | ShoulderPriors | ElbowAPPriors | ElbowLatPriors | DigitsPriors
