"""Bad configs never reach a worker: every listed invalid value and contradiction, and the configs hypothesis
generates around them (wrong types, unknown keys, out-of-range values, contradictory strategy options, missing
files, unsafe run names), are refused at load with one line that starts with the key's whole path and names the
value, and nothing is written. Each is also given to the CLI's entry point (`dsf config --check`, in process):
exit 2 and that same line. A sample goes through the real `dsf run` in a subprocess (exit 2, no traceback)."""

from __future__ import annotations

import contextlib
import io
import os

import yaml
from conftest import dsf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsf_dist.cli import main
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
# Options that contradict the chosen strategy (each alone is a valid value), and the whole line each gets.
CONTRADICTIONS = [
    (
        "strategy: deepspeed.offload_optimizer is set but strategy.name is 'ddp'; set strategy.name=deepspeed or "
        "remove the offload",
        ["strategy.name=ddp", "strategy.deepspeed.offload_optimizer=cpu"],
    ),
    (
        "strategy.deepspeed: offload_parameters needs stage 3 (stage is 2); set stage: 3",
        ["strategy.name=deepspeed", "strategy.deepspeed.offload_parameters=cpu"],
    ),
    (
        "strategy: fsdp.cpu_offload is set but strategy.name is 'ddp'; set strategy.name=fsdp",
        ["strategy.name=ddp", "strategy.fsdp.cpu_offload=true"],
    ),
    (
        "strategy.fsdp: set wrap_modules or wrap_min_params, not both",
        ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]", "strategy.fsdp.wrap_min_params=5"],
    ),
    (
        "trainer.precision: '16-mixed' needs a GPU; on CPU use 'bf16-mixed' or '32-true'",
        ["trainer.precision=16-mixed"],
    ),
]
SECTIONS = ["model", "trainer", "data", "strategy", "checkpoint", "run", "ray", "strategy.fsdp", "model.optimizer"]
keys = st.text(st.characters(whitelist_categories=("Ll",)), min_size=3, max_size=12)
CASES = {"count": 0}


def override(key: str, value: object) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def refused(overrides: list[str], tmp_path) -> str:
    """The one line the loader refuses `overrides` with; the CLI's entry point exits 2 with the same line, and
    nothing is written."""
    CASES["count"] += 1
    before = set(os.listdir(tmp_path))
    try:
        load_config(overrides=[*overrides, f"run.output_root={tmp_path}/runs"])
    except ConfigError as err:
        message = str(err)
    else:
        raise AssertionError(f"accepted: {overrides}")
    assert "\n" not in message, (overrides, message)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["config", "--check", *[arg for item in overrides for arg in ("--set", item)]])
    assert (code, err.getvalue(), out.getvalue()) == (2, f"dsf: error: {message}\n", ""), overrides
    assert set(os.listdir(tmp_path)) == before  # nothing written, no run folder
    return message


def names_the_value(message: str, value: object) -> bool:
    return repr(value) in message or (value != "" and str(value) in message)


invalid_value = st.sampled_from(sorted(INVALID)).flatmap(
    lambda key: st.tuples(st.just(key), st.sampled_from(INVALID[key]))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(invalid_value, st.lists(st.sampled_from(["trainer.max_epochs=2", "data.batch_size=8"]), max_size=2))
def test_invalid_values_are_refused_naming_the_key(tmp_path, case, valid):
    key, value = case
    message = refused([*valid, override(key, value)], tmp_path)
    assert message.startswith(f"{key}: ") and names_the_value(message, value), message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SECTIONS), keys)
def test_unknown_keys_are_refused_naming_the_key(tmp_path, section, key):
    message = refused([f"{section}.zz{key}=1"], tmp_path)
    assert message.startswith(f"{section}.zz{key}: unknown key; "), message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CONTRADICTIONS))
def test_contradictory_strategy_options_are_refused(tmp_path, case):
    expected, overrides = case
    assert refused(overrides, tmp_path) == expected


def test_every_listed_invalid_value_and_contradiction_is_refused(tmp_path):
    """The whole table, each entry once (hypothesis above samples it, with other keys beside)."""
    counted = CASES["count"]
    for key, values in INVALID.items():
        for value in values:
            message = refused([override(key, value)], tmp_path)
            assert message.startswith(f"{key}: ") and names_the_value(message, value), message
    for expected, overrides in CONTRADICTIONS:
        assert refused(overrides, tmp_path) == expected
    listed = sum(map(len, INVALID.values())) + len(CONTRADICTIONS)
    assert CASES["count"] - counted == listed == 63  # the figure benchmarks/RELIABILITY.md gives


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
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"dsf: error: {key}: "), done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
    print(f"invalid configs refused in-process so far: {CASES['count']}, through the CLI: {len(sample)}")
