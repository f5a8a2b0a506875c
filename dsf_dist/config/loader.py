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
    check_machine, also against this machine (files, devices, installed packages)."""
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
        raise ConfigError(describe(err, source=path)) from None
    check_trainer(cfg.trainer)
    if check_machine:
        check_against_machine(cfg)
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
    """Apply `a.b.c=value`; the value is parsed as YAML, so `3`, `true` and `[64, 32]` get their types."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set trainer.max_epochs=3")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    *parents, leaf = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {key}: {where} is a value, not a section; set {where}=... directly")
        node = child
    node[leaf] = value


def describe(err: ValidationError, source: str | Path | None) -> str:
    """The first validation error as one line: '<key.path>: <problem>; <fix>'."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "(top level)"
    prefix = f"{source}: " if source else ""
    if first["type"] == "extra_forbidden":
        return prefix + f"{key}: unknown key; {suggest(loc[-1], sibling_keys(loc[:-1]))}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "assertion_error"):
        message += f" (got {first.get('input')!r})"
    return prefix + f"{key}: {message}"


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


def check_trainer(trainer: dict[str, Any]) -> None:
    """Every trainer key must be a pl.Trainer argument, of a type pl.Trainer takes."""
    for key, value in trainer.items():
        if key in TRAINER_ARGS_OWNED:
            raise ConfigError(f"trainer.{key}: dsf sets this itself; {TRAINER_ARGS_OWNED[key]}")
        if key not in TRAINER_ARGS:
            raise ConfigError(f"trainer.{key}: unknown key; {suggest(key, list(TRAINER_ARGS))}")
        try:
            TypeAdapter(TRAINER_ARGS[key]).validate_python(value)
        except ValidationError:
            expected = str(TRAINER_ARGS[key]).replace("typing.", "")
            raise ConfigError(f"trainer.{key}: {value!r} is not a valid value; pl.Trainer expects {expected}") from None
    devices = trainer.get("devices")
    if isinstance(devices, int) and devices < 1 and devices != -1:
        raise ConfigError(f"trainer.devices: {devices} devices is impossible; use a count >= 1, or -1 for all")
    # Lightning's own spellings: "auto", "-1", a count ("2") or device indices ("0,1"); anything else fails late.
    if isinstance(devices, str) and not re.fullmatch(r"auto|-1|\d+|\d+(,\d*)+", devices.strip()):
        raise ConfigError(f"trainer.devices: {devices!r} is not a device count; use a number, a list, or 'auto'")


def dump(cfg: DsfConfig) -> str:
    """The resolved config as YAML; loading it back gives the same config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
