"""The knobs of the calcinosis masses, where they go, and the look-alikes drawn beside them.

    from dataclasses import replace
    from calcidet.data.synth_lesion_priors import FINDINGS
    cystic_heavy = replace(FINDINGS, lesion=replace(FINDINGS.lesion, cystic_loculi=(4, 9)))
    lesions, distractors = insert_findings(rng, att, anatomy, 0.15, 1, priors=cystic_heavy)

Used by ``data/synth_lesions.py`` (masses, placement) and ``data/synth_lookalikes.py``. Units: mm,
fractions of the mass's radius, or multiples of the attenuation per mm of ``TISSUE``
(``data/synth_priors.py``). A ``Range`` is drawn uniformly, a ``Count`` as an integer in [low, high).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calcidet.data.synth_priors import Count, Range, ValidatedRanges


@dataclass(frozen=True)
class LesionPriors(ValidatedRanges):
    """One mass (``render_calcinosis``): a multilobulated outline tiled with rounded nodules."""

    oversize: float = 1.3  # patch side / diameter: room for the lumpy outline and the granules around it
    outline_harmonics: tuple[int, ...] = (2, 3, 4, 5)  # lobes of the outline, oval (2) to lumpy (5)
    outline_amplitude: Range = (0.0, 0.16)  # each harmonic, as a fraction of the radius
    coverage: Range = (0.75, 1.1)  # nodule area / outline area: clefts left open, or overlapping
    max_nodules: int = 120
    cystic_loculi: Count = (2, 7)  # rimmed loculi of a "cystic" mass
    sedimentation_loculi: Count = (2, 6)  # loculi with a fluid-calcium level
    loculus_radius: Range = (0.22, 0.42)  # fraction of the mass's radius
    lobule_log_sd: float = 0.4  # lognormal spread of a nodule's radius about the typical lobule
    lobule_clip: Range = (0.06, 0.35)  # nodule radius bounds (fraction of radius), widened for extreme lobules
    lobule_clip_of_typical: Range = (0.4, 2.0)  # ... to this multiple of the typical lobule
    min_nodule_mm: float = 0.8  # smaller would vanish at film resolution
    placement_tries: int = 8
    packing_gap: float = 0.75  # nodule centres at least this x the sum of radii apart: lucent clefts
    nodule_density: Range = (0.45, 1.0)
    hidden_density: float = 0.5  # a nodule that found no free place lies behind others: fainter
    cloud_edge: float = 0.8  # profile exponent of a cloud nodule: < 1 firms its margin, soft puffs near 1
    cloud_aspect: Range = (0.75, 1.3)
    rim_density: float = 1.1  # a loculus's calcified wall
    wall_thickness: Range = (0.12, 0.25)  # fraction of the loculus's radius
    lucency: Range = (0.8, 0.95)  # fraction of the rim's density removed from the fluid centre
    sediment_density: Range = (0.8, 1.1)
    sediment_level: Range = (-0.15, 0.5)  # fluid level below the loculus's centre, x its inner radius
    granules: Count = (5, 25)  # fine granules round the edge: an amorphous margin
    granule_reach: Range = (0.75, 1.05)  # fraction of the outline's radius
    granule_radius_mm: Range = (0.5, 1.5)
    granule_density: Range = (0.3, 0.8)
    saturation: float = 1.6  # overlapping nodules thicken towards this, they do not pile up without bound
    chalk_base: float = 0.8  # density x (base + gain * smooth noise): chalky, uneven
    chalk_gain: float = 0.4
    chalk_cell_mm: float = 2.5
    chalk_min_cell_px: float = 3.0
    thickness_reach: float = 1.1  # the mass's depth along the ray follows its outline, this much bigger
    min_thickness: float = 0.7  # ... and is at least this fraction of the radius (flat masses are rare)
    packing: Range = (0.45, 0.65)  # share of the mass's volume that is calcium
    compact_below_mm: float = 40.0  # smaller masses pack tighter, up to ``max_compaction`` x
    max_compaction: float = 1.6
    blur_px: float = 0.6
    render_max_px: int = 200  # drawn at most this many px across, then resized: masses are smooth


@dataclass(frozen=True)
class PlacementPriors(ValidatedRanges):
    """Where masses go on a procedural or real film (``insert_findings``), and how dense they are."""

    typical_diameter_mm: tuple[tuple[str, float], ...] = (("hand", 24.0), ("foot", 28.0), ("elbow", 36.0))
    other_diameter_mm: float = 44.0  # knee, hip, shoulder: masses fit the limb
    diameter_log_sd: float = 0.42  # lognormal spread about the typical diameter
    diameter_mm: Range = (15.0, 120.0)
    periarticular_sd_mm: float = 45.0  # most masses lie within a few cm of the joint (Gaussian weight)
    far_weight: float = 0.02  # ... but some anywhere in the soft tissue
    real_limb_fraction: float = 0.8  # on a real film: typical diameter x the limb's thickest half-width
    real_diameter_mm: Range = (20.0, 44.0)
    real_fallback_mm: float = 30.0  # a real film with no body mask
    real_skin_depth_mm: float = 60.0  # on a real film, stay this close to the skin (not deep in a chest)
    fit_tries: int = 6
    snug_tries: int = 4  # after these, a mass may bulge further over the bone and skin
    bulge: float = 0.5
    bone_gap: float = 0.55  # centre at least this x the radius from bone ...
    bone_reach_mm: float = 25.0  # ... and at most the radius plus this
    skin_gap: float = 0.45  # centre at least this x the radius inside the skin
    edge_gap: float = 0.7  # centre at least this x the radius from the film's edge
    shrink: float = 0.75  # a mass with no room is retried this much smaller
    faint_rate: float = 0.15  # early or thin along the ray
    faint_density: Range = (0.35, 0.55)
    density: Range = (0.8, 1.4)
    box_fraction: float = 0.12  # the box holds where the mass adds >= 12% of its peak
    clearance: float = 1.1  # nothing else within this x the radius plus ``clearance_mm``
    clearance_mm: float = 8.0
    site_snap_mm: float = 15.0  # a tendon insertion or joint margin site moves at most this to meet the bone


@dataclass(frozen=True)
class VascularPriors(ValidatedRanges):
    """Arterial wall calcification: interrupted tram-track lines along a vessel's course."""

    rate: float = 0.35  # per film; a second one at a third of this
    min_course_mm: float = 20.0
    length_mm: Range = (40.0, 160.0)
    course_jitter_mm: float = 4.0  # the artery's path varies between patients
    wander: float = 0.15  # mm: SD of each 1 mm step of a random walk off the course
    lumen_radius_mm: Range = (1.5, 3.5)  # femoral, popliteal, brachial arteries
    plaque_mm: Range = (3.0, 25.0)  # length of one run of plaque or of clear wall ...
    gap_mm: Range = (1.0, 6.0)  # ... and the gap after it
    plaque_rate: float = 0.75
    min_plaque_mm: int = 5
    wall_mm: Range = (0.4, 0.9)
    wall_density: Range = (0.6, 1.0)
    density: Range = (0.15, 0.4)  # thin walls: faint next to a mass
    box_fraction: float = 0.2


