"""Several processes and nodes on PyTorch's own engine: torchrun launches them, DDP trains, ranks agree.

`sladkit train --devices N` (with `--nnodes/--node-rank/--master-addr/--master-port` for several machines)
runs `torch.distributed.run` in this process, which starts N copies of `python -m sladkit train` with the
same options: exactly what `torchrun --nproc-per-node N -m sladkit train ...` does by hand. Each copy
finds torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, ...), joins the process group
(`init_distributed`) and trains its shard of every global batch under DistributedDataParallel
(`sladkit.train.loop`).

Rank 0 alone writes the run folder. The ranks agree on whatever decides control flow (a bad input on
one rank, a non-finite loss, a stop signal) through small all-reduces, so they all stop at the same step.
A failed rank is reported through torchrun's error files; the launcher names it in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from sladkit.config import TrainConfig
from sladkit.errors import ConfigError, SladkitError, TrainingError
from sladkit.run_folder import STATE_FILE, checkpoint_dir
from sladkit.train.interrupt import INTERRUPTED_EXIT_CODE, TrainingInterrupted

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
LAUNCHED_ENV = "SLADKIT_LAUNCHED"  # set for the workers of `sladkit train --devices N`: its launcher reports


class PeerFailure(TrainingError):
    """This rank stopped because another one failed (its collectives broke or it could not start)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (a single process is rank 0 of 1) and the collectives it needs."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place (on the backend's device, moved back); returns it."""
        if not self.distributed:
            return tensor
        on_device = tensor.to(self.device)
        dist.all_reduce(on_device)
        if on_device is not tensor:
            tensor.copy_(on_device)
        return tensor

    def failed_ranks(self, failed: bool) -> list[int]:
        """The ranks that report `failed` (every rank must call this)."""
        flags = torch.zeros(self.world_size, device=self.device)
        flags[self.rank] = float(failed)
        self.all_reduce_sum(flags)
        return [rank for rank, flag in enumerate(flags.tolist()) if flag]

    def any(self, flag: bool) -> bool:
        """Whether any rank's `flag` is set (every rank must call this)."""
        return bool(self.failed_ranks(flag)) if self.distributed else flag

    def main_first(self, func):
        """Run `func` on rank 0, then on the other ranks (e.g. rank 0 repairs a folder the others read)."""
        result = func() if self.is_main else None
        self.barrier()
        return result if self.is_main else func()

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics each rank updated on its own batches)."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


# ---------------------------------------------------------------------------------------------- checks
def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting its environment)."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def launched_worker() -> bool:
    """Whether this is a worker of `sladkit train --devices N`, whose launcher prints the final line."""
    return under_torchrun() and os.environ.get(LAUNCHED_ENV) == "1"


def needs_launch(config: TrainConfig) -> bool:
    """Whether `config` asks for several processes that do not exist yet."""
    return (config.devices > 1 or config.nnodes > 1) and not under_torchrun()


