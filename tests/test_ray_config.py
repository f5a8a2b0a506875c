"""The Ray launcher without a cluster: the resolver's "ray" kind, config -> Ray Train's config objects, and the
one-line refusals the driver makes before it connects to Ray (in process, no worker started)."""

from __future__ import annotations

import pytest

from dsf_dist.config import load_config
from dsf_dist.launchers import ray as launcher
from dsf_dist.launchers.environment import resolve

DDP = ("strategy.name=ddp",)


def test_a_ray_train_worker_is_its_own_launcher_kind():
    # What Ray's torch backend exports in a worker: torchrun's names, inside a Ray job (and here inside SLURM too).
    env = {
        "RAY_JOB_ID": "02000000",
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "NODE_RANK": "0",
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "0",
    }
    found = resolve(env)
    assert (found.launcher, found.rank, found.world_size, found.local_rank, found.job_id) == (
        "ray",
        1,
        2,
        1,
        "02000000",
    )
    assert found.external and not found.is_rank_zero
    assert resolve({**env, "TORCHELASTIC_RUN_ID": "x"}).launcher == "torchrun"  # torchrun started inside a Ray task
    assert resolve({"RAY_JOB_ID": "02000000"}).launcher == "single"  # the job's driver is not a rank


def test_workers_default_to_the_configs_ranks_and_devices_are_not_checked_on_the_driver(tmp_path):
    cfg, workers = launcher.resolve_config(None, [*DDP, "trainer.devices=2", f"ray.storage_path={tmp_path}"])
    assert workers == 2 and cfg.trainer["devices"] == 2
    assert (cfg.run.output_root, cfg.run.name.startswith("digits-")) == (str(tmp_path), True)
    # GPU workers from a head without GPUs: 4 devices x 2 nodes are 8 workers, checked where they run.
    gpu = [*DDP, "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2", "ray.use_gpu=true"]
    assert launcher.resolve_config(None, gpu)[1] == 8
    _, workers = launcher.resolve_config(None, [*DDP, "ray.num_workers=3", "ray.name=given"])
    assert workers == 3


def test_the_ray_section_maps_to_ray_trains_configs(tmp_path):
    cfg, workers = launcher.resolve_config(
        None,
        [*DDP, "ray.num_workers=2", "ray.name=mapped", f"ray.storage_path={tmp_path}", "ray.max_failures=2"]
        + ["ray.num_to_keep=3", "ray.resources_per_worker={CPU: 2}", "strategy.timeout_s=120"],
    )
    configs = launcher.trainer_configs(cfg, workers)
    scaling, run, torch_config = configs["scaling_config"], configs["run_config"], configs["torch_config"]
    assert (scaling.num_workers, scaling.use_gpu, scaling.resources_per_worker) == (2, False, {"CPU": 2.0})
    assert (run.name, run.storage_path) == ("mapped", str(tmp_path))
    assert (run.failure_config.max_failures, run.checkpoint_config.num_to_keep) == (2, 3)
    assert (torch_config.backend, torch_config.timeout_s) == ("gloo", 120)


def test_fast_start_settings_and_rays_own_defaults():
    from ray.train.v2._internal import constants

    assert launcher.train_environment(load_config()) == {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    }
    # Each ray.* setting reaches the variable Ray Train reads, as Ray parses it.
    rays = load_config(None, ["ray.health_check_interval_s=2", "ray.preemption_watcher=true", "ray.print_patch=true"])
    assert launcher.train_environment(rays) == {
        constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR: "2",
        constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR: "1",
        constants.ENABLE_PRINT_PATCH_ENV_VAR: "1",
    }
    fractional = load_config(None, ["ray.health_check_interval_s=0.25"])
    assert float(launcher.train_environment(fractional)[constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR]) == 0.25
    # Those values are Ray's own defaults: setting them gives back Ray's behaviour.
    assert constants.DEFAULT_HEALTH_CHECK_INTERVAL_S == 2.0
    assert constants.DEFAULT_ENABLE_PREEMPTION_WATCHER and constants.DEFAULT_ENABLE_PRINT_PATCH


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.name=ddp_spawn"], "strategy.name: ddp_spawn spawns its own workers"),
        (["ray.num_workers=2"], "strategy.name: auto trains in one process, but ray.num_workers is 2"),
        ([*DDP, "trainer.devices=auto"], "ray.num_workers: unset, and trainer.devices='auto'"),
        ([*DDP, "ray.storage_path=runs"], "ray.storage_path: runs is relative"),
        ([*DDP, "ray.storage_path=s3://bucket/runs"], "ray.storage_path: s3://bucket/runs is a URI"),
        ([*DDP, "ray.use_gpu=true"], "ray.use_gpu: true, but trainer.accelerator is cpu"),
        ([*DDP, "trainer.accelerator=gpu"], "trainer.accelerator: gpu, but ray.use_gpu is false"),
        ([*DDP, "ray.resources_per_worker={GPU: 2}"], "ray.resources_per_worker: GPU 2, but a worker is one"),
        ([*DDP, "ray.name=a", "run.name=b"], "ray.name: 'a' differs from run.name 'b'"),
        (["ray.nme=a"], "ray.nme: unknown key; did you mean name?"),
        (["ray.name=../up"], "ray.name: '../up' is not a safe folder name"),
    ],
)
def test_the_driver_refuses_in_one_line_before_connecting(capsys, tmp_path, monkeypatch, overrides, message):
    monkeypatch.setenv("HOME", str(tmp_path))
    args = [item for override in overrides for item in ("--set", override)]
    assert launcher.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dsf: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_folder_is_refused_or_continued_and_a_finished_one_is_not_run_again(capsys, tmp_path):
    run = tmp_path / "taken"
    (run / "results").mkdir(parents=True)
    args = ["--set", "strategy.name=ddp", "--set", f"ray.storage_path={tmp_path}", "--set", "ray.name=taken"]
    assert launcher.main(args) == 2
    assert "run folder already exists; choose another ray.name, or continue it with --resume" in capsys.readouterr().err
    assert launcher.main([*args, "--resume"]) == 2
    assert "not a dsf run folder (no config.yaml)" in capsys.readouterr().err
    (run / "results" / "done.json").write_text('{"exit_code": 3}')
    assert launcher.main([*args, "--resume"]) == 3  # its recorded exit code; Ray is not contacted
    assert "already finished" in capsys.readouterr().out
