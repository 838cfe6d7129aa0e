"""Which accepted masks a retrain holds out to score its candidate (serve/learning.py): never trained on
by that candidate, and a picture labelled several times (once per object) held out or trained on whole."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _rank(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16**12


def pictures(images: list[Path]) -> dict[str, list[str]]:
    """Stems by picture: images with the same content (one picture labelled once per object) are one
    picture, named by its first stem."""
    groups: dict[str, list[str]] = {}
    for image in images:
        groups.setdefault(hashlib.sha256(image.read_bytes()).hexdigest(), []).append(image.stem)
    return {min(stems): stems for stems in groups.values()}


def pick(groups: dict[str, list[str]], share: float, minimum: int, maximum: int = 0) -> set[str]:
    """The accepted images held out for scoring, by group (a picture's copies, see `pictures`: held out
    or trained on together): the groups whose name hashes below `share` (with `maximum`, only the lowest
    of them, while they hold at most that many images), topped up with the next lowest hashes until at
    least `minimum` images are held out. An image trained on never becomes held out later (that would
    flatter the model trained on it); a top-up group, or one that a new lower hash pushes past
    `maximum`, joins training."""
    chosen, count = set(), 0
    for k in sorted((k for k in groups if _rank(k) < share), key=_rank):
        if maximum and chosen and count + len(groups[k]) > maximum:
            break  # a prefix of the hash order: once pushed out, a group never comes back
        chosen.add(k)
        count += len(groups[k])
    for k in sorted((k for k in groups if k not in chosen), key=_rank):
        if count >= minimum:
            break
        chosen.add(k)
        count += len(groups[k])
    return {s for k in chosen for s in groups[k]}


def latest(groups: dict[str, list[str]], pairs: list[tuple[Path, Path]], share: float, minimum: int,
           maximum: int = 0) -> set[str]:  # fmt: skip
    """The most recently accepted pictures (by their masks' modification times, a picture's newest mask
    counting), `share` of the accepted images, at least `minimum` and at most `maximum` (0: no cap),
    whole pictures only: the candidate is judged on what the person labels now, not on the objects it
    was tuned on (a folder of several kinds of objects moves on; annotate_sim's mixed folder)."""
    when: dict[str, int] = {}
    for image, mask in pairs:
        when[image.stem] = max(when.get(image.stem, 0), mask.stat().st_mtime_ns)
    order = sorted(groups, key=lambda k: max(when.get(s, 0) for s in groups[k]), reverse=True)
    total = sum(len(v) for v in groups.values())
    target = max(minimum, round(share * total))
    target = min(target, maximum) if maximum else target
    chosen, count = set(), 0
    for k in order:
        if count >= target:
            break
        chosen.add(k)
        count += len(groups[k])
    return {s for k in chosen for s in groups[k]}


def earlier(groups: dict[str, list[str]], recent: set[str], share: float, maximum: int) -> set[str]:
    """A stable share of the pictures accepted before the `recent` ones (`pick` by hash, no minimum, at
    most `maximum` images), held out beside them: a candidate tuned on what is labelled now must not
    have forgotten what came before. As the pool grows a held-out picture may move to training, never
    back (a picture that leaves `recent` joins the pool held out or trained on from then on)."""
    return pick({k: stems for k, stems in groups.items() if not recent & set(stems)}, share, 0, maximum)