def resolve_device(device: str, local_rank: int = 0, *, processes: int = 1) -> torch.device:
    """The torch device of this process for `--device` (`auto`: this process's CUDA GPU, else the CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device} asked for, but no CUDA GPU is available here; use --device cpu"
            )
        if processes > 1:
            return torch.device("cuda", local_rank)
    return torch.device(device)


def _gpu_names() -> str:
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(f"cuda:{i} {name}" for i, name in enumerate(names))


def check_devices(config: TrainConfig, *, processes: int, asked: str | None = None) -> None:
    """Refuse device, backend and precision requests this machine cannot serve (before anything is written).

    Args:
        config: the run's options.
        processes: processes on this node (`--devices`, or torchrun's LOCAL_WORLD_SIZE in a worker).
        asked: who asked for them, for messages (default: `--devices N`).
    """
    n, device = processes, config.device
    asked = asked or f"--devices {n}"
    if n > 1:
        if device.startswith("cuda:"):
            raise ConfigError(
                f"--device {device} picks one GPU, but {asked} starts {n} processes that take cuda:0.."
                f"cuda:{n - 1}; pass --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        if device in ("auto", "cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ConfigError(
                    f"{asked} asks for {n} CUDA GPUs, but none is available here; add --device cpu to "
                    f"train with {n} CPU processes (gloo)"
                )
            if count < n:
                raise ConfigError(
                    f"{asked} asks for {n} CUDA GPUs, but this machine has {count} ({_gpu_names()}); "
                    f"use --devices {count}"
                )
        elif device != "cpu":
            raise ConfigError(f"{asked} needs CUDA GPUs or --device cpu, got --device {device}")
    device_type = resolve_device(device).type
    if n > 1 or config.nnodes > 1:
        resolve_backend(config.dist_backend, device_type)
    check_precision(config.precision, device_type)


def check_precision(precision: str, device_type: str) -> None:
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(
            "--precision fp16 needs a CUDA GPU (its loss scaling); use --precision bf16 or fp32 on the "
            f"{device_type.upper()}"
        )
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"this GPU ({torch.cuda.get_device_name()}) does not support bf16; use --precision fp16"
        )


def resolve_backend(backend: str, device_type: str) -> str:
    """The torch.distributed backend for `--dist-backend` on `device_type`, or a ConfigError."""
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; train with --devices 1")
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and device_type != "cuda":
        raise ConfigError(
            "--dist-backend nccl needs CUDA GPUs; use --dist-backend gloo (or auto) for CPU processes"
        )
    available = {"nccl": dist.is_nccl_available(), "gloo": dist.is_gloo_available()}
    if not available[backend]:
        other = "gloo" if backend == "nccl" else "nccl"
        raise ConfigError(
            f"the {backend} backend is not available in this PyTorch build; use --dist-backend {other}"
        )
    return backend


# ---------------------------------------------------------------------------------------------- workers
def init_distributed(config: TrainConfig) -> DistContext:
    """This process's DistContext: joins torchrun's process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1
    if world == 1:
        check_devices(config, processes=1)
        return DistContext(device=resolve_device(config.device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if config.devices > 1 and config.devices != local_world:
        raise ConfigError(
            f"--devices {config.devices} contradicts torchrun's {local_world} processes per node; "
            "drop --devices under torchrun"
        )
    if config.batch_size % (world * config.accumulate):
        split = world * config.accumulate
        raise ConfigError(
            f"--batch-size {config.batch_size} cannot be split evenly over {world} processes x --accumulate "
            f"{config.accumulate}; choose a multiple of {split}"
        )
    check_devices(config, processes=local_world, asked=f"torchrun's --nproc-per-node {local_world}")
    device = resolve_device(config.device, local_rank, processes=local_world)
    backend = resolve_backend(config.dist_backend, device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    return DistContext(device=device, rank=rank, local_rank=local_rank, world_size=world, backend=backend)


def close_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _is_peer_error(error: BaseException) -> bool:
    """A collective that broke because another rank died (gloo/NCCL report it as a RuntimeError)."""
    if isinstance(error, PeerFailure):
        return True
    dist_error = getattr(dist, "DistError", ())
    text = str(error)
    return isinstance(error, dist_error) or (
        isinstance(error, RuntimeError)
        and any(s in text for s in ("Connection closed by peer", "Connection reset by peer"))
    )


def report_failure(error: BaseException) -> BaseException:
    """The exception a failing worker ends with, recorded in torchrun's error file for the launcher."""
    if isinstance(error, TrainingInterrupted):
        return error
    if _is_peer_error(error) and not isinstance(error, PeerFailure):
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        replacement = PeerFailure(f"stopped because another rank failed ({first})")
        replacement.__cause__ = error
        error = replacement
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        with contextlib.suppress(OSError):
            ErrorHandler().record_exception(error)
    return error


# ---------------------------------------------------------------------------------------------- launcher
def train_args(config: TrainConfig) -> list[str]:
    """`sladkit train` options that rebuild `config` (the CLI is generated from the same fields)."""
    args = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, dict):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    return args


def torchrun_args(config: TrainConfig) -> list[str]:
    """The `torch.distributed.run` command line (after `torchrun`) that trains `config`."""
    args = [f"--nproc-per-node={config.devices}"]
    if config.nnodes == 1:
        args.append("--standalone")  # a free local port for the rendezvous
    else:
        args += [
            f"--nnodes={config.nnodes}",
            f"--node-rank={config.node_rank}",
            f"--master-addr={config.master_addr}",
            f"--master-port={config.master_port}",
        ]
    return [*args, "--module", "sladkit", "train", *train_args(config)]


_AGENT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def launch(config: TrainConfig) -> bool:
    """Run `config` under torch.distributed.run (in this process, as torchrun does) and wait for it.

    Returns:
        Whether this node holds the run folder's results (node 0).

    Raises:
        TrainingInterrupted: the workers stopped on a signal and wrote a checkpoint.
        TrainingError: a rank failed; the message names it.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    out = Path(config.out)
    args = get_args_parser().parse_args(torchrun_args(config))
    # torchrun forwards SIGINT/SIGTERM to the workers, which need time to finish a step and checkpoint.
    if hasattr(args, "shutdown_timeout"):
        args.shutdown_timeout = max(args.shutdown_timeout or 0, 120)
    saved = {
        name: signal.getsignal(getattr(signal, name)) for name in _AGENT_SIGNALS if hasattr(signal, name)
    }
    started = time.time()
    previous_env = os.environ.get(LAUNCHED_ENV)
    os.environ[LAUNCHED_ENV] = "1"  # the workers inherit it
    try:
        torchrun(args)
    except ChildFailedError as e:
        raise launch_failure(e.failures, out, config) from None
    except SignalException as e:
        raise interrupted_from_checkpoint(out, since=started, signal_name=e.sigval.name) from None
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
        if previous_env is None:
            os.environ.pop(LAUNCHED_ENV, None)
        else:
            os.environ[LAUNCHED_ENV] = previous_env
    return config.node_rank == 0


def _failure_text(failure) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message).strip()
    prefix, _, rest = text.partition(": ")
    if rest and prefix.isidentifier():  # "ConfigError: ..." -> "..."
        return rest
    return text or f"exit code {failure.exitcode}"


def launch_failure(failures: dict, out: Path, config: TrainConfig) -> SladkitError:
    """One SladkitError describing torchrun's failed workers (`{global rank: ProcessFailure}`)."""
    codes = {f.exitcode for f in failures.values()}
    if codes == {INTERRUPTED_EXIT_CODE}:
        return interrupted_from_checkpoint(out)
    texts = {rank: _failure_text(f) for rank, f in failures.items()}
    if len(failures) == config.devices and len(set(texts.values())) == 1:  # all refused the same input
        return TrainingError(next(iter(texts.values())))

    def secondary(rank: int) -> bool:
        f = failures[rank]
        return (
            f.exitcode < 0  # stopped by a signal (torchrun stops the others after a failure)
            or f.exitcode == INTERRUPTED_EXIT_CODE
            or texts[rank].startswith("stopped because")
            or "Connection closed by peer" in texts[rank]
        )

    root = min(failures, key=lambda rank: (secondary(rank), failures[rank].timestamp, rank))
    return TrainingError(
        f"rank {root} failed: {texts[root]}; the other ranks were stopped; {checkpoint_note(out)}"
    )


def checkpoint_note(out: Path) -> str:
    state = _read_last_state(out)
    if state is None:
        return "no checkpoint was written"
    return (
        f"the last checkpoint ({out / 'checkpoints' / 'last'}, stage {state.get('stage_index', 0) + 1}, "
        f"step {state.get('global_step')}) is intact; continue with --resume"
    )


def _read_last_state(out: Path) -> dict | None:
    path = checkpoint_dir(out, "last") / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def interrupted_from_checkpoint(out: Path, *, since: float = 0.0, signal_name: str = "") -> SladkitError:
    """The launcher's report of workers stopped by a signal: TrainingInterrupted if they checkpointed."""
    path = checkpoint_dir(out, "last") / STATE_FILE
    state = _read_last_state(out)
    if state is not None and state.get("interrupted") and path.stat().st_mtime >= since:
        return TrainingInterrupted(state["global_step"])
    what = f"{signal_name} " if signal_name else ""
    error = TrainingError(f"stopped by {what}before the workers wrote a checkpoint; {checkpoint_note(out)}")
    error.exit_code = 128 + getattr(signal, signal_name, signal.SIGINT) if signal_name else 1
    return error
