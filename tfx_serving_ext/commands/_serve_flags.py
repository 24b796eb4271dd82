"""tensorflow_model_server's flags for `tfx-serving-ext serve`: every one accepted, most obeyed.

Launch scripts and harnesses written for TF Serving pass flags routinely; a server that exits on
one it does not know never starts under them. So every flag of tensorflow_model_server's
`main.cc` parses here, as `--flag=value` or `--flag value`, booleans also bare (`--enable_batching`)
or with a value (`--enable_batching=false`). Each flag is one of:

- served: `serve` does what TF Serving does with it;
- no effect: it tunes something the embedded server does not have (load thread pools, file
  system caches, response encoding) and changes nothing a client can see; accepted silently;
- hardware: GPU, TPU, TFLite, XLA and mixed precision, meaningless on this CPU server; accepted
  with one warning naming those given;
- not implemented: meaningful, but the embedded server does not do it yet (CORS, ALTS, ...);
  accepted with one warning naming those given, so that nobody believes they are on.

Besides them, `serve` has flags of its own (kind "ours") for limits tensorflow_model_server
does not have: `--request_max_{rank,elements,bytes}`, `--rest_api_max_{body_bytes,connections}`,
`--rest_api_{header,body}_timeout_seconds`, `--grpc_max_{message_bytes,concurrent_streams}`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

SERVED, NO_EFFECT, HARDWARE, NOT_IMPLEMENTED = "served", "no effect", "hardware", "not implemented"
OURS = "ours"


def parse_bool(value: str) -> bool:
    """Returns a boolean flag's value as TF Serving's flag parser reads it."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Flag:
    """One tensorflow_model_server flag: its type, TF Serving's default and what `serve` does."""

    name: str
    type: type
    default: object
    kind: str
    help: str = ""


def _flags() -> list[Flag]:
    b, i, f, s = bool, int, float, str
    return [
        Flag("port", i, 8500, SERVED, "gRPC port (0 = any free port)"),
        Flag("grpc_socket_path", s, "", SERVED, "also serve gRPC on this Unix socket"),
        Flag("rest_api_port", i, 0, SERVED, "REST port (0 = REST off, as in TF Serving)"),
        Flag("rest_api_num_threads", i, 16, SERVED, "threads answering REST requests"),
        Flag("rest_api_timeout_in_ms", i, 30000, SERVED, "timeout of a REST call"),
        Flag("rest_api_enable_cors_support", b, False, NOT_IMPLEMENTED),
        Flag("enable_batching", b, False, SERVED, "batch concurrent requests to a signature"),
        Flag("allow_version_labels_for_unavailable_models", b, False, SERVED),
        Flag("batching_parameters_file", s, "", SERVED, "text-format BatchingParameters"),
        Flag("enable_per_model_batching_parameters", b, False, SERVED),
        Flag("model_config_file", s, "", SERVED, "text-format ModelServerConfig"),
        Flag("model_config_file_poll_wait_seconds", f, 0.0, SERVED),
        Flag("model_name", s, "default", SERVED, "name of the model (one-model form)"),
        Flag("model_base_path", s, "", SERVED, "directory holding numeric versions"),
        Flag("num_load_threads", i, 0, NO_EFFECT),
        Flag("num_unload_threads", i, 0, NO_EFFECT),
        Flag("max_num_load_retries", i, 5, SERVED),
        Flag(
            "load_retry_interval_micros",
            i,
            1_000_000,
            SERVED,
            "wait between load retries (TF Serving's default is 60 s; here 1 s)",
        ),
        Flag("file_system_poll_wait_seconds", f, 1.0, SERVED),
        Flag("flush_filesystem_caches", b, True, NO_EFFECT),
        Flag("tensorflow_session_parallelism", i, 0, SERVED, "intra- and inter-op threads"),
        Flag("tensorflow_session_config_file", s, "", NOT_IMPLEMENTED),
        Flag("tensorflow_intra_op_parallelism", i, 0, SERVED, "threads within one op"),
        Flag("tensorflow_inter_op_parallelism", i, 0, SERVED, "ops run at once"),
        Flag("use_alts_credentials", b, False, NOT_IMPLEMENTED),
        Flag("ssl_config_file", s, "", SERVED, "text-format SSLConfig: gRPC over TLS"),
        Flag("platform_config_file", s, "", NOT_IMPLEMENTED),
        Flag("per_process_gpu_memory_fraction", f, 0.0, HARDWARE),
        Flag("saved_model_tags", s, "serve", SERVED, "comma-separated tag set to load"),
        Flag("grpc_channel_arguments", s, "", SERVED, "e.g. grpc.max_receive_message_length=N"),
        Flag(
            "grpc_max_threads",
            i,
            16,
            SERVED,
            "threads running gRPC requests (with --enable_batching a Predict of up to 256 KiB "
            "waits for its batch on an event loop, not in one of them)",
        ),
        Flag("enable_model_warmup", b, True, SERVED),
        Flag("num_request_iterations_for_warmup", i, 1, SERVED),
        Flag("version", b, False, SERVED, "print the version and exit"),
        Flag(
            "monitoring_config_file",
            s,
            "",
            SERVED,
            "text-format MonitoringConfig: Prometheus metrics on the REST port",
        ),
        Flag("remove_unused_fields_from_bundle_metagraph", b, True, NO_EFFECT),
        Flag("prefer_tflite_model", b, False, HARDWARE),
        Flag("use_tflite_model", b, False, HARDWARE),
        Flag("num_tflite_pools", i, 1, HARDWARE),
        Flag("num_tflite_interpreters_per_pool", i, 1, HARDWARE),
        Flag("tflite_num_threads", i, 1, HARDWARE),
        Flag("enable_signature_method_name_check", b, False, SERVED),
        Flag("xla_cpu_compilation_enabled", b, False, HARDWARE),
        Flag("xla_gpu_compilation_enabled", b, False, HARDWARE),
        Flag("enable_profiler", b, True, NOT_IMPLEMENTED),
        Flag("thread_pool_factory_config_file", s, "", NOT_IMPLEMENTED),
        Flag("mixed_precision", s, "", HARDWARE),
        Flag("skip_initialize_tpu", b, False, HARDWARE),
        Flag("enable_grpc_healthcheck_service", b, False, NOT_IMPLEMENTED),
        Flag("enable_serialization_as_tensor_content", b, False, NO_EFFECT),
    ]


