"""The shipped click model's score against its CPU-hours of training (issue 45, item 3): each stage of
builtin:clicks as its rows in click_table.jsonl and click_mix.jsonl scored it (20 clicks, view 320,
GrabCut all 50, CamVid test objects >= 400 px every 6th image, coco320's held-out pictures), against
the training seconds its card recorded. No model is run here: the rows come from click_table.py and
click_mix.py (their commands are in RESULTS), the seconds from the cards (git log of
src/unetkit/weights/clicks.md).

    python benchmarks/click_curve.py

RESULTS.md section click-curve is rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_section  # noqa: E402

HERE = Path(__file__).parent
OBJECTS_S = 35 * 60  # builtin:objects, which stage 1 starts from: its 35-minute limit (scripts/builtin_weights.py)


TABLE, MIX = "click_table", "click_mix"
# (stage, training seconds of that stage, where they come from, data, the rows' model names by file)
STAGES = [
    ("1", 2137, "card at e1c0a89, AMD EPYC AVX2", "DUTS",
     {TABLE: "clicks after its first 40 min (stage 1, shipped in e1c0a89)"}),
    ("2", 3046, "card at 6a90a7c, AMD EPYC AVX2", "DUTS",
     {TABLE: "clicks after 100 min (stage 2, shipped in 3820d3a)"}),
    ("3", 3475, "card at 53d9c73, Intel Xeon AMX bf16 (2.8x the EPYC's images/s)", "DUTS",
     {TABLE: "builtin:clicks (stage 3, 160 min)", MIX: "builtin:clicks (shipped)"}),
    ("4", 4356, "card at 5691e46, AMD EPYC AVX2", "DUTS + coco320", {MIX: "mixed stage (DUTS + coco320, 80 min)"}),
    ("5", 3068, "card at 48368bc, AMD EPYC AVX2", "DUTS + coco320",
     {MIX: "stage 5: the mixed recipe 55 min more (shipped 2026-12-08)"}),
]  # fmt: skip

CAMVID = ("CamVid test instances >= 400 px, every 6th image", "CamVid objects (103)")
# (column, the files' protocol names, zoom-in)
COLUMNS = [
    ("GrabCut NoC@90 / IoU@1", ("GrabCut", "GrabCut (50)"), False),
    ("GrabCut zoom-in NoC@90", ("GrabCut --zoom-in", "GrabCut (50)"), True),
    ("CamVid objects NoC@90 / IoU@1", CAMVID, False),
    ("CamVid objects zoom-in NoC@90 / IoU@1", (CAMVID[0] + " --zoom-in", CAMVID[1]), True),
    ("coco320 held-out zoom-in NoC@90 / IoU@1", ("coco320 held-out >= 400 px, every 3",), True),
]


def rows() -> list[dict]:
    out = []
    for name in (TABLE, MIX):
        for line in (HERE / f"{name}.jsonl").read_text().splitlines():
            out.append({**json.loads(line), "file": name})
    return out


def find(all_rows: list[dict], models: dict[str, str], protocols: tuple[str, ...], zoom: bool) -> dict | None:
    """A stage's first row for one column, click_table's before click_mix's (the order `rows` reads them):
    click_table's at view 320 (zoom-in in the protocol's name), click_mix's with zoom-in recorded and the
    first zoom the stage ships (0.2 for the mixed stages)."""
    for r in all_rows:
        if models.get(r["file"]) != r["model"] or r["protocol"] not in protocols:
            continue
        if r["file"] == MIX and (r["zoom_in"] != zoom or r.get("first_zoom_asked") not in ("0", "0.2", "ckpt")):
            continue
        if r["file"] == MIX and r.get("first_zoom_asked") == "0" and "mixed" in r["model"]:
            continue  # the mixed stages ship first zoom 0.2
        if r["file"] == TABLE and (r.get("view_size") != 320 or ("--zoom-in" in r["protocol"]) != zoom):
            continue
        return r
    return None


def cell(r: dict | None, iou: bool) -> str:
    if r is None:
        return "-"
    return f"{r['noc90']:.2f}" + (f" / {r['iou_at_clicks'][0]:.3f}" if iou else "")


def table(all_rows: list[dict]) -> str:
    head = "| stage | data | click training h (all, objects' 35 min included) | " + " | ".join(c[0] for c in COLUMNS)
    lines = [head + " | seconds from |", "|" + "---|" * (len(COLUMNS) + 4)]
    total = OBJECTS_S
    for stage, seconds, source, data, models in STAGES:
        total += seconds
        cells = [cell(find(all_rows, models, protos, zoom), "IoU" in col) for col, protos, zoom in COLUMNS]
        hours = f"{seconds / 3600:.2f} ({total / 3600:.2f})"
        lines.append(f"| {stage} | {data} | {hours} | " + " | ".join(cells) + f" | {source} |")
    return "\n".join(lines)


def main() -> None:
    title = "## The shipped click model against its CPU-hours of training (20 clicks, view 320)"
    note = (
        "Each stage starts from the one before (stage 1 from builtin:objects) and ends at the best validation "
        "score of its run; the scores are the rows of click_table.jsonl and click_mix.jsonl (fp32 best.pt or the "
        "int8 export), plain and with --zoom-in; '-' where no row was made. Targets (issue 45): GrabCut NoC@90 "
        "<= 2.8 and IoU@1 >= 0.80; CamVid objects zoom-in NoC@90 <= 9 and IoU@1 >= 0.45."
    )
    write_section("click-curve", f"{title}\n\nCommand: `python benchmarks/click_curve.py`. {note}\n\n{table(rows())}\n")


if __name__ == "__main__":
    main()
