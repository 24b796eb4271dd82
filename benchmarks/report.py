"""Regenerates BENCHMARKS.md from benchmarks/*.py (what each measures) and benchmarks/results/.

    .venv/bin/python benchmarks/report.py          # rewrite BENCHMARKS.md
    .venv/bin/python benchmarks/report.py --check  # exit 1 if BENCHMARKS.md is out of date

Each benchmark's description is its module docstring; its table is rendered from its latest
results JSON (a benchmark without results says how to produce them). Not a benchmark itself.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
OUTPUT = ROOT / "BENCHMARKS.md"
ORDER = ("server", "warmup", "push", "canary", "canary_docker", "pipeline")
NOT_BENCHMARKS = {"report"}


def table(headers: list[str], rows: list[list]) -> list[str]:
    """Returns a Markdown table."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def render_server(data: dict) -> list[str]:
    rows = [
        [r["path"], r["concurrency"], r["requests"], r["p50_ms"], r["p99_ms"],
         r["throughput_rps"], r["p50_ratio_to_in_process"]]
        for r in data["steady_state"]
    ]  # fmt: skip
    lines = [f"Model: {data['model']}.", ""]
    lines += table(
        ["path", "concurrency", "requests", "p50 ms", "p99 ms", "req/s", "p50 / in-process"], rows
    )
    first = data.get("first_requests_after_hot_swap_ms") or {}
    if first:
        lines += ["", "First 5 requests after a hot swap (ms):", ""]
        lines += table(
            ["warmup", "latencies ms"],
            [[k, ", ".join(f"{v:.1f}" for v in values)] for k, values in first.items()],
        )
    batching = data.get("batching")
    if batching:
        lines += ["", *render_server_batching(batching)]
    return lines


def render_server_batching(data: dict) -> list[str]:
    lines = [
        f"Server-side batching, gRPC, {data['cores']} cores (1-minute load average "
        f"{data['load_average_1min_at_end']:.1f} at the end), median of {data['rounds']} "
        f"alternated rounds of {data['seconds_each']:g} s; parameters: `{data['parameters']}`:",
        "",
    ]
    lines += table(
        ["batching", "concurrency", "requests", "p50 ms", "p99 ms", "req/s"],
        [
            [r["batching"], r["concurrency"], r["requests"], r["p50_ms"], r["p99_ms"],
             r["throughput_rps"]]
            for r in data["rows"]
        ],
    )  # fmt: skip
    lines += ["", *table(
        ["concurrency", "req/s on / off", "p99 on / off"],
        [[r["concurrency"], f"{r['throughput_on_over_off']:.2f}x", f"{r['p99_on_over_off']:.2f}x"]
         for r in data["ratios"]],
    )]  # fmt: skip
    lines += [
        "",
        f"Target ({data['target']}) met: **{data['target_met']}**. A lone request spends "
        f"{data['model_share_of_request']:.0%} of its time in the model's call (signature call "
        "p50 / gRPC Predict p50); batching shares that call among a batch's requests, while "
        "the rest (gRPC on both ends, decoding, checks, the response, all in Python on cores "
        "the client shares) is still paid per request. With batching on, requests wait for "
        "their batch on the gRPC front end's event loop, not in a thread each: on the threaded "
        "server that batching first had, thread handoffs cost more than the model's call, "
        "batches averaged 3 requests and the gain at 32 was 1.05-1.45x.",
    ]
    return lines


