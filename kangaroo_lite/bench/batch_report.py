"""The batch benchmark's results as a Markdown report and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from .batching import PAYS


def batch_markdown(results: dict) -> str:
    """Throughput and speedup per method and batch size, the pass costs, the crossover, what was skipped.

    `results` as `run_batch_bench` returns it or as read back from `batching.json`.
    """
    results = json.loads(json.dumps(results))  # batch sizes as keys: integers before a JSON round trip, text after
    sizes, env = results["batch_sizes"], results["environment"]
    cfg = results["config"]
    lines = [f"# Batched decoding: {cfg['model']} on {env['device_name']} ({env['device']}, {env['dtype']}, "
             f"{env['threads']} thread(s)), {cfg['max_new_tokens']} new tokens, {cfg['repeats']} repeat(s)", "",
             "Tokens/s (speedup over the faster batched baseline of the same batch size):", "",
             "| method | " + " | ".join(f"batch {s}" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in results["by_batch_size"][str(sizes[0])]["methods"]:
        cells = []
        for size in sizes:
            row = results["by_batch_size"][str(size)]["methods"][name]
            cells.append(f"{row['tokens_per_second']:.1f} ({row['speedup']:.2f}×)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Below {PAYS}× over the baseline (crossover):", ""]
    for name, size in results["crossover"].items():
        lines.append(f"- {name}: " + (f"batch {size}" if size else f"not up to batch {sizes[-1]}"))
    lines += ["", "One target pass, ms (rows × new tokens per row):", ""]
    costs = results["pass_costs_ms"]
    tokens = list(costs[str(sizes[0])])
    lines += ["| batch | " + " | ".join(f"{n} tok" for n in tokens) + " |", "|---|" + "---|" * len(tokens)]
    lines += [f"| {size} | " + " | ".join(f"{costs[str(size)][n]:.1f}" for n in tokens) + " |" for size in sizes]
    bugs = [(size, name) for size in sizes for name, row in results["by_batch_size"][str(size)]["methods"].items()
            if row["identity"] and row["identity"]["bugs"]]
    lines += ["", "Lossless: " + ("every row of every batch equals its prompt decoded alone (or differs at a "
                                  "near-tie)" if not bugs else f"DIFFERENCES (not near-ties): {bugs}")]
    if results["skipped"]:
        lines.append(f"Skipped {len(results['skipped'])} question turn(s): "
                     + ", ".join(f"{s['question_id']} turn {s['turn']}" for s in results["skipped"]))
    return "\n".join(lines) + "\n"


def write_batch_results(results: dict, out_dir: str | Path) -> Path:
    """Write `batching.json` and `batching.md` into `out_dir`; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "batching.json"
    path.write_text(json.dumps(results, indent=1))
    (out / "batching.md").write_text(batch_markdown(results))
    return path


def batch_mismatches(results: dict) -> list[str]:
    """(batch size, method) pairs whose rows differ from decoding alone, not at a near-tie."""
    results = json.loads(json.dumps(results))
    return [f"{name} at batch {size}" for size, entry in results["by_batch_size"].items()
            for name, row in entry["methods"].items() if row["identity"] and row["identity"]["bugs"]]
