"""Writes a canary's report: `report.json` (everything) and `report.html` (a page with plots).

The HTML page is self-contained: the plots are PNGs drawn with matplotlib's Agg backend and
embedded as base64 data URIs, so it reads from a file, an artifact browser or an e-mail, with no
server. It shows the verdict and its reasons first, then every check, the latency distributions
of candidate and baseline (histogram, percentile curve, latency over the run), the error counts
and the prediction agreement.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
COLORS = {"candidate": "#1f77b4", "baseline": "#ff7f0e"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _latencies(report: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for record in report.get("requests", []):
        if record["error"] is None:
            series.setdefault(record["target"], []).append(
                (record["started_s"], record["latency_ms"])
            )
    return series


def render_plots(report: Mapping[str, Any]) -> dict[str, str]:
    """Returns the plots (title -> PNG data URI) the report's measurements call for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots: dict[str, str] = {}
    series = _latencies(report)
    if series:
        fig, (hist, curve) = plt.subplots(1, 2, figsize=(11, 3.8))
        everything = np.concatenate([np.array([v for _, v in s]) for s in series.values()])
        low, high = max(everything.min(), 1e-3), max(everything.max(), 1e-2)
        bins = np.geomspace(low, high * 1.0001, 40) if high / low > 20 else 40
        for target, points in series.items():
            values = np.array([v for _, v in points])
            hist.hist(values, bins=bins, alpha=0.55, label=target, color=COLORS.get(target))
            quantiles = np.linspace(0, 100, 201)
            curve.plot(
                quantiles, np.percentile(values, quantiles), label=target, color=COLORS.get(target)
            )
        if isinstance(bins, np.ndarray):
            hist.set_xscale("log")
        hist.set_xlabel("latency (ms)")
        hist.set_ylabel("requests")
        hist.set_title("Latency distribution")
        hist.legend()
        curve.set_xlabel("percentile")
        curve.set_ylabel("latency (ms)")
        curve.set_title("Latency by percentile")
        curve.axvline(99, color="grey", linestyle=":", linewidth=1)
        curve.legend()
        plots["Latency distributions"] = _png(fig)

        fig, ax = plt.subplots(figsize=(11, 3.2))
        for target, points in series.items():
            ax.scatter(
                [t for t, _ in points],
                [v for _, v in points],
                s=6,
                alpha=0.6,
                label=target,
                color=COLORS.get(target),
            )
        ax.set_xlabel("time since the first request (s)")
        ax.set_ylabel("latency (ms)")
        ax.set_title("Latency over the run")
        ax.legend()
        plots["Latency over the run"] = _png(fig)

    errors = report.get("errors") or {}
    if any((e or {}).get("total") for e in errors.values()):
        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(errors)
        ok = [errors[n]["total"] - errors[n]["count"] for n in names]
        failed = [errors[n]["count"] for n in names]
        ax.bar(names, ok, color="#4caf50", label="answered")
        ax.bar(names, failed, bottom=ok, color="#e53935", label="failed")
        ax.set_ylabel("requests")
        ax.set_title("Requests answered and failed")
        ax.legend()
        plots["Errors"] = _png(fig)

    agreements = [
        a
        for a in (report.get("comparison") or {}).get("agreements", [])
        if a.get("top_class_agreement") is not None
    ]
    if agreements:
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(agreements) + 2), 3))
        labels = [f"{a['signature']}/{a['output']}" for a in agreements]
        values = [a["top_class_agreement"] * 100 for a in agreements]
        ax.bar(labels, values, color=COLORS["candidate"])
        minimum = (report.get("config") or {}).get("thresholds", {}).get("min_top_class_agreement")
        if minimum is not None:
            ax.axhline(minimum * 100, color="#e53935", linestyle="--", label="minimum")
            ax.legend(loc="lower right")
        ax.set_ylim(0, 105)
        ax.set_ylabel("% same top class")
        ax.set_title("Agreement with the baseline")
        plots["Agreement"] = _png(fig)
    return plots


