"""`python -m dsf_dist.launchers.ray -c CONFIG [--set KEY=VALUE ...] [--resume]`: `dsf run` on a Ray cluster.

Meant as the entry point of a Ray job (the head needs ray[default] for `ray job submit`):

    ray job submit --address http://<head>:8265 --working-dir . -- python -m dsf_dist.launchers.ray -c CONFIG

The driver checks the config (a mistake is one line on stderr and exit 2, before any worker starts), makes the
run folder <ray.storage_path>/<name> and writes the resolved config into it, then runs a TorchTrainer whose
ray.num_workers workers each run dsf's pipeline (dsf_dist/launchers/ray_worker.py) with that file's path. Exit codes as
`dsf run`: 0 success, 2 a bad config or run folder, 3 a gate failed, 1 training failed after ray.max_failures
restarts, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsf_dist import entry, files
from dsf_dist.config import DsfConfig, dump, load_config
from dsf_dist.config.base import SAFE_NAME
from dsf_dist.config.loader import apply_override, read_yaml
from dsf_dist.config.schema import default_trainer
from dsf_dist.errors import ConfigError, DsfError, RunFolderError
from dsf_dist.launchers.environment import refuse_spawning
from dsf_dist.run_folder import RunFolder, dated_name, run_label
from dsf_dist.tasks import task_for


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m dsf_dist.launchers.ray",
        description="Train, test, evaluate the existing model and compare, with Ray Train's workers (the config's "
        "ray section); the run folder is <ray.storage_path>/<ray.name or run.name>.",
    )
    top.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
    entry.add_set_argument(top, "ray.num_workers=4")
    entry.add_resume_argument(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return entry.run_reporting_errors(lambda: launch(args.config, entry.overrides(args)))


def launch(config: str | None, overrides: Sequence[str]) -> int:
    cfg, workers = resolve_config(config, overrides)
    run = RunFolder(Path(cfg.run.output_root) / cfg.run.name)
    finished = entry.finished_exit_code(run, cfg.run.resume, announce=True)
    if finished is not None:
        return finished
    check_run_folder(run, cfg)
    connect()
    check_resources(cfg, workers)
    write_config(run, cfg)
    outcome = fit(cfg, run, workers)
    if "error" in outcome:
        print(f"dsf: error: {outcome['error']}", file=sys.stderr)
        return int(outcome.get("exit_code", entry.EXIT_FAILED))
    comparison = run.results / "comparison.json"
    if comparison.is_file():
        from dsf_dist.comparison.render import print_comparison

        print_comparison(files.read_json(comparison))
    print(f"run folder: {run.root}")
    return int(outcome.get("exit_code", 0))


# -- the config -----------------------------------------------------------------------------------------------
def resolve_config(config: str | None, overrides: Sequence[str]) -> tuple[DsfConfig, int]:
    """The config as the workers will read it, with the run folder's place fixed; and the number of workers.

    trainer.devices is not checked against this machine: the workers run elsewhere (the head may have no GPU),
    and each worker checks the devices Ray gave it."""
    cfg = load_config(config, [*overrides, "trainer.devices=auto"])
    task_for(cfg).check(cfg)
    devices, nodes = requested_devices(config, overrides)
    cfg.trainer["devices"] = devices
    workers = cfg.ray.num_workers or default_workers(devices, nodes)
    check_ray(cfg, workers)
    storage = Path(os.path.expanduser(cfg.ray.storage_path))
    cfg.run.output_root = str(storage)
    cfg.run.name = run_name(cfg)
    return cfg, workers


def requested_devices(config: str | None, overrides: Sequence[str]) -> tuple[Any, Any]:
    raw = read_yaml(config) if config is not None else {}
    for item in overrides:
        apply_override(raw, item)
    trainer = {**default_trainer(), **(raw.get("trainer") or {})}
    return trainer.get("devices"), trainer.get("num_nodes", 1)


def default_workers(devices: Any, nodes: Any) -> int:
    if isinstance(devices, int) and devices >= 1 and isinstance(nodes, int) and nodes >= 1:
        return devices * nodes
    raise ConfigError(
        f"ray.num_workers: unset, and trainer.devices={devices!r} x trainer.num_nodes={nodes!r} is not a number of "
        "processes; set ray.num_workers (e.g. --set ray.num_workers=2)"
    )


def check_ray(cfg: DsfConfig, workers: int) -> None:
    """What cannot work under Ray Train, refused before any worker starts."""
    ray, strategy = cfg.ray, cfg.strategy.name
    refuse_spawning(strategy, "Ray Train", "already starts one process per worker", "Ray")
    if strategy == "auto" and workers > 1:
        raise ConfigError(
            f"strategy.name: auto trains in one process, but ray.num_workers is {workers}; set strategy.name=ddp "
            "(or fsdp, deepspeed), or ray.num_workers=1"
        )
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if ray.use_gpu and accelerator == "cpu":
        raise ConfigError("ray.use_gpu: true, but trainer.accelerator is cpu; set trainer.accelerator=gpu")
    if not ray.use_gpu and accelerator in ("gpu", "cuda"):
        raise ConfigError(
            f"trainer.accelerator: {accelerator}, but ray.use_gpu is false, so the workers get no GPU; "
            "set ray.use_gpu=true"
        )
    if ray.resources_per_worker.get("GPU", 0) > 1:
        raise ConfigError(
            f"ray.resources_per_worker: GPU {ray.resources_per_worker['GPU']:g}, but a worker is one Lightning rank "
            "on one device; give each worker at most 1 GPU and raise ray.num_workers instead"
        )
    if "://" in ray.storage_path:
        raise ConfigError(
            f"ray.storage_path: {ray.storage_path} is a URI, but workers write the run folder with plain file I/O; "
            "mount the storage (NFS or similar) at the same path on every node and give that path"
        )
    if not Path(os.path.expanduser(ray.storage_path)).is_absolute():
        raise ConfigError(
            f"ray.storage_path: {ray.storage_path} is relative, and a Ray job runs in a temporary copy of its "
            "working folder; give an absolute path that every node sees"
        )
    if ray.name and cfg.run.name and ray.name != cfg.run.name:
        raise ConfigError(
            f"ray.name: '{ray.name}' differs from run.name '{cfg.run.name}', and both name the one run folder; "
            "set only one of them"
        )


def run_name(cfg: DsfConfig) -> str:
    """ray.name or run.name; else '<data>-<Ray job submission id>', or '<data>-<date>-<time>' outside a job."""
    name = cfg.ray.name or cfg.run.name
    if name:
        return name
    job = submission_id()
    return f"{run_label(cfg)}-{job}" if job else dated_name(cfg)


def submission_id() -> str | None:
    """The Ray job's submission id (unique on its cluster), from the job config Ray gives a job's entry point."""
    job_config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    job = job_config.get("metadata", {}).get("job_submission_id")
    return job if job and SAFE_NAME.match(job) else None


# -- Ray ------------------------------------------------------------------------------------------------------
def connect() -> None:
    """Join the cluster: the job's (RAY_ADDRESS, set by `ray job submit`), a running one on this machine, or
    else a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(logging_level="WARNING", log_to_driver=True)


