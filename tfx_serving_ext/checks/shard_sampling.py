"""Samples records from across all of a split's files, reading a bounded number of records.

The validator and the canary need a few hundred examples, not the split: reading "the first N"
sees only the first shard (often one date, one label), and reading everything takes time that
grows with the split. Here the files are laid end to end and `num_examples` positions are drawn
systematically over their bytes (one random offset per seed, then evenly spaced), so each file
gets a share of the sample in proportion to its size and every part of the split is reachable:

- an uncompressed file is read at each position: seek, find the next record boundary, read one
  record (`tfrecords.record_after`);
- a gzip file (ExampleGen's `*.gz`) cannot be entered in the middle, so its share is drawn
  uniformly (reservoir sampling) from its first `WINDOW_FACTOR` x share records: the whole file
  when it is smaller than that;
- when files end before filling their share, the rest is read in order from the files not yet
  finished, within the same budget.

At most `WINDOW_FACTOR` x `num_examples` records are read (plus the files listed and opened), so
the time does not depend on the split's size; the same seed gives the same sample.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tfx_serving_ext.checks.tfrecords import (
    file_size,
    is_gzip,
    open_records,
    read_record,
    record_after,
)

logger = logging.getLogger(__name__)

# Records read per record kept in a gzip file: the head of each shard it samples from.
WINDOW_FACTOR = 16
DEFAULT_SEED = 0


@dataclass
class ShardSample:
    """A sample of records with what reading it cost."""

    records: list[bytes]
    records_read: int = 0
    records_per_file: dict[str, int] = field(default_factory=dict)


@dataclass
class _FileState:
    path: Path
    size: int
    taken: set[int] = field(default_factory=set)  # offsets (plain) or ordinals (gzip) kept
    kept: list[tuple[int, bytes]] = field(default_factory=list)
    count: int | None = None  # how many records the file holds, once read to its end

    @property
    def exhausted(self) -> bool:
        """Returns whether every record of the file is already kept."""
        return self.count is not None and len(self.taken) >= self.count


def _positions(sizes: Sequence[int], count: int, rng: random.Random) -> list[list[float]]:
    """Returns, per file, the positions (fractions of the file) of a systematic sample."""
    total = sum(sizes)
    positions: list[list[float]] = [[] for _ in sizes]
    step = total / count
    point = rng.random() * step
    index, file_start = 0, 0
    for _ in range(count):
        while index < len(sizes) - 1 and point >= file_start + sizes[index]:
            file_start += sizes[index]
            index += 1
        positions[index].append(min((point - file_start) / sizes[index], 1.0))
        point += step
    return positions


def _sample_plain(state: _FileState, positions: list[float]) -> int:
    """Keeps the record after each position of an uncompressed file; returns records read."""
    read = 0
    with open(state.path, "rb") as handle:
        next_free = 0
        for fraction in positions:
            offset = max(int(fraction * state.size), next_free)
            found = record_after(handle, offset, state.size)
            if found is None:  # the position lies in the last record: the top-up fills in
                continue
            offset, record = found
            read += 1
            state.taken.add(offset)
            state.kept.append((offset, record))
            next_free = handle.tell()
    return read


def _sample_gzip(state: _FileState, quota: int, window: int, rng: random.Random) -> int:
    """Keeps `quota` records drawn uniformly from the first `window` records of a gzip file."""
    reservoir: list[tuple[int, bytes]] = []
    read = 0
    with open_records(state.path) as handle:
        while read < window:
            record = read_record(handle, str(state.path))
            if record is None:
                state.count = read
                break
            if len(reservoir) < quota:
                reservoir.append((read, record))
            else:
                slot = int(rng.random() * (read + 1))
                if slot < quota:
                    reservoir[slot] = (read, record)
            read += 1
    reservoir.sort(key=lambda item: item[0])
    state.kept.extend(reservoir)
    state.taken.update(ordinal for ordinal, _ in reservoir)
    return read


def _top_up(state: _FileState, wanted: int, budget: int) -> int:
    """Keeps up to `wanted` more records, read in order from the file's start; returns reads."""
    gzip_file = is_gzip(state.path)
    read = 0
    with open_records(state.path) as handle:
        while wanted > 0 and read < budget:
            key = read if gzip_file else handle.tell()
            record = read_record(handle, str(state.path))
            if record is None:
                state.count = read
                break
            read += 1
            if key not in state.taken:
                state.taken.add(key)
                state.kept.append((key, record))
                wanted -= 1
    state.kept.sort(key=lambda item: item[0])
    return read


def sample_files(
    files: Sequence[str | os.PathLike],
    num_examples: int,
    *,
    seed: int = DEFAULT_SEED,
    max_records_read: int | None = None,
) -> ShardSample:
    """Returns up to `num_examples` records sampled from across `files` (see the module doc).

    Args:
        files: the split's TFRecord files (`*.gz` read as gzip), in a stable order.
        num_examples: how many records to keep.
        seed: the same seed gives the same sample of the same files.
        max_records_read: the reading budget; default WINDOW_FACTOR x num_examples.

    Raises:
        ValueError: num_examples below 1.
        TFRecordError: a file read from its start is not a TFRecord file or is corrupt.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    budget = max(max_records_read or WINDOW_FACTOR * num_examples, num_examples)
    rng = random.Random(seed)
    states = [s for s in (_FileState(Path(f), file_size(f)) for f in files) if s.size > 0]
    read = 0
    if states:
        for state, positions in zip(
            states, _positions([s.size for s in states], num_examples, rng), strict=True
        ):
            if not positions:
                continue
            if is_gzip(state.path):
                window = max(len(positions), len(positions) * budget // num_examples)
                read += _sample_gzip(state, len(positions), window, rng)
            else:
                read += _sample_plain(state, positions)
    kept = sum(len(s.kept) for s in states)
    # Files that ended before filling their share, or got none: fill up in order, in budget.
    order = list(range(len(states)))
    rng.shuffle(order)
    for index in order:
        if kept >= num_examples or read >= budget:
            break
        state = states[index]
        if state.exhausted:
            continue
        before = len(state.kept)
        read += _top_up(state, num_examples - kept, budget - read)
        kept += len(state.kept) - before
    records = [record for s in states for _, record in s.kept]
    logger.info("Sampled %d records from %d files, reading %d", len(records), len(states), read)
    return ShardSample(
        records=records,
        records_read=read,
        records_per_file={str(s.path): len(s.kept) for s in states},
    )
