"""Reads the canary's traffic examples from an Examples artifact, a TFRecord file or a CSV file.

- a directory with `Split-<name>/` subdirectories (an ExampleGen output): read through
  `checks.examples.read_examples` (the split asked for, else `eval`, else the first);
- a TFRecord file of serialized tf.Examples (`*.gz` is read as gzip), or a directory of them;
- a CSV file with a header row: one tf.Example per row, a column typed as CsvExampleGen types it
  (all integers -> int64, all numbers -> float, otherwise bytes); empty cells are left out.

With a `limit`, the examples are a sample from across all the files (`checks.shard_sampling`:
bounded reads, the same for the same seed) or all the CSV's rows (a reservoir of `limit` rows,
kept in file order), never the first `limit` alone.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from tfx_serving_ext.checks.examples import SPLIT_PREFIX, iter_records, read_examples
from tfx_serving_ext.checks.shard_sampling import DEFAULT_SEED, sample_files
from tfx_serving_ext.checks.tfrecords import TFRecordError


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


def _csv_rows(path: str | os.PathLike, limit: int | None, seed: int) -> list[dict]:
    """Returns the CSV's rows, or a uniform sample of `limit` of them in file order."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not limit:
            return list(reader)
        rng = random.Random(seed)
        reservoir: list[tuple[int, dict]] = []
        for number, row in enumerate(reader):
            if len(reservoir) < limit:
                reservoir.append((number, row))
            else:
                slot = int(rng.random() * (number + 1))
                if slot < limit:
                    reservoir[slot] = (number, row)
    return [row for _, row in sorted(reservoir, key=lambda item: item[0])]


def csv_examples(
    path: str | os.PathLike, limit: int | None = None, *, seed: int = DEFAULT_SEED
) -> list[bytes]:
    """Returns up to `limit` serialized tf.Examples, one per CSV row (sampled over all rows).

    Raises:
        ExamplesPathError: the file has no header row.
    """
    import tensorflow as tf

    rows = _csv_rows(path, limit, seed)
    if not rows:
        raise ExamplesPathError(f"{path} has no data rows under a header row")
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
    path: str | os.PathLike,
    *,
    limit: int | None = None,
    split: str | None = None,
    seed: int = DEFAULT_SEED,
) -> list[bytes]:
    """Returns up to `limit` serialized tf.Examples read from `path` (see the module docstring).

    Raises:
        ExamplesPathError: nothing readable at `path`.
    """
    source = Path(path)
    if source.is_dir():
        if any(p.is_dir() for p in source.glob(f"{SPLIT_PREFIX}*")):
            return read_examples(source, split, limit=limit, seed=seed)
        files = sorted(p for p in source.iterdir() if p.is_file())
    elif source.is_file():
        if source.suffix.lower() == ".csv":
            return csv_examples(source, limit, seed=seed)
        files = [source]
    else:
        raise ExamplesPathError(f"{source} does not exist")
    if not files:
        raise ExamplesPathError(f"{source} holds no example files")
    try:
        if limit:
            return sample_files(files, limit, seed=seed).records
        return list(iter_records(files))
    except TFRecordError as exc:
        raise ExamplesPathError(
            f"{source} is not a TFRecord file of tf.Examples (nor a CSV or an Examples "
            f"artifact): {exc}"
        ) from exc
