"""Translate the boxes labelling tools export (YOLO txt, Pascal VOC XML, CVAT XML) into COCO.

    calcidet convert --from cvat annotations.xml --images films/ --output films/labelled.json

COCO stays calcidet's one annotation contract (``data.coco``); these readers only translate into it.
Every reader returns ``LabelledImage`` records (boxes as xyxy in original pixels, by class name) or
raises ``ConversionError`` listing every problem, so one run shows all that needs fixing.

Conventions worth knowing:

- Images are found under IMAGES_DIR by the name the tool gives them: the exact relative path, else
  the shortest unique trailing part of it (``task/knee.png`` finds ``knee.png``), else the name
  without Label Studio's upload prefix (``1a2b3c4d-knee.png``).
- VOC corners are taken as continuous pixel coordinates (width = xmax - xmin), as CVAT, Label Studio
  and labelImg write them today; the 1-based ``+ 1`` of the 2007 challenge files is not applied.
- A rotated CVAT box becomes the axis-aligned box around it (the lesion stays inside).
- Images without boxes are kept: they are the negatives. For YOLO every image under IMAGES_DIR
  counts (no label file means no boxes, as YOLO trainers read it); for VOC and CVAT only the images
  the XML names do.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET  # expat >= 2.4.1 (Python >= 3.10 wheels) refuses entity bombs
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from calcidet.data.folders import find_radiographs, relative_name
from calcidet.data.readers import RadiographReadError, read_radiograph

FORMATS = ("yolo", "voc", "cvat")
CLASS_FILE_NAMES = ("classes.txt", "obj.names")  # Label Studio / Ultralytics, and CVAT's YOLO 1.1
DECIMALS = 3  # YOLO's normalised floats times the size give 64.00000000000001; a milli-pixel is plenty
# Label Studio stores uploads as "<8 hex digits>-<original name>" and exports that name.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_CVAT_SHAPES = ("polygon", "polyline", "points", "mask", "ellipse", "cuboid", "skeleton")

Box = tuple[str, float, float, float, float]  # class name, x1, y1, x2, y2 in original pixels


class ConversionError(ValueError):
    """Annotations that cannot be converted as they are; ``problems`` lists each, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class LabelledImage:
    """One image as a labelling tool described it.

    Attributes:
        file_name: POSIX path relative to IMAGES_DIR.
        width: in pixels, as the tool saw the image (or as calcidet reads the file).
        height: in pixels.
        boxes: (class name, x1, y1, x2, y2) in original pixels; empty for a negative.
    """

    file_name: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


