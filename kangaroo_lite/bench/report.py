"""The benchmark's outputs for people: a terminal table and a self-contained HTML report."""

from __future__ import annotations

import html
from pathlib import Path

from .figures import acceptance_figure, mean_accepted_figure, speedup_figure

COLUMNS = [
    ("speedup", "speedup", "{:.2f}x"),
    ("tokens_per_second", "tokens/s", "{:.0f}"),
    ("mean_accepted", "#MAT", "{:.2f}"),
    ("acceptance_rate", "α (accepted / drafted)", "{:.2f}"),
    ("judged_acceptance_rate", "α (judged)", "{:.2f}"),
    ("mean_drafted", "γ (mean drafts / round)", "{:.2f}"),
    ("cost_ratio", "c", "{:.3f}"),
    ("target_forwards_per_token", "target fwd/token", "{:.2f}"),
    ("copied_share", "accepted drafts copied", "{:.0%}"),
    ("estimated_speedup", "estimate (measured v(n))", "{:.2f}x"),
    ("estimated_speedup_free_verification", "estimate (free verification)", "{:.2f}x"),
    ("cpu_seconds_per_token", "CPU ms/token", "{:.2f}"),
    ("extra_parameters", "extra params", "{:,}"),
    ("identity_rate", "identical outputs", "{:.0%}"),
    ("identical_to_baseline", "lossless", "{}"),
]


def copied_share(sources: dict | None) -> float | None:
    """The share of accepted drafts that were copied from the context (None when nothing was accepted)."""
    if not sources or not sources["copied"] + sources["drafted"]:
        return None
    return sources["copied"] / (sources["copied"] + sources["drafted"])


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = copied_share(summary.get("accepted_by_source")) if key == "copied_share" else summary.get(key)
    if value is None:
        return "–"
    if key == "cpu_seconds_per_token":
        value *= 1000
    return fmt.format(value)


def summary_rows(results: dict) -> list[list[str]]:
    """One row of formatted cells per method, in `COLUMNS` order."""
    return [[name] + [_cell(s, key, fmt) for key, _, fmt in COLUMNS] for name, s in results["summary"].items()]


def source_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per subtask, where each copying method's accepted drafts came from: "copied / drafted" counts."""
    methods = [name for name, s in results["summary"].items()
               if any((part.get("accepted_by_source") or {}).get("copied") for part in s["per_subtask"].values())]
    subtasks = list(next(iter(results["summary"].values()))["per_subtask"]) if results["summary"] else []
    rows = []
    for subtask in subtasks:
        cells = []
        for name in methods:
            sources = results["summary"][name]["per_subtask"][subtask].get("accepted_by_source")
            cells.append("–" if not sources else f"{sources['copied']} / {sources['drafted']}")
        rows.append([subtask, *cells])
    return methods, rows


def skipped_note(results: dict) -> str:
    """One line naming the questions skipped because they do not fit the model's context ('' if none)."""
    skipped = results.get("skipped") or []
    if not skipped:
        return ""
    names = ", ".join(f"{s['category']} #{s['question_id']} turn {s['turn'] + 1}" for s in skipped)
    return f"skipped {len(skipped)} prompt(s) that do not fit the model's context: {names}"


def print_summary(results: dict) -> None:
    """Print the summary table with rich, and the skipped prompts."""
    from rich.console import Console
    from rich.table import Table

    env = results["environment"]
    model = results["config"].get("model", "tiny")
    table = Table(title=f"Spec-Bench ({model}) — {env['device_name']} ({env['device']}, {env['dtype']}); "
                        f"baseline: {results['baseline']}")
    table.add_column("method")
    for _, label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for row in summary_rows(results):
        table.add_row(*row)
    console = Console(width=190)
    console.print(table)
    if skipped_note(results):
        console.print(skipped_note(results))


SAMPLING_COLUMNS = [
    ("perplexity", "perplexity", "{:.3f}"),
    ("accuracy", "accuracy", "{:.2f}"),
    ("tokens_per_second", "tokens/s", "{:.0f}"),
    ("cpu_seconds_per_token", "CPU ms/token", "{:.2f}"),
    ("mean_accepted", "#MAT", "{:.2f}"),
]


