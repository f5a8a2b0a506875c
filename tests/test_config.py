from pathlib import Path

import pytest
import yaml

from dsf_dist.config import DsfConfig, dump, load_config
from dsf_dist.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def refused(tmp_path: Path | None = None, text: str | None = None, overrides=()) -> str:
    path = None
    if text is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_embedded_default_is_configs_default_yaml():
    assert load_config(REPO / "configs" / "default.yaml") == load_config()


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    found = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found |= leaves(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path, tmp_path):
    """Every value the file sets is the value loaded (none dropped or renamed), and the resolved config written to
    a run folder loads back to the same config."""
    cfg = load_config(path)
    written = yaml.safe_load(path.read_text()) or {}
    loaded = leaves(yaml.safe_load(dump(cfg)))
    assert written and {key: loaded.get(key, "<missing>") for key in leaves(written)} == leaves(written)
    (tmp_path / "resolved.yaml").write_text(dump(cfg))
    assert load_config(tmp_path / "resolved.yaml") == cfg


def test_dump_round_trips(tmp_path):
    cfg = load_config(overrides=["run.name=x", "trainer.max_epochs=3", "model.network_kwargs.hidden_sizes=[32]"])
    (tmp_path / "c.yaml").write_text(dump(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_are_typed_by_yaml():
    cfg = load_config(overrides=["trainer.max_epochs=3", "strategy.name=ddp_spawn", "model.optimizer.lr=0.01"])
    assert cfg.trainer["max_epochs"] == 3
    assert cfg.strategy.name == "ddp_spawn"
    assert cfg.model.optimizer.lr == 0.01


def test_partial_trainer_section_keeps_other_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("trainer:\n  max_epochs: 2\n")
    trainer = load_config(tmp_path / "c.yaml").trainer
    assert trainer["max_epochs"] == 2 and trainer["accelerator"] == "cpu" and trainer["devices"] == 1


def test_unknown_trainer_key_suggests_the_real_one():
    assert refused(overrides=["trainer.max_epoch=3"]) == "trainer.max_epoch: unknown key; did you mean max_epochs?"


def test_unknown_section_key_suggests(tmp_path):
    message = refused(tmp_path, "model:\n  optimzer: {lr: 0.1}\n")
    assert message.endswith("model.optimzer: unknown key; did you mean optimizer?")
    assert str(tmp_path / "bad.yaml") in message


def test_unknown_top_level_section(tmp_path):
    assert "trainr: unknown key; did you mean trainer?" in refused(tmp_path, "trainr: {}\n")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs: 'abc' is not a valid value"),
        ("data.batch_size=0", "data.batch_size: Input should be greater than or equal to 1"),
        ("data.split.train=0.9", "data.split: train + val + test is 1.2"),
        ("strategy.name=horovod", "strategy.name: Input should be 'auto', 'ddp', 'ddp_spawn', 'fsdp' or 'deepspeed'"),
        ("trainer.strategy=ddp", "trainer.strategy: dsf sets this itself; set strategy.name instead"),
        ("trainer.devices=0", "trainer.devices: 0 devices is impossible"),
        ("run.name=../escape", "run.name: '../escape' is not a safe folder name"),
        ("model.network=resnet", "model.network: 'resnet' is neither"),
        ("existing_model.kind=checkpoint", "existing_model: kind is 'checkpoint' but existing_model.path is empty"),
        ("existing_model.path=/no/such.ckpt", None),
        ("model.optimizer.lr.x=1", "model.optimizer.lr: Input should be a valid number"),
        ("justakey", "--set justakey: expected KEY=VALUE"),
    ],
)
def test_bad_values_are_refused_with_the_key(override, expected):
    if expected is None:  # a path set while its kind does not use it is allowed
        load_config(overrides=[override])
        return
    assert refused(overrides=[override]).startswith(expected)


def test_missing_existing_checkpoint_file():
    message = refused(overrides=["existing_model.kind=checkpoint", "existing_model.path=/no/such.ckpt"])
    assert message.startswith("existing_model.path: /no/such.ckpt does not exist")


def test_override_into_a_value_from_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  task: classification\n")
    with pytest.raises(ConfigError, match=r"--set model.task.x: model.task is a value, not a section"):
        load_config(tmp_path / "c.yaml", ["model.task.x=1"])


def test_pretrained_folder_must_hold_weights_and_config(tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")
    message = refused(overrides=["existing_model.kind=pretrained", f"existing_model.path={tmp_path}"])
    assert message == f"existing_model.path: {tmp_path} has no model.safetensors; give a folder `dsf export` wrote"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path):
    message = refused(tmp_path, "trainer:\n  max_epochs: [1\n")
    assert "bad.yaml line 3: " in message and message.endswith("; fix the YAML syntax")


def test_top_level_must_be_a_mapping(tmp_path):
    assert "top level must be a mapping" in refused(tmp_path, "- a\n- b\n")


def test_separate_test_set_requires_zero_test_fraction(tmp_path):
    test_file = tmp_path / "test.csv"
    test_file.write_text("")
    message = refused(overrides=[f"data.test_path={test_file}"])
    assert "set data.split.test to 0" in message


def test_schema_defaults_are_the_documented_digits_run():
    cfg = DsfConfig()
    assert cfg.data.dataset == "digits" and cfg.existing_model.kind == "callable"
    assert yaml.safe_load(dump(cfg))["run"]["name"] is None


def test_trainer_args_snapshot_matches_installed_lightning():
    import inspect

    import pytorch_lightning as pl

    from dsf_dist.config.trainer_args import TRAINER_ARGS, TRAINER_ARGS_OWNED

    real = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    assert set(TRAINER_ARGS) | set(TRAINER_ARGS_OWNED) == real
    assert not set(TRAINER_ARGS) & set(TRAINER_ARGS_OWNED)


def test_loading_a_config_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys\nfrom dsf_dist.config import load_config\nload_config(overrides=['trainer.max_epochs=2'])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning')]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
