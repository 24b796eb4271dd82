"""Samples examples uniformly from a split with Apache Beam (any runner; DirectRunner locally).

`BottomKSample` keeps the `n` records with the smallest keyed hash of their bytes: a uniform
random sample of the whole split (not its first N records), so a split sorted by date or label
still yields a representative warmup set. Each bundle keeps at most `n` records and merging keeps
`n`, so memory does not grow with the split; and because a record's priority depends only on its
bytes and the seed, the sample is the same on every runner, however the split is bundled
(Beam's `Sample.FixedSizeGlobally` draws `random.random()`, a new sample every run). Identical
records share a priority, so copies are kept or dropped together. The sample is written as one
TFRecord file, so the step works on distributed runners where the driver cannot hold the
collection in memory.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
from pathlib import Path

from tfx_serving_ext.checks.examples import iter_records
from tfx_serving_ext.checks.shard_sampling import DEFAULT_SEED

logger = logging.getLogger(__name__)

SAMPLE_FILE = "sampled_examples.tfrecord"
# The DirectRunner's in-process batch engine. Beam's plain "DirectRunner" first tries Prism,
# which downloads a binary from the internet on first use; this engine needs nothing.
LOCAL_RUNNER = "FnApiRunner"


def with_local_runner(beam_pipeline_args: list[str] | None) -> list[str]:
    """Returns the args, with `--runner=FnApiRunner` added when they name no runner."""
    args = list(beam_pipeline_args or [])
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in args):
        args.append(f"--runner={LOCAL_RUNNER}")
    return args


def record_priority(record: bytes, seed: int = DEFAULT_SEED) -> int:
    """Returns the record's sampling priority: a 64-bit hash of its bytes keyed by the seed."""
    key = seed.to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(record, digest_size=8, key=key).digest(), "little")


def _make_bottom_k_fn(n: int, seed: int):
    import apache_beam as beam

    class BottomKSampleFn(beam.CombineFn):
        """Keeps the `n` records of lowest priority; the accumulator never holds more than `n`.

        The accumulator is a max-heap of (-priority, record) pairs, so the record to drop when a
        better one arrives is at its top.
        """

        def __init__(self):
            super().__init__()
            self.n = n
            self.seed = seed

        def create_accumulator(self) -> list[tuple[int, bytes]]:
            return []

        def add_input(self, heap, record):
            entry = (-record_priority(record, self.seed), record)
            if len(heap) < self.n:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
            return heap

        def merge_accumulators(self, heaps):
            heaps = iter(heaps)
            merged = list(next(heaps, []))
            for heap in heaps:
                for entry in heap:
                    if len(merged) < self.n:
                        heapq.heappush(merged, entry)
                    elif entry > merged[0]:
                        heapq.heapreplace(merged, entry)
            return merged

        def extract_output(self, heap) -> list[bytes]:
            return [record for _, record in sorted(heap, reverse=True)]

    return BottomKSampleFn()


def bottom_k_sample_fn(n: int, seed: int = DEFAULT_SEED):
    """Returns a `beam.CombineFn` keeping a uniform sample of `n` records, in O(n) memory.

    Raises:
        ValueError: n below 1.
    """
    if n < 1:
        raise ValueError(f"the sample size must be at least 1, got {n}")
    return _make_bottom_k_fn(n, seed)


def add_sampling(
    pipeline, file_pattern: str, num_examples: int, output_file: str, seed: int = DEFAULT_SEED
) -> None:
    """Adds to `pipeline` the steps that write a uniform sample of `file_pattern`'s records.

    Args:
        pipeline: a `beam.Pipeline` (not yet run).
        file_pattern: glob of TFRecord files; `.gz` files are read as gzip.
        num_examples: sample size (all records when the split is smaller).
        output_file: the single TFRecord file the sample is written to.
        seed: the same seed gives the same sample of the same records.
    """
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes

    _ = (
        pipeline
        | "ReadExamples"
        >> beam.io.ReadFromTFRecord(
            file_pattern,
            coder=beam.coders.BytesCoder(),
            compression_type=CompressionTypes.AUTO,
        )
        | "SampleUniformly"
        >> beam.CombineGlobally(bottom_k_sample_fn(num_examples, seed)).without_defaults()
        | "Flatten" >> beam.FlatMap(lambda sample: sample)
        | "WriteSample"
        >> beam.io.WriteToTFRecord(
            output_file,
            coder=beam.coders.BytesCoder(),
            num_shards=1,
            shard_name_template="",
        )
    )


def sample_examples(
    file_pattern: str,
    num_examples: int,
    work_dir: str | os.PathLike,
    *,
    pipeline=None,
    beam_pipeline_args: list[str] | None = None,
    seed: int = DEFAULT_SEED,
) -> list[bytes]:
    """Returns a uniform random sample of up to `num_examples` records matching `file_pattern`.

    Args:
        file_pattern: glob of the split's TFRecord files.
        num_examples: sample size.
        work_dir: directory for the sample file (shared storage on a distributed runner).
        pipeline: a fresh `beam.Pipeline` to run the steps in (e.g. the executor's, which
            honours `beam_pipeline_args`); if None, one is made from `beam_pipeline_args`
            (default: the DirectRunner's in-process engine, FnApiRunner).
        beam_pipeline_args: options for the pipeline made when `pipeline` is None.
        seed: the same seed gives the same sample of the same records.
    """
    import apache_beam as beam

    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    output_file = str(Path(work_dir) / SAMPLE_FILE)
    if pipeline is None:
        pipeline = beam.Pipeline(argv=with_local_runner(beam_pipeline_args))
    with pipeline as p:
        add_sampling(p, file_pattern, num_examples, output_file, seed)
    sample = list(iter_records([output_file]))
    logger.info("Sampled %d examples from %s", len(sample), file_pattern)
    return sample