def render_warmup(data: dict) -> list[str]:
    scale = data["scale"]
    lines = [
        f"Model: {data['model']}; {scale['cores']} cores; {scale['shards']} gzip shards per "
        f"split; {scale['num_examples']} examples sampled; each size in a fresh process. "
        f"{data.get('note', '')}",
        "",
    ]
    lines += table(
        ["examples", "writer s", "µs/example", "× 10k", "peak RSS MB", "× 10k",
         "validator/canary read ms (gzip)", "records read", "read ms (plain)", "records read"],
        [
            [r["examples"], r["writer_seconds"], r["writer_us_per_example"],
             r["time_per_example_ratio"], r["writer_peak_rss_mb"], r["peak_rss_ratio"],
             r["read_gzip_ms"], r["read_gzip_records_read"], r["read_plain_ms"],
             r["read_plain_records_read"]]
            for r in scale["rows"]
        ],
    )  # fmt: skip
    lines += [
        "",
        f"Time grows at most linearly: {scale['time_grows_at_most_linearly']}; "
        f"peak RSS flat (≤ 1.1× the 10k run): {scale['peak_rss_flat']}.",
    ]
    if "hot_swap_p99_ms" in data:
        lines += ["", "p99 of the first 50 gRPC requests after a hot swap:", ""]
        lines += table(["measure", "p99 ms"], [[k, v] for k, v in data["hot_swap_p99_ms"].items()])
    return lines


def render_push(data: dict) -> list[str]:
    lines = [
        f"Median of {data['repeats']} runs, seconds; server poll interval "
        f"{data['poll_seconds']} s.",
        "",
    ]
    lines += table(
        ["model", "MB", "stock Pusher Do", "our Pusher Do", "push+verify", "publish",
         "rename→AVAILABLE"],
        [
            [r["model"], r["size_mb"], r["stock_pusher_do_s"], r["our_pusher_do_s"],
             r["our_push_verified_s"], r["our_publish_s"], r["rename_to_available_s"]]
            for r in data["rows"]
        ],
    )  # fmt: skip
    copy = data.get("publish_vs_cp")
    if copy:
        lines += [
            "",
            f"`publish_version` vs `cp -a` + `sync` of the same tree, side by side, median of "
            f"{copy['repeats']} on {copy['cores']} cores (peak RSS of the publishing process):",
            "",
        ]
        lines += table(
            ["model", "files", "MB", "publish s", "cp -a + sync s", "ratio", "peak RSS MB"],
            [
                [r["model"], r["files"], r["size_mb"], r["publish_s"], r["cp_a_sync_s"],
                 r["ratio"], r["publish_peak_rss_mb"]]
                for r in copy["rows"]
            ],
        )  # fmt: skip
    return lines


def render_canary_docker(data: dict) -> list[str]:
    lines = [
        f"Model: {data['model']}; image {data['image']}; median of {data['repeats']}; "
        f"ServingCanary / InfraValidator wall time **{data['ratio_wall']}x** (target "
        f"{data['target_ratio']}x). {data.get('note', '')}",
        "",
    ]
    phases = ["wall_s", "container_start_s", "model_available_s", "traffic_s", "stop_s", "rest_s"]
    lines += table(
        ["executor", *phases],
        [
            ["InfraValidator", *(data["infra_validator"][k] for k in phases)],
            ["ServingCanary", *(data["serving_canary"][k] for k in phases)],
        ],
    )
    return lines


def render_canary(data: dict) -> list[str]:
    lines = [f"Model: {data['model']}; {data.get('note', '')}.", ""]
    lines += table(
        ["requests", "concurrency", "blessed", "run wall s", "traffic s", "sends/s",
         "plain loop req/s", "ratio", "p50 ms", "p99 ms"],
        [
            [r["requests"], r["concurrency"], r["blessed"], r["run_wall_s"], r["traffic_wall_s"],
             r["canary_sends_per_s"], r["plain_loop_rps"], r["ratio"], r["candidate_p50_ms"],
             r["candidate_p99_ms"]]
            for r in data["runs"]
        ],
    )  # fmt: skip
    return lines