class ImageFolder:
    """The radiographs under IMAGES_DIR, found by the names labelling tools give them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.names = [relative_name(p, self.root) for p in find_radiographs(self.root)]
        self._by_tail: dict[str, list[str]] = defaultdict(list)
        for name in self.names:
            parts = name.split("/")
            for k in range(len(parts)):
                self._by_tail["/".join(parts[k:])].append(name)

    def find(self, name: str) -> tuple[str | None, str]:
        """(relative name, "") of the image a tool calls ``name``, or (None, why it was not found)."""
        parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", ".", "")]
        for k in range(len(parts)):  # longest tail first: the most specific match wins
            found = self._by_tail.get("/".join(parts[k:]), [])
            if len(found) == 1:
                return found[0], ""
            if len(found) > 1:
                return None, f"{len(found)} images under {self.root} match it: {', '.join(found[:3])}"
        base = _UPLOAD_PREFIX.sub("", parts[-1]) if parts else ""
        found = self._by_tail.get(base, []) if base else []
        if len(found) == 1:
            return found[0], ""
        return None, f"no image of that name under {self.root}"

    def size(self, name: str) -> tuple[int, int]:
        """(width, height) as calcidet reads the file (EXIF orientation applied, as tools display it).

        Raises:
            RadiographReadError: the file cannot be read.
        """
        height, width = read_radiograph(self.root / name).original_size
        return width, height


def read_class_names(path: str | Path) -> list[str]:
    """Class names, one per line (``classes.txt``, ``obj.names``); blank lines are skipped.

    Raises:
        ConversionError: unreadable file, no names, or a name listed twice.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError([f"{path}: cannot read the class list: {exc}"]) from exc
    names = [line.strip() for line in lines if line.strip()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if not names or twice:
        raise ConversionError([f"{path}: " + (f"lists {twice} twice" if twice else "no class names in it")])
    return names


def find_class_file(src: str | Path) -> Path | None:
    """The class list a YOLO export keeps beside its labels (in SRC or its parent), if any."""
    src = Path(src)
    folders = [src, src.parent] if src.is_dir() else [src.parent]
    return next((f / n for f in folders for n in CLASS_FILE_NAMES if (f / n).is_file()), None)


def read_yolo(src: str | Path, images: ImageFolder, class_names: list[str]) -> list[LabelledImage]:
    """Every image under IMAGES_DIR with its boxes from ``SRC/<relative path>.txt`` (or ``SRC/<stem>.txt``).

    Each line is ``class cx cy w h``: a 0-based index into ``class_names``, then the box centre and
    size as fractions of the image's width and height. ``SRC/labels/`` is used when it exists (the
    Label Studio and Ultralytics layout).

    Raises:
        ConversionError: listing every bad line, unreadable image, and label file matching no image.
    """
    src = Path(src)
    labels = src / "labels" if (src / "labels").is_dir() else src
    if not labels.is_dir():
        raise ConversionError([f"{src}: not a folder of YOLO .txt label files"])
    stems: dict[str, list[str]] = defaultdict(list)
    for name in images.names:
        stems[PurePosixPath(name).stem].append(name)
    out, used, problems = [], set(), []
    for name in images.names:
        txt = labels / PurePosixPath(name).with_suffix(".txt")
        if not txt.is_file() and len(stems[PurePosixPath(name).stem]) == 1:
            txt = labels / f"{PurePosixPath(name).stem}.txt"  # one flat labels folder
        found = txt.is_file()
        if found:
            used.add(txt.resolve())
        try:
            width, height = images.size(name)
        except RadiographReadError as exc:
            problems.append(f"{name}: cannot read the image for its size: {exc.reason}")
            continue
        boxes = _yolo_boxes(txt, width, height, class_names, problems) if found else []
        out.append(LabelledImage(name, width, height, boxes))
    for txt in sorted(labels.rglob("*.txt")):
        if txt.resolve() not in used and txt.name not in CLASS_FILE_NAMES:
            problems.append(f"{txt}: no image under {images.root} for this label file")
    if problems:
        raise ConversionError(problems)
    return out


def _yolo_boxes(txt: Path, width: int, height: int, class_names: list[str],
                problems: list[str]) -> list[Box]:
    boxes = []
    for number, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        where = f"{txt}:{number}"
        if len(values) != 5:  # 6 is a prediction with a score; more is a YOLO segmentation polygon
            problems.append(f"{where}: expected 'class cx cy w h', got {len(values)} values")
            continue
        try:
            index, (cx, cy, w, h) = int(values[0]), (float(v) for v in values[1:])
        except ValueError:
            problems.append(f"{where}: not numbers: {line.strip()!r}")
            continue
        if not 0 <= index < len(class_names):
            problems.append(f"{where}: class {index} is not in the class list (0..{len(class_names) - 1})")
            continue
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        boxes.append((class_names[index], x1, y1, x1 + w * width, y1 + h * height))
    return boxes


def read_voc(src: str | Path, images: ImageFolder) -> list[LabelledImage]:
    """The images named by Pascal VOC XML files (one per image; SRC is one file or a folder of them).

    Raises:
        ConversionError: listing every unparsable file, bad box, unknown image and repeated image.
    """
    src = Path(src)
    files = [src] if src.is_file() else sorted(src.rglob("*.xml")) if src.is_dir() else []
    if not files:
        raise ConversionError([f"{src}: no Pascal VOC .xml files"])
    out: dict[str, LabelledImage] = {}
    problems: list[str] = []
    for xml in files:
        root = _parse_xml(xml, problems)
        if root is None:
            continue
        tool_name = root.findtext("filename") or PurePosixPath(root.findtext("path") or "").name
        name = _find_image(images, tool_name, str(xml), out, problems)
        if name is None:
            continue
        size = root.find("size")
        width, height = (_positive_int(size.findtext(k)) if size is not None else 0 for k in ("width", "height"))
        if not (width and height):  # labelImg writes 0x0 when it could not read the image
            width, height = _size_or_problem(images, name, str(xml), problems)
        image = LabelledImage(name, width, height)
        for k, obj in enumerate(root.iter("object"), start=1):
            box = obj.find("bndbox")
            corners = [_number(box.findtext(c)) if box is not None else None
                       for c in ("xmin", "ymin", "xmax", "ymax")]
            label = (obj.findtext("name") or "").strip()
            if not label or None in corners:
                problems.append(f"{xml}: object {k}: needs <name> and numeric <bndbox> xmin ymin xmax ymax")
                continue
            image.boxes.append((label, *corners))
        out[name] = image
    if problems:
        raise ConversionError(problems)
    return list(out.values())


def read_cvat(src: str | Path, images: ImageFolder) -> tuple[list[LabelledImage], list[str]]:
    """The images and boxes of a "CVAT for images 1.1" ``annotations.xml``, and its label list.

    Returns:
        (images, class names in the order the task's ``<meta>`` lists them; empty if it lists none).

    Raises:
        ConversionError: listing every unparsable element, non-box shape, unknown or repeated image.
    """
    problems: list[str] = []
    root = _parse_xml(Path(src), problems)
    if root is None:
        raise ConversionError(problems)
    meta = root.find("meta")
    labels = [] if meta is None else [
        label.findtext("name", "").strip() for label in meta.iter("label")
        if not (label.findtext("parent") or "").strip()  # skeleton points are not classes
    ]
    out: dict[str, LabelledImage] = {}
    for node in root.iter("image"):
        where = f"{src}: image {node.get('name')!r}"
        name = _find_image(images, node.get("name") or "", where, out, problems)
        if name is None:
            continue
        width, height = _positive_int(node.get("width")), _positive_int(node.get("height"))
        if not (width and height):
            width, height = _size_or_problem(images, name, where, problems)
        image = LabelledImage(name, width, height)
        for box in node.iter("box"):
            corners = [_number(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]
            label = (box.get("label") or "").strip()
            if not label or None in corners:
                problems.append(f"{where}: box needs a label and numeric xtl ytl xbr ybr")
                continue
            image.boxes.append((label, *_unrotated(corners, _number(box.get("rotation", "0")) or 0.0)))
        for shape in _CVAT_SHAPES:
            for other in node.iter(shape):
                problems.append(f"{where}: a {shape} ({other.get('label')!r}) is not a box; redraw it as one")
        out[name] = image
    if problems:
        raise ConversionError(problems)
    return list(out.values()), [n for n in labels if n]


def to_coco(images: list[LabelledImage], class_names: list[str],
            image_info: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A COCO detection dict: images by file name (ids 1..N), boxes as [x, y, w, h], categories 1..K.

    Args:
        images: what a reader returned.
        class_names: category k + 1 is ``class_names[k]``.
        image_info: extra fields per file name (``patient_id``, DICOM UIDs from ``export-images``)
            copied into the image records.

    Raises:
        ConversionError: a box names a class not in ``class_names``.
    """
    category = {name: k for k, name in enumerate(class_names, start=1)}
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": k, "name": n} for n, k in category.items()]}
    problems = []
    for image_id, image in enumerate(sorted(images, key=lambda im: im.file_name), start=1):
        extra = (image_info or {}).get(image.file_name, {})
        coco["images"].append({"id": image_id, "file_name": image.file_name, "width": image.width,
                               "height": image.height, **extra})
        for label, x1, y1, x2, y2 in image.boxes:
            if label not in category:
                problems.append(f"{image.file_name}: class {label!r} is not in the class list {class_names}")
                continue
            x, y, w, h = (round(v, DECIMALS) for v in (x1, y1, x2 - x1, y2 - y1))
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": category[label], "bbox": [x, y, w, h],
                                        "area": round(w * h, DECIMALS), "iscrowd": 0})
    if problems:
        raise ConversionError(problems)
    return coco


def _parse_xml(path: Path, problems: list[str]) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        problems.append(f"{path}: not readable XML: {exc}")
        return None


def _find_image(images: ImageFolder, tool_name: str, where: str, seen: dict[str, LabelledImage],
                problems: list[str]) -> str | None:
    name, why = images.find(tool_name) if tool_name else (None, "no file name given")
    if name is None:
        problems.append(f"{where}: image {tool_name!r}: {why}")
    elif name in seen:
        problems.append(f"{where}: image {name!r} is described twice")
        return None
    return name


def _size_or_problem(images: ImageFolder, name: str, where: str, problems: list[str]) -> tuple[int, int]:
    try:
        return images.size(name)
    except RadiographReadError as exc:
        problems.append(f"{where}: no size given and the image cannot be read: {exc.reason}")
        return 0, 0


def _unrotated(corners: list[float], degrees: float) -> tuple[float, float, float, float]:
    """The axis-aligned box around a box turned by ``degrees`` about its centre."""
    x1, y1, x2, y2 = corners
    if not degrees:
        return x1, y1, x2, y2
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    half_w, half_h = hw * cos + hh * sin, hw * sin + hh * cos
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _positive_int(text: str | None) -> int:
    value = _number(text)
    return int(value) if value is not None and value > 0 and value.is_integer() else 0
