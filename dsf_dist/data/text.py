"""Text from local files, for every text task: `.txt`, `.jsonl` (`.json`), `.csv` and `.parquet` through Hugging Face
`datasets` (`load_dataset("text" / "json" / "csv" / "parquet", data_files=...)`), in, a `datasets.Dataset` with the
named columns, out. Nothing is downloaded, and nothing here knows a task.

Bad files are refused in one line naming the file (and the line, where there is one) and the fix: a missing or
empty file, a line that is not JSON, a field or column that is missing, null or not text. The cache `datasets`
keeps (its Arrow copy of each file, and whatever a task's `.map` adds) lives in one place, `cache_dir(cfg)`.
Needs the hf extra (datasets).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError

if TYPE_CHECKING:
    import datasets

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
STRING_TYPES = ("string", "large_string")


def cache_dir(cfg: DsfConfig) -> Path:
    """Where `datasets` caches: data.cache_dir if set, else `<run.output_root>/.cache/datasets`, beside the run
    folders and never inside one (files are read before a run folder may be written) nor in the user's home."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run.output_root) / ".cache" / "datasets"


def read_text(
    path: str | Path,
    text: Sequence[str] = ("text",),
    extra: Sequence[str] = (),
    *,
    key: str = "data.path",
    field_key: str | None = "data.text_field",
    cache: Path,
    txt_sample_by: Literal["line", "paragraph", "document"] = "paragraph",
) -> datasets.Dataset:
    """The file at `path` (named in the config by `key`) as a Dataset holding exactly the columns `text` (strings)
    and `extra` (any type, e.g. a label), each present and non-null in every row. A `.txt` file has one column,
    `text`: one row per line, per paragraph (blank-line separated, the default) or for the whole file.
    `field_key` is the config key that names the fields, for the fix in an error (None: the names are fixed)."""
    path = Path(path)
    builder = _builder(path, key)
    columns = [*text, *extra]
    if builder == "text" and columns != ["text"]:
        wanted = next(column for column in columns if column != "text")
        raise ConfigError(f"{key}: {path} is plain text, which has no '{wanted}' field; give a .jsonl or .parquet file")
    kwargs = {"sample_by": txt_sample_by} if builder == "text" else {}
    dataset = _load(builder, path, cache, **kwargs)
    if len(dataset) == 0:
        raise ConfigError(f"{key}: {path} holds no rows; give a file with at least one")
    for column in columns:
        _require_column(dataset, path, column, field_key, is_text=column in text)
    return dataset.select_columns(columns)


def python_docs() -> datasets.Dataset:
    """Python's own documentation as text that needs no download: `pydoc_data.topics` (79 help topics, about
    465 KB of English, shipped with every CPython), one row per topic, columns `title` and `text`, by title."""
    from pydoc_data.topics import topics

    datasets = datasets_module()

    titles = sorted(topics)
    return datasets.Dataset.from_dict({"title": titles, "text": [topics[title] for title in titles]})


def datasets_module():
    """`datasets`, without its progress bars (a run's output is dsf's own)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("text data needs Hugging Face datasets; run `dsf install-trainer-packages hf`") from None
    datasets.disable_progress_bars()
    return datasets


# -- reading ------------------------------------------------------------------------------------------------------
def _builder(path: Path, key: str) -> str:
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist; give a .txt, .jsonl or .parquet file")
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file; give a .txt, .jsonl or .parquet file")
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ConfigError(f"{key}: {path} is not a .txt, .jsonl, .csv or .parquet file; convert it to one of those")
    if path.stat().st_size == 0 or (builder != "parquet" and not _has_text(path)):
        raise ConfigError(f"{key}: {path} is empty; give a file with at least one document")
    if builder == "parquet" and _parquet_rows(path) == 0:
        # datasets' parquet reader fails on a file without rows ("BatchSize must be greater than 0"): said here
        raise ConfigError(f"{key}: {path} holds no rows; give a file with at least one")
    return builder


def _parquet_rows(path: Path) -> int:
    """The row count in a parquet file's footer. No footer is refused here: datasets reads the schema outside
    the step whose errors it wraps, so its ArrowInvalid would reach the user as a traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError) as err:
        raise _unreadable("parquet", path, err) from None


