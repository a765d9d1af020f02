"""Is a film one calcidet reads (limbs, large joints) or out of its scope (chest, abdomen, skull, ...)?

    python -c "from calcidet.data.scope import scope_from_tags; print(scope_from_tags({'BodyPartExamined': 'CHEST'}))"

The decision uses what the file says (DICOM tags, read by ``data.readers`` into ``Radiograph.tags``).
Each tag value is split into words (letters and digits; a trailing plural "S" is ignored) and each word
is looked up in ``IN_SCOPE_WORDS`` and ``OUT_OF_SCOPE_WORDS``; any other word says nothing.

Rules, in order:

1. ``Modality`` MG (mammography), IO or PX (dental) is out of scope, and so is any modality that does
   not make a plain film at all (CT, MR, US, NM, PT): an MR of the shoulder is not what calcidet reads.
2. Within one value, an in-scope word outweighs a "weak" out-of-scope word (``HEAD``, ``NECK``):
   "FEMORAL HEAD", "RADIAL HEAD", "FEMORAL NECK" are limb films, "HEAD" or "NECK" alone are not.
3. ``out_of_scope`` needs an out-of-scope word in some tag and no in-scope word in any tag;
   ``in_scope`` needs the reverse. Tags that disagree (BodyPartExamined=CHEST, StudyDescription=KNEE;
   or "ABDOMEN PELVIS") give ``unknown``, with both sides in the reason, and the film is read as usual:
   dropping a limb film loses its findings, while reading a chest film costs at most a few false boxes.
4. A file that names no body part (PNG/JPEG/TIFF, or DICOM with empty tags) is ``unknown``, unless an
   image-level check is plugged in (``assess_scope(..., image_check=...)``). ``calcidet detect
   --image-check`` plugs in ``model.film_check.RadiographCheck``: it marks images that look nothing like
   a plain radiograph (a CT or MR slice, an ultrasound frame) out of scope. It cannot tell a chest film
   from a limb film (README, "Out-of-scope films"): such films stay ``unknown`` and are read.

Words are English and DICOM's Body Part Examined defined terms (CHEST, CSPINE, EXTREMITY, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

ScopeLabel = Literal["in_scope", "out_of_scope", "unknown"]

IN_SCOPE_WORDS = frozenset({
    # hips and pelvis (a hip/pelvis film is in scope)
    "HIP", "PELVIS", "PELVIC", "ACETABULUM", "FEMUR", "FEMORAL",
    # knee, leg, ankle, foot
    "KNEE", "PATELLA", "LEG", "TIBIA", "TIBIAL", "FIBULA", "ANKLE", "FOOT", "FEET", "HEEL", "CALCANEUS",
    "TOE", "FOREFOOT", "HINDFOOT", "METATARSAL",
    # shoulder, arm, elbow
    "SHOULDER", "CLAVICLE", "SCAPULA", "HUMERUS", "HUMERAL", "ARM", "ELBOW", "OLECRANON",
    # forearm, wrist, hand
    "FOREARM", "RADIUS", "RADIAL", "ULNA", "WRIST", "SCAPHOID", "CARPAL", "HAND", "FINGER", "THUMB",
    "METACARPAL", "PHALANX", "PHALANGES",
    # whole limbs (DICOM: EXTREMITY)
    "EXTREMITY", "EXTREMITIES", "LIMB", "LOWERLIMB", "UPPERLIMB",
})
OUT_OF_SCOPE_WORDS = frozenset({
    # chest
    "CHEST", "THORAX", "THORACIC", "LUNG", "CXR", "RIB", "STERNUM", "HEART", "CARDIAC", "MEDIASTINUM",
    # abdomen
    "ABDOMEN", "ABDOMINAL", "ABD", "KUB", "IVU", "IVP", "BOWEL",
    # head
    "HEAD", "SKULL", "CRANIUM", "BRAIN", "FACE", "FACIAL", "SINUS", "ORBIT", "NASAL", "SELLA", "MASTOID",
    "ZYGOMA", "MANDIBLE", "MAXILLA", "JAW", "TMJ", "TEMPOROMANDIBULAR", "NECK",
    # spine
    "SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "WHOLESPINE", "CERVICAL", "LUMBAR", "LUMBOSACRAL",
    "SACRUM", "COCCYX", "VERTEBRA", "VERTEBRAE", "SCOLIOSIS",
    # breast, teeth
    "BREAST", "MAMMO", "MAMMOGRAPHY", "MAMMOGRAM", "DENTAL", "TOOTH", "TEETH", "PANORAMIC", "OPG",
    "BITEWING", "PERIAPICAL",
})
# Out-of-scope words that also name parts of limb bones: "femoral head", "radial neck".
WEAK_OUT_OF_SCOPE_WORDS = frozenset({"HEAD", "NECK"})
OUT_OF_SCOPE_MODALITIES = {"MG": "mammography", "IO": "intra-oral dental", "PX": "panoramic dental",
                           "CT": "computed tomography, not a plain film", "MR": "magnetic resonance, not a plain film",
                           "US": "ultrasound, not a plain film", "NM": "nuclear medicine, not a plain film",
                           "PT": "PET, not a plain film"}

_WORD = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class ScopeVerdict:
    """Whether a film is in calcidet's scope, and why.

    Attributes:
        scope: "in_scope", "out_of_scope" or "unknown".
        reason: the tags and values that decided, e.g. "BodyPartExamined=CHEST"; "" when nothing did.
    """

    scope: ScopeLabel
    reason: str = ""


# An image-level check for films whose tags say nothing: a float 0..1 H x W image in, a verdict out.
ImageScopeCheck = Callable[[np.ndarray], ScopeVerdict]


def classify_words(text: str) -> tuple[set[str], set[str]]:
    """The in-scope and the out-of-scope words of one tag value (rule 2 applied).

    Returns:
        (in-scope words, out-of-scope words), upper case, as they appear in ``text``.
    """
    found_in, found_out = set(), set()
    for word in _WORD.findall(text.upper()):
        stems = (word, word[:-1]) if word.endswith("S") and len(word) > 3 else (word,)
        if any(s in IN_SCOPE_WORDS for s in stems):
            found_in.add(word)
        elif any(s in OUT_OF_SCOPE_WORDS for s in stems):
            found_out.add(word)
    if found_in:
        found_out -= WEAK_OUT_OF_SCOPE_WORDS
    return found_in, found_out


def scope_from_tags(tags: Mapping[str, str]) -> ScopeVerdict:
    """Decide the scope from a file's descriptive tags (rules 1-3 of the module docstring).

    Args:
        tags: tag keyword -> value as text, e.g. ``{"BodyPartExamined": "CHEST", "ViewPosition": "PA"}``.

    Returns:
        The verdict; its reason names each tag and value that said something ("; "-separated).
    """
    modality = str(tags.get("Modality", "")).strip().upper()
    if modality in OUT_OF_SCOPE_MODALITIES:
        return ScopeVerdict("out_of_scope", f"Modality={modality} ({OUT_OF_SCOPE_MODALITIES[modality]})")
    says_in, says_out = [], []
    for keyword, value in tags.items():
        text = " ".join(str(value).split())
        found_in, found_out = classify_words(text)
        if found_in and found_out:  # one value names both: "ABDOMEN PELVIS"
            says_in.append(f"{keyword}={text}")
            says_out.append(f"{keyword}={text}")
        elif found_in:
            says_in.append(f"{keyword}={text}")
        elif found_out:
            says_out.append(f"{keyword}={text}")
    if says_in and says_out:
        return ScopeVerdict("unknown", f"conflict: in scope {'; '.join(dict.fromkeys(says_in))} "
                                       f"vs out of scope {'; '.join(dict.fromkeys(says_out))}")
    if says_out:
        return ScopeVerdict("out_of_scope", "; ".join(says_out))
    if says_in:
        return ScopeVerdict("in_scope", "; ".join(says_in))
    return ScopeVerdict("unknown")


def assess_scope(tags: Mapping[str, str], image: np.ndarray | None = None,
                 image_check: ImageScopeCheck | None = None) -> ScopeVerdict:
    """The scope of one film: its tags first, then ``image_check`` if the tags say nothing at all.

    Args:
        tags: the file's descriptive tags (``Radiograph.tags``; empty for PNG/JPEG/TIFF).
        image: the film as float 0..1 H x W (any size the check accepts), for ``image_check``.
        image_check: a check on the pixels; None (the default) leaves such films ``unknown``.

    Returns:
        The verdict. A conflict between tags stays ``unknown``: the file did say something.
    """
    verdict = scope_from_tags(tags)
    if verdict.scope == "unknown" and not verdict.reason and image_check is not None and image is not None:
        return image_check(image)
    return verdict
