"""`dsf doctor`: what this machine has for a cluster run, and which strategies of a config can run here.

Each finding is a row: what, whether it is there, the detail, and the fix when it is not. Nothing is built or
started: DeepSpeed's ops are asked whether they *could* build (ds_report's compatibility check), Ray and SLURM
only whether their clients are installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass

from dsf_dist.config.schema import DsfConfig
from dsf_dist.config.strategy import StrategyConfig
from dsf_dist.errors import ConfigError

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed")
CUDA_TORCH = "install a CUDA build of torch on a machine with NVIDIA GPUs (make TORCH='torch==2.13.0 --index-url ...')"


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> list[Finding]:
    import torch
    import torch.distributed as dist

    cuda = torch.version.cuda
    rows = [
        Finding("python", True, platform.python_version()),
        Finding("torch", True, f"{torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU-only build'})"),
        *gpus(),
    ]
    gloo = dist.is_available() and dist.is_gloo_available()
    rows.append(Finding("gloo", gloo, "CPU process groups", "" if gloo else "reinstall torch (a build with gloo)"))
    nccl = dist.is_available() and dist.is_nccl_available()
    detail = ".".join(map(str, torch.cuda.nccl.version())) if nccl and torch.cuda.is_available() else "not available"
    rows.append(Finding("NCCL", nccl, detail, "" if nccl else f"multi-GPU runs need NCCL: {CUDA_TORCH}"))
    return [*rows, deepspeed(), *launchers(), *extras()]


def gpus() -> list[Finding]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        return [
            Finding("GPUs", False, f"none ({os.cpu_count()} CPU cores)", f"CPU runs work as they are; {CUDA_TORCH}")
        ]
    rows = []
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        rows.append(Finding(f"GPU {index}", True, f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    return rows


def deepspeed() -> Finding:
    if importlib.util.find_spec("deepspeed") is None:
        return Finding("DeepSpeed", False, "not installed", "dsf install-trainer-packages deepspeed")
    try:
        from deepspeed.ops.op_builder.all_ops import ALL_OPS
    except Exception as err:  # a broken install: say so, do not crash the report
        return Finding("DeepSpeed", False, f"ops unreadable ({type(err).__name__})", "reinstall deepspeed")
    compatible = sorted(name for name, builder in ALL_OPS.items() if _compatible(builder))
    missing = sorted(set(ALL_OPS) - set(compatible))
    detail = f"{version('deepspeed')}; ops that can build: {', '.join(compatible) or 'none'}"
    fix = f"{', '.join(missing)} cannot build (ds_report says why); the others are enough for ZeRO" if missing else ""
    return Finding("DeepSpeed ops", bool(compatible), detail, fix)


def _compatible(builder) -> bool:
    try:
        return bool(builder.is_compatible(False))
    except Exception:
        return False


def launchers() -> list[Finding]:
    slurm = [tool for tool in ("sbatch", "srun") if shutil.which(tool)]
    ray = version("ray")
    return [
        Finding(
            "SLURM client",
            len(slurm) == 2,
            ", ".join(shutil.which(t) for t in slurm) or "sbatch, srun not on PATH",
            "" if len(slurm) == 2 else "on a SLURM login node: module load slurm (or install slurm-client)",
        ),
        Finding(
            "Ray",
            ray is not None and importlib.util.find_spec("ray") is not None,
            f"ray {ray}" if ray else "not installed",
            "" if ray else "dsf install-trainer-packages ray",
        ),
    ]


def extras() -> list[Finding]:
    rows = []
    for what, package, extra in (
        ("Hugging Face", "transformers", "hf"),
        ("TensorBoard", "tensorboard", "loggers"),
        ("MLflow", "mlflow-skinny", "loggers"),
    ):
        found = version(package) or (version("mlflow") if package == "mlflow-skinny" else None)
        fix = "" if found else f"dsf install-trainer-packages {extra}"
        rows.append(Finding(what, found is not None, f"{package} {found}" if found else "not installed", fix))
    return rows


def strategies(cfg: DsfConfig) -> list[Finding]:
    """Every strategy with the config's trainer settings: can it start here, and if not, the fix."""
    return [Finding(name, *_can_run(cfg, name)) for name in STRATEGIES]


def _can_run(cfg: DsfConfig, name: str) -> tuple[bool, str, str]:
    from dsf_dist.config.machine import check_strategy
    from dsf_dist.strategy import on_gpu

    trainer = cfg.trainer
    gpu = on_gpu(trainer)
    where = f"{trainer.get('devices', 'auto')} x {'GPU' if gpu else 'CPU'}"
    import torch
    import torch.distributed as dist

    if gpu and not torch.cuda.is_available():
        return False, where, f"trainer.accelerator asks for a GPU and there is none: {CUDA_TORCH}, or set it to cpu"
    trial = cfg.model_copy(update={"strategy": StrategyConfig.model_construct(**{**dict(cfg.strategy), "name": name})})
    try:
        check_strategy(trial)
    except ConfigError as err:
        return False, where, str(err)
    if gpu and name != "auto" and not dist.is_nccl_available():
        return False, where, f"NCCL missing: {CUDA_TORCH}"
    if name == "fsdp" and not gpu and importlib.util.find_spec("torch.distributed.fsdp") is None:
        return False, where, "FSDP2 on CPU needs torch >= 2.6; upgrade torch"
    return True, where, ""


def report(cfg: DsfConfig, source: str) -> int:
    """Print both tables; 1 when the config's own strategy cannot run here."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    here = Table(title="this machine")
    for column in ("component", "", "detail", "fix"):
        here.add_column(column)
    for row in machine():
        here.add_row(row.what, _mark(row.ok), escape(row.detail), escape(row.fix))
    console.print(here)
    table = Table(title=f"strategies for {source}")
    for column in ("strategy", "", "devices", "fix"):
        table.add_column(column)
    verdicts = strategies(cfg)
    for row in verdicts:
        chosen = " (configured)" if row.what == cfg.strategy.name else ""
        table.add_row(row.what + chosen, _mark(row.ok), escape(row.detail), escape(row.fix))
    console.print(table)
    configured = next(row for row in verdicts if row.what == cfg.strategy.name)
    if not configured.ok:
        console.print(escape(f"dsf doctor: strategy '{configured.what}' cannot run here: {configured.fix}"))
        return 1
    console.print(f"dsf doctor: strategy '{configured.what}' can run here")
    return 0


def _mark(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]missing[/red]"