def _own_flags() -> list[Flag]:
    # This server's own limits (issue 18); tensorflow_model_server has no such flags.
    i, f = int, float
    return [
        Flag("request_max_rank", i, 32, OURS, "highest rank of an input tensor"),
        Flag("request_max_elements", i, 64 * 2**20, OURS, "elements of a request's inputs"),
        Flag("request_max_bytes", i, 512 * 2**20, OURS, "decoded bytes of a request's inputs"),
        Flag("rest_api_max_body_bytes", i, 64 * 2**20, OURS, "REST body after decompression"),
        Flag("rest_api_max_connections", i, 512, OURS, "open REST connections (503 beyond)"),
        Flag("rest_api_header_timeout_seconds", f, 10.0, OURS, "time to send request headers"),
        Flag("rest_api_body_timeout_seconds", f, 30.0, OURS, "time to send a request body"),
        Flag("grpc_max_message_bytes", i, 2**31 - 1, OURS, "largest gRPC request message"),
        Flag("grpc_max_concurrent_streams", i, 0, OURS, "gRPC calls per connection (0: any)"),
    ]


FLAGS: dict[str, Flag] = {flag.name: flag for flag in _flags() + _own_flags()}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds every tensorflow_model_server flag to `parser` (dest = the flag's name)."""
    for flag in FLAGS.values():
        name = f"--{flag.name}"
        if flag.kind == SERVED:
            default, help_text = flag.default, flag.help
        elif flag.kind == OURS:
            default, help_text = flag.default, f"{flag.help} (this server's own limit)"
        else:
            # None tells "not given" apart from a given value, for the warnings.
            default, help_text = None, argparse.SUPPRESS
        if flag.type is bool:
            parser.add_argument(
                name, type=parse_bool, nargs="?", const=True, default=default, help=help_text
            )
        else:
            parser.add_argument(name, type=flag.type, default=default, help=help_text)


def ignored_flags(args: argparse.Namespace, kind: str) -> list[str]:
    """Returns `--name=value` of each flag of `kind` given with a value other than its default."""
    given = []
    for flag in FLAGS.values():
        value = getattr(args, flag.name, None)
        if flag.kind == kind and value is not None and value != flag.default:
            shown = str(value).lower() if flag.type is bool else value
            given.append(f"--{flag.name}={shown}")
    return given


def warnings_for(args: argparse.Namespace) -> list[str]:
    """Returns at most one warning per kind of flag `serve` accepts but does not obey."""
    warnings = []
    hardware = ignored_flags(args, HARDWARE)
    if hardware:
        warnings.append(
            "ignoring flags that mean nothing on this CPU-only embedded server "
            f"(GPU/TPU/TFLite/XLA): {' '.join(hardware)}"
        )
    missing = ignored_flags(args, NOT_IMPLEMENTED)
    if missing:
        warnings.append(
            f"accepted but not implemented by the embedded server (no effect): {' '.join(missing)}"
        )
    return warnings


def saved_model_tags(text: str) -> tuple[str, ...]:
    """Returns the tag set of --saved_model_tags ("serve,gpu" -> ("serve", "gpu"))."""
    return tuple(tag.strip() for tag in text.split(",") if tag.strip())


def own_flag_values(args: argparse.Namespace) -> dict[str, object]:
    """Returns this server's own limit flags by name (each is a ServerOptions field too)."""
    return {flag.name: getattr(args, flag.name) for flag in FLAGS.values() if flag.kind == OURS}
