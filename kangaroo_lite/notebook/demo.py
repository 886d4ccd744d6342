"""`make demo`: one prompt per subtask through every method, coloured by token fate."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..bench.methods import OURS, method_runners
from ..decoding.autoregressive import autoregressive
from ..model_sets.loading import load_default
from ..models.corpus import SUBTASKS, read_questions
from ..models.loading import DATA_DIR, encode_chat
from .tokens import rich_legend, tokens_rich


def run_demo(max_new_tokens: int = 64, subtasks: list[str] | tuple[str, ...] = SUBTASKS, seed: int = 0) -> None:
    """Print each method's generation and a tokens/s, speedup and #MAT table."""
    console = Console()
    models = load_default()
    methods = [m for m in OURS if m != "kangaroo" or models.adapter is not None]
    runners = method_runners(models, max_new_tokens, methods)
    warmups = method_runners(models, 8, methods)
    questions = read_questions(DATA_DIR / "question.jsonl")
    console.print(f"[bold]kangaroo_lite demo[/] — methods: {', '.join(runners)}; "
                  f"target {models.target.num_parameters() / 1e6:.1f}M, draft "
                  f"{models.draft.num_parameters() / 1e6:.1f}M parameters")
    console.print(rich_legend())
    table = Table(title="greedy decoding, this machine")
    for column in ("subtask", "method", "tokens", "tokens/s", "speedup", "#MAT"):
        table.add_column(column, justify="left" if column in ("subtask", "method") else "right")
    for subtask in subtasks:
        record = next(q for q in questions if q["category"] == subtask)
        ids = encode_chat(models.tokenizer, record["turns"][0])
        console.rule(f"[bold]{subtask}[/]")
        console.print(record["turns"][0], style="dim")
        for run in warmups.values():  # warm-up, so the first timed method is not penalised
            run(ids)
        baseline = None
        for name, run in runners.items():
            result = run(ids)
            baseline = baseline or result.tokens_per_second
            console.print(f"[bold]{name}[/]: ", tokens_rich(models.tokenizer, result))
            table.add_row(subtask, name, str(len(result.tokens)), f"{result.tokens_per_second:.0f}",
                          f"{result.tokens_per_second / baseline:.2f}x", f"{result.mean_accepted:.2f}")
        sampled = autoregressive(models.target, ids, max_new_tokens, temperature=0.8, seed=seed,
                                 tokenizer=models.tokenizer)
        console.print(f"[bold]autoregressive, sampled (T=0.8, seed {seed})[/]: {sampled.text}")
        table.add_row(subtask, "autoregressive T=0.8", str(len(sampled.tokens)),
                      f"{sampled.tokens_per_second:.0f}", f"{sampled.tokens_per_second / baseline:.2f}x",
                      f"{sampled.mean_accepted:.2f}")
    console.print(table)
    console.print("Speedups here are single runs; `make bench` measures them properly "
                  "(interleaved, repeated, median).", style="dim")
