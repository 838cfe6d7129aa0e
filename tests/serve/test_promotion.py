"""The promotion rule of learning while labelling: scores per held-out group from evaluate's
per_image.csv, and a candidate served only if it does no worse on every group."""

import numpy as np

from unetkit.interactive.evaluate import summarize
from unetkit.serve.promotion import better_or_equal, group_scores, metric, promoted, score


def test_fewer_clicks_win_and_equal_clicks_need_no_lower_iou():
    old = {"noc90": 4.0, "iou": 0.85, "failed": 0.1}
    assert better_or_equal({"noc90": 4.0, "iou": 0.85}, old) and better_or_equal({"noc90": 3.5, "iou": 0.6}, old)
    assert not better_or_equal({"noc90": 4.5, "iou": 0.99}, old)  # more clicks: never served
    assert not better_or_equal({"noc90": 4.0, "iou": 0.84}, old)  # equal clicks, lower IoU
    assert metric(old, 10).startswith("clicks to IoU 0.90")


def test_where_most_masks_never_reach_090_the_mean_iou_decides():
    """ISBI-like: 3 of 4 held-out cells stay below 0.90 in all 10 clicks, so NoC@90 is mostly the cap
    (10) and a candidate with a clearly higher IoU curve is served though it lost a click on the one
    that reached; with most reaching 0.90, clicks decide as before."""
    capped = np.array([[0.5 + 0.01 * k for k in range(10)]] * 3)  # never 0.90
    old = score(summarize(np.vstack([capped, [[0.85, 0.91] + [0.92] * 8]]), 10))
    new = score(summarize(np.vstack([capped + 0.05, [[0.85, 0.88, 0.91] + [0.92] * 7]]), 10))
    assert old["failed"] == 0.75 and old["noc90"] == (3 * 10 + 2) / 4 and new["noc90"] == (3 * 10 + 3) / 4
    assert new["iou"] > old["iou"] and better_or_equal(new, old) and not better_or_equal(old, new)
    assert metric(old, 10).startswith("mean IoU")
    reached = {**old, "failed": 0.25}  # the same numbers where most reached 0.90: one more click loses
    assert not better_or_equal({**new, "failed": 0.25}, reached)


def per_image_csv(path, rows: dict[str, list[float]]):
    """per_image.csv as evaluate writes it (interactive/evaluate.py): image, noc85, noc90, iou_1..iou_n."""
    from unetkit.interactive.clicks import clicks_to_reach

    n = len(next(iter(rows.values())))
    lines = ["image,noc85,noc90," + ",".join(f"iou_{k}" for k in range(1, n + 1))]
    for image, ious in rows.items():
        nocs = [clicks_to_reach(np.array(ious), t, n) for t in (0.85, 0.90)]
        lines.append(",".join([image, *map(str, nocs), *(f"{v:.4f}" for v in ious)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_group_scores_are_the_protocols_numbers_over_each_groups_images(tmp_path):
    rows = {"/d/a.png": [0.5, 0.95, 0.97], "/d/b.png": [0.91, 0.92, 0.93], "/d/c.png": [0.4, 0.6, 0.8]}
    path = per_image_csv(tmp_path / "per_image.csv", rows)
    got = group_scores(path, {"latest": {"/d/a.png", "/d/b.png"}, "earlier": {"/d/c.png"}, "none": {"/d/x.png"}})
    assert set(got) == {"latest", "earlier"}  # a group with no scored image is left out
    # a: 0.90 at click 2, b: at click 1 -> NoC@90 1.5; IoU over clicks and images: (2.42 + 2.76) / 6
    assert got["latest"] == {"noc90": 1.5, "iou": round((2.42 + 2.76) / 6, 4), "failed": 0.0}
    assert got["earlier"] == {"noc90": 3.0, "iou": 0.6, "failed": 1.0}  # never 0.90: the cap, failed
    whole = score(summarize(np.array(list(rows.values())), 3))  # the same as evaluate's own summary
    assert group_scores(path, {"all": set(rows)})["all"] == whole


def test_an_image_labelled_once_per_object_counts_each_mask(tmp_path):
    """A labelling tool's task: one image, a mask per object, a per_image.csv row per mask."""
    path = per_image_csv(tmp_path / "per_image.csv", {"/d/a.png": [0.95, 0.96], "/d/b.png": [0.5, 0.6]})
    text = path.read_text().splitlines()
    path.write_text("\n".join([*text, text[2].replace("/d/b.png", "/d/a.png")]) + "\n")  # a's 2nd object
    got = group_scores(path, {"task": {"/d/a.png"}})["task"]
    assert got == {"noc90": 1.5, "iou": round((0.95 + 0.96 + 0.5 + 0.6) / 4, 4), "failed": 0.5}


def test_a_candidate_must_do_no_worse_on_every_group():
    """Issue 45 item 6: tuned on the latest objects and better on them, but worse on the earlier ones
    (forgotten): not served."""
    old = {"latest": {"noc90": 6.0, "iou": 0.7, "failed": 0.2}, "earlier": {"noc90": 3.0, "iou": 0.9, "failed": 0}}
    better_now = {"noc90": 4.0, "iou": 0.8, "failed": 0.1}
    assert promoted({"latest": better_now, "earlier": old["earlier"]}, old)
    assert not promoted({"latest": better_now, "earlier": {"noc90": 3.5, "iou": 0.9, "failed": 0}}, old)
    assert not promoted({"latest": better_now}, old)  # a group it was not scored on: not served
    assert promoted({"latest": better_now}, {"latest": old["latest"]})  # no earlier group yet
