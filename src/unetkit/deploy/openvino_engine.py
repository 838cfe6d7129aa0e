"""OpenVINO on the CPU, with graphs compiled for the input shapes that come again.

The raw graph takes any size (its H and W are dynamic), and OpenVINO runs such a graph slower than one
compiled for a fixed shape: the shipped click model's network at 320x320 on the AVX2 EPYC ran 1.40-1.94x
faster int8 and 1.14-1.27x fp32 compiled for the shape (`benchmarks/bench_openvino_shapes.py`, five runs).
Compiling costs 0.5-1.5 s (same benchmark), so an fp32/bf16 graph is compiled for a shape in a
background thread once the shape comes a second time (every click on one image, tiles, a folder of one
size), and calls run on the dynamic graph until it is ready.

An int8 graph never runs dynamic: OpenVINO 2026.4 ran the shipped click model's int8 graph with dynamic
H and W to masks that agreed with onnxruntime's (the runtime the int8 gate scores) on 24.6% of the pixels
on average (min 6.3%) over the first clicks of 50 GrabCut photos (AVX2 EPYC), and on 99.74% (min 97.2%)
compiled for each shape (same benchmark); so an int8 graph is compiled for a shape at its first call,
in the background while a stand-in (onnxruntime on the same graph, what the gate scored) answers, or
waited for where there is none. Inputs are zero-padded to the network's multiple first, as the graph
itself would pad them: fewer shapes to compile, and the quantized graph reshapes only at such sizes."""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

from unetkit.errors import ConfigError
from unetkit.runtime import cpu_has_fast_bf16

Shape = tuple[int, ...]
BIG_GRAPH = 64 * 2**20  # fp32/bf16 graphs larger than this stay dynamic: the seed network's (118 MB) ran
# 0.92x / 0.96x / 1.26x per shape at 512x512, within the spread, and each graph added 285-384 MB to the process
# (bench_openvino_shapes.py --seed-network, AVX2 EPYC)


class StaticShapes:
    """Compiled graphs by input shape, least recently used dropped beyond `limit` graphs or `max_pixels`
    input pixels in all (each graph keeps its own activation buffers), the last one always kept; each
    built by `compile_for(shape)` in a background thread on the shape's `after`-th sighting, `budget` of
    them in all (a folder of ever new sizes would otherwise keep a core compiling: past it, new shapes
    stay with the caller's stand-in); a shape whose compile failed is not tried again (its error in
    `failed`)."""

    def __init__(
        self, compile_for, limit: int = 8, after: int = 2, budget: int = 32, max_pixels: int = 8 * 320 * 320
    ) -> None:
        self.compile_for, self.limit, self.after, self.budget = compile_for, limit, after, budget
        self.max_pixels, self.remember = max_pixels, 64
        self.ready: OrderedDict[Shape, tuple] = OrderedDict()  # shape -> (compiled, its per-thread requests)
        self.seen: OrderedDict[Shape, int] = OrderedDict()
        self.pending: dict[Shape, threading.Thread] = {}
        self.failed: dict[Shape, str] = {}
        self.lock = threading.Lock()

    def get(self, shape: Shape, wait: bool = False):
        """The compiled graph of `shape` and its thread-local requests, or None (not compiled yet; with
        `wait`, compiled now unless its compile failed)."""
        if wait:
            return self._waited(shape)
        with self.lock:
            if shape in self.ready:
                self.ready.move_to_end(shape)
                return self.ready[shape]
            count = self.seen.pop(shape, 0) + 1
            self.seen[shape] = count
            while len(self.seen) > self.remember:
                self.seen.popitem(last=False)
            if count < self.after or shape in self.pending or shape in self.failed or self.budget <= 0:
                return None
            self.budget -= 1
            self._spawn(shape)
        return None

    def _waited(self, shape: Shape):
        self.prepare(shape)
        with self.lock:
            if shape in self.failed:
                return None
            if shape in self.ready:
                self.ready.move_to_end(shape)
                return self.ready[shape]
        # dropped by another thread's graph since: compiled again, for this call only
        return self.compile_for(shape), threading.local()

    def pixels(self) -> int:
        return sum(math.prod(shape[:1] + shape[2:]) for shape in self.ready)

    def prepare(self, shape: Shape) -> None:
        """Compile for `shape` now and wait (what timing an engine needs: no compile running beside it)."""
        with self.lock:
            thread = self.pending.get(shape)
            if thread is None and shape not in self.ready and shape not in self.failed:
                thread = self._spawn(shape)
        if thread is not None:
            thread.join()

    def _spawn(self, shape: Shape) -> threading.Thread:
        """Start compiling `shape` (the caller holds the lock). Not a daemon thread: a process that ends
        waits for it rather than tearing OpenVINO down mid-compile."""
        thread = self.pending[shape] = threading.Thread(target=self._build, args=(shape,), name="openvino-shape")
        thread.start()
        return thread

    def _build(self, shape: Shape) -> None:
        try:
            compiled, error = self.compile_for(shape), None
        except Exception as e:  # the dynamic graph or the stand-in answers instead (an int8 call without one: an error)
            compiled, error = None, f"{type(e).__name__}: {e}"
        with self.lock:
            self.pending.pop(shape, None)
            if compiled is None:
                self.failed[shape] = error
                return
            self.ready[shape] = (compiled, threading.local())
            while len(self.ready) > 1 and (len(self.ready) > self.limit or self.pixels() > self.max_pixels):
                self.ready.popitem(last=False)