def render_pipeline(data: dict) -> list[str]:
    ours, stock = data["ours"], data["stock"]
    lines = [
        f"Penguin model, from the trainer's output to the new version AVAILABLE on the server, "
        f"the run with the median total of {data.get('repeats', 1)}; "
        f"server poll interval {data['poll_seconds']} s; canary {data['canary_requests']} "
        f"requests; InfraValidator: {data['infra_validator']}.",
        "",
    ]
    rows = []
    for name, chain in (("ours", ours), ("stock", stock)):
        rows += [[name, node, seconds] for node, seconds in chain["components"].items()]
        rows.append([name, "(orchestration between components)", chain["orchestration_s"]])
        rows.append([name, "(last component end → AVAILABLE)", chain["after_last_component_s"]])
        rows.append([name, "**total: trainer output → AVAILABLE**",
                     chain["trainer_output_to_available_s"]])  # fmt: skip
    lines += table(["chain", "step", "seconds"], rows)
    lines += ["", f"Ratio ours / stock: total **{data['ratio_total']:.1f}x**"]
    if "ratio_push_to_available" in data:
        lines[-1] += f"; push → AVAILABLE alone {data['ratio_push_to_available']:.1f}x"
    lines[-1] += "."
    if not data.get("docker_daemon"):
        lines += [
            "",
            "Here the stock chain checks nothing before pushing (InfraValidator needs a Docker "
            "daemon, absent on this machine; the Evaluator needs TFMA): the difference is what "
            "our signature check, warmup file, canary and AVAILABLE verification cost.",
        ]
    return lines


RENDERERS: dict[str, Callable[[dict], list[str]]] = {
    "server": render_server,
    "warmup": render_warmup,
    "push": render_push,
    "canary": render_canary,
    "canary_docker": render_canary_docker,
    "pipeline": render_pipeline,
}


def benchmark_names() -> list[str]:
    """Returns the benchmarks in benchmarks/, the known ones first in ORDER."""
    present = {p.stem for p in HERE.glob("*.py")} - NOT_BENCHMARKS
    return [n for n in ORDER if n in present] + sorted(present - set(ORDER))


def description(name: str) -> str:
    """Returns the benchmark module's docstring, minus its usage lines."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text())) or ""
    kept = [
        line
        for line in doc.splitlines()
        if not line.strip().startswith((".venv/", "Run:", "Prints a table"))
    ]
    return "\n".join(kept).strip()


def command(name: str) -> str:
    """Returns the benchmark's usage line from its docstring (with its options), or the bare one."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text())) or ""
    for line in doc.splitlines():
        line = line.strip().removeprefix("Run:").strip()
        if line.startswith(".venv/bin/python benchmarks/"):
            return line
    return f".venv/bin/python benchmarks/{name}.py"


def section(name: str) -> list[str]:
    lines = [f"## {name}", "", description(name), ""]
    lines += ["```", command(name), "```", ""]
    result = RESULTS / f"{name}.json"
    where = result.relative_to(ROOT)
    if not result.is_file():
        return [*lines, f"No results yet: run the command above (it writes {where}).", ""]
    data = json.loads(result.read_text())
    render = RENDERERS.get(name)
    lines.append(f"Latest results (`{where}`):")
    lines.append("")
    if render is None:
        lines += ["```json", json.dumps(data, indent=2)[:4000], "```"]
    else:
        try:
            lines += render(data)
        except (KeyError, TypeError) as exc:  # the JSON changed shape: show it raw
            lines += [f"(table layout unknown: {exc!r})", "", "```json",
                      json.dumps(data, indent=2)[:4000], "```"]  # fmt: skip
    return [*lines, ""]


def render_report() -> str:
    """Returns the text of BENCHMARKS.md."""
    lines = [
        "# Benchmarks",
        "",
        "Each benchmark prints a table and writes `benchmarks/results/<name>.json`; they are not",
        "part of the test suite. Run one with the command in its section, or all of them with",
        "`make bench` (which then regenerates this file with `benchmarks/report.py`). Figures",
        "come from a shared 2-core machine: compare ratios within a table, not across runs.",
        "",
    ]
    for name in benchmark_names():
        lines += section(name)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if BENCHMARKS.md is stale")
    args = parser.parse_args()
    text = render_report()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