def _table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
h1{margin-bottom:.2em} .verdict{padding:.8em 1.2em;border-radius:6px;font-size:1.3em}
.blessed{background:#e8f5e9;border:2px solid #43a047} .refused{background:#ffebee;
border:2px solid #e53935} table{border-collapse:collapse;margin:.5em 0 1.2em}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left} th{background:#f5f5f5}
.pass{color:#2e7d32;font-weight:bold} .fail{color:#c62828;font-weight:bold}
img{max-width:100%} pre{background:#f7f7f7;padding:1em;overflow:auto;max-height:25em}
.muted{color:#666}
.not-tf-serving{background:#fff8e1;border-left:4px solid #ffa000;padding:.3em .6em}
"""


def _served_by(report: Mapping[str, Any]) -> str:
    """Returns the page's line saying which server gave the verdict (and its start-up times)."""
    server = report.get("server")
    if not server:
        return "<p class='server'>Served by: no server (nothing was served)</p>"
    line = f"Served by: <b>{html.escape(str(server.get('description', server.get('kind'))))}</b>"
    if not server.get("tf_serving"):
        line += " — not TF Serving: a kernel or op TF Serving lacks is not caught here"
    timings = (report.get("backend") or {}).get("timings") or {}
    if timings:
        line += " · start-up " + ", ".join(
            f"{html.escape(name)} {value:.2f} s" for name, value in timings.items()
        )
    css = "server" if server.get("tf_serving") else "server not-tf-serving"
    return f"<p class='{css}'>{line}</p>"


def render_html(report: Mapping[str, Any]) -> str:
    """Returns the report page (self-contained HTML with embedded PNG plots)."""
    verdict = report["verdict"]
    blessed = verdict["blessed"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Serving canary: {'blessed' if blessed else 'not blessed'}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Serving canary</h1>",
        f"<p class='muted'>{html.escape(report.get('created', ''))} · mode "
        f"<b>{html.escape(report.get('mode', ''))}</b> · backend "
        f"{html.escape(str((report.get('backend') or {}).get('description', '')))}</p>",
        _served_by(report),
        f"<div class='verdict {'blessed' if blessed else 'refused'}'>"
        f"{'✔ INFRA_BLESSED' if blessed else '✘ INFRA_NOT_BLESSED'}</div>",
    ]
    if verdict["reasons"]:
        items = "".join(f"<li>{html.escape(r)}</li>" for r in verdict["reasons"])
        parts.append(f"<h2>Why not</h2><ul>{items}</ul>")
    if verdict["notes"]:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in verdict["notes"])
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    if verdict["checks"]:
        rows = [
            [
                c["name"],
                "PASS" if c["passed"] else "FAIL",
                c["value"],
                c["threshold"],
                c["message"],
            ]
            for c in verdict["checks"]
        ]
        table = _table(rows, ["check", "result", "value", "threshold", "detail"])
        table = table.replace("<td>PASS</td>", "<td class='pass'>PASS</td>")
        table = table.replace("<td>FAIL</td>", "<td class='fail'>FAIL</td>")
        parts.append(f"<h2>Checks</h2>{table}")
    models = [
        [side, (report.get(side) or {}).get("model_dir"), (report.get(side) or {}).get("target")]
        for side in ("candidate", "baseline")
        if report.get(side)
    ]
    parts.append("<h2>Models</h2>" + _table(models, ["side", "SavedModel", "served as"]))
    latency = report.get("latency_ms") or {}
    if latency:
        keys = ["count", "mean", "p50", "p90", "p99", "max"]
        rows = [[side] + [summary.get(k) for k in keys] for side, summary in latency.items()]
        parts.append("<h2>Latency (ms)</h2>" + _table(rows, ["side", *keys]))
    traffic = report.get("traffic") or {}
    if traffic:
        rows = [[k, v] for k, v in traffic.items() if not isinstance(v, dict | list)]
        parts.append("<h2>Traffic</h2>" + _table(rows, ["measure", "value"]))
    for title, uri in render_plots(report).items():
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{uri}'>")
    comparison = report.get("comparison") or {}
    if comparison.get("agreements"):
        rows = [
            [
                a["signature"],
                a["output"],
                a["pairs"],
                a["top_class_agreement"],
                a["mean_abs_diff"],
                a["max_abs_diff"],
                a["skipped"],
            ]
            for a in comparison["agreements"]
        ]
        header = ["signature", "output", "pairs", "top-class share", "mean |Δ|", "max |Δ|", "note"]
        parts.append("<h2>Agreement details</h2>" + _table(rows, header))
    skipped = [
        [
            p["name"],
            p["reason"] or "",
            json.dumps(p["skipped_outputs"]) if p["skipped_outputs"] else "",
        ]
        for p in comparison.get("signatures", [])
        if not p["compared"] or p["skipped_outputs"]
    ]
    if skipped:
        parts.append(
            "<h2>Not compared</h2>" + _table(skipped, ["signature", "reason", "outputs skipped"])
        )
    errors = report.get("errors") or {}
    messages = [
        [side, message, count]
        for side, info in errors.items()
        for message, count in (info or {}).get("by_message", {}).items()
    ]
    if messages:
        parts.append("<h2>Error messages</h2>" + _table(messages, ["side", "message", "count"]))
    load_error = (report.get("candidate") or {}).get("load_error")
    if load_error:
        parts.append(f"<h2>Server error</h2><pre>{html.escape(load_error)}</pre>")
    if report.get("server_log_tail"):
        parts.append(
            f"<h2>Server log (end)</h2><pre>{html.escape(report['server_log_tail'])}</pre>"
        )
    parts.append("<p class='muted'>Every measurement is in report.json.</p></body></html>")
    return "\n".join(parts)


def write_report(directory: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Returns the paths of report.json and report.html after writing both into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / REPORT_JSON
    json_path.write_text(json.dumps(report, indent=1, default=_json_default))
    html_path = directory / REPORT_HTML
    html_path.write_text(render_html(report))
    return json_path, html_path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to report.json")
