from dsf_dist.launchers.environment import resolve


def test_single_process():
    env = resolve({})
    assert (env.launcher, env.rank, env.world_size, env.is_rank_zero) == ("single", 0, 1, True)


def test_torchrun():
    env = resolve(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "1",
            "TORCHELASTIC_RUN_ID": "none",
        }
    )
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.node_rank) == ("torchrun", 3, 4, 1, 1)
    assert env.job_id is None and env.external


def test_slurm_task_under_srun():
    env = resolve(
        {
            "SLURM_PROCID": "1",
            "SLURM_NTASKS": "2",
            "SLURM_LOCALID": "1",
            "SLURM_NODEID": "0",
            "SLURM_STEP_ID": "0",
            "SLURM_JOB_ID": "77",
        }
    )
    assert (env.launcher, env.rank, env.world_size, env.job_id) == ("slurm", 1, 2, "77")


def test_sbatch_shell_is_not_a_rank():
    assert resolve({"SLURM_JOB_ID": "77", "SLURM_PROCID": "0"}).launcher == "single"


def test_lightning_ddp_child():
    env = resolve({"LOCAL_RANK": "1", "WORLD_SIZE": "2", "NODE_RANK": "0"})
    assert (env.launcher, env.rank, env.is_rank_zero, env.external) == ("lightning", 1, False, False)


def test_a_hostile_job_id_cannot_name_the_run_folder():
    import pytest

    from dsf_dist.config import load_config
    from dsf_dist.errors import ConfigError
    from dsf_dist.run_folder import name_run

    env = resolve(
        {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "../../etc"}
    )
    with pytest.raises(ConfigError, match="is not a safe folder name"):
        name_run(load_config(), env)
