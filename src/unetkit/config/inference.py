"""Configuration of the commands that run a trained model: evaluate and predict (and serve)."""

from __future__ import annotations

from dataclasses import dataclass

from unetkit.config.schema import check_runtime, opt, require

EVAL_SPLITS = ("auto", "train", "val", "test", "all")
ENGINES = ("torch", "onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8", "auto")


@dataclass(frozen=True)
class InferenceOptions:
    """How a checkpoint runs, shared by evaluate and predict (and serve)."""

    checkpoint: str = opt("", "checkpoint file (.pt) written by unetkit train, or a .safetensors export")
    tta: bool = opt(False, "average predictions over the flips used in training")
    largest_component: bool = opt(False, "keep each class's largest region")
    fill_holes: bool = opt(False, "fill holes inside each class's regions")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    precision: str = opt("auto", "auto | fp32 | bf16 | fp16")
    engine: str = opt(
        "torch",
        "torch | onnxruntime | openvino | onnxruntime-int8 | openvino-int8 (quantized, refused if its val "
        "metric drops > 0.005) | auto (the fastest installed, measured once)",
    )

    def __post_init__(self) -> None:
        require(self.engine in ENGINES, "engine", "use " + "|".join(ENGINES))
        check_runtime(self.device, self.precision)


@dataclass(frozen=True)
class EvaluateConfig(InferenceOptions):
    """`unetkit evaluate`: a checkpoint scored on a dataset at the masks' own resolution (of the masks
    predict would write: the same post-processing)."""

    data: str = opt("", "dataset folder or CSV file")
    split: str = opt("auto", "auto (the run's own test split on its data, else all) | train | val | test | all")
    out: str | None = opt(None, "report folder; none = RUN/eval-SPLIT beside the checkpoint's run")
    recorded_split: bool = opt(
        True,
        "on the data the checkpoint trained on, its recorded split; false: the data's own split folders or CSV column",
    )
    mask_threshold: int = opt(0, "binary soft-edged masks: values >= T are foreground; 0 = the model's own")
    batch_size: int = opt(4, "images per forward pass")
    worst: int = opt(6, "images in worst.png")
    skip_bad: bool = opt(False, "skip pairs that fail the data check")
    ignore_value: int | None = opt(None, "mask value of unknown pixels, left out of metrics (e.g. 128: GrabCut's band)")
    clicks: int = opt(0, "click models: run the clicks-to-IoU protocol with up to N clicks per image (e.g. 20)")
    zoom_in: bool = opt(False, "with --clicks: from the 2nd click, predict on a box around the object (RITM)")
    view_size: int | None = opt(
        None, "with --clicks, crop-mode models: longer side the image is scaled to; none = the checkpoint's"
    )
    first_zoom: float | None = opt(
        None,
        "with --clicks: after the 1st click, re-predict objects smaller than this share zoomed in; none = "
        "the checkpoint's, 0 = off",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.first_zoom is None or 0 <= self.first_zoom <= 1, "first_zoom", "use a share in [0, 1]")
        require(0 <= self.clicks <= 100, "clicks", "must be 0..100")
        vs = self.view_size
        require(vs is None or vs == 0 or 32 <= vs <= 4096, "view_size", "use 0 (own size) or 32..4096 px")
        require(self.split in EVAL_SPLITS, "split", "use " + "|".join(EVAL_SPLITS))
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.worst >= 0, "worst", "must be >= 0")
        require(0 <= self.mask_threshold <= 65535, "mask_threshold", "must be 0..65535")


@dataclass(frozen=True)
class PredictConfig(InferenceOptions):
    """`unetkit predict`: images in, mask files out."""

    inputs: tuple[str, ...] = opt((), "image files, folders or globs")
    out: str = opt("", "output folder")
    overlay: bool = opt(True, "also write <name>_overlay.png")
    probs: bool = opt(False, "also write probability maps")
