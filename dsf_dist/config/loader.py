"""YAML + --set overrides -> a validated DsfConfig, or one ConfigError line naming the key path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from dsf_dist.config.machine import check_against_machine
from dsf_dist.config.schema import DsfConfig, default_trainer
from dsf_dist.config.trainer_args import TRAINER_ARGS, TRAINER_ARGS_OWNED
from dsf_dist.errors import ConfigError


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    output_root: str | None = None,
    check_machine: bool = True,
) -> DsfConfig:
    """Read the YAML file (None: the embedded default), apply `key.path=value` overrides, validate; with
    check_machine, also against this machine (files, devices, installed packages). With a file, an error names
    where the value came from: the file, or the --set that overrode it (without one, every value that is not a
    default came from a --set, and the key path names it)."""
    raw = read_yaml(path) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    if output_root is not None:
        raw.setdefault("run", {})["output_root"] = output_root
    if isinstance(raw.get("trainer"), dict):
        raw["trainer"] = {**default_trainer(), **raw["trainer"]}
    try:
        cfg = DsfConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe(err, source=path, overrides=overrides)) from None
    checks = [check_trainer, *([check_against_machine] if check_machine else [])]
    for check in checks:
        try:
            check(cfg)
        except ConfigError as err:
            text = str(err)
            cause = override_of(text.partition(":")[0].split("."), overrides) if path is not None else None
            raise ConfigError(f"--set {cause}: {text}" if cause else text) from None
    return cfg


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping; a file that is not UTF-8 YAML text, or a mapping with a key twice, is one line
    naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the path given to -c/--config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a text file (byte {err.start} is not UTF-8); give the YAML config file to -c/--config"
        ) from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: plain data, no Python tags
    except DuplicateKey as err:
        raise ConfigError(f"{path} line {err.problem_mark.line + 1}: {err.problem}; keep one of them") from None
    except yaml.reader.ReaderError as err:  # a control character: a binary file that happens to be valid UTF-8
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise ConfigError(
            f"{path}: not a YAML text file (control character #x{code:04x} at position {err.position}); "
            "give the YAML config file to -c/--config"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}; fix the YAML syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, trainer, data, ...)")
    return raw


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names one key twice; YAML would silently keep the last value."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a mapping that holds a key twice (`max_epochs: 1` then `max_epochs: 2`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: keys it brings may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):  # unhashable: SafeLoader's own error says so
                continue
            if key in seen:
                raise DuplicateKey(
                    None,
                    None,
                    f"key '{key}' appears twice in one mapping (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply `a.b.c=value`; the value is parsed as YAML, so `3`, `true` and `[64, 32]` get their types. A value
    that is not YAML (`[256,`) or is missing (`a.b=`) is refused rather than stored as a string or a null."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set trainer.max_epochs=3")
    if not text.strip():
        raise ConfigError(f"--set {item}: no value after '='; give one, or null to unset {key.strip()}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"--set {item}: the value is not valid YAML ({problem}); fix it (a list: [256, 128]) or quote a string"
        ) from None
    *parents, leaf = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {key}: {where} is a value, not a section; set {where}=... directly")
        node = child
    node[leaf] = value


def override_of(loc: Sequence[str], overrides: Sequence[str]) -> str | None:
    """The last --set that wrote the value at `loc` (or a section holding it), if one did."""
    for item in reversed(overrides):
        path = item.partition("=")[0].strip().split(".")
        if list(loc[: len(path)]) == path:
            return item
    return None


def describe(err: ValidationError, source: str | Path | None, overrides: Sequence[str] = ()) -> str:
    """The first validation error as one line: '<where>: <key.path>: <problem>; <fix>', where is the --set that
    set the value, else the config file (none without a file)."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "(top level)"
    cause = override_of(loc, overrides) if source is not None else None
    prefix = f"--set {cause}: " if cause else f"{source}: " if source else ""
    if first["type"] == "extra_forbidden":
        return prefix + f"{key}: unknown key; {suggest(loc[-1], sibling_keys(loc[:-1]))}"
    message = shape_mistake(first, loc) or first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "assertion_error") and not shape_mistake(first, loc):
        message += f" (got {first.get('input')!r})"
    return prefix + f"{key}: {message}"


