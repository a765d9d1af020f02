"""The HTML page of ``calcidet report``: inline CSS and JavaScript, nothing fetched from a network.

    calcidet report results/ --gt annotations.json

Overlays are linked by relative URLs (escaped: file names come from users' folders); the GT plots
are embedded as data: URIs. Every text and attribute from a file passes through ``html.escape``.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:  # report_cmd imports this module; the types are only for annotations
    from calcidet.train.report_cmd import Film, Finding, GroundTruthSummary, Review

DISCLAIMER = ("calcidet is research software, not a medical device. It is not cleared or approved for "
              "diagnosis or patient care; every finding needs a qualified reader's review.")

BELOW_SHOWN = 3  # boxes under the operating threshold listed per film card

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fafafa}
h1{margin:.6em 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.warn{background:#fff3cd;border:1px solid #e0b000;padding:.6em 1em;font-weight:600}
.meta{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.8em 0}
.meta dt{color:#666}.meta dd{margin:0;word-break:break-all}
#filters{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd;z-index:2}
#filters label{margin-right:1.4em}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px}
.card h3{font-size:13px;margin:4px 0;word-break:break-all}
.film{position:relative;background:#333;width:100%}.film img{width:100%;height:100%;display:block}
.box{position:absolute;box-sizing:border-box}
.box.found{border:2px solid #2ca02c}.box.miss{border:2px dashed #e00}.box.fp{border:2px dashed #d0f}
.noimg{color:#bbb;position:absolute;top:45%;width:100%;text-align:center}
ul.finds{margin:4px 0;padding-left:1.2em}.below{color:#999}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#eee;position:sticky;top:2.6em}td.num{text-align:right}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}.pair .gallery{grid-template-columns:repeat(auto-fill,minmax(220px,1fr))}
.plots img{max-width:48%;margin-right:1%}.err{color:#b00}
"""

SCRIPT = """
function applyFilters(){
  var c=parseFloat(document.getElementById('conf').value);
  document.getElementById('conf-value').textContent=c.toFixed(2);
  var pos=document.getElementById('positives').checked, out=document.getElementById('outscope').checked,
      bad=document.getElementById('failed').checked, shown=0;
  document.querySelectorAll('[data-conf]').forEach(function(el){
    var ok=parseFloat(el.dataset.conf)>=c && (!pos||el.dataset.pos==='1') &&
           (out||el.dataset.scope!=='out_of_scope') && (bad||el.dataset.status==='ok');
    el.hidden=!ok; if(ok&&el.tagName==='TR')shown++;});
  document.querySelectorAll('[data-box]').forEach(function(el){el.hidden=parseFloat(el.dataset.box)<c;});
  document.getElementById('shown').textContent=shown;
}
document.querySelectorAll('#filters input').forEach(function(el){el.addEventListener('input',applyFilters);});
applyFilters();
"""


def _href(path: Path, page_dir: Path) -> str:
    """A relative URL from the page to ``path``, percent-encoded (then HTML-escaped by the caller)."""
    rel = os.path.relpath(path.resolve(), page_dir.resolve())
    return quote(Path(rel).as_posix(), safe="/")


def _mm(f: Finding) -> str:
    if f.width_mm is None or f.height_mm is None:
        x1, y1, x2, y2 = f.box
        return f"{x2 - x1:.0f} x {y2 - y1:.0f} px"  # the file records no pixel spacing
    return f"{f.width_mm:.1f} x {f.height_mm:.1f} mm"


def _box_div(box: list[float] | tuple[float, ...], size: tuple[int, int], kind: str, title: str) -> str:
    """A box drawn over a film in % of its size (the overlay PNG is a scaled copy of the original)."""
    w, h = size
    x1, y1, x2, y2 = box
    style = (f"left:{100 * x1 / w:.3f}%;top:{100 * y1 / h:.3f}%;"
             f"width:{100 * (x2 - x1) / w:.3f}%;height:{100 * (y2 - y1) / h:.3f}%")
    return f'<div class="box {kind}" style="{style}" title="{escape(title)}"></div>'


