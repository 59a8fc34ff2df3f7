"""Write an evaluation's results: ``results.json`` (every figure), ``results.md`` (a table) and PNG plots.

The JSON keeps metrics as fractions in [0, 1]; the Markdown table prints them ×100 with one decimal, as the
papers do. Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so a
report can be written from any thread or a headless server; without matplotlib (the ``eval`` extra) the plots
are skipped and the report says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no NaN, and a missing figure should read as missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(results: dict[str, Any], path: Path) -> Path:
    """Write `results` as indented, strict JSON."""
    path.write_text(json.dumps(_clean(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n", "utf-8")
    return path


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * float(value):.1f}"


def _table(rows: dict[str, dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(_percent(values.get(c)) for c in columns) + " |")
    return lines


def _columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Every metric any method reports, in the order the task computes them (r@1 before r@5...)."""
    columns: list[str] = []
    for values in rows.values():
        columns += [k for k in values if k not in columns]
    return columns


def render_markdown(results: dict[str, Any]) -> str:
    """The report as Markdown: what was run, then methods as rows and metrics as columns (×100)."""
    model, data = results["model"], results["data"]
    methods = results["methods"]
    lines = [
        f"# pixquery eval: {results['task']}",
        "",
        f"- model: `{model['spec']}` (dim {model['dim']})" + (" — random weights, figures are meaningless"
                                                              if model.get("meaningless") else ""),
        f"- data: `{data['path']}` ({_describe_counts(data.get('counts', {}))}; hash `{data['hash'][:12]}`)",
        f"- run: {results['created']}, {results['seconds']:.1f} s; embeddings: "
        f"{results['cache']['images_embedded']} images and {results['cache']['texts_embedded']} texts embedded, "
        f"{results['cache']['images_cached']} images and {results['cache']['texts_cached']} texts from the cache",
        "",
        "Figures are percentages (results.json holds the same values as fractions).",
        "",
    ]
    overall = {label: m["metrics"] for label, m in methods.items()}
    lines += _table(overall, _columns(overall))
    group_names: list[str] = []
    for m in methods.values():
        group_names += [g for g in m.get("groups", {}) if g not in group_names]
    for group in group_names:
        rows = {label: m["groups"][group] for label, m in methods.items() if group in m.get("groups", {})}
        lines += ["", f"## {_group_title(group)}", ""]
        lines += _table(rows, _columns(rows))
    params = {label: m["params"] for label, m in methods.items() if m.get("params")}
    if params:
        lines += ["", "## Method parameters", ""]
        lines += [f"- {label}: `{json.dumps(_clean(p), ensure_ascii=False)}`" for label, p in params.items()]
    return "\n".join(lines) + "\n"


def _describe_counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if not isinstance(v, dict)) or "?"


def _group_title(group: str) -> str:
    return {"seen": "Seen combinations", "heldout": "Held-out combinations"}.get(group, group)


# ------------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_curves(results: dict[str, Any], path: Path) -> Path | None:
    """Recall@K (or top-k accuracy) curves per method, one panel per curve kind; None if there are none."""
    methods = results["methods"]
    kinds: list[str] = []
    for m in methods.values():
        kinds += [k for k in m.get("curves", {}) if k not in kinds]
    if not kinds:
        return None
    figure = _figure(5.0 * len(kinds), 4.0)
    axes = figure.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        largest_k = 1
        for label, m in methods.items():
            curve = m.get("curves", {}).get(kind)
            if curve:
                values = [math.nan if v is None else 100 * v for v in curve["value"]]
                ax.plot(curve["k"], values, label=label, linewidth=1.6)
                largest_k = max(largest_k, max(curve["k"]))
        ax.set_xscale("log")
        ticks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= largest_k]
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.set_xlabel("K")
        ax.set_ylabel("accuracy@K (%)" if "accuracy" in kind else "Recall@K (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{results['task']}: {kind}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    figure.savefig(path)
    return path


def plot_comparison(results: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars: the headline metrics of every method; with groups (seen/held-out, categories), a second
    panel compares the first headline metric across groups."""
    methods = results["methods"]
    headline = [h for h in results.get("headline", []) if any(h in m["metrics"] for m in methods.values())]
    if not headline or not methods:
        return None
    groups: list[str] = []
    for m in methods.values():
        groups += [g for g in m.get("groups", {}) if g not in groups]
    figure = _figure(max(6.0, 1.2 * len(methods) * (1 + bool(groups))), 4.2)
    axes = figure.subplots(1, 2 if groups else 1, squeeze=False)[0]
    labels = list(methods)
    _bars(axes[0], labels, {h: [methods[lb]["metrics"].get(h) for lb in labels] for h in headline})
    axes[0].set_title(f"{results['task']} — {results['model']['spec']}")
    if groups:
        key = headline[0]
        series = {g: [methods[lb].get("groups", {}).get(g, {}).get(key) for lb in labels] for g in groups}
        _bars(axes[1], labels, series)
        axes[1].set_title(f"{key} by group")
    figure.savefig(path)
    return path


def _bars(ax: Any, labels: list[str], series: dict[str, list[Any]]) -> None:
    width = 0.8 / max(1, len(series))
    for j, (name, values) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        heights = [0.0 if v is None or not math.isfinite(v) else 100 * v for v in values]
        ax.bar(xs, heights, width, label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize="small")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")


def write_report(results: dict[str, Any], out_dir: Path, plots: bool = True) -> dict[str, Any]:
    """Write results.md and (unless `plots` is False) the plots into `out_dir`, then results.json listing them;
    return the file map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"json": str(out_dir / "results.json"), "markdown": str(out_dir / "results.md"),
                             "plots": []}
    (out_dir / "results.md").write_text(render_markdown(results), encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plots = False
        files["plots_skipped"] = 'matplotlib is not installed (pip install "pixquery[eval]")'
    if plots:
        for name, plot in (("recall_curves.png", plot_curves), ("methods.png", plot_comparison)):
            written = plot(results, out_dir / name)
            if written is not None:
                files["plots"].append(str(written))
    results["files"] = files
    write_json(results, out_dir / "results.json")
    return files
