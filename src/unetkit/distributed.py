"""What torchrun ranks agree on: stop decisions, timings, summed counts, rank 0's BatchNorm
statistics; and wrapping the model for DDP. Every function is a no-op in a single process."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

import torch

from unetkit.runtime import Runtime


def _dist():
    import torch.distributed as dist

    return dist


def _on(rt: Runtime, t: torch.Tensor) -> torch.Tensor:
    return t.to(rt.device) if rt.device.type == "cuda" else t


def min_over_ranks(rt: Runtime, value: int) -> int:
    """The smallest of every rank's `value`, so all ranks agree on a decision made from timings."""
    if not rt.distributed:
        return value
    t = _on(rt, torch.tensor([value]))
    _dist().all_reduce(t, op=_dist().ReduceOp.MIN)
    return int(t.item())


def any_rank(rt: Runtime, flag: bool) -> bool:
    """True if any rank wants to stop, so all ranks leave the loop at the same step."""
    if not rt.distributed:
        return flag
    t = _on(rt, torch.tensor([1.0 if flag else 0.0]))
    _dist().all_reduce(t)
    return bool(t.item() > 0)


def sum_over_ranks(rt: Runtime, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor summed over all ranks (on the CPU afterwards)."""
    if not rt.distributed:
        return list(tensors)
    out = []
    for t in tensors:
        t = _on(rt, t.clone())
        _dist().all_reduce(t)
        out.append(t.cpu())
    return out


def main_first(rt: Runtime, fn: Callable[[], object]) -> None:
    """Run `fn` on rank 0 while the others wait (e.g. writing files the others then read)."""
    if rt.is_main:
        fn()
    if rt.distributed:
        _dist().barrier()


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        _dist().barrier()


def sync_buffers(model: torch.nn.Module, rt: Runtime) -> None:
    """Give every rank rank 0's BatchNorm running statistics, so all ranks evaluate and save the
    same model (DDP syncs gradients, and buffers only at the start of each forward)."""
    if not rt.distributed:
        return
    for buf in model.buffers():
        _dist().broadcast(buf.data, 0)


def wrap_for_training(model: torch.nn.Module, rt: Runtime, sync_bn: bool, compile: bool):
    """(model, train_model): the plain model (saved, evaluated) and what the step runs (DDP, compiled)."""
    train_model = model
    if rt.distributed:
        if sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [rt.local_rank] if rt.device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
        train_model = torch.compile(train_model)
    return model, train_model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def finish(rt: Runtime) -> None:
    """Before fit returns: collect the DDP wrapper now (its reducer holds gloo work objects; torn down
    at interpreter exit, gloo aborts the process), then wait until rank 0 has written its files."""
    if rt.distributed:
        gc.collect()
        _dist().barrier()


def exit_if_distributed(code: int) -> None:
    """Under torchrun, end this rank now: wait for the others, flush, and leave with `code` without
    interpreter teardown. Tearing down gloo's process group (destroy_process_group, or the
    interpreter's own shutdown) aborted a rank here now and then with "terminate called without an
    active exception" after all its work was done and saved, failing a finished run; every file is
    written (checkpoints are fsynced) before this point. A single process returns normally."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
