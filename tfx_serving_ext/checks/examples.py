"""Finds and reads the tf.Example records of an Examples artifact (`<uri>/Split-<name>/*`).

ExampleGen writes each split as TFRecord files (gzip-compressed, `*.gz`) of serialized
tf.Example. This module picks the split (the one asked for, else `eval`, else the first) and
samples a bounded number of records from across all its files (`shard_sampling`), for the
validator and the canary: the time does not grow with the split, and a split sorted by date or
label still gives examples from all of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tfx_serving_ext.checks.shard_sampling import DEFAULT_SEED, ShardSample, sample_files
from tfx_serving_ext.checks.tfrecords import iter_file_records

SPLIT_PREFIX = "Split-"
DEFAULT_SPLIT = "eval"


class ExamplesError(ValueError):
    """The Examples artifact has no such split, or the split holds no files."""


def available_splits(examples_uri: str | os.PathLike, split_names: str | None = None) -> list[str]:
    """Returns the split names of an Examples artifact, in their recorded order.

    Args:
        examples_uri: the artifact's URI.
        split_names: the artifact's `split_names` property (a JSON list), if known; otherwise
            the `Split-*` directories under the URI are listed.
    """
    if split_names:
        return list(json.loads(split_names))
    root = Path(examples_uri)
    return sorted(p.name[len(SPLIT_PREFIX) :] for p in root.glob(f"{SPLIT_PREFIX}*") if p.is_dir())


def choose_split(splits: Sequence[str], wanted: str | None = None) -> str:
    """Returns `wanted` if given, else `eval` when present, else the first split.

    Raises:
        ExamplesError: `wanted` is not among `splits`, or there are no splits.
    """
    if not splits:
        raise ExamplesError("the Examples artifact has no splits (no Split-<name> directories)")
    if wanted:
        if wanted not in splits:
            raise ExamplesError(f"no split {wanted!r} in the Examples artifact; it has {splits}")
        return wanted
    return DEFAULT_SPLIT if DEFAULT_SPLIT in splits else splits[0]


def split_files(examples_uri: str | os.PathLike, split: str) -> list[Path]:
    """Returns the record files of one split, sorted.

    Raises:
        ExamplesError: the split directory is missing or empty.
    """
    directory = Path(examples_uri) / f"{SPLIT_PREFIX}{split}"
    files = sorted(p for p in directory.glob("*") if p.is_file())
    if not files:
        raise ExamplesError(f"{directory} holds no example files; was ExampleGen run on it?")
    return files


def split_pattern(examples_uri: str | os.PathLike, split: str) -> str:
    """Returns the glob pattern of one split's files (for Beam's ReadFromTFRecord)."""
    return str(Path(examples_uri) / f"{SPLIT_PREFIX}{split}" / "*")


def iter_records(files: Sequence[str | os.PathLike]) -> Iterator[bytes]:
    """Yields every record of TFRecord files, in order; `*.gz` files are read as gzip.

    Raises:
        TFRecordError: a file is not a TFRecord file or is corrupt.
    """
    for path in files:
        yield from iter_file_records(path)


def sample_split(
    examples_uri: str | os.PathLike,
    split: str | None = None,
    *,
    num_examples: int,
    seed: int = DEFAULT_SEED,
    split_names: str | None = None,
) -> ShardSample:
    """Returns `num_examples` records sampled from across a split, with what reading cost.

    Raises:
        ExamplesError: the split is missing or empty.
        TFRecordError: a file of the split is not a TFRecord file or is corrupt.
    """
    chosen = choose_split(available_splits(examples_uri, split_names), split)
    return sample_files(split_files(examples_uri, chosen), num_examples, seed=seed)


def read_examples(
    examples_uri: str | os.PathLike,
    split: str | None = None,
    *,
    limit: int | None = None,
    split_names: str | None = None,
    seed: int = DEFAULT_SEED,
) -> list[bytes]:
    """Returns up to `limit` serialized tf.Examples from a split (default: eval, else the first).

    With a `limit`, they are sampled from across all the split's files, reading a bounded number
    of records (the same ones for the same seed); without, every record is returned.

    Raises:
        ExamplesError: the split is missing or empty.
        TFRecordError: a file of the split is not a TFRecord file or is corrupt.
    """
    if limit is not None:
        if limit < 1:
            return []
        return sample_split(
            examples_uri, split, num_examples=limit, seed=seed, split_names=split_names
        ).records
    chosen = choose_split(available_splits(examples_uri, split_names), split)
    return list(iter_records(split_files(examples_uri, chosen)))