def _picture(film: Film | None, size: tuple[int, int] | None, page_dir: Path, boxes: str = "") -> str:
    """The overlay at the film's aspect ratio (or a grey stand-in), with ``boxes`` drawn over it."""
    w, h = size or (4, 3)
    if film is not None and film.overlay is not None:
        href = escape(_href(film.overlay, page_dir))
        inner = f'<a href="{href}"><img src="{href}" loading="lazy" alt="overlay of {escape(film.name)}"></a>'
    else:
        inner = '<span class="noimg">no overlay (detect --overlays)</span>'
    return f'<div class="film" style="aspect-ratio:{w}/{h}">{inner}{boxes}</div>'


def _attrs(film: Film) -> str:
    positive = any(f.above_threshold for f in film.findings)
    return (f'data-conf="{film.max_confidence:.4f}" data-pos="{int(positive)}" '
            f'data-scope="{escape(film.row.get("scope", ""))}" data-status="{escape(film.row.get("status", ""))}"')


def _card(film: Film, page_dir: Path) -> str:
    above = [f for f in film.findings if f.above_threshold]
    below = [f for f in film.findings if not f.above_threshold]
    items = [f'<li data-box="{f.confidence:.4f}">{f.confidence:.2f} {escape(f.label)}: {_mm(f)}</li>' for f in above]
    # detect keeps up to ~100 boxes per film down to its score floor: the best few say enough
    items += [f'<li data-box="{f.confidence:.4f}" class="below">{f.confidence:.2f} {escape(f.label)}: {_mm(f)} '
              f'(below threshold)</li>' for f in below[:BELOW_SHOWN]]
    if len(below) > BELOW_SHOWN:
        items.append(f'<li class="below">{len(below) - BELOW_SHOWN} more boxes below the threshold</li>')
    finds = f'<ul class="finds">{"".join(items)}</ul>' if items else "<p>no box above the score floor</p>"
    scope = film.row.get("scope", "")
    note = f' <span class="err">[{escape(scope)}]</span>' if scope == "out_of_scope" else ""
    return (f'<div class="card" {_attrs(film)}><h3>{escape(film.name)}{note}</h3>'
            f'{_picture(film, film.size, page_dir)}{finds}</div>')


def _table(films: list[Film], page_dir: Path) -> str:
    head = ("image", "status", "scope", "size (px)", "spacing (mm)", "at threshold", "max confidence",
            "top finding", "reason")
    rows = []
    for film in films:
        r = film.row
        name = escape(film.name)
        if film.overlay is not None:
            name = f'<a href="{escape(_href(film.overlay, page_dir))}">{name}</a>'
        top = next((f for f in film.findings if f.above_threshold), None)
        size = f"{film.size[0]} x {film.size[1]}" if film.size else ""
        spacing = r.get("pixel_spacing_row_mm") or ""
        rows.append(f'<tr {_attrs(film)}><td>{name}</td><td>{escape(r.get("status", ""))}</td>'
                    f'<td title="{escape(r.get("scope_reason", ""))}">{escape(r.get("scope", ""))}</td>'
                    f'<td class="num">{size}</td><td class="num">{escape(spacing)}</td>'
                    f'<td class="num">{escape(r.get("num_detections", ""))}</td>'
                    f'<td class="num">{escape(r.get("max_confidence", ""))}</td>'
                    f'<td>{_mm(top) if top else ""}</td><td>{escape(r.get("reason", ""))}</td></tr>')
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<table id="table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _size_text(box: list[float], film: Film | None) -> str:
    """``w x h mm`` when the film records pixel spacing (``images.csv``), else pixels."""
    x1, y1, x2, y2 = box
    row, col = (film.row.get(k) for k in ("pixel_spacing_row_mm", "pixel_spacing_col_mm")) if film else ("", "")
    if row and col:
        return f"{(x2 - x1) * float(col):.1f} x {(y2 - y1) * float(row):.1f} mm"
    return f"{x2 - x1:.0f} x {y2 - y1:.0f} px"