def shape_mistake(error: dict[str, Any], loc: list[str]) -> str | None:
    """A single value where a section or a list belongs (`strategy: ddp`), with the form to write instead."""
    value, key = error.get("input"), ".".join(loc)
    if error["type"] == "model_type" and not isinstance(value, dict):
        fields = sibling_keys(loc)
        if "name" in fields and isinstance(value, str):
            section = f"write {key}: {{name: {value}}} (--set {key}.name={value})"
            return f"{value!r} is a value, but {key} is a section; {section}"
        example = f", e.g. {key}: {{{fields[0]}: ...}}" if fields else ""
        return f"{value!r} is a value, but {key} is a section; write its keys{example}"
    if error["type"] == "list_type" and not isinstance(value, list | tuple | set):
        flow = yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()
        return f"{flow[1:-1]} is a single value, but {key} takes a list; write {key}: {flow}"
    return None


def sibling_keys(parents: list[str]) -> list[str]:
    """Field names of the section at `parents`, for 'did you mean' hints."""
    model: type[BaseModel] | None = DsfConfig
    for part in parents:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model else []


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"valid keys: {', '.join(choices)}" if choices else "remove it"


def check_trainer(cfg: DsfConfig) -> None:
    """Every trainer key must be a pl.Trainer argument, of a type pl.Trainer takes (a true/false only where it
    takes a bool: pydantic alone would read `max_epochs: true` as 1)."""
    trainer = cfg.trainer
    for key, value in trainer.items():
        if key in TRAINER_ARGS_OWNED:
            raise ConfigError(f"trainer.{key}: dsf sets this itself; {TRAINER_ARGS_OWNED[key]}")
        if key not in TRAINER_ARGS:
            raise ConfigError(f"trainer.{key}: unknown key; {suggest(key, list(TRAINER_ARGS))}")
        try:
            TypeAdapter(TRAINER_ARGS[key]).validate_python(value, strict=isinstance(value, bool))
        except ValidationError:
            expected = str(TRAINER_ARGS[key]).replace("typing.", "")
            raise ConfigError(f"trainer.{key}: {value!r} is not a valid value; pl.Trainer expects {expected}") from None
    devices = trainer.get("devices")
    if isinstance(devices, int) and devices < 1 and devices != -1:
        raise ConfigError(f"trainer.devices: {devices} devices is impossible; use a count >= 1, or -1 for all")
    # Lightning's own spellings: "auto", "-1", a count ("2") or device indices ("0,1"); anything else fails late.
    if isinstance(devices, str) and not re.fullmatch(r"auto|-1|\d+|\d+(,\d*)+", devices.strip()):
        raise ConfigError(f"trainer.devices: {devices!r} is not a device count; use a number, a list, or 'auto'")


def check_strategy_devices(cfg: DsfConfig) -> None:
    """For a config that `dsf run` or `dsf train` will run (and `dsf config --check`): strategy.name auto trains in
    one process, and more than one device (or node) would start Lightning's own launcher behind dsf's back, each
    rank making its own run folder. `dsf doctor` judges every strategy with such a trainer section, so the loader
    itself allows it."""
    if cfg.strategy.name != "auto":
        return
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    if isinstance(devices, str) and re.fullmatch(r"\d+", devices.strip()):
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = [part for part in devices.split(",") if part.strip()]
    count = len(devices) if isinstance(devices, list) else devices
    if isinstance(count, int) and count > 1:
        raise ConfigError(
            f"strategy.name: auto trains in one process, but trainer.devices is {count}; set strategy.name to "
            "ddp (or ddp_spawn, fsdp, deepspeed), or trainer.devices=1"
        )
    if isinstance(nodes, int) and nodes > 1:
        raise ConfigError(
            f"strategy.name: auto trains in one process, but trainer.num_nodes is {nodes}; set strategy.name to "
            "ddp (or fsdp, deepspeed), or trainer.num_nodes=1"
        )


def dump(cfg: DsfConfig) -> str:
    """The resolved config as YAML; loading it back gives the same config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
