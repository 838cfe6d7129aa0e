"""Run under torchrun by test_distributed.py: train, then save this rank's weights and val counts."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from unetkit.config import EvaluateConfig
from unetkit.config.io import resolve
from unetkit.distributed import exit_if_distributed
from unetkit.infer.evaluation import eval_dataset, evaluate
from unetkit.infer.predict import Segmenter
from unetkit.training.loop import fit

data, out = sys.argv[1], Path(sys.argv[2])
NETS = {  # the seed network at 2 levels; a pretrained family with its 4-level decoder (random weights: no extra)
    "unet": {"widths": (4, 8)},
    "efficientnet-lite0": {"widths": (4, 8, 8, 8), "encoder": "efficientnet-lite0", "encoder_weights": "none"},
}
for encoder in sys.argv[3].split(","):  # one launch for all: torchrun's start-up is most of the time
    overrides = {
        "model": NETS[encoder],
        "data": {"root": data, "size": (32, 32)},
        "epochs": 2,
        "batch_size": 2,
        "precision": "fp32",
        "sample_every": 0,
        "device": "cpu",
    }
    result = fit(resolve(overrides=overrides), out=out / encoder / "run")
    rank = dist.get_rank()
    torch.save(result.model.state_dict(), out / encoder / f"rank{rank}.pt")
    seg = Segmenter.load(result.last_checkpoint, device="cpu", precision="fp32")
    config = EvaluateConfig(checkpoint=str(result.last_checkpoint), data=data, split="val")
    ev = evaluate(seg, eval_dataset(seg, config, result.last_checkpoint)[0])
    counts = {"cm": ev.cm.tolist(), "world": dist.get_world_size()}
    (out / encoder / f"rank{rank}.json").write_text(json.dumps(counts))
exit_if_distributed(0)
