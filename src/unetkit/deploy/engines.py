"""Inference engines behind the Segmenter: PyTorch, onnxruntime and OpenVINO run the same network on
the same normalised input, so pre- and post-processing (resize, tiling, TTA, threshold) stay one
path (inference.predict_logits). An engine is a callable (N, C, H, W) float -> (N, K, H, W) logits;
`load(path, engine) -> Segmenter` is how every command gets a model to run.

ONNX engines use the raw graph (graphs.py), written once per checkpoint into a cache folder
(`~/.cache/unetkit/engines`, or $UNETKIT_CACHE) and verified there like `unetkit export` does. The
int8 engines run that graph quantized (int8.py), built once per checkpoint beside it and refused when
its validation metric falls by more than int8.MAX_DROP; `auto` considers them only once one passed."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from unetkit.deploy.int8 import Int8Report, build_int8
from unetkit.deploy.openvino_engine import OpenVinoEngine
from unetkit.deploy.parity import sample_images
from unetkit.errors import ConfigError
from unetkit.infer import builtin
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.inference import run_model
from unetkit.infer.predict import Segmenter
from unetkit.runtime import setup

RUNTIMES = ("onnxruntime", "openvino")
ENGINES = ("torch", *RUNTIMES, *(f"{r}-int8" for r in RUNTIMES))


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int) -> None:
        import onnxruntime as ort

        self.precision = "int8" if ".int8." in Path(onnx_path).name else "fp32"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def eval(self):
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {"input": x})[0])


def checkpoint_file(ref: str | Path) -> Path:
    """The file behind a checkpoint reference (builtin:NAME -> the shipped file): what the cache keys on."""
    return builtin.get(str(ref)).path if builtin.is_ref(ref) else Path(ref)


def checkpoint_digest(checkpoint: Path) -> str:
    """The checkpoint's identity in the cache: its content hash, read once per file version (auto asks
    for it once per engine, and a seed-network checkpoint is 120 MB)."""
    stat = Path(checkpoint).stat()
    return _digest(str(Path(checkpoint).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


def cache_dir() -> Path:
    return Path(os.environ.get("UNETKIT_CACHE", Path.home() / ".cache" / "unetkit")) / "engines"


def onnx_for(checkpoint: Path, model, meta: ModelMeta, log=print) -> Path:
    """The raw ONNX graph of this checkpoint, exported (and verified) once into the cache."""
    digest = checkpoint_digest(checkpoint)
    path = cache_dir() / f"{digest}.onnx"
    if not path.is_file():
        from unetkit.deploy.export import export_onnx, verify_onnx  # torch.onnx costs 0.4 s to import: only here

        log(f"engine: exporting {checkpoint} to ONNX once ({path})")
        tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")
        export_onnx(model, meta, tmp, variant="raw")
        seg = Segmenter(model, meta, setup("cpu", "fp32", channels_last=False))
        bad = [p for p in verify_onnx(tmp, seg, sample_images(meta, []), "raw") if not p.ok]
        if bad:
            tmp.unlink()
            raise ConfigError(
                f"engine: the ONNX graph of {checkpoint} does not match PyTorch ({bad[0]}); use --engine torch"
            )
        tmp.replace(path)
    return path


def int8_for(checkpoint: Path, model, meta: ModelMeta, log=print, runtime: str = "onnxruntime") -> Path:
    """The checkpoint's int8 graph, built (calibrated, scored) once into the cache; a graph whose
    score fell by more than int8.MAX_DROP is refused with the numbers, here and on every later call,
    and so is a `runtime` that ran it to other masks than the scored onnxruntime did."""
    path = cache_dir() / f"{checkpoint_digest(checkpoint)}.int8.onnx"
    report = Int8Report.read(path.with_suffix(".json"))
    if report is None or not path.is_file():
        fp32 = onnx_for(checkpoint, model, meta, log)
        threads = torch.get_num_threads()
        others = {"openvino": lambda p: OpenVinoEngine(p, threads, 2**model.depth)} if _imports("openvino") else {}
        report = build_int8(model, meta, fp32, path, lambda p: OnnxRuntimeEngine(p, threads), log, others=others)
    if not report.passed:
        raise ConfigError(f"engine: {checkpoint}: {report}; use an fp32 engine (--engine openvino or onnxruntime)")
    refusal = report.runtime_refusal(runtime)
    if refusal:
        raise ConfigError(f"engine: {checkpoint}: {refusal}; use --engine onnxruntime-int8")
    return path


def int8_passed(checkpoint: str | Path, runtime: str = "onnxruntime") -> bool:
    """Whether this checkpoint's int8 graph was built and passed, and `runtime` runs it as scored (what
    `auto` asks before trying it)."""
    checkpoint = checkpoint_file(checkpoint)
    report = Int8Report.read(cache_dir() / f"{checkpoint_digest(checkpoint)}.int8.json")
    return report is not None and report.passed and report.runtime_refusal(runtime) is None


def _imports(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def make_engine(
    name: str, checkpoint: Path, model, meta: ModelMeta, device: torch.device, log=print, precision: str = "auto"
):
    """The callable that computes logits: the model itself for torch, else an ONNX runtime. `precision`
    (the run's: auto, fp32, bf16) is OpenVINO's: fp32 pins it to f32 where the CPU has bf16."""
    if name == "torch":
        return model
    if device.type != "cpu":
        raise ConfigError(f"engine: {name} runs on the CPU here; use --engine torch with --device {device}")
    runtime = name.removesuffix("-int8")
    if not _imports(runtime):
        raise ConfigError(f"engine: {runtime} is not installed; pip install 'unetkit[engines]' or use --engine torch")
    if name.endswith("-int8"):
        path = int8_for(checkpoint, model, meta, log, runtime)
    else:
        path = onnx_for(checkpoint, model, meta, log)
    threads = torch.get_num_threads()
    if runtime == "onnxruntime":
        return OnnxRuntimeEngine(path, threads)
    stand_in = OnnxRuntimeEngine(path, threads) if name.endswith("-int8") else None  # while a shape compiles
    ov_precision = precision if precision in ("fp32", "bf16") else "auto"
    return OpenVinoEngine(path, threads, multiple=2**model.depth, stand_in=stand_in, precision=ov_precision)


def installed(checkpoint: str | Path | None = None) -> list[str]:
    """torch and the ONNX runtimes that import; with a checkpoint, also their int8 engines once its
    int8 graph passed."""
    out = ["torch", *(name for name in RUNTIMES if _imports(name))]
    if checkpoint is not None:
        out += [f"{name}-int8" for name in out[1:] if int8_passed(checkpoint, name)]
    return out


def choose(checkpoint: Path, model, meta: ModelMeta, rt, log=print):
    """`auto`: time each installed engine on one image of the model's input size (after a warm-up)
    and keep the fastest; the choice is remembered per checkpoint and machine in the cache."""
    if rt.device.type != "cpu":
        return model, "torch"
    digest = checkpoint_digest(checkpoint)
    key = f"{digest}-{os.uname().machine}-{torch.get_num_threads()}t-{rt.precision}"
    memo = cache_dir() / "choices.json"
    choices = json.loads(memo.read_text()) if memo.is_file() else {}
    names = installed(checkpoint)
    if key in choices and set(choices[key]["ms"]) == set(names):  # measured with these same candidates
        name = choices[key]["engine"]
        return make_engine(name, checkpoint, model, meta, rt.device, log, rt.precision), name
    h, w = (meta.click_view_size,) * 2 if meta.click_view_size else meta.size  # the size it runs at
    x = torch.randn(1, model.config.in_channels, h, w)  # click models: image + click channels
    engines = {name: make_engine(name, checkpoint, model, meta, rt.device, log, rt.precision) for name in names}
    timings = _median_seconds(engines, x, rt)
    name = min(timings, key=timings.get)
    log("engine auto: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()) + f" per image; using {name}")
    memo.parent.mkdir(parents=True, exist_ok=True)
    choices[key] = {"engine": name, "ms": {k: round(v * 1000, 1) for k, v in timings.items()}}
    memo.write_text(json.dumps(choices, indent=1))
    return engines[name], name


def _median_seconds(engines: dict, x: torch.Tensor, rt, rounds: int = 7) -> dict[str, float]:
    """Each engine's time per image: the median of several rounds after a warm-up, the engines taking
    turns within each round, so that a slow spell of a shared machine slows all of them alike (timed
    one after the other, three runs each picked OpenVINO f32 over int8 on one run of the AVX2 EPYC and
    int8 on the next, though int8 was 25% faster there). A pause before each run lets the previous
    engine's worker threads stop spinning (back to back, they slowed OpenVINO from 48 to 73 ms), as
    between a person's clicks."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    with torch.no_grad():
        for engine in engines.values():
            if hasattr(engine, "prepare"):  # OpenVINO: its graph for this shape, compiled before it is timed
                engine.prepare(tuple(x.shape))
            run_model(engine, x, rt)  # warm-up
        for _ in range(rounds):
            for name, engine in engines.items():
                time.sleep(0.05)  # let the last engine's worker threads stop spinning: served alone, none spin
                t = time.perf_counter()
                run_model(engine, x, rt)
                times[name].append(time.perf_counter() - t)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def load(path: str | Path, engine: str = "torch", device: str = "auto", precision: str = "auto", log=None) -> Segmenter:
    """A checkpoint (or builtin:NAME, or a .safetensors export) ready to run in `engine`: torch,
    onnxruntime, openvino, their -int8 forms, or auto (the fastest installed, measured once per
    checkpoint and machine, and again once an int8 graph passed)."""
    if engine not in (*ENGINES, "auto"):
        raise ConfigError(f"engine: unknown engine {engine!r}; use " + " | ".join((*ENGINES, "auto")))
    seg = Segmenter.load(path, device, precision)
    if engine == "torch":
        return seg
    log = log or (lambda msg: print(msg, file=sys.stderr))
    file = checkpoint_file(path)
    if engine == "auto":
        runner, engine = choose(file, seg.model, seg.meta, seg.rt, log)
    else:
        runner = make_engine(engine, file, seg.model, seg.meta, seg.rt.device, log, seg.rt.precision)
    if engine == "torch":  # auto chose PyTorch
        return seg
    return Segmenter(runner, seg.meta, dataclasses.replace(seg.rt, precision="fp32", channels_last=False), engine)


def export_int8(checkpoint: str | Path, out: str | Path, log=print) -> Path:
    """`unetkit export --format onnx-int8`: the checkpoint's int8 raw graph (built and scored as
    --engine *-int8 builds it, so the engines reuse it) copied to `out`, its report to OUT.json; a
    graph refused by its score exits with the numbers and writes nothing."""
    model, meta = load_model(checkpoint)
    file = checkpoint_file(checkpoint)
    path = int8_for(file, model, meta, log)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out)
    shutil.copyfile(path.with_suffix(".json"), out.with_suffix(".json"))
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and its report {out.with_suffix('.json')}")
    return out