def worker_resources(cfg: DsfConfig) -> dict[str, float]:
    if cfg.ray.resources_per_worker:
        return dict(cfg.ray.resources_per_worker)
    return {"CPU": 1.0, "GPU": 1.0} if cfg.ray.use_gpu else {"CPU": 1.0}


def check_resources(cfg: DsfConfig, workers: int) -> None:
    """Ray would wait forever for workers the cluster can never hold: refuse them now."""
    import ray

    available = ray.cluster_resources()
    for resource, amount in worker_resources(cfg).items():
        needed, total = amount * workers, available.get(resource, 0.0)
        if needed > total:
            raise ConfigError(
                f"ray.num_workers: {workers} workers x {amount:g} {resource} need {needed:g} {resource}, but the "
                f"Ray cluster has {total:g}; lower ray.num_workers or ray.resources_per_worker, or add nodes"
            )


def check_run_folder(run: RunFolder, cfg: DsfConfig) -> None:
    """A run folder is made once; with run.resume=auto (--resume) an existing one is continued, and Ray resumes
    from the last checkpoint reported there."""
    if not run.root.exists():
        return
    if cfg.run.resume != "auto":
        raise RunFolderError(
            f"{run.root}: run folder already exists; choose another ray.name, or continue it with --resume"
        )
    if not run.config.is_file():
        raise RunFolderError(f"{run.root}: not a dsf run folder (no config.yaml); choose another ray.name")


