"""``calcidet convert``: boxes from a labelling tool's YOLO, Pascal VOC or CVAT export, as calcidet's COCO.

    calcidet convert --from cvat annotations.xml --images to_label/ --output to_label/labelled.json
    calcidet convert --from voc Annotations/ --images to_label/ --output labelled.json
    calcidet convert --from yolo export/labels --images to_label/ --output labelled.json --classes classes.txt

SRC is the tool's export: CVAT's ``annotations.xml`` ("CVAT for images 1.1"), a folder of VOC XML
files (or one), or a folder of YOLO ``.txt`` label files. IMAGES_DIR holds the images that were
labelled; ``file_name``s in the output are relative to it, and sizes come from the XML or, for YOLO,
from the files. Categories are 1..K in the order of ``--classes`` (one name a line), else of the
tool's own list (YOLO ``classes.txt``/``obj.names`` beside SRC, CVAT's task labels), else sorted.

Fields that ``calcidet export-images`` wrote in ``IMAGES_DIR/annotations.json`` (``patient_id``,
DICOM UIDs, pixel spacing) are carried over, and the sizes checked against it. The output is loaded
with ``data.coco.load_coco`` before the command reports success.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.data.convert import (
    FORMATS,
    ConversionError,
    ImageFolder,
    LabelledImage,
    find_class_file,
    read_class_names,
    read_cvat,
    read_voc,
    read_yolo,
    to_coco,
)
from calcidet.train.output_files import atomic_write_text

EXPORT_SKELETON = "annotations.json"  # what export-images writes in its output folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source_format", required=True, choices=FORMATS, help="the export's format")
    p.add_argument("src", metavar="SRC", help="CVAT annotations.xml, VOC .xml file(s), or YOLO labels folder")
    p.add_argument("--images", required=True, metavar="IMAGES_DIR", help="folder of the labelled images")
    p.add_argument("--output", required=True, help="COCO JSON to write")
    p.add_argument("--classes", help="class names, one a line: category ids 1..K in this order")
    p.add_argument("--image-info", metavar="COCO_JSON",
                   help=f"COCO file whose image fields to carry over (default: IMAGES_DIR/{EXPORT_SKELETON} "
                        "when there is one; 'none' for no file)")
    return p.parse_args(argv)


def read_image_info(path: Path, images: list[LabelledImage]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Extra image fields by file name from an ``export-images`` COCO file, and size mismatches.

    A size that differs from the one the labelling tool reports means the boxes were drawn on
    another image (resized, or another export): that is a problem, not a detail.
    """
    index = load_coco(path, check_files=False)
    info, sizes = {}, {}
    for im in index.images:
        info[im.file_name] = ({"patient_id": im.patient_id} if im.patient_id is not None else {}) | im.extra
        sizes[im.file_name] = (im.width, im.height)
    problems = [f"{im.file_name}: the labelling tool says {im.width}x{im.height}, {path} says "
                f"{sizes[im.file_name][0]}x{sizes[im.file_name][1]}: were the boxes drawn on another image?"
                for im in images if sizes.get(im.file_name, (im.width, im.height)) != (im.width, im.height)]
    return info, problems


def convert(args: argparse.Namespace) -> dict[str, Any]:
    """The COCO dict for ``args``.

    Raises:
        ConversionError: listing every problem found.
        FileNotFoundError: IMAGES_DIR does not exist.
    """
    folder = ImageFolder(args.images)
    classes = read_class_names(args.classes) if args.classes else None
    if args.source_format == "yolo":
        class_file = find_class_file(args.src) if classes is None else None
        if classes is None and class_file is None:
            raise ConversionError([f"{args.src}: YOLO labels are class numbers: give their names with --classes"])
        classes = classes or read_class_names(class_file)
        images = read_yolo(args.src, folder, classes)
    elif args.source_format == "voc":
        images = read_voc(args.src, folder)
    else:
        images, tool_classes = read_cvat(args.src, folder)
        classes = classes or tool_classes or None
    if classes is None:
        classes = sorted({box[0] for im in images for box in im.boxes})
    if not classes:
        raise ConversionError([f"{args.src}: no boxes and no class list: give the class names with --classes"])
    info_path = Path(args.image_info) if args.image_info else Path(args.images) / EXPORT_SKELETON
    info, problems = {}, []
    if args.image_info != "none" and (args.image_info or info_path.is_file()):
        try:
            info, problems = read_image_info(info_path, images)
        except CocoFormatError as exc:
            raise ConversionError([f"cannot carry image fields over from {info_path} (--image-info none "
                                   "skips it):", *exc.problems]) from exc
    if problems:
        raise ConversionError(problems)
    return to_coco(images, classes, info)


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet convert``; 0 ok, 1 problems in the annotations (each listed), 2 bad arguments."""
    args = parse_args(argv)
    out = Path(args.output)
    try:
        coco = convert(args)
    except FileNotFoundError as exc:
        print(f"calcidet convert: {exc}", file=sys.stderr)
        return 2
    except ConversionError as exc:
        print(f"calcidet convert: nothing written; {len(exc.problems)} problem(s) in {args.src}:",
              *exc.problems, sep="\n", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(coco, indent=1))
    try:
        index = load_coco(out, image_root=args.images)
    except CocoFormatError as exc:
        print(f"calcidet convert: wrote {out}, but it does not load:", *exc.problems, sep="\n", file=sys.stderr)
        return 1
    positives = sum(1 for im in index.images if len(im.boxes))
    print(f"calcidet convert: {len(index)} images ({positives} with boxes, {len(index) - positives} negatives), "
          f"{sum(len(im.boxes) for im in index.images)} boxes, classes {index.class_names}; wrote {out}")
    if out.resolve().parent != Path(args.images).resolve():
        print(f"calcidet convert: file names are relative to {args.images}: train with --data.image_root {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
