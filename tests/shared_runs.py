"""The session's shared runs (trained once through conftest's `trained_run`): the README's default run, one 2-rank
run per strategy, one ddp_spawn run of a stock LightningModule (ddp_spawn_run); and the comparisons the tests
make between runs: tensors bit for bit, weights and optimizer state alike.

Each strategy's run is the whole `dsf run` on 2 CPU ranks for 2 epochs, with its memory report. Readers:
tests/test_strategies.py (fit, ZeRO-2's resume against it, export and test a copy), tests/test_chaos.py and
tests/test_resume.py (the uninterrupted runs that stopped runs must end like), tests/test_memory.py (per-rank bytes of
each strategy) and, for DDP, tests/test_pipeline.py (two ranks name one run folder and write the comparison).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from conftest import sets

from dsf_dist.checkpoints import checkpoint_format

STRATEGIES = {
    "ddp": ["strategy.name=ddp"],
    "fsdp": ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]"],
    "deepspeed2": ["strategy.name=deepspeed", "strategy.deepspeed.stage=2"],
    "deepspeed3": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
}


def watch(target: str, log: str) -> str:
    """The --set item for a run's one callback, a tests/ module's `target` that writes <log>-rank<R>.json."""
    return f"callbacks=[{{target: '{target}', kwargs: {{log: {log}}}}}]"


# The ZeRO-3 run also reports its prefetch trace (tests/zero3_trace.py) beside its run folder (the runs' cwd).
ZERO3_TRACE = "deepspeed3-trace"  # <ZERO3_TRACE>-rank<R>.json
WATCHES = {"deepspeed3": [watch("zero3_trace:TraceState", ZERO3_TRACE)]}
# The ddp_spawn run's ranks report, as they exit, whether their process group was still open (tests/spawn_exit.py).
SPAWN_EXIT = "ddp-spawn-exit"  # <SPAWN_EXIT>-rank<R>.json
TWO_RANKS = ["trainer.devices=2", "trainer.enable_progress_bar=false"]
EPOCHS = 2


def reference_run(trained_run: Callable[..., Path], strategy: str) -> Path:
    """The uninterrupted 2-rank run of `strategy`. DDP's keeps dsf's own run name (test_pipeline checks that both
    ranks agree on it) and the default existing model (its comparison is read); the others compare nothing."""
    # run.memory_report only reads the tensors (tests/test_memory.py compares the strategies' figures).
    common = [*STRATEGIES[strategy], *TWO_RANKS, f"trainer.max_epochs={EPOCHS}", "run.memory_report=true"]
    common += WATCHES.get(strategy, [])
    if strategy == "ddp":
        return trained_run("ddp-2ranks", *sets(*common), named=False)
    return trained_run(f"{strategy}-2ranks", *sets(*common, "existing_model.kind=none"))


def default_single_process_run(trained_run: Callable[..., Path]) -> Path:
    """`dsf run` with nothing set, as the README's first command: the embedded default, one process, named by dsf.
    Readers: tests/test_pipeline.py (the run folder, the model, the comparison), tests/test_throughput.py."""
    return trained_run("default", named=False)


def ddp_spawn_run(trained_run: Callable[..., Path]) -> Path:
    """A stock LightningModule and LightningDataModule (tests/user_project.py) on 2 ranks under ddp_spawn for 2
    epochs, logged to CSV, TensorBoard and MLflow. Readers: tests/test_loggers.py (one run in each logger, the
    module's contract under ddp_spawn) and tests/test_pipeline.py (the pipeline under ddp_spawn, tested exactly;
    the spawned ranks closed their process group before they exited)."""
    user_pair = ["model.module=user_project:DigitsLitModule", "data.datamodule=user_project:DigitsDataModule"]
    spawn = ["strategy.name=ddp_spawn", "trainer.devices=2", "trainer.enable_progress_bar=false"]
    loggers = ["logging.loggers=[csv, tensorboard, mlflow]", f"trainer.max_epochs={EPOCHS}"]
    exit_watch = watch("spawn_exit:GroupAtExit", SPAWN_EXIT)
    return trained_run("ddp-spawn-logged", *sets(*user_pair, *spawn, *loggers, exit_watch))


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The same keys (and some), and every tensor equal bit for bit."""
    assert expected and got.keys() == expected.keys(), (sorted(got)[:5], sorted(expected)[:5])
    unequal = [key for key in expected if not torch.equal(got[key], expected[key])]
    assert unequal == [], unequal[:5]


def optimizer_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the optimizer state a checkpoint of any strategy holds, by its key path (a ZeRO folder's
    per-rank files are read as they are: they are compared between runs of the same world size)."""
    kind = checkpoint_format(path)
    if kind == "lightning":
        return flatten(torch.load(path, map_location="cpu", weights_only=True)["optimizer_states"])
    if kind == "distcp":
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory() as scratch:
            dcp_to_torch_save(path, Path(scratch) / "full.pt")
            full = torch.load(Path(scratch) / "full.pt", map_location="cpu", weights_only=True)
        return flatten({key: value for key, value in full.items() if key.startswith("optimizer_")})
    tag = (path / "latest").read_text().strip()
    state = {}
    for part in sorted((path / tag).glob("*optim_states.pt")):
        state |= flatten(deepspeed_optimizer_file(part), prefix=f"{part.name}.")
    return state


def deepspeed_optimizer_file(part: Path) -> dict:
    """A ZeRO optimizer-states file, loaded weights-only with the few DeepSpeed classes it names allowed."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    with torch.serialization.safe_globals([LossScaler, ZeroStageEnum, fragment_address]):
        return torch.load(part, map_location="cpu", weights_only=True)["optimizer_state_dict"]


def flatten(value: object, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix.rstrip("."): value}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list | tuple):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {}