class OpenVinoEngine:
    """OpenVINO on the CPU at the precision asked: `fp32` pins OpenVINO's inference precision to f32 on
    every CPU (its CPU plugin would otherwise pick bf16 by itself where the CPU has native bf16);
    `auto` or `bf16` run bf16 where the CPU has it (AMX or AVX512-BF16), else f32. `precision` then
    says what runs: fp32, bf16 or int8 (an int8 graph).
    `multiple`: the network's padding multiple (2**depth), what inputs are padded to before a call.
    `stand_in`: what answers an int8 call while its shape's graph compiles (None: the call waits);
    fp32/bf16 calls are answered by the dynamic graph meanwhile."""

    name = "openvino"

    def __init__(
        self,
        onnx_path: Path,
        threads: int,
        multiple: int = 1,
        static_shapes: int = 8,
        stand_in=None,
        precision: str = "auto",
    ):
        import openvino as ov

        self.core = ov.Core()
        hint = inference_precision(precision)
        self.config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
        self.source = self.core.read_model(str(onnx_path))
        self.precision = "int8" if ".int8." in Path(onnx_path).name else {"f32": "fp32"}.get(hint, hint)
        self.multiple = multiple
        self.requests = threading.local()  # an infer request is not thread-safe: one per calling thread
        int8 = self.precision == "int8"  # never dynamic (module docstring)
        self.model = None if int8 else self.core.compile_model(self.source, "CPU", self.config)
        self.stand_in = stand_in if int8 else None
        big = Path(onnx_path).stat().st_size > BIG_GRAPH and not int8
        # compile_for holds no reference to the engine: no cycle, so the engine and its OpenVINO objects go
        # when the last reference does, not whenever (and in whichever thread) the cyclic collector runs
        compile_for = functools.partial(compile_static, self.core, self.source, self.config)
        self.shapes = StaticShapes(compile_for, static_shapes, after=1 if int8 else 2, budget=0 if big else 32)

    def eval(self):
        return self

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        m = self.multiple
        pad_h, pad_w = (-x.shape[-2]) % m, (-x.shape[-1]) % m
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def prepare(self, shape: Shape) -> None:
        """Compile for inputs of `shape` (before padding) now, and wait: what timing an engine needs."""
        self.shapes.prepare(tuple(self.padded(torch.empty(shape, device="meta")).shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.padded(x.float()).contiguous().cpu()
        static = self.shapes.get(tuple(x.shape), wait=self.model is None and self.stand_in is None)
        if static is not None:
            out = infer(static, x)
        elif self.model is not None:
            out = infer((self.model, self.requests), x)
        elif self.stand_in is not None:
            out = self.stand_in(x)
        else:
            raise ConfigError(
                f"engine openvino-int8: its graph does not compile for input {tuple(x.shape)} "
                f"({self.shapes.failed.get(tuple(x.shape))}); use --engine onnxruntime-int8"
            )
        return out[..., :h, :w].contiguous()


def inference_precision(precision: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for unetkit's precision: f32 when fp32 is asked (or the CPU
    lacks native bf16), bf16 for auto/bf16 on a CPU with AMX or AVX512-BF16."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"engine openvino: precision {precision!r}; use auto, fp32 or bf16")
    return "bf16" if precision != "fp32" and cpu_has_fast_bf16() else "f32"


def compile_static(core, source, config: dict, shape: Shape):
    """`source` (the dynamic graph) compiled for inputs of exactly `shape`."""
    model = source.clone()
    model.reshape(list(shape))
    return core.compile_model(model, "CPU", config)


def infer(entry: tuple, x: torch.Tensor) -> torch.Tensor:
    """Each serving thread runs its own infer request (the compiled model's own call shares one between
    threads, unsafe with more than one slot); the input is read in place, the output copied once."""
    compiled, local = entry
    request = getattr(local, "request", None)
    if request is None:
        request = local.request = compiled.create_infer_request()
    request.infer(x.numpy(), share_inputs=True)
    return torch.from_numpy(request.get_output_tensor(0).data.copy())
