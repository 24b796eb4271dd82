"""The demo's closing table: each pipeline run's components, verdicts and durations, from MLMD."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfx_serving_ext.commands._terminal import format_seconds

PIPELINE_NAME = "penguin-serving"  # pipeline.PIPELINE_NAME; that module imports TFX


@dataclass(frozen=True)
class ComponentRun:
    """One component's execution in one pipeline run, as MLMD recorded it."""

    component: str
    verdict: str
    seconds: float


def _verdict(output_type: str, properties: dict) -> str:
    """Returns what a component's output says, in a word or three."""
    blessed = properties.get("blessed")
    if output_type == "ModelBlessing":
        return "BLESSED" if blessed == 1 else "NOT_BLESSED"
    if output_type == "InfraBlessing":
        return "INFRA_BLESSED" if blessed == 1 else "INFRA_NOT_BLESSED"
    if output_type == "PushedModel":
        if properties.get("pushed") != 1:
            return f"not pushed ({properties.get('refused_by') or 'refused'})"
        verification = properties.get("verification", "")
        checked = f", {verification}" if verification and verification != "not_verified" else ""
        return f"pushed version {properties.get('pushed_version')}{checked}"
    if "warmup_records" in properties:
        return f"{properties['warmup_records']} warmup requests"
    return {"Examples": "examples", "Model": "model trained"}.get(output_type, output_type)


def _properties(artifact) -> dict:
    return {
        key: value.int_value if value.HasField("int_value") else value.string_value
        for key, value in artifact.custom_properties.items()
    }


def pipeline_runs(metadata_path: Path, pipeline_name: str = PIPELINE_NAME):
    """Returns each run of `pipeline_name` in the MLMD SQLite file, oldest first.

    Each run is a list of ComponentRun in the order the components started; durations are
    MLMD's (from the execution's registration to its last update).
    """
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    type_names = {t.id: t.name for t in store.get_artifact_types()}
    runs = []
    contexts = sorted(
        (c for c in store.get_contexts_by_type("pipeline_run") if c.name),
        key=lambda c: c.create_time_since_epoch,
    )
    for context in contexts:
        executions = sorted(
            store.get_executions_by_context(context.id), key=lambda e: e.create_time_since_epoch
        )
        if not executions:
            continue
        rows = []
        for execution in executions:
            events = store.get_events_by_execution_ids([execution.id])
            outputs = store.get_artifacts_by_id(
                [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
            )
            # A resolver records what it found as INTERNAL_OUTPUT events.
            resolved = store.get_artifacts_by_id(
                [
                    e.artifact_id
                    for e in events
                    if e.type == metadata_store_pb2.Event.INTERNAL_OUTPUT
                ]
            )
            node = next(
                (
                    c.name.rsplit(".", 1)[-1]
                    for c in store.get_contexts_by_execution(execution.id)
                    if c.name.startswith(f"{pipeline_name}.")
                ),
                str(execution.type_id),
            )
            verdict = "-"
            if outputs:
                artifact = outputs[0]
                verdict = _verdict(type_names.get(artifact.type_id, ""), _properties(artifact))
            elif resolved:
                pushed = [a for a in resolved if type_names.get(a.type_id) == "PushedModel"]
                version = _properties(pushed[0]).get("pushed_version") if pushed else None
                verdict = f"baseline: version {version}" if version else "baseline found"
            elif not events:
                verdict = "no baseline yet"
            seconds = execution.last_update_time_since_epoch - execution.create_time_since_epoch
            rows.append(ComponentRun(node, verdict, seconds / 1000))
        runs.append(rows)
    return runs


def format_runs_table(runs: list[list[ComponentRun]]) -> list[str]:
    """Returns the lines of a table: one row per component, a verdict and time per run."""
    components: list[str] = []
    for run in runs:
        components += [c.component for c in run if c.component not in components]
    header = ["component"]
    for number in range(1, len(runs) + 1):
        header += [f"run {number}", "time"]
    rows = [header]
    for component in components:
        row = [component]
        for run in runs:
            found = next((c for c in run if c.component == component), None)
            row += [found.verdict, format_seconds(found.seconds)] if found else ["", ""]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i > 0 and i % 2 == 0 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
