"""Samples examples uniformly from a split with Apache Beam (any runner; DirectRunner locally).

`beam.combiners.Sample.FixedSizeGlobally` keeps a uniform random sample of the whole split
(not its first N records), so a split sorted by date or label still yields a representative
warmup set. The sample is written as one TFRecord file, so the step works on distributed runners
where the driver cannot hold the collection in memory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tfx_serving_ext.checks.examples import iter_records

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


def add_sampling(pipeline, file_pattern: str, num_examples: int, output_file: str) -> None:
    """Adds to `pipeline` the steps that write a uniform sample of `file_pattern`'s records.

    Args:
        pipeline: a `beam.Pipeline` (not yet run).
        file_pattern: glob of TFRecord files; `.gz` files are read as gzip.
        num_examples: sample size (all records when the split is smaller).
        output_file: the single TFRecord file the sample is written to.
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
        | "SampleUniformly" >> beam.combiners.Sample.FixedSizeGlobally(num_examples)
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
    """
    import apache_beam as beam

    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    output_file = str(Path(work_dir) / SAMPLE_FILE)
    if pipeline is None:
        pipeline = beam.Pipeline(argv=with_local_runner(beam_pipeline_args))
    with pipeline as p:
        add_sampling(p, file_pattern, num_examples, output_file)
    sample = list(iter_records([output_file]))
    logger.info("Sampled %d examples from %s", len(sample), file_pattern)
    return sample
