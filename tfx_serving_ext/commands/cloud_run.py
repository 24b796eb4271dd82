"""`tfx-serving-ext cloud-run build|deploy|promote|rollback`: the Cloud Run destination.

    tfx-serving-ext cloud-run build MODEL_DIR --image-repository REGION-docker.pkg.dev/P/R/NAME
    tfx-serving-ext cloud-run deploy MODEL_DIR --config cloud_run.json --traffic-percent 10
    tfx-serving-ext cloud-run promote --project P --region R --service NAME
    tfx-serving-ext cloud-run rollback --project P --region R --service NAME

Settings come from `--config` (a JSON object of CloudRunConfig fields) and the flags, flags
winning. Results are printed as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Flag name -> CloudRunConfig field, for the flags every subcommand shares.
_SERVICE_FLAGS = {
    "project": "project",
    "region": "region",
    "service": "service",
    "tag": "tag",
    "api_endpoint": "api_endpoint",
    "operation_timeout": "operation_timeout_s",
}
_IMAGE_FLAGS = {
    "image_repository": "image_repository",
    "base_image": "base_image",
    "model_name": "model_name",
    "model_version": "model_version",
}
_DEPLOY_FLAGS = {
    "traffic_percent": "traffic_percent",
    "cpu": "cpu",
    "memory": "memory",
    "concurrency": "concurrency",
    "min_instances": "min_instances",
    "max_instances": "max_instances",
    "service_account": "service_account",
    "knative": "knative_manifest_path",
    "knative_namespace": "knative_namespace",
    "previous_revision": "previous_revision",
}


def _add_service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON file of CloudRunConfig fields (flags override it)")
    p.add_argument("--project", help="Google Cloud project")
    p.add_argument("--region", help="Cloud Run region, e.g. us-central1")
    p.add_argument("--service", help="Cloud Run service name")
    p.add_argument("--tag", help="traffic tag of the canary revision (default canary)")
    p.add_argument("--api-endpoint", help="Cloud Run Admin API endpoint override")
    p.add_argument("--operation-timeout", type=float, help="seconds to wait per operation")


def _add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="SavedModel or TFX Model artifact")
    p.add_argument("--image-repository", help="target repository, e.g. REGION-docker.pkg.dev/P/R/M")
    p.add_argument("--base-image", help="image with tensorflow_model_server (linux/amd64)")
    p.add_argument("--model-name", help="model name (/v1/models/NAME)")
    p.add_argument("--model-version", type=int, help="version number (default: Unix time)")


def add_parser(subparsers) -> None:
    """Registers `cloud-run` and its subcommands."""
    parser = subparsers.add_parser(
        "cloud-run",
        help="build a model image without Docker and deploy it to Cloud Run (canary, promote, "
        "rollback)",
    )
    sub = parser.add_subparsers(dest="cloud_run_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="build the model image and push it to a registry")
    _add_image_args(build)
    build.add_argument("--config", help="JSON file of CloudRunConfig fields")
    build.set_defaults(func=run, action="build")

    deploy = sub.add_parser("deploy", help="build, push and deploy a tagged canary revision")
    _add_image_args(deploy)
    _add_service_args(deploy)
    deploy.add_argument("--traffic-percent", type=int, help="canary share 0-100 (0 = tag only)")
    deploy.add_argument("--cpu", help='CPU limit, e.g. "2"')
    deploy.add_argument("--memory", help='memory limit, e.g. "4Gi"')
    deploy.add_argument("--concurrency", type=int, help="max concurrent requests per instance")
    deploy.add_argument("--min-instances", type=int)
    deploy.add_argument("--max-instances", type=int)
    deploy.add_argument("--service-account", help="the revision's service account email")
    deploy.add_argument("--knative", metavar="PATH", help="write a Knative manifest instead")
    deploy.add_argument("--knative-namespace")
    deploy.add_argument("--previous-revision", help="Knative: revision keeping the rest")
    deploy.set_defaults(func=run, action="deploy")

    for action, text in (
        ("promote", "give the canary (or --revision) 100%% of traffic"),
        ("rollback", "send all traffic back to the previous revision"),
    ):
        p = sub.add_parser(action, help=text)
        _add_service_args(p)
        if action == "promote":
            p.add_argument("--revision", help="revision to promote (default: the tagged one)")
        p.set_defaults(func=run, action=action)


def _settings(args: argparse.Namespace, flag_maps: list[dict[str, str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(json.loads(Path(args.config).read_text()))
    for flag_map in flag_maps:
        for flag, name in flag_map.items():
            value = getattr(args, flag, None)
            if value is not None:
                values[name] = value
    return values


def run(args: argparse.Namespace) -> int:
    """Runs one cloud-run action; prints its result as JSON; returns the exit code."""
    from tfx_serving_ext.cloud_run import CloudRunConfig, CloudRunError, push_to_cloud_run
    from tfx_serving_ext.cloud_run.config import MODE_IMAGE_ONLY, MODE_KNATIVE
    from tfx_serving_ext.cloud_run.deploy import CloudRunDeployer
    from tfx_serving_ext.protocol.saved_model import SavedModelError

    try:
        if args.action in ("build", "deploy"):
            maps = [_IMAGE_FLAGS] + (
                [_SERVICE_FLAGS, _DEPLOY_FLAGS] if args.action == "deploy" else []
            )
            values = _settings(args, maps)
            if args.action == "build":
                values["mode"] = MODE_IMAGE_ONLY
            elif values.get("knative_manifest_path"):
                values["mode"] = MODE_KNATIVE
            config = CloudRunConfig.from_dict(values)
            result = push_to_cloud_run(args.model_dir, config)
            print(json.dumps(result.__dict__, indent=2))
            return 0
        values = _settings(args, [_SERVICE_FLAGS])
        values.setdefault("image_repository", "unused/for-traffic-changes")
        config = CloudRunConfig.from_dict(values)
        deployer = CloudRunDeployer.from_config(config)
        if args.action == "promote":
            deployed = deployer.promote(config.service, args.revision)
        else:
            deployed = deployer.rollback(config.service)
        output = {
            "service": deployed.service,
            "revision": deployed.revision,
            "service_url": deployed.service_url,
            "tag_url": deployed.tag_url,
            "traffic": deployed.traffic_dicts(),
        }
        print(json.dumps(output, indent=2))
        return 0
    except (CloudRunError, SavedModelError, ValueError, OSError) as e:
        print(f"cloud-run {args.action}: {e}", file=sys.stderr)
        return 1
