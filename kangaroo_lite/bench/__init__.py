"""Measuring: timing, interleaving, the cost model, the benchmark, its report, sweeps, evaluation, sampling quality,
throughput at batch sizes.

May import: `core`, `models`, `adapter`, `decoding` — never `notebook`.
"""