@dataclass(frozen=True)
class TendinitisPriors(ValidatedRanges):
    """Calcific tendinitis: a small homogeneous dense oval at a tendon insertion, just off the bone."""

    rate: float = 0.3
    size_mm: Range = (3.0, 8.0)
    offset_mm: Range = (1.0, 5.0)  # off the bone's surface
    aspect: Range = (0.4, 0.8)  # elongated along the tendon
    tilt_deg: Range = (-40.0, 40.0)
    density: Range = (1.0, 1.6)  # x calcium per mm x size (mm): solid, unlike a mass's packed lobules
    blur_px: float = 0.8


@dataclass(frozen=True)
class OsteophytePriors(ValidatedRanges):
    """A bony spur (lip or beak) out of a joint margin, continuous with the cortex."""

    rate: float = 0.35
    length_mm: Range = (2.5, 8.0)
    width: Range = (0.6, 1.1)  # x the length
    bend: Range = (0.1, 0.6)  # x the length, either way: lips curl along the joint margin
    base_mm: float = 2.0  # buried in the bone, so that it joins the cortex
    rim_mm: float = 0.8  # its own cortex
    density: Range = (5.0, 9.0)  # as dense as this many mm of cortex along the ray


@dataclass(frozen=True)
class BoneIslandPriors(ValidatedRanges):
    """An enostosis: a dense oval in medullary bone with short radiating spicules."""

    rate: float = 0.2
    size_mm: Range = (4.0, 14.0)
    aspect: Range = (0.55, 1.0)
    spicules: Count = (3, 9)  # the "brush border"
    spicule_mm: Range = (0.6, 1.8)
    spicule_width_mm: float = 0.4
    density: Range = (0.5, 0.8)  # x cortex per mm x size
    edge_gap_mm: float = 10.0  # from the film's edge


@dataclass(frozen=True)
class MetalPriors(ValidatedRanges):
    """A surgical clip, skin staple, marker bead or ring: very dense with sharp edges."""

    rate: float = 0.15
    size_mm: Range = (5.0, 10.0)
    wire_mm: Range = (0.6, 1.0)
    density: Range = (2.5, 5.0)  # attenuation where the metal covers a pixel: above any bone
    edge_gap_mm: float = 10.0


@dataclass(frozen=True)
class FindingPriors:
    """Everything ``insert_findings`` draws: the masses, their placement and each look-alike."""

    lesion: LesionPriors = field(default_factory=LesionPriors)
    placement: PlacementPriors = field(default_factory=PlacementPriors)
    vascular: VascularPriors = field(default_factory=VascularPriors)
    tendinitis: TendinitisPriors = field(default_factory=TendinitisPriors)
    osteophyte: OsteophytePriors = field(default_factory=OsteophytePriors)
    bone_island: BoneIslandPriors = field(default_factory=BoneIslandPriors)
    metal: MetalPriors = field(default_factory=MetalPriors)


LESION = LesionPriors()
FINDINGS = FindingPriors(lesion=LESION)
