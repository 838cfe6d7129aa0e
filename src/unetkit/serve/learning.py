"""Learning while labelling (`unetkit annotate DIR`, on unless --no-learn): after every `every` newly
accepted masks, a background job fine-tunes the served click model on all accepted masks of DIR
(the click-training recipe, from the model in use), holding out the latest of them and a stable share
of the earlier ones, and the new model replaces the served one only if it needs no more simulated
clicks to reach IoU 0.90 on either group (serve/promotion.py). With routing (the default) both the
starting model and the latest accepted one serve, each picture by the one that did better on the
held-out pictures most like it (serve/routing.py), and a candidate is judged routed, against the
starting model. The job runs as child processes at a
lower priority with their own thread count and a time bound, so the page keeps answering clicks, and
a job that crashes or is killed changes nothing. Accepted masks on disk stay the source of truth;
DIR/.unetkit/ keeps each accepted model with its card and state.json names the one in use, so a
restart resumes with it."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from csv import writer
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unetkit.data.labels import write_atomic
from unetkit.deploy.export import export_safetensors
from unetkit.infer.checkpoint import load_model
from unetkit.serve.heldout import earlier, latest, pick, pictures
from unetkit.serve.interpolate import interpolate_checkpoints
from unetkit.serve.promotion import better, group_scores, metric, promoted
from unetkit.serve.routing import write_routed

STATE_DIR = ".unetkit"


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class LearnConfig:
    every: int = 10  # retrain after this many masks accepted since the last retrain
    minutes: float = 3.0  # the time bound of one retrain: training, both scorings and the promotion
    # compute threads of the retrain: every core the process may use. At nice 10 the page's requests take
    # a core back when they need it; idle between a person's clicks, the cores train. annotate_sim.py,
    # camvid-cars, AVX2 EPYC, 1 s before each click: 2 threads 52% fewer clicks over the 2nd half (114 ms
    # per click during a retrain), 1 thread 22% (124 ms).
    threads: int = field(default_factory=usable_cores)
    nice: int = 10  # the retrain's priority below the server's
    # which accepted masks score a candidate (never trained on): "latest+earlier", the most recently accepted
    # and a stable share of the ones before (a candidate must do no worse on each: serve/promotion.py);
    # "latest" alone (a folder whose next images hold other objects than its first is judged on what comes
    # next, but not on what it forgot), or "hash": a stable share by name (the first recipe: a candidate
    # tuned on early objects passed on early ones)
    heldout: str = "latest+earlier"
    heldout_share: float = 0.2  # of the accepted masks, scored and never trained on
    min_heldout: int = 3
    max_heldout: int = 8  # scoring grows with it and eats the bound: 19 held out left 73 s of 180 to train
    earlier_share: float = 0.2  # "latest+earlier": of the masks before the latest, held out by hash ...
    max_earlier: int = 4  # ... at most this many (max_heldout + max_earlier: 12 scored at most)
    min_train: int = 2
    clicks: int = 10  # the held-out protocol: clicks to IoU 0.90 (NoC@90), at most this many (RITM's clicker)
    zoom_in: bool = True  # ... with RITM's zoom-in, as the page's clicks are served (annotate --zoom-in)
    lr: float = 1e-3  # fine-tuning's (the encoder's 0.1x): best of 1e-4/3e-4/1e-3 on true masks (docs/clicks.md)
    # the starting model's share in every candidate (serve/interpolate.py): a retrain on the objects labelled
    # so far forgets the others. annotate_sim, 2nd half vs learning off: mixed folder +14.7% clicks at 0 (the
    # tuned model alone), +4.8% at 0.5; but ISBI cells 13% fewer at 0.5 where 0 had 32% (docs/clicks.md).
    # None: 0 with routing (it keeps the base for pictures the tuned model does worse on), else 0.5
    keep_base: float | None = None
    # serve each picture with the base or the retrained model, by what they cost on the held-out pictures
    # most like it (serve/routing.py); a candidate is then scored against the base model, routed
    route: bool = True


VAL_SHARE = 0.15  # of the pictures not held out: training's val split (the share it would cut itself)


def write_json(path: Path, data) -> None:
    """Atomic: a reader (or a restart) sees the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(data, indent=1))