def _has_text(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(chunk.strip() for chunk in iter(lambda: handle.read(1 << 20), b""))


def _load(builder: str, path: Path, cache: Path, **kwargs: Any) -> datasets.Dataset:
    datasets = datasets_module()
    try:
        with _quiet():
            return datasets.load_dataset(
                builder, data_files=str(path.resolve()), split="train", cache_dir=str(cache), **kwargs
            )
    except datasets.exceptions.DatasetGenerationError as err:
        raise _unreadable(builder, path, err.__cause__ or err) from None


@contextmanager
def _quiet() -> Iterator[None]:
    """datasets logs a failed parse at ERROR level before raising it; the one-line error says it instead."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _unreadable(builder: str, path: Path, cause: BaseException) -> ConfigError:
    if builder == "json":
        line, reason = _first_bad_json_line(path)
        if line is not None:
            return ConfigError(f"{path}:{line}: not a JSON object ({reason}); write one JSON object per line")
    first = str(cause).strip().splitlines()[0][:160] if str(cause).strip() else type(cause).__name__
    kind = {"json": "JSON Lines", "parquet": "Parquet", "text": "UTF-8 text", "csv": "CSV"}[builder]
    return ConfigError(f"{path}: not a readable {kind} file ({first}); fix or replace the file")


def _first_bad_json_line(path: Path) -> tuple[int | None, str]:
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            return number, err.args[0].split(":")[0] if err.args else "invalid JSON"
        if not isinstance(record, dict):
            return number, f"a JSON {type(record).__name__}, not an object"
    return None, ""


# -- checking columns ---------------------------------------------------------------------------------------------
def place(path: Path, row: int) -> str:
    """Where row `row` (from 0) of a file read_text read is, for an error: `file:line` for JSON Lines, else
    `file row N` (N from 1)."""
    if _json_lines(path):
        return f"{path}:{_line_of_row(path, row)}"
    return f"{path} row {row + 1}"


def _json_lines(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json")


def _require_column(dataset: datasets.Dataset, path: Path, column: str, field_key: str | None, is_text: bool) -> None:
    json_lines = _json_lines(path)
    what = "field" if json_lines else "column"
    if column not in dataset.column_names:
        line, reason = _first_bad_json_line(path) if json_lines else (None, "")
        if line is not None:  # lines that are JSON but not objects load as one 'text' column: name the first
            raise ConfigError(f"{path}:{line}: not a JSON object ({reason}); write one JSON object per line")
        found = ", ".join(dataset.column_names) or "none"
        fix = f"set {field_key} to the {what} that holds it" if field_key else f"give every row a '{column}' {what}"
        raise ConfigError(f"{path}: no row has a '{column}' {what} ({what}s: {found}); {fix}")
    feature = dataset.features[column]
    dtype = getattr(feature, "dtype", type(feature).__name__)
    if is_text and dtype not in STRING_TYPES:
        fix = f"set {field_key} to a text {what}" if field_key else f"write '{column}' as text"
        raise ConfigError(f"{path}: '{column}' holds {dtype}, not text; {fix}")
    missing = _first_null(dataset, column)
    if missing is None:
        return
    if json_lines:
        line = _line_of_row(path, missing)
        fix = f"add it, or set {field_key} to the field that holds the text" if field_key else "add it"
        raise ConfigError(f"{path}:{line}: no '{column}' field (the line has: {_fields_on_line(path, line)}); {fix}")
    raise ConfigError(f"{path}: row {missing + 1} has no '{column}' (null); fill it or drop the row")


def _first_null(dataset: datasets.Dataset, column: str) -> int | None:
    import pyarrow.compute as pc

    values = dataset.data.column(column)
    if values.null_count == 0:
        return None
    return int(pc.index(pc.is_null(values), True).as_py())


def _line_of_row(path: Path, row: int) -> int:
    """JSON Lines rows are the file's non-blank lines, in order."""
    seen = -1
    with path.open(errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return row + 1


def _fields_on_line(path: Path, line: int) -> str:
    with path.open(errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            if number == line:
                try:
                    record = json.loads(text)
                except ValueError:
                    return "unreadable"
                null = [name for name, value in record.items() if value is None]
                fields = [f"{name} (null)" if name in null else name for name in record]
                return ", ".join(fields) or "no fields"
    return "no fields"
