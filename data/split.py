"""Split one COCO file into train/val/test by patient, so that no patient is in two splits.

    from calcidet.data.split import split_by_patient
    splits = split_by_patient(coco, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)

A patient is the image's ``patient_id`` (``calcidet export-images`` takes it from the DICOM tags and
``calcidet convert`` carries it over), else its ``study_instance_uid``, else its ``file_name``: an
image with nothing to group it by counts as its own patient. Fractions are shares of images, not of
patients. Patients with a box and patients without are split separately, so each split keeps its
share of positives where there are enough patients. The result depends only on the input and seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

FRACTION_TOLERANCE = 1e-6  # 0.7 + 0.15 + 0.15 is not exactly 1.0 in floating point

PatientKey = tuple[str, str]  # (what identifies it, value): a patient id never clashes with a file name


def patient_key(image: Mapping[str, Any]) -> PatientKey:
    """What groups an image record with the others of its patient."""
    for field in ("patient_id", "study_instance_uid"):
        value = image.get(field)
        if value is not None and str(value).strip():
            return field, str(value).strip()
    return "file_name", str(image["file_name"])


def check_fractions(fractions: Mapping[str, float]) -> None:
    """Raise ValueError unless the fractions are finite, non-negative and sum to 1."""
    if not fractions:
        raise ValueError("no splits given: name at least one split and its fraction")
    bad = {name: f for name, f in fractions.items() if not (math.isfinite(f) and f >= 0)}
    if bad:
        raise ValueError(f"fractions must be finite and >= 0, got {bad}")
    total = sum(fractions.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise ValueError(f"fractions must sum to 1 (every image goes to one split), got "
                         f"{' + '.join(f'{f:g}' for f in fractions.values())} = {total:g}")


def assign_patients(sizes: dict[PatientKey, int], positive: set[PatientKey],
                    fractions: Mapping[str, float], seed: int) -> dict[PatientKey, str]:
    """Split name of each patient (``sizes``: images per patient).

    Raises:
        ValueError: fewer patients than splits with a fraction above 0.
    """
    wanted = [name for name, f in fractions.items() if f > 0]
    if len(sizes) < len(wanted):
        raise ValueError(f"{len(sizes)} patient(s) cannot fill {len(wanted)} splits ({', '.join(wanted)}): "
                         "each split needs a patient of its own; give fewer splits or a fraction of 0")
    rng = np.random.default_rng(seed)
    split_of: dict[PatientKey, str] = {}
    for stratum in (sorted(k for k in sizes if k in positive), sorted(k for k in sizes if k not in positive)):
        stratum = [stratum[i] for i in rng.permutation(len(stratum))]
        total = sum(sizes[k] for k in stratum)
        taken = dict.fromkeys(wanted, 0)
        for key in stratum:  # each patient to the split furthest below its share of this stratum
            name = max(wanted, key=lambda s: fractions[s] * total - taken[s])
            split_of[key] = name
            taken[name] += sizes[key]
    # Few patients: the largest split lends its smallest patient to any split left empty.
    members: dict[str, list[PatientKey]] = {name: [k for k in split_of if split_of[k] == name] for name in wanted}
    for name in wanted:
        if not members[name]:
            donor = max(wanted, key=lambda s: len(members[s]))
            # ties go to a patient with boxes: a val or test split without a lesion scores nothing
            key = min(members[donor], key=lambda k: (sizes[k], k not in positive))
            members[donor].remove(key)
            members[name].append(key)
            split_of[key] = name
    return split_of


def split_by_patient(coco: Mapping[str, Any], fractions: Mapping[str, float],
                     seed: int = 0) -> dict[str, dict[str, Any]]:
    """Split a COCO dict by patient.

    Args:
        coco: a valid COCO dict (``images``, ``annotations``, ``categories``; load it with
            ``data.coco.load_coco`` first to have it checked).
        fractions: split name -> share of the images, e.g. ``{"train": 0.7, "val": 0.15, "test": 0.15}``;
            they must sum to 1. A split with fraction 0 comes out empty.
        seed: the same input and seed give the same split.

    Returns:
        Split name -> COCO dict holding that split's image records and their annotations verbatim
        (ids, file names and extra fields unchanged), the categories, and any other top-level keys
        (``info``, ``licenses``). Every image is in exactly one split.

    Raises:
        ValueError: fractions that are negative or do not sum to 1, or fewer patients than splits
            with a fraction above 0.
    """
    check_fractions(fractions)
    sizes: dict[PatientKey, int] = defaultdict(int)
    key_of_image: dict[Any, PatientKey] = {}
    for image in coco["images"]:
        key_of_image[image["id"]] = patient_key(image)
        sizes[key_of_image[image["id"]]] += 1
    # iscrowd regions are ignore regions, not lesions to find (data.coco), so they make no positive
    positive = {key_of_image[a["image_id"]] for a in coco["annotations"]
                if a.get("iscrowd", 0) != 1 and a["image_id"] in key_of_image}
    split_of = assign_patients(dict(sizes), positive, fractions, seed)
    out = {}
    for name in fractions:
        ids = {i for i, key in key_of_image.items() if split_of.get(key) == name}
        chosen = {"images": [im for im in coco["images"] if im["id"] in ids],
                  "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
        out[name] = {k: chosen.get(k, v) for k, v in coco.items()}  # the input's key order
    return out
