"""`unetkit label-studio MODEL`: Label Studio's ML backend protocol on unetkit's FastAPI app.

GET /health; POST /setup (the project's labelling config, read once); POST /predict (tasks -> results:
a segmentation model pre-labels every class the config names, a click model its automatic mask, and
answers smart keypoints with its mask, clicked in order as annotate does, zoom-in included); POST
/webhook (ANNOTATION_CREATED, _UPDATED and ANNOTATIONS_DELETED keep STATE's accepted masks current;
START_TRAINING retrains now) and POST /train (Label Studio's Start Training: every annotated task). The
retrain loop is annotate's (serve/learning.py): a candidate is served only if it is at least as good on
the latest accepted masks, and model_version names the model in use. Requests are bounded like serve's."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse, Response

from unetkit._version import __version__
from unetkit.data.formats.labelstudio import result_masks
from unetkit.errors import ConfigError, DataError
from unetkit.infer.inference import foreground
from unetkit.interactive.predictor import ClickPredictor
from unetkit.runtime import release_openmp_threads
from unetkit.serve.http import Gate, Limits, Served, UploadError, gated
from unetkit.serve.learning import LearnConfig, Learner
from unetkit.serve.ls_config import LabelConfig, parse_config
from unetkit.serve.ls_store import AnnotationStore
from unetkit.serve.ls_tasks import Source, context_clicks, mask_results, task_image

MAX_TASKS = 32  # per /predict request (Label Studio sends one for interactive requests)
SAVED = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETED = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")


@dataclass
class Backend:
    """What the routes share: the served model (swapped by learning), the config from /setup, where images
    come from, the accepted masks and the learner (click models with learning on)."""

    served: Served
    source: Source
    limits: Limits
    store: AnnotationStore
    learner: Learner | None = None
    config: LabelConfig | None = None
    zoom_in: bool = True
    auto: bool = True  # click models: pre-label with the automatic mask (no clicks), as annotate starts
    served_version: int = 1  # the state folder's model version at start (learning off: it stays)
    predictors: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"unetkit-v{self.learner.state['version'] if self.learner else self.served_version}"

    def predictor(self, seg) -> ClickPredictor:
        if id(seg) not in self.predictors:
            keep = self.predictors if len(self.predictors) < 2 else {}  # the served and the base model
            self.predictors = {**keep, id(seg): ClickPredictor(seg)}
        return self.predictors[id(seg)]

    def predict_task(self, task: dict, config: LabelConfig, context: dict | None) -> dict:
        _, array = task_image(task, config, self.source, self.limits, self.served.seg.in_channels)
        seg = self.served.pick(array)  # with learning's routing: the base or the retrained model
        regions = click_regions(self, seg, array, config, context) if seg.meta.interactive else (
            class_regions(seg, array, config))  # fmt: skip
        score = float(np.mean([r.get("score", 1.0) for r in regions] or [0.0]))
        return {"result": regions, "score": score, "model_version": self.version}

    def keep(self, task: dict, annotation: dict, config: LabelConfig, retrain: bool = True) -> int:
        """A submitted or updated annotation's regions become accepted masks (one object each); `retrain`:
        start a retrain if one is due."""
        data, _ = task_image(task, config, self.source, self.limits, self.served.seg.in_channels)
        masks = [m for _, m in result_masks(annotation, f"annotation {annotation.get('id')}") if m.any()]
        n = self.store.put(int(task["id"]), int(annotation["id"]), data, masks)
        if retrain and self.learner is not None:
            self.learner.accepted()
        return n


def click_regions(backend: Backend, seg, array, config: LabelConfig, context: dict | None) -> list[dict]:
    """The click model's mask for the request's keypoints, clicked one after another (each from the
    previous mask, RITM's zoom-in from the 2nd), as unetkit annotate's page would give."""
    h, w = array.shape[:2]
    clicks, label = context_clicks(context, h, w)
    predictor = backend.predictor(seg)
    if not clicks and not backend.auto:
        return []  # nothing until clicked
    session = predictor.session(array, zoom_in=backend.zoom_in)
    for click in clicks:
        session.add(click)
    probs = session.probs if clicks else predictor.probs(session.image, [])  # no clicks: the automatic mask
    mask = foreground(probs, predictor.threshold)
    score = float(probs[mask].mean()) if mask.any() else 0.0
    return mask_results(mask, config, config.label_for(label), score)


def class_regions(seg, array, config: LabelConfig) -> list[dict]:
    """A segmentation model's classes, each under the config's label of the same name (a binary model's
    foreground under the config's only label); classes the config does not name are left out."""
    pred = seg.predict(array)
    names = list(seg.meta.classes)
    out = []
    for c in range(1, len(names)):
        label = next((lb for lb in config.output.labels if lb.lower() == names[c].lower()), None)
        if label is None and len(names) == 2 and len(config.output.labels) == 1:
            label = config.output.labels[0]
        if label is not None:
            out += mask_results(pred == c, config, label)
    return out


def error(status: int, message: str) -> JSONResponse:
    print(f"label-studio backend: {message}", file=sys.stderr)
    return JSONResponse({"error": message, "detail": message}, status)


def create_backend(backend: Backend) -> FastAPI:
    seg = backend.served.seg
    release_openmp_threads()  # the model was loaded on this thread and runs on the gate's (as serve's app)
    gate = Gate(backend.limits, release_openmp=seg.engine == "torch")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        gate.pool.shutdown(wait=False)  # its thread ends, and with it its OpenMP team

    app = FastAPI(title="unetkit Label Studio ML backend", version=__version__, lifespan=lifespan)
    app.state.backend = backend

    @app.get("/health")
    @app.get("/")
    def health() -> dict:
        return {"status": "UP", "model_class": "unetkit", "model_version": backend.version}

    @app.post("/setup")
    def setup(body: Annotated[dict, Body()]):
        try:
            backend.config = parse_config(body.get("schema") or body.get("label_config") or "")
        except ConfigError as e:
            return error(400, str(e))
        backend.source.url = backend.source.url or (body.get("hostname") or "")
        backend.source.api_key = backend.source.api_key or (body.get("access_token") or "")
        return {"model_version": backend.version}

    @app.post("/predict")
    async def predict(body: Annotated[dict, Body()]):
        config = _config(backend, body)
        if isinstance(config, Response):
            return config
        context = body.get("context") or (body.get("params") or {}).get("context")
        results = []
        for task in (body.get("tasks") or [])[:MAX_TASKS]:
            done = await gated(gate, _safe(backend.predict_task), task, config, context)
            if isinstance(done, Response):
                return done
            if isinstance(done, UploadError):
                return error(done.status, str(done))
            results.append(done)
        return {"results": results, "model_version": backend.version}

    @app.post("/webhook")
    async def webhook(body: Annotated[dict, Body()]):
        return await _webhook(backend, gate, body)

    @app.post("/train")
    async def train(body: Annotated[dict, Body()]):
        return await _train(backend, gate, body)

    return app


def _config(backend: Backend, body: dict) -> LabelConfig | Response:
    """The config /setup read; a request's own label_config where /setup was skipped."""
    if backend.config is None:
        try:
            backend.config = parse_config(body.get("label_config") or "")
        except ConfigError as e:
            return error(400, str(e))
    return backend.config


def _safe(fn):
    def run(*args):
        try:
            return fn(*args)
        except (UploadError, DataError) as e:
            return e if isinstance(e, UploadError) else UploadError(422, str(e))

    return run


async def _train(backend: Backend, gate: Gate, body: dict):
    """Label Studio's "Start Training" (and every N annotations): all annotated tasks; each task's latest
    annotation is kept, then a retrain starts."""
    config = _config(backend, body)
    if isinstance(config, Response):
        return config
    kept = 0
    for task in body.get("annotations") or []:
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if anns:
            latest = max(anns, key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))
            done = await gated(gate, _safe(backend.keep), task, latest, config, False)
            if isinstance(done, Response | UploadError):
                return done if isinstance(done, Response) else error(done.status, str(done))
            kept += done
    started = backend.learner.accepted(force=True) if backend.learner else False
    return JSONResponse({"kept": kept, "started": started, "model_version": backend.version}, 201)


async def _webhook(backend: Backend, gate: Gate, body: dict):
    action = body.get("action", "")
    if action in DELETED:
        anns = body.get("annotations") or [body.get("annotation") or {}]
        removed = sum(backend.store.remove(int(a["id"])) for a in anns if "id" in a)
        return JSONResponse({"removed": removed}, 201)
    if action == "START_TRAINING":
        started = backend.learner.accepted(force=True) if backend.learner else False
        return JSONResponse({"started": started}, 201)
    if action not in SAVED:
        return JSONResponse({"ignored": action}, 200)
    project = body.get("project") if isinstance(body.get("project"), dict) else {}
    config = _config(backend, {"label_config": project.get("label_config")})
    if isinstance(config, Response):
        return config
    done = await gated(gate, _safe(backend.keep), body.get("task") or {}, body.get("annotation") or {}, config)
    if isinstance(done, Response):
        return done
    if isinstance(done, UploadError):
        return error(done.status, str(done))
    return JSONResponse({"kept": done, "model_version": backend.version}, 201)


def learner_for(seg, state: Path, initial: str, config: LearnConfig | None, store: AnnotationStore, swap, route=None):
    """Annotate's learner over the accepted masks, for click models with learning on; `route` serves
    pictures by the accepted retrain's table (serve/routing.py route_setter)."""
    if config is None or not seg.meta.interactive:
        return None
    return Learner(state, initial, config, store.pairs, swap, route)
