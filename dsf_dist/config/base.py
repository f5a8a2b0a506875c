"""What every config section shares: unknown keys refused, and the checks of import paths and folder names."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 where a number is expected (`batch_size: true` would train with batch size 1).
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and wants_number(field.annotation):
            example = f", e.g. {field.default}" if isinstance(field.default, int | float) else ""
            raise ValueError(f"{str(value).lower()} is a boolean where a number is expected; give a number{example}")
        return value


def wants_number(annotation: Any) -> bool:
    """An int or float field (optional, or a Literal of numbers), which a bool would silently pass."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return any(type(arg) in (int, float) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return bool not in args and any(wants_number(arg) for arg in args)
    return annotation in (int, float)


def import_path(value: str | None) -> str | None:
    if value is not None and not IMPORT_PATH.match(value):
        raise ValueError(f"'{value}' is not an import path; write it as 'package.module:name'")
    return value
