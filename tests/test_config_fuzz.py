"""Bad configs never reach a worker: hypothesis generates invalid configs (wrong types, unknown keys, out-of-range
values, contradictory strategy options, missing files, unsafe run names); each is refused at load with one line
naming the key, and nothing is written. A sample goes through the real `dsf` CLI (exit 2, no traceback)."""

from __future__ import annotations

import os

import yaml
from conftest import dsf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsf_dist.config import load_config
from dsf_dist.errors import ConfigError

# (key path, values that must be refused). Each list mixes wrong types and out-of-range values.
INVALID = {
    "trainer.max_epochs": ["three", [1], {"a": 1}],
    "trainer.devices": [0, -2, 10_000, "many"],
    "data.batch_size": [0, -1, "big", 1.5],
    "model.optimizer.lr": ["fast", [0.1], {"x": 1}],
    "model.optimizer.name": ["adagrad", 3, None],
    "model.task": ["clustering", 1],
    "strategy.name": ["horovod", 2, ""],
    "strategy.timeout_s": [0, 5, "long"],
    "strategy.timeouts.train_step_s": [0, -1, "soon"],
    "strategy.timeouts.checkpoint_s": [0, "never"],
    "strategy.deepspeed.stage": [0, 4, "three"],
    "strategy.fsdp.sharding": ["half", 1],
    "checkpoint.save_top_k": ["all", 1.5],
    "early_stopping.patience": [-1, "x"],
    "run.name": ["../escape", "/abs", "a/b", "$(touch x)", "x;y", "", "..", "a\nb"],
    "run.max_requeues": [-1, "twice"],
    "run.resume": ["sometimes", 1],
    "data.path": ["/no/such/file.csv"],
    "strategy.deepspeed.config": ["/no/such/ds.json"],
    "ray.name": ["../x", "/abs"],
    "ray.num_workers": [0, -3, "all"],
}
# Options that contradict the chosen strategy (each alone is a valid value).
CONTRADICTIONS = [
    ("strategy.deepspeed", ["strategy.name=ddp", "strategy.deepspeed.offload_optimizer=cpu"]),
    ("strategy.deepspeed", ["strategy.name=deepspeed", "strategy.deepspeed.offload_parameters=cpu"]),
    ("strategy.fsdp", ["strategy.name=ddp", "strategy.fsdp.cpu_offload=true"]),
    ("strategy.fsdp", ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]", "strategy.fsdp.wrap_min_params=5"]),
    ("trainer.precision", ["trainer.precision=16-mixed"]),
]
SECTIONS = ["model", "trainer", "data", "strategy", "checkpoint", "run", "ray", "strategy.fsdp", "model.optimizer"]
keys = st.text(st.characters(whitelist_categories=("Ll",)), min_size=3, max_size=12)
CASES = {"count": 0}


def override(key: str, value: object) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def refused(overrides: list[str], key: str, tmp_path) -> None:
    CASES["count"] += 1
    before = set(os.listdir(tmp_path))
    try:
        load_config(overrides=[*overrides, f"run.output_root={tmp_path}/runs"])
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and key.split(".")[0] in message, (overrides, message)
        assert ConfigError.exit_code == 2
    else:
        raise AssertionError(f"accepted: {overrides}")
    assert set(os.listdir(tmp_path)) == before  # nothing written, no run folder


invalid_value = st.sampled_from(sorted(INVALID)).flatmap(
    lambda key: st.tuples(st.just(key), st.sampled_from(INVALID[key]))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(invalid_value, st.lists(st.sampled_from(["trainer.max_epochs=2", "data.batch_size=8"]), max_size=2))
def test_invalid_values_are_refused_naming_the_key(tmp_path, case, valid):
    key, value = case
    refused([*valid, override(key, value)], key, tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SECTIONS), keys)
def test_unknown_keys_are_refused_naming_the_key(tmp_path, section, key):
    refused([f"{section}.zz{key}=1"], f"{section}.zz{key}", tmp_path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CONTRADICTIONS))
def test_contradictory_strategy_options_are_refused(tmp_path, case):
    key, overrides = case
    refused(overrides, key, tmp_path)


def test_a_sample_through_the_real_cli_exits_2_in_one_line(tmp_path):
    sample = [
        ("run.name", "run.name=../escape"),
        ("strategy.deepspeed.stage", "strategy.deepspeed.stage=4"),
        ("trainer.bogus", "trainer.bogus=1"),
        ("data.path", "data.path=/no/such/file.csv"),
        ("strategy.timeouts.test_s", "strategy.timeouts.test_s=0"),
    ]
    for key, item in sample:
        done = dsf("run", "--output", "runs", "--set", item, cwd=tmp_path, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and key in lines[0], done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
    print(f"invalid configs refused in-process so far: {CASES['count']}, through the CLI: {len(sample)}")
