"""torchrun with 2 CPU processes (gloo), for the seed network and a pretrained-family encoder:
identical weights on both ranks, metrics equal to 1 process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unetkit.config import EvaluateConfig
from unetkit.infer.evaluation import evaluate_checkpoint

ENCODERS = ("unet", "efficientnet-lite0")


@pytest.mark.slow
def test_two_process_ddp(demo_dir, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(worker),
        str(demo_dir),
        str(tmp_path),
        ",".join(ENCODERS),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"exit {done.returncode}\nSTDERR:\n{done.stderr[-6000:]}\nSTDOUT:\n{done.stdout[-2000:]}"
    )
    assert done.stdout.count("run folder:") == len(ENCODERS)  # rank 0 alone logs
    for encoder in ENCODERS:
        check_run(tmp_path / encoder, demo_dir)


def check_run(out: Path, demo_dir: Path) -> None:
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"{out.name}: {key}"
    ckpt = out / "run" / "checkpoints" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for key in r0:
        assert torch.equal(saved[key], r0[key]), f"{out.name}: {key}"
    m0 = json.loads((out / "rank0.json").read_text())
    m1 = json.loads((out / "rank1.json").read_text())
    assert m0["world"] == 2 and m0["cm"] == m1["cm"]
    config = EvaluateConfig(checkpoint=str(ckpt), data=str(demo_dir), split="val", precision="fp32", device="cpu")
    single = evaluate_checkpoint(config, progress=False)
    assert single["confusion_matrix"] == m0["cm"]