def _review_card(rev: Review, film: Film | None, page_dir: Path, kind: str) -> str:
    """A film with its GT lesions (green found, red missed) and false positives (magenta) drawn."""
    boxes = "".join(_box_div(b, rev.size, "found" if hit else "miss", "found lesion" if hit else "missed lesion")
                    for b, hit in rev.lesions)
    boxes += "".join(_box_div(b, rev.size, "fp", f"false positive {s:.2f}" + (f" on {on}" if on else ""))
                     for b, s, on in rev.false_positives)
    if kind == "miss":
        lines = [f"missed lesion at x {b[0]:.0f}, y {b[1]:.0f}: {_size_text(b, film)}"
                 for b, hit in rev.lesions if not hit]
    else:
        lines = [f"{s:.2f} at x {b[0]:.0f}, y {b[1]:.0f}: {_size_text(b, film)}" + (f", on {on}" if on else "")
                 for b, s, on in rev.false_positives]
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return (f'<div class="card"><h3>{escape(rev.film)}</h3>{_picture(film, rev.size, page_dir, boxes)}'
            f'<ul class="finds">{items}</ul></div>')


def _gt_section(gt: GroundTruthSummary, films: list[Film], page_dir: Path, threshold: float) -> str:
    by_name = {f.name: f for f in films}
    misses = [r for r in gt.reviews if not all(hit for _, hit in r.lesions)]
    fps = sorted((r for r in gt.reviews if r.false_positives), key=lambda r: -max(s for _, s, _ in r.false_positives))
    n_lesions = sum(len(r.lesions) for r in gt.reviews)
    n_found = sum(hit for r in gt.reviews for _, hit in r.lesions)
    n_fp = sum(len(r.false_positives) for r in gt.reviews)
    m = gt.metrics
    summary = (f"At the operating threshold {threshold:.3f}: {n_found} of {n_lesions} lesions found "
               f"(IoU &ge; {gt.hit_iou:g}), {n_fp} false positives on {len(gt.reviews)} images "
               f"({n_fp / max(len(gt.reviews), 1):.2f} per image). Over every box detect kept: "
               f"AP50 {m.get('map_50', float('nan')):.3f}, FROC CPM {m.get('froc_cpm', float('nan')):.3f}, "
               f"image AUROC {m.get('auroc', float('nan')):.3f}.")
    notes = "".join(f"<li>{escape(n)}</li>" for n in gt.notes)
    plots = "".join(f'<img src="{uri}" alt="{escape(title)} plot">' for title, uri in gt.plots.items())
    left = "".join(_review_card(r, by_name.get(r.film), page_dir, "miss") for r in misses) or "<p>none</p>"
    right = "".join(_review_card(r, by_name.get(r.film), page_dir, "fp") for r in fps) or "<p>none</p>"
    return (f'<section id="gt"><h2>Against the ground truth</h2><p>Ground truth: {escape(gt.gt_path)}. '
            f'{summary}</p><ul>{notes}</ul><p>Boxes: <span style="color:#2ca02c">green</span> lesion found, '
            f'<span style="color:#e00">red dashed</span> lesion missed, <span style="color:#d0f">magenta dashed'
            f'</span> false positive; the overlay draws every box at the threshold.</p>'
            f'<div class="pair"><div><h3>Missed lesions ({n_lesions - n_found})</h3>'
            f'<div class="gallery">{left}</div></div><div><h3>False positives ({n_fp})</h3>'
            f'<div class="gallery">{right}</div></div></div>'
            f'{_lookalike_table(gt.lookalikes)}'
            f'<h3>Curves</h3><div class="plots">{plots}</div></section>')