def print_sampling_summary(report: dict, floor: dict) -> None:
    """Print the sampling comparison (one row per method) and MTAD's floors with the paper's figures."""
    from rich.console import Console
    from rich.table import Table

    from .sampling_quality import FLOORS, PAPER

    config = report["config"]
    table = Table(title=f"sampling at temperature {config['temperature']}, top-p {config['top_p']} "
                        f"({len(config['seeds'])} seeds × {config['per_subtask']} questions per subtask)")
    table.add_column("method")
    for _, label, _ in SAMPLING_COLUMNS:
        table.add_column(label, justify="right")
    for name, summary in report["methods"].items():
        table.add_row(name, *[_cell(summary, key, fmt) for key, _, fmt in SAMPLING_COLUMNS])
    console = Console(width=170)
    console.print(table)
    vs_sampling, vs_speculative, checks = floor["vs_sampling"], floor["vs_speculative"], floor["checks"]
    accuracy = vs_sampling["accuracy_difference"]
    lines = [
        ("perplexity", f"perplexity {100 * vs_sampling['perplexity_reduction']:.1f}% lower than single-token "
                       f"sampling (floor {100 * FLOORS['perplexity_reduction']:.0f}%, paper "
                       f"{100 * PAPER['perplexity_reduction_vs_sampling']:.1f}%)"),
        ("accuracy", "accuracy difference " + ("–" if accuracy is None else f"{accuracy:+.2f}") + " (floor ≥ 0)"),
        ("faster", f"{vs_speculative['speedup']:.2f}x the tokens/s of speculative sampling "
                   f"(floor > 1, paper {PAPER['speedup_vs_speculative']}x)"),
        ("less_cpu", f"{vs_speculative['cpu_ratio']:.2f}x less CPU time per token than speculative sampling "
                     f"(floor > 1, paper {PAPER['energy_ratio_vs_speculative']}x less energy)"),
    ]
    for key, text in lines:
        console.print(f"{floor['method']}: {text}: " + ("[green]met[/green]" if checks[key] else "[red]NOT met[/red]"))


def _curve_text(results: dict) -> str:
    costs = results.get("round_costs") or {}
    if not costs:
        return "not measured"
    curve = next(iter(costs.values()))["curve"]
    return ", ".join(f"{n}: {float(v['median']):.2f}" for n, v in curve.items())


def write_html_report(results: dict, path: str | Path) -> None:
    """A single HTML file with the tables and plotly figures, plotly.js inlined (works offline)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in summary_rows(results))
    source_methods, sources = source_rows(results)
    source_head = "".join(f"<th>{html.escape(name)}</th>" for name in source_methods)
    source_body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in sources)
    figures = [speedup_figure(results), mean_accepted_figure(results), acceptance_figure(results)]
    plots = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"figure-{i}")
                    for i, fig in enumerate(figures))
    env = results["environment"]
    config = html.escape(str(results["config"]))
    Path(path).write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kangaroo_lite benchmark</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}</style>
</head><body>
<h1>kangaroo_lite — Spec-Bench on {html.escape(results["config"].get("model", "tiny"))}</h1>
<p>{html.escape(env['device_name'])} · {env['device']} · {env['dtype']} · torch {env['torch']} ·
{env['date']} · baseline: <b>{results['baseline']}</b> (the faster of ours and Hugging Face's greedy)</p>
<table id="summary"><tr><th>method</th>{head}</tr>{rows}</table>
<p>Estimates: the cost model's speedup (1 − α^(γ+1)) / ((1 − α)(γc + v(γ+1))) from each method's
judged acceptance α (accepted drafts over accepted drafts plus each round's first rejection), mean
number of drafts verified per round γ and measured draft step cost c, with the verification pass
costing what this machine's measured curve v(n) says or what one token costs (<i>free
verification</i>, nearly true on a GPU). An estimate, not a bound: a measured speedup may exceed it.
Cost curve (pass over n tokens / over one): {html.escape(_curve_text(results))}.</p>
<h2>Where accepted drafts came from</h2>
<p>Per subtask, accepted drafts copied from the context / drafted by the method's drafter.</p>
<table id="sources"><tr><th>subtask</th>{source_head}</tr>{source_body}</table>
<p id="skipped">{html.escape(skipped_note(results))}</p>
{plots}
<p><small>config: {config}</small></p>
</body></html>
""", encoding="utf-8")
