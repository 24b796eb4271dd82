"""Sampling examples at scale: from every shard, the same for a seed, in bounded reads and memory.

The splits are written by TensorFlow's own TFRecord writer, as ExampleGen writes them (gzip
`*.gz` shards) and uncompressed; each record names its shard and its position in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfx_serving_ext.canary.examples import ExamplesPathError, load_examples
from tfx_serving_ext.checks.example_sampling import (
    bottom_k_sample_fn,
    record_priority,
    sample_examples,
)
from tfx_serving_ext.checks.examples import read_examples, sample_split, split_pattern
from tfx_serving_ext.checks.shard_sampling import WINDOW_FACTOR, sample_files
from tfx_serving_ext.checks.tfrecords import TFRecordError, iter_file_records, record_after


def _record(shard: int, index: int) -> bytes:
    return json.dumps({"shard": shard, "index": index, "pad": "x" * (index % 37)}).encode()


def _where(record: bytes) -> tuple[int, int]:
    value = json.loads(record)
    return value["shard"], value["index"]


def write_split(root: Path, shards: int, per_shard: int, *, gzip: bool = True) -> Path:
    """Writes `<root>/Split-eval/` with `shards` TFRecord files of `per_shard` records each."""
    import tensorflow as tf

    directory = root / "Split-eval"
    directory.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    suffix = ".gz" if gzip else ""
    for shard in range(shards):
        name = f"data_tfrecord-{shard:05d}-of-{shards:05d}{suffix}"
        with tf.io.TFRecordWriter(str(directory / name), options) as writer:
            for index in range(per_shard):
                writer.write(_record(shard, index))
    return root


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("splits")
    return {
        "gzip": write_split(root / "gzip", 8, 500),
        "plain": write_split(root / "plain", 4, 2000, gzip=False),
        "small": write_split(root / "small", 4, 1000),
        "large": write_split(root / "large", 4, 10_000),
        "tiny": write_split(root / "tiny", 3, 4),
    }


def _files(root: Path) -> list[Path]:
    return sorted((root / "Split-eval").iterdir())


def test_gzip_split_sample_draws_from_every_shard_not_only_the_first(splits):
    sample = sample_split(splits["gzip"], num_examples=64)
    where = [_where(r) for r in sample.records]
    assert len(sample.records) == 64 and len(set(where)) == 64
    assert {shard for shard, _ in where} == set(range(8))
    assert set(sample.records_per_file.values()) == {8}  # equal shards get equal shares
    # Within a shard, drawn from its head window (8 x 16 records), not its first 8 records.
    assert max(index for _, index in where) >= 64


def test_uncompressed_split_sample_reaches_every_part_of_every_shard(splits):
    sample = sample_split(splits["plain"], num_examples=40)
    where = [_where(r) for r in sample.records]
    assert len(set(where)) == 40
    for shard in range(4):
        indices = sorted(index for s, index in where if s == shard)
        assert len(indices) == 10
        assert indices[0] < 200 and indices[-1] > 1800  # spread over the whole shard
    # Each record was read once: seek, find the record boundary, read.
    assert sample.records_read == 40


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(splits):
    for kind in ("gzip", "plain"):
        first = read_examples(splits[kind], limit=30, seed=7)
        assert read_examples(splits[kind], limit=30, seed=7) == first
        assert read_examples(splits[kind], limit=30, seed=8) != first


def test_records_read_are_bounded_and_do_not_grow_with_the_split(splits):
    small = sample_split(splits["small"], num_examples=20)
    large = sample_split(splits["large"], num_examples=20)  # 10x the records
    assert len(small.records) == len(large.records) == 20
    assert small.records_read <= WINDOW_FACTOR * 20
    assert large.records_read == small.records_read
    assert {s for s, _ in map(_where, large.records)} == set(range(4))


def test_a_split_smaller_than_the_sample_is_returned_whole(splits):
    sample = sample_split(splits["tiny"], num_examples=50)
    assert sorted(map(_where, sample.records)) == [(s, i) for s in range(3) for i in range(4)]


def test_reader_matches_tensorflow_and_finds_records_from_any_offset(splits):
    import tensorflow as tf

    path = _files(splits["plain"])[1]
    expected = [r.numpy() for r in tf.data.TFRecordDataset([str(path)])]
    assert list(iter_file_records(path)) == expected
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offsets = [0, 1, 11, 12, 13, size // 3, size // 2, size - 100]
        found = [record_after(handle, offset, size) for offset in offsets]
        assert record_after(handle, size - 5, size) is None  # inside the last record
    assert found[0] == (0, expected[0])
    for offset, (start, record) in zip(offsets, found, strict=True):
        assert start >= offset and record in expected
    gz = _files(splits["gzip"])[0]
    assert list(iter_file_records(gz)) == [
        r.numpy() for r in tf.data.TFRecordDataset([str(gz)], compression_type="GZIP")
    ]


def test_a_file_that_is_not_a_tfrecord_is_refused_with_its_name(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("a plain text file, not TFRecords\n" * 10)
    with pytest.raises(TFRecordError, match="notes.txt.*not a TFRecord file"):
        sample_files([text], 5)
    fake_gz = tmp_path / "data.gz"
    fake_gz.write_bytes(b"not gzip at all")
    with pytest.raises(TFRecordError, match="data.gz.*not a readable gzip file"):
        sample_files([fake_gz], 5)
    with pytest.raises(ExamplesPathError, match="notes.txt is not a TFRecord file"):
        load_examples(text, limit=5)


def test_canary_reads_a_directory_of_tfrecord_files_across_all_of_them(splits):
    records = load_examples(splits["plain"] / "Split-eval", limit=12)
    assert {s for s, _ in map(_where, records)} == set(range(4))
    assert load_examples(splits["plain"], limit=12) == records  # the artifact: same files


def test_canary_samples_a_csv_across_its_rows(tmp_path):
    import tensorflow as tf

    path = tmp_path / "rows.csv"
    path.write_text("index,x\n" + "".join(f"{i},{i * 0.5}\n" for i in range(2000)))
    records = load_examples(path, limit=50)
    indices = [
        tf.train.Example.FromString(r).features.feature["index"].int64_list.value[0]
        for r in records
    ]
    assert len(set(indices)) == 50 and indices == sorted(indices)
    assert min(indices) < 200 and max(indices) > 1800
    assert load_examples(path, limit=50) == records


def test_beam_combine_fn_never_holds_more_than_the_sample():
    records = [_record(0, i) for i in range(5000)]
    fn = bottom_k_sample_fn(25, seed=3)
    accumulators = []
    for part in range(5):  # five bundles, as a runner would split the split
        accumulator = fn.create_accumulator()
        for record in records[part::5]:
            accumulator = fn.add_input(accumulator, record)
            assert len(accumulator) <= 25
        accumulators.append(accumulator)
    merged = fn.merge_accumulators(accumulators)
    assert len(merged) == 25
    sample = fn.extract_output(merged)
    # The records of lowest priority over the whole split: uniform, whatever the bundling.
    assert sample == sorted(records, key=lambda r: record_priority(r, 3))[:25]
    indices = sorted(index for _, index in map(_where, sample))
    assert indices[0] < 1000 and indices[-1] > 4000


def test_beam_sampling_covers_every_shard_and_is_the_same_every_run(splits, tmp_path):
    pattern = split_pattern(splits["gzip"], "eval")
    sample = sample_examples(pattern, 40, tmp_path / "one", seed=5)
    again = sample_examples(pattern, 40, tmp_path / "two", seed=5)
    assert sample == again and len(set(sample)) == 40
    everything = [r for f in _files(splits["gzip"]) for r in iter_file_records(f)]
    assert sample == sorted(everything, key=lambda r: record_priority(r, 5))[:40]
    assert {s for s, _ in map(_where, sample)} == set(range(8))


def test_records_larger_than_the_scan_chunk_are_found_from_any_offset(tmp_path):
    import tensorflow as tf

    path = tmp_path / "big.tfrecord"
    records = [bytes([i]) * 7 + b"\0" * 20_000 + str(i).encode() for i in range(30)]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    sample = sample_files([path], 10)
    assert len(set(sample.records)) == 10 and set(sample.records) <= set(records)
    assert sample.records_read == 10
