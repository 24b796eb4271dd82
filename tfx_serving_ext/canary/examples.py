"""Reads the canary's traffic examples from an Examples artifact, a TFRecord file or a CSV file.

- a directory with `Split-<name>/` subdirectories (an ExampleGen output): read through
  `serving.examples.read_examples` (the split asked for, else `eval`, else the first);
- a TFRecord file of serialized tf.Examples (`*.gz` is read as gzip), or a directory of them;
- a CSV file with a header row: one tf.Example per row, a column typed as CsvExampleGen types it
  (all integers -> int64, all numbers -> float, otherwise bytes); empty cells are left out.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from tfx_serving_ext.checks.examples import SPLIT_PREFIX, iter_records, read_examples


class ExamplesPathError(ValueError):
    """The path is not an Examples artifact, a TFRecord file or a CSV file."""


def _column_kind(values: list[str]) -> str:
    present = [v for v in values if v != ""]
    try:
        for value in present:
            int(value)
        return "int"
    except ValueError:
        pass
    try:
        for value in present:
            float(value)
        return "float"
    except ValueError:
        return "bytes"


def csv_examples(path: str | os.PathLike, limit: int | None = None) -> list[bytes]:
    """Returns up to `limit` serialized tf.Examples, one per CSV row.

    Raises:
        ExamplesPathError: the file has no header row.
    """
    import tensorflow as tf

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ExamplesPathError(f"{path} has no data rows under a header row")
    rows = rows[:limit] if limit else rows
    kinds = {name: _column_kind([row[name] or "" for row in rows]) for name in rows[0]}
    examples = []
    for row in rows:
        feature = {}
        for name, kind in kinds.items():
            value = row[name] or ""
            if value == "":
                continue
            if kind == "int":
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
            elif kind == "float":
                feature[name] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=[float(value)])
                )
            else:
                feature[name] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[value.encode()])
                )
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        examples.append(example.SerializeToString())
    return examples


def load_examples(
    path: str | os.PathLike, *, limit: int | None = None, split: str | None = None
) -> list[bytes]:
    """Returns up to `limit` serialized tf.Examples read from `path` (see the module docstring).

    Raises:
        ExamplesPathError: nothing readable at `path`.
    """
    source = Path(path)
    if source.is_dir():
        if any(p.is_dir() for p in source.glob(f"{SPLIT_PREFIX}*")):
            return read_examples(source, split, limit=limit)
        files = sorted(p for p in source.iterdir() if p.is_file())
    elif source.is_file():
        if source.suffix.lower() == ".csv":
            return csv_examples(source, limit)
        files = [source]
    else:
        raise ExamplesPathError(f"{source} does not exist")
    if not files:
        raise ExamplesPathError(f"{source} holds no example files")
    records = []
    try:
        for record in iter_records(files):
            if limit is not None and len(records) >= limit:
                break
            records.append(record)
    except Exception as exc:  # tf.errors.DataLossError and friends
        raise ExamplesPathError(
            f"{source} is not a TFRecord file of tf.Examples (nor a CSV or an Examples "
            f"artifact): {exc}"
        ) from exc
    return records