def write_config(run: RunFolder, cfg: DsfConfig) -> None:
    """The resolved config, which the workers read: in a new run folder, or over a continued run's."""
    if run.root.exists():
        files.write_text(run.config, dump(cfg))
    else:
        run.create(cfg)


def trainer_configs(cfg: DsfConfig, workers: int) -> dict[str, Any]:
    """The ray section as Ray Train's ScalingConfig, RunConfig (with FailureConfig and CheckpointConfig) and
    TorchConfig, keyed by TorchTrainer's argument names."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    ray = cfg.ray
    return {
        "scaling_config": ScalingConfig(
            num_workers=workers, use_gpu=ray.use_gpu, resources_per_worker=ray.resources_per_worker or None
        ),
        "run_config": RunConfig(
            name=cfg.run.name,
            storage_path=cfg.run.output_root,
            failure_config=FailureConfig(max_failures=ray.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=ray.num_to_keep),
        ),
        # Ray sets up the process group: with strategy.timeout_s, a lost rank fails the job within that time
        # instead of torch's 30 minutes.
        "torch_config": TorchConfig(backend="nccl" if ray.use_gpu else "gloo", timeout_s=cfg.strategy.timeout_s),
    }


def fit(cfg: DsfConfig, run: RunFolder, workers: int) -> dict[str, Any]:
    """Run the workers; rank zero's outcome ({"exit_code": ..., maybe "error": ...})."""
    from ray.train import TrainingFailedError
    from ray.train.torch import TorchTrainer

    os.environ.update(train_environment(cfg))  # Ray Train passes these on to its controller and workers
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": str(run.config), "working_dir": os.getcwd()},
        **trainer_configs(cfg, workers),
    )
    try:
        result = trainer.fit()
    except TrainingFailedError as err:
        raise TrainingFailed(
            f"Ray Train gave up after ray.max_failures={cfg.ray.max_failures} restart(s); last failure: "
            f"{failure_summary(err)}; the workers' tracebacks are in the job's log, the checkpoints in {run.root}"
        ) from None
    return result.return_value or {}


def failure_summary(err: Exception) -> str:
    """One line for Ray Train's failure: each failed rank's exception and its message's last line."""
    failures = getattr(err, "worker_failures", None) or {"controller": err}
    parts = []
    for rank, failure in sorted(failures.items(), key=lambda item: str(item[0])):
        lines = [line.strip() for line in str(failure).strip().splitlines() if line.strip()]
        # A worker's exception arrives as its traceback text, whose last line names the error.
        text = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else "")
        parts.append(f"rank {rank}: {type(failure).__name__}: {text[:200]}")
    return ", ".join(parts)


def train_worker(loop_config: dict[str, str]) -> dict[str, Any]:
    """Ray Train's train_loop_per_worker: dsf's pipeline on one rank (ray_worker.py). Defined here and importing
    the worker side only when called, so that the driver does not import Lightning (about 5 s)."""
    from dsf_dist.launchers.ray_worker import run_worker

    return run_worker(loop_config)


def train_environment(cfg: DsfConfig) -> dict[str, str]:
    """Ray Train's settings that dsf chooses for a fast start (schema.RayConfig has why)."""
    return {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": f"{cfg.ray.health_check_interval_s:g}",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1" if cfg.ray.preemption_watcher else "0",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "1" if cfg.ray.print_patch else "0",
    }


class TrainingFailed(DsfError):
    """Training failed on a worker more often than ray.max_failures allows."""

    exit_code = entry.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
