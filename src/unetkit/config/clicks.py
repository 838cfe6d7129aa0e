"""The click-guided (interactive) training section of TrainConfig."""

from __future__ import annotations

from dataclasses import dataclass

from unetkit.config.fields import opt, require


@dataclass(frozen=True)
class ClickConfig:
    """Click-guided (interactive) training: the image plus positive/negative click disks and the previous
    mask as three more input channels, trained on simulated clicks (RITM's scheme)."""

    interactive: bool = opt(False, "train a click-guided model: each sample is one object, with simulated clicks")
    click_radius: int = opt(5, "click disk radius in pixels at the network's input resolution")
    click_iters: int = opt(3, "most corrective clicks per sample, placed on the model's own errors")
    auto_share: float = opt(0.1, "share of samples with no clicks (the automatic prediction)")
    zoom_share: float = opt(0.5, "share of samples cropped around their object at a random scale")
    whole_share: float = opt(0.5, "share of samples whose object is all foreground (else one region)")
    object_crops: float = opt(
        0.9,
        "crop mode: share of training crops placed so they hold an object pixel (a uniform crop of an image "
        "with one small labelled object usually misses it, and then teaches only 'nothing here')",
    )
    composites: float = opt(
        0.0,
        "share of training pictures that get objects of other pictures pasted on them, shrunk, at random "
        "places (many small objects among others; the click target is drawn among all of them)",
    )
    composite_objects: int = opt(4, "most objects pasted on one picture (composites)")
    first_zoom: float = opt(
        0.0,
        "recorded in the checkpoint: after the 1st click, if the object found is smaller than this share of "
        "the image's longer side, predict again on a box around it at a higher scale (0 = off)",
    )
    prev_mask: bool = opt(True, "feed the previous prediction back as an input channel")
    val_clicks: int = opt(3, "clicks simulated per validation image (score: mean IoU over them)")
    view_size: int = opt(
        0,
        "crop-mode models: the longer side, in px, the image (or zoom box) is scaled to when predicting, aspect "
        "kept; 0 = the image at its own size, a zoom box at the training size (recorded in the checkpoint)",
    )

    def __post_init__(self) -> None:
        require(self.click_radius >= 1, "click_radius", "must be >= 1")
        require(0 <= self.click_iters <= 20, "click_iters", "must be 0..20")
        require(1 <= self.composite_objects <= 16, "composite_objects", "must be 1..16")
        for name in ("auto_share", "zoom_share", "whole_share", "object_crops", "composites", "first_zoom"):
            require(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        require(1 <= self.val_clicks <= 20, "val_clicks", "must be 1..20")
        require(self.view_size == 0 or 32 <= self.view_size <= 4096, "view_size", "use 0 or 32..4096 px")
