"""Reports of a `FrameMapResult`: aligned per-class table, input warnings, JSON with every number, PNG (AP bars,
PR curves). Files are written through `sfdet.fileio.atomic_write` (temp file, fsync, rename)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sfdet.evaluation.frame_map import CATEGORY_GROUPS, FrameMapResult, metric_names
from sfdet.fileio import atomic_write, atomic_write_text


def _ap_text(ap: float) -> str:
    return "   nan" if math.isnan(ap) else f"{100 * ap:6.2f}"


def classes_by_ap(result: FrameMapResult) -> list[int]:
    """Class ids, best AP first; classes without an AP (no GT) last."""
    return sorted(result.per_class_ap, key=lambda c: (math.isnan(result.per_class_ap[c]), -np.nan_to_num(
        result.per_class_ap[c], nan=0.0), c))


def format_table(result: FrameMapResult) -> str:
    """Per-class AP (%) sorted by AP, with GT and detection counts, then the category groups and mAP.

    The groups are AVA's id ranges: they are shown only when the label map's ids fall in more than one of
    them (another label map, e.g. the toy's ids 1..10, would show one group equal to the mAP and empty ones).
    """
    name_width = max([len("class")] + [len(n) for n in result.label_map.values()])
    lines = [f"{'id':>4}  {'class':<{name_width}}  {'AP%':>6}  {'GT':>7}  {'dets':>8}"]
    lines.append("-" * len(lines[0]))
    for class_id in classes_by_ap(result):
        lines.append(f"{class_id:>4}  {result.label_map[class_id]:<{name_width}}  "
                     f"{_ap_text(result.per_class_ap[class_id])}  {result.gt_counts[class_id]:>7}  "
                     f"{result.det_counts[class_id]:>8}")
    lines.append("-" * len(lines[0]))
    groups = result.category_maps()
    spanned = {name for name, (low, high) in CATEGORY_GROUPS.items() if any(low <= c <= high for c in result.label_map)}
    shown = groups if len(spanned) > 1 else {}
    for group, value in shown.items():
        lines.append(f"{'':>4}  {group.replace('_', ' '):<{name_width}}  {_ap_text(value)}")
    lines.append(f"{'':>4}  {'mAP':<{name_width}}  {_ap_text(result.map)}")
    return "\n".join(lines)


def input_warnings(result: FrameMapResult) -> list[str]:
    """One line per input oddity worth a user's attention (unknown classes, videos without GT, ...)."""
    notes, out = result.notes, []
    for side in ("gt", "pred"):
        unknown = notes.get(f"{side}_rows_with_class_not_in_label_map", {})
        if unknown:
            ids = ", ".join(f"{i} ({n} rows)" for i, n in list(unknown.items())[:10])
            out.append(f"{side}: {sum(unknown.values())} rows with class ids not in the label map, ignored: {ids}")
    videos = notes.get("pred_videos_without_gt", [])
    if videos:
        shown = ", ".join(videos[:5]) + (", ..." if len(videos) > 5 else "")
        out.append(f"pred: {len(videos)} video(s) have no GT at all ({shown}); their detections "
                   f"{'are ignored' if result.protocol == 'mmaction2-1.x' else 'count as false positives'}")
    if notes.get("invalid_pred_boxes_dropped"):
        out.append(f"pred: {notes['invalid_pred_boxes_dropped']} detections with empty/inverted/NaN boxes dropped "
                   "(as the reference does)")
    if notes.get("missing_scores"):
        out.append(f"pred: {notes['missing_scores']} rows have no score column; score 1.0 used (as the reference)")
    if notes.get("pred_rows") == 0:
        files = notes.get("pred_files") or ["<predictions table>"]
        what = f"{files[0]} has" if len(files) == 1 else f"the {len(files)} prediction files have"
        out.append(f"pred: {what} no rows: every class with GT gets AP 0")
    if notes.get("duplicate_pred_rows"):
        out.append(f"pred: {notes['duplicate_pred_rows']} duplicated rows (same video, timestamp, box and class as "
                   f"an earlier row) count as false positives, as in the reference; first: "
                   f"{notes['first_duplicate_pred_row']}")
    for side, count in notes.get("non_finite_boxes", {}).items():
        if count:
            out.append(f"{side}: {count} boxes with a coordinate that is not a number (NaN or inf), used as given "
                       f"(as the reference); first at {notes['first_non_finite_box'][side]}")
    for side, count in notes.get("out_of_range_boxes", {}).items():
        if count:
            first = notes.get("first_out_of_range_box", {}).get(side)
            out.append(f"{side}: {count} boxes outside [0,1] (used as given; are they normalised?)"
                       + (f"; first at {first}" if first else ""))
    return out


def no_gt_left(result: FrameMapResult, gt_source: str = "the GT") -> str | None:
    """One line saying why no GT instance is left to evaluate (the mAP would be NaN), or None."""
    notes = result.notes
    if notes.get("gt_rows_counted", sum(result.gt_counts.values())):
        return None
    unknown = sum(notes.get("gt_rows_with_class_not_in_label_map", {}).values())
    reasons = [(unknown, "have class ids not in the label map"),
               (notes.get("gt_rows_not_in_classes", 0), "are of classes left out by --classes"),
               (notes.get("excluded_gt_rows", 0), "are on excluded keyframes")]
    why = "; ".join(f"{n} {text}" for n, text in reasons if n)
    return (f"{gt_source}: none of its {notes.get('gt_rows', 0)} row(s) is left to evaluate"
            + (f" ({why})" if why else "") + ": no class has GT, so the mAP is undefined")


def to_json(result: FrameMapResult) -> dict:
    """Every number of the result; NaN becomes null."""
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    map_name, _ = metric_names(result.iou)
    return clean({
        "protocol": result.protocol,
        "iou": result.iou,
        map_name: result.map,
        "metrics": result.metrics,
        "category_maps": result.category_maps(),
        "classes": [
            {"id": c, "name": result.label_map[c], "ap": result.per_class_ap[c],
             "gt_count": result.gt_counts[c], "detections": result.det_counts[c]}
            for c in classes_by_ap(result)
        ],
        "notes": result.notes,
    })


def write_json(result: FrameMapResult, path) -> Path:
    """`to_json` as indented JSON, written atomically (a crash leaves the previous file or the new one)."""
    return atomic_write_text(path, json.dumps(to_json(result), indent=2) + "\n")


def write_plot(result: FrameMapResult, path) -> Path:
    """PNG: per-class AP bars (sorted) and PR curves of the best, worst and most frequent classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.font_manager import FontProperties

    order = [c for c in classes_by_ap(result) if not math.isnan(result.per_class_ap[c])]
    names = [f"{result.label_map[c]} ({c})" for c in order]
    width, height = 16.0, max(4.0, 0.18 * len(order) + 1.5)
    fig = plt.figure(figsize=(width, height), dpi=100)
    # Margins from the longest class name as the renderer measures it: what `tight_layout` finds, without
    # its extra measuring pass over every tick label (a third of the PNG's time).
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=7)
    label_px = max((renderer.get_text_width_height_descent(n, font, ismath=False)[0] for n in names), default=0.0)
    left = (label_px + 30) / (width * fig.dpi)
    right, gap = 1 - 0.15 / width, 0.8  # inches between the panels (the curves' y label and ticks)
    axes_width = (width * (right - left) - gap) / 2
    grid = fig.add_gridspec(1, 2, width_ratios=[3, 2], left=left, right=right, bottom=0.55 / height,
                            top=1 - 0.35 / height, wspace=gap / axes_width)
    bars, curves = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    bars.barh(range(len(order)), [100 * result.per_class_ap[c] for c in order], color="tab:blue")
    bars.set_yticks(range(len(order)), names, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("AP (%)")
    bars.set_title(f"Per-class AP@{result.iou}IOU  (mAP {100 * result.map:.2f}%, {result.protocol})")

    picks = {}
    if order:
        picks["best"] = order[0]
        picks["worst"] = order[-1]
        picks["most frequent"] = max(order, key=lambda c: result.gt_counts[c])
    for label, class_id in picks.items():
        precision, recall = result.pr_curves.get(class_id, (np.zeros(0), np.zeros(0)))
        curves.plot(recall, precision, label=f"{label}: {result.label_map[class_id]} "
                    f"(AP {100 * result.per_class_ap[class_id]:.1f}%)")
    curves.set_xlim(0, 1)
    curves.set_ylim(0, 1.02)
    curves.set_xlabel("recall")
    curves.set_ylabel("precision")
    curves.set_title("Precision-recall")
    if picks:
        curves.legend(loc="upper right", fontsize=8)
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
