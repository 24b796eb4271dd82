"""`tfx-serving-ext canary`: compare a candidate model with a baseline outside a pipeline.

Serves both on the embedded server (or `--backend docker|embedded-subprocess|endpoint`), drives
traffic built from the examples, prints the verdict and writes report.json / report.html.
Exit code 0: blessed; 1: not blessed; 2: bad arguments or unreadable inputs. The logs (the
server's, TensorFlow's) go to OUTPUT/canary.log, or to the terminal with -v.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfx_serving_ext.commands._terminal import Terminal


def add_parser(subparsers) -> None:
    """Registers the `canary` subcommand."""
    p = subparsers.add_parser(
        "canary",
        help="serve a candidate beside a baseline, drive traffic, judge, write a report",
        description=(
            "Starts a model server holding CANDIDATE_DIR (and --baseline), waits until it is "
            "AVAILABLE, sends the same requests to both and judges error rate, latency and "
            "agreement. --examples is an Examples artifact directory (Split-*/), a TFRecord "
            "file (or a directory of them; *.gz is gzip) of serialized tf.Examples, or a CSV "
            "file with a header row. Without --examples only loading is checked. Exit code 0: "
            "blessed, 1: not blessed, 2: bad input."
        ),
    )
    p.add_argument("candidate_dir", help="SavedModel directory or TFX Model artifact URI")
    p.add_argument("--baseline", metavar="DIR", help="what serves now (SavedModel or Model URI)")
    p.add_argument("--examples", metavar="PATH", help="Examples artifact dir, TFRecord or CSV")
    p.add_argument("--split", help="split of an Examples artifact (default eval, else first)")
    p.add_argument("--output", metavar="DIR", default="canary-report", help="report directory")
    p.add_argument("--model-name", default="canary-model", help="name the model is served as")
    p.add_argument(
        "--signature",
        action="append",
        dest="signatures",
        help="signature to send traffic to (repeatable; default serving_default)",
    )
    p.add_argument("--requests", type=int, default=200, help="number of requests (cycled)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--num-examples", type=int, default=100, help="distinct examples to use")
    p.add_argument("--max-seconds", type=float, default=300.0, help="time bound of the traffic")
    p.add_argument(
        "--backend",
        default="embedded",
        choices=["embedded", "embedded-subprocess", "docker", "endpoint"],
        help="where the server runs (docker: tensorflow/serving:--image-tag)",
    )
    p.add_argument("--image-tag", default="latest", help="tensorflow/serving tag for docker")
    p.add_argument("--endpoint", help="endpoint backend: gRPC host:port of the running server")
    p.add_argument("--volume", help="endpoint backend: the model base path that server polls")
    p.add_argument(
        "--endpoint-model-config",
        metavar="FILE",
        help="endpoint backend: the server's --model_config_file (default: it serves only the "
        "--model-name model from --volume); the canary adds its own model and restores this",
    )
    p.add_argument(
        "--endpoint-server-version",
        metavar="VERSION",
        help="endpoint backend: the TF Serving version it runs, recorded in the report "
        "(TF Serving reports none over its API)",
    )
    p.add_argument("--max-loading-seconds", type=int, default=300)
    p.add_argument("--tries", type=int, default=1, help="attempts for infrastructure failures")
    p.add_argument(
        "--thresholds",
        metavar="JSON",
        help='thresholds as JSON, e.g. \'{"max_p99_ratio": 1.3, "max_error_rate": 0.01}\'',
    )
    p.add_argument(
        "--require-tf-serving",
        action="store_true",
        help="refuse to bless unless it ran in TF Serving itself (docker or endpoint backend)",
    )
    p.add_argument("--json", action="store_true", help="print report.json's verdict as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the canary; returns 0 when blessed, 1 when not, 2 on bad input."""
    # The terminal is set up before TensorFlow loads: its C++ start-up lines go to the log.
    log_path = Path(getattr(args, "log_file", None) or Path(args.output) / "canary.log")
    with Terminal(log_path, verbose=getattr(args, "verbose", False), announce_log=True) as terminal:
        return _run(args, terminal)


def _run(args: argparse.Namespace, terminal: Terminal) -> int:
    import json

    from tfx.proto import infra_validator_pb2

    from tfx_serving_ext.canary.examples import ExamplesPathError, load_examples
    from tfx_serving_ext.canary.judge import ThresholdsError
    from tfx_serving_ext.canary.run import CanaryConfig, CanaryConfigError, run_canary
    from tfx_serving_ext.checks.examples import ExamplesError
    from tfx_serving_ext.protocol.saved_model import SavedModelError

    try:
        thresholds = json.loads(args.thresholds) if args.thresholds else None
        config = CanaryConfig(
            num_requests=args.requests,
            concurrency=args.concurrency,
            num_examples=args.num_examples,
            max_seconds=args.max_seconds,
            backend=args.backend,
            endpoint_address=args.endpoint or "",
            endpoint_base_path=args.volume or "",
            endpoint_model_config_file=args.endpoint_model_config or "",
            endpoint_server_version=args.endpoint_server_version or "",
            require_tf_serving=args.require_tf_serving,
            thresholds=thresholds,
        )
        examples = None
        if args.examples:
            examples = load_examples(args.examples, limit=args.num_examples, split=args.split)
    except (
        CanaryConfigError,
        ThresholdsError,
        ExamplesPathError,
        ExamplesError,
        json.JSONDecodeError,
        TypeError,
    ) as exc:
        terminal.print(f"canary: {exc}")
        return 2
    serving_spec = infra_validator_pb2.ServingSpec(model_name=args.model_name)
    if args.backend == "docker":
        serving_spec.tensorflow_serving.tags.append(args.image_tag)
        serving_spec.local_docker.SetInParent()
    request_spec = infra_validator_pb2.RequestSpec(num_examples=args.num_examples)
    request_spec.tensorflow_serving.signature_names.extend(args.signatures or [])
    validation_spec = infra_validator_pb2.ValidationSpec(
        max_loading_time_seconds=args.max_loading_seconds, num_tries=args.tries
    )
    baseline = f" against {args.baseline}" if args.baseline else ""
    try:
        with terminal.step(f"Canary: serving the candidate{baseline}") as step:
            step.update(f"{args.requests} requests, {args.backend} server")
            result = run_canary(
                args.candidate_dir,
                output_dir=args.output,
                baseline_dir=args.baseline,
                examples=examples,
                config=config,
                serving_spec=serving_spec,
                validation_spec=validation_spec,
                request_spec=request_spec,
            )
            step.done("BLESSED" if result.blessed else "NOT BLESSED")
    except SavedModelError as exc:
        terminal.print(f"canary: {exc}")
        return 2
    verdict = result.report["verdict"]
    if args.json:
        print(json.dumps(verdict, indent=1))
    else:
        print("BLESSED" if result.blessed else "NOT BLESSED")
        server = result.report.get("server") or {}
        print(f"  served by: {server.get('description', 'no server (nothing was served)')}")
        for reason in verdict["reasons"]:
            print(f"  reason: {reason}")
        for note in verdict["notes"]:
            print(f"  note: {note}")
        for side, summary in (result.report.get("latency_ms") or {}).items():
            print(f"  {side}: {_latency_line(summary)}")
        print(f"  report: {result.report_html}")
    return 0 if result.blessed else 1


def _latency_line(summary: dict) -> str:
    """Returns "p50 .. ms, p99 .. ms over N requests", or that none succeeded."""
    if not summary.get("count") or summary.get("p50") is None:
        return "no successful request (no latency measured)"
    return (
        f"p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms over {summary['count']} requests"
    )