def load_state(folder: Path, initial_model: str) -> dict:
    """DIR/.unetkit/state.json, or version 1 = the model annotate was started with."""
    path = folder / STATE_DIR / "state.json"
    if path.is_file():
        state = json.loads(path.read_text())
        if (folder / STATE_DIR / state["model"]).is_file() or state["version"] == 1:
            return state
    return {"version": 1, "model": initial_model, "accepted_at_retrain": 0, "history": []}


def model_path(folder: Path, state: dict) -> str:
    """The served model's path (version 1 may be builtin:NAME or the user's checkpoint)."""
    return str(folder / STATE_DIR / state["model"]) if state["version"] > 1 else state["model"]


STARTUP_S = 15  # a training child's start (imports, data check, model) before its time limit counts
PROMOTE_S = 10  # after the scorings: the candidate saved, swapped in, and the unlabelled images re-ranked


def train_limit(bound_s: float, scoring_s: float) -> int:
    """Seconds of training that keep a retrain inside `bound_s`: the bound less the start-up, two
    scorings as long as the one just measured (old model, then candidate) and the promotion; at least
    a quarter of it."""
    return max(1, round(max(bound_s / 4, bound_s - STARTUP_S - PROMOTE_S - 2 * scoring_s)))


def child_setup(nice: int) -> Callable[[], None]:
    """What a retrain's child runs before exec: a lower priority and, on Linux, death with the server
    (PR_SET_PDEATHSIG: uvicorn re-raises SIGTERM after shutdown, so atexit alone misses a kill)."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: nothing imported after

    def setup() -> None:
        if nice:
            os.nice(nice)
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return setup


class Learner:
    """Starts retrains as masks are accepted and swaps in the models that earn it. `pairs()` lists the
    accepted (image, mask) pairs; `swap(path)` serves the model at path and re-ranks the images."""

    def __init__(self, folder: Path, initial_model: str, config: LearnConfig, pairs: Callable, swap: Callable,
                 route: Callable | None = None):  # fmt: skip
        self.folder, self.config, self.pairs, self.swap = folder, config, pairs, swap
        # route(table): serve pictures by the accepted retrain's table (serve/routing.py route_setter)
        self.route = route if config.route else None
        self.keep = config.keep_base if config.keep_base is not None else (0.0 if self.route else 0.5)
        self.base = initial_model  # what every candidate keeps a share of (self.keep), routing's base
        self.state = load_state(folder, initial_model)
        self.lock = threading.Lock()
        self.job: threading.Thread | None = None
        self.process: subprocess.Popen | None = None
        self.started: float | None = None
        self.promote = promoted  # (new scores, old scores by held-out group) -> serve the candidate?
        if self.route is not None and self.state.get("route"):
            self.route(self.state["route"])  # a restart: the table the served model was accepted with
        atexit.register(self.stop)

    @property
    def current(self) -> str:
        return model_path(self.folder, self.state)

    def status(self) -> dict:
        running = self.running()
        return {
            "version": self.state["version"],
            "model": self.state["model"],
            "accepted": len(self.pairs()),
            "running": running,
            "running_seconds": round(time.time() - self.started, 1) if running and self.started else 0,
            "next_retrain_at": self.next_at(),
            "last": self.state["history"][-1] if self.state["history"] else None,
            "config": asdict(self.config),
        }

    def stop(self) -> None:
        """At exit: a retrain's child process does not outlive the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def running(self) -> bool:
        return self.job is not None and self.job.is_alive()

    def next_at(self) -> int:
        c = self.config
        return max(self.state["accepted_at_retrain"] + c.every, c.min_heldout + c.min_train)

    def accepted(self, force: bool = False) -> bool:
        """Called after each accepted mask: start a retrain when one is due (`force`: now, given the fewest
        masks a retrain can split); True if one started."""
        with self.lock:
            n = len(self.pairs())
            due = self.config.min_heldout + self.config.min_train if force else self.next_at()
            if self.running() or n < due:
                return False
            self.job = threading.Thread(target=self._retrain, args=(n,), daemon=True, name="unetkit-retrain")
            self.started = time.time()
            self.job.start()
            return True

    def _retrain(self, n: int) -> None:
        version = self.state["version"] + 1
        work = self.folder / STATE_DIR / "retrain" / f"v{version}-{n}-masks-{time.strftime('%Y%m%d-%H%M%S')}"
        record = {"candidate": version, "accepted": n, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        t0 = time.time()
        try:
            record.update(self._job(work, version))
        except Exception as e:  # a failed or killed retrain changes nothing but the history
            record.update({"outcome": "failed", "error": str(e)[-500:]})
        record["seconds"] = round(time.time() - t0, 1)
        with self.lock:
            self.state["accepted_at_retrain"] = n
            self.state["history"].append(record)
            write_json(self.folder / STATE_DIR / "state.json", self.state)
        print(f"annotate: retrain v{version}: {record['outcome']}", file=sys.stderr)

    def _run(self, cmd: list[str], log: Path, timeout: float) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.config.threads), "MKL_NUM_THREADS": str(self.config.threads)}
        nice = self.config.nice
        with log.open("a") as out:
            cmd_line = [sys.executable, "-m", "unetkit", *cmd]
            self.process = subprocess.Popen(
                cmd_line, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=child_setup(nice)
            )
            try:
                rc = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise TimeoutError(f"{cmd[0]} ran past {timeout:.0f} s and was stopped") from None
        if rc != 0:
            raise RuntimeError(f"unetkit {cmd[0]} exited with {rc} (see {log})")

    def _score(self, checkpoint: str, csv: Path, out: Path, log: Path, parts: dict[str, set[str]]) -> dict:
        """The clicks-to-IoU protocol on the held-out masks (the csv's test rows), in a child process: the
        score of each group of `parts` (image files as the csv names them) and of them all ("all", as the
        page shows it)."""
        clicks = str(self.config.clicks)
        # --recorded-split false: the csv's val rows, not the split the old model recorded for its own csv
        self._run(["evaluate", checkpoint, "--data", str(csv), "--split", "test", "--recorded-split", "false",
                   "--clicks", clicks, "--zoom-in", str(self.config.zoom_in).lower(), "--out", str(out)],
                  log, 600)  # fmt: skip
        return group_scores(out / "per_image.csv", {**parts, "all": set().union(*parts.values())})

    def _heldout(self, groups: dict[str, list[str]], pairs: list) -> dict[str, set[str]]:
        """The held-out stems by group (serve/promotion.py): "latest" (or "hash"), and with
        "latest+earlier" a share of the earlier pictures where enough stay to train on."""
        c = self.config
        if c.heldout == "hash":
            return {"hash": pick(groups, c.heldout_share, c.min_heldout, c.max_heldout)}
        parts = {"latest": latest(groups, pairs, c.heldout_share, c.min_heldout, c.max_heldout)}
        if c.heldout == "latest+earlier":
            early = earlier(groups, parts["latest"], c.earlier_share, c.max_earlier)
            rest = sum(img.stem not in parts["latest"] | early for img, _ in pairs)
            parts |= {"earlier": early} if early and rest >= c.min_train else {}
        return parts

    def _split_csv(self, work: Path, pairs: list) -> tuple[Path, dict[str, set[str]], set[str]]:
        """work/data.csv: the accepted pairs with the held-out ones as test (by group: `_heldout`) and a val
        share of the rest for training's progress (never its pick), a picture's copies in one split."""
        groups = pictures([img for img, _ in pairs])  # each image read once
        parts = self._heldout(groups, pairs)
        held = set().union(*parts.values())
        rest = {k: stems for k, stems in groups.items() if k not in held}
        rows = [img.stem for img, _ in pairs]  # an image's stem once per mask (a tool's objects share one)
        n_rest = sum(s not in held for s in rows)
        val = pick(rest, VAL_SHARE, 1) if n_rest >= 3 else set()  # as split_pairs: none below 3
        val = val if sum(s in val for s in rows) <= n_rest // 2 else set()  # a picture labelled many times trains
        work.mkdir(parents=True, exist_ok=True)
        csv = work / "data.csv"
        split = {**dict.fromkeys(held, "test"), **dict.fromkeys(val, "val")}
        with csv.open("w", newline="") as f:
            rows = [(img.resolve(), mask.resolve(), split.get(img.stem, "train")) for img, mask in pairs]
            writer(f).writerows([("image", "mask", "split"), *rows])
        return csv, parts, val

    def _train(self, work: Path, csv: Path, log: Path, t0: float, scoring: float) -> tuple[Path, int]:
        """The candidate: the served model fine-tuned on the csv's train rows within the retrain's bound
        (less the two scorings), then averaged with the starting model (keep_base); and its time limit."""
        c = self.config
        _, meta = load_model(self.current)
        run = work / "run"
        limit = train_limit(c.minutes * 60, scoring)  # the whole job, both scorings included, fits
        # The held-out rows are the csv's test split: training never sees them, not even to pick its best
        # epoch (that would flatter the candidate), so the candidate is the end of the schedule, last.pt.
        # --split 1,0,0: training cuts no val of its own (it would split a picture's copies); the csv's is it.
        train = ["train", "--data", str(csv), "--interactive", "--init", self.current, "--out", str(run),
                 "--resize", meta.resize, "--size", ",".join(map(str, meta.size)), "--epochs", "1000",
                 "--fill-time-limit", "--time-limit", f"{limit}s", "--sample-every", "0",
                 "--lr", str(c.lr), "--encoder-lr-scale", "0.1", "--split", "1,0,0"]  # fmt: skip
        if meta.click_view_size:
            train += ["--view-size", str(meta.click_view_size)]
        if meta.click_first_zoom:
            train += ["--first-zoom", str(meta.click_first_zoom)]
        candidate = run / "checkpoints" / "last.pt"
        try:  # the bound holds even if the child started slowly: stopped in time, its last epoch is kept
            self._run(train, log, max(limit + STARTUP_S, t0 + c.minutes * 60 - time.time() - scoring - PROMOTE_S))
        except TimeoutError:
            if not candidate.is_file():
                raise
        if self.keep > 0:
            candidate = interpolate_checkpoints(self.base, str(candidate), self.keep, work / "candidate.safetensors")
        return candidate, limit

    def _routed(self, work: Path, files: dict[str, set[str]]) -> tuple[tuple[list, list[bool]], dict]:
        """((the routing table, which held-out masks routing gave the candidate), the routed pair's group
        scores): each held-out mask scored by the model the others route it to (serve/routing.py)."""
        old, new = work / "eval-old" / "per_image.csv", work / "eval-new" / "per_image.csv"
        rows, choices = write_routed(old, new, work / "routed.csv")
        return (rows, choices), group_scores(work / "routed.csv", {**files, "all": set().union(*files.values())})

    def _job(self, work: Path, version: int) -> dict:
        """Train a candidate from the current model, score both on the held-out masks, promote or not."""
        c = self.config
        pairs = self.pairs()
        csv, parts, val = self._split_csv(work, pairs)
        log, t0 = work / "log.txt", time.time()
        files = {g: {str(img.resolve()) for img, _ in pairs if img.stem in stems} for g, stems in parts.items()}
        old = self._score(self.base if self.route else self.current, csv, work / "eval-old", log, files)
        candidate, limit = self._train(work, csv, log, t0, time.time() - t0)
        new = self._score(str(candidate), csv, work / "eval-new", log, files)
        table = None
        if self.route is not None:  # judged as served: each held-out picture by the model routing picks
            table, new = self._routed(work, files)
        held = set().union(*parts.values())
        result = {
            "heldout": sum(img.stem in held for img, _ in pairs),
            "trained_on": sum(img.stem not in held and img.stem not in val for img, _ in pairs),
            "score_old": old["all"]["noc90"],
            "score_new": new["all"]["noc90"],
            "iou_old": old["all"]["iou"],
            "iou_new": new["all"]["iou"],
            "metric": metric(old["all"], c.clicks),
            "groups": {g: {"heldout": len(parts[g]), "old": old.get(g), "new": new.get(g)} for g in parts},
            "train_limit_s": limit,
            "keep_base": self.keep,
            "scored_against": "the base model; the candidate routed" if table is not None else "the served model",
            "routed_to_candidate": sum(table[1]) if table is not None else None,
        }
        if not self.promote({g: new[g] for g in parts if g in new}, {g: old[g] for g in parts if g in old}):
            return {**result, "outcome": "rejected (worse on the held-out masks)"}
        if table is not None and not better(new["all"], old["all"]):
            return {**result, "outcome": "rejected (routing would never pick it)"}
        model, new_meta = load_model(candidate)
        name = f"models/v{version}.safetensors"
        export_safetensors(model, new_meta, self.folder / STATE_DIR / name)
        card = {**result, "version": version, "from": self.state["model"], "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(self.folder / STATE_DIR / f"models/v{version}.card.json", card)
        route = [r.to_dict() for r in table[0]] if table is not None else None
        if self.route is not None:  # first: the swap re-ranks the images, and clicks go on meanwhile
            self.route(route)
        self.swap(str(self.folder / STATE_DIR / name))
        with self.lock:
            self.state.update(version=version, model=name, route=route)
        return {**result, "outcome": "accepted"}