def _lookalike_table(report: dict | None) -> str:
    """The look-alikes the GT records, how many a false positive at the threshold lies on, and what the
    false positives lie on (``model.lookalikes.lookalike_report`` at the operating threshold)."""
    if not report:
        return ""
    flagged = report["flagged"]["operating"]
    rows = "".join(f'<tr><td>{escape(kind)}</td><td class="num">{n}</td><td class="num">{flagged[kind]} '
                   f'({flagged[kind] / n:.0%})</td></tr>' for kind, n in report["recorded"].items())
    on = report["false_positives_on"]["operating"]
    sites = ", ".join(f"{escape(kind)} {n}" for kind, n in on.items()) or "-"
    return (f'<h3>Look-alikes</h3><p>Look-alikes recorded in the ground truth (unlabelled, not to be flagged) and '
            f'how many a false positive at the threshold lies on. The {sum(on.values())} false positives lie on: '
            f'{sites} (none: on no recorded look-alike).</p><table id="lookalikes"><thead><tr><th>look-alike</th>'
            f'<th>recorded</th><th>flagged</th></tr></thead><tbody>{rows}</tbody></table>')


def render_report(run: dict, films: list[Film], gt: GroundTruthSummary | None, run_dir: Path,
                  page_dir: Path, gallery: int = 200) -> str:
    """The whole page.

    Args:
        run: detect's ``run.json``.
        films: every image of the run, highest confidence first (``report_cmd.read_run``).
        gt: the comparison with a ground truth, or None.
        run_dir: the detect output folder (for links to its files).
        page_dir: the folder the page is written to (links are relative to it).
        gallery: how many films to show as pictures; the table lists all.
    """
    threshold = float(run["threshold"])
    ckpt = run.get("checkpoint", {})
    counts = run.get("counts", {})
    meta = {
        "checkpoint": f"{ckpt.get('path', '?')} (sha256 {str(ckpt.get('sha256', '?'))[:12]}, "
                      f"{ckpt.get('arch', '?')} at {ckpt.get('image_size', '?')} px)",
        "operating threshold": f"{threshold:.4f} ({run.get('threshold_source', 'given')})",
        "score floor": f"{run['score_floor']:.3f}" if "score_floor" in run else "= threshold",
        "images": ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()
                            if k in ("images", "ok", "error", "out_of_scope", "detections")),
        "calcidet": run.get("versions", {}).get("calcidet", "?"),
    }
    links = " ".join(f'<a href="{escape(_href(run_dir / n, page_dir))}">{n}</a>'
                     for n in ("detections.csv", "images.csv", "run.json") if (run_dir / n).is_file())
    meta_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta.items())
    intended = run.get("intended_use")
    intended_html = f"<p>{escape(str(intended))}</p>" if intended else ""
    cards = "".join(_card(f, page_dir) for f in films[:gallery])
    more = f"<p>{len(films) - gallery} more films are in the table below.</p>" if len(films) > gallery else ""
    gt_html = _gt_section(gt, films, page_dir, threshold) if gt is not None else ""
    sections = [("films", "films"), *([("gt", "misses and false positives")] if gt else []), ("table", "all images")]
    nav = " ".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calcidet report: {escape(str(run_dir))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><h1>calcidet report</h1>
<p class="warn">{DISCLAIMER}</p>{intended_html}
<dl class="meta">{meta_html}<dt>files</dt><dd>{links}</dd><dt>sections</dt><dd>{nav}</dd></dl>
<div id="filters"><label>highest confidence &ge; <input id="conf" type="range" min="0" max="1" step="0.01"
value="0"> <span id="conf-value">0.00</span></label>
<label><input id="positives" type="checkbox"> only films with a finding at the threshold</label>
<label><input id="outscope" type="checkbox" checked> out-of-scope films</label>
<label><input id="failed" type="checkbox" checked> files that failed</label>
<span><span id="shown">{len(films)}</span> of {len(films)} images shown</span></div>
<h2>Films by highest confidence</h2>{more}<div class="gallery" id="films">{cards}</div>
{gt_html}
<h2>All images</h2>{_table(films, page_dir)}
<script>{SCRIPT}</script></body></html>
"""
