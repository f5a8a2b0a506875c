"""What every config section shares: unknown keys refused, and the checks of import paths and folder names."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def import_path(value: str | None) -> str | None:
    if value is not None and not IMPORT_PATH.match(value):
        raise ValueError(f"'{value}' is not an import path; write it as 'package.module:name'")
    return value
