"""One module per decoding method, each reading like its paper's pseudo-code; a `*_batch` module per method
for many prompts at once (lockstep drafting in `draft_rows`).

May import: `core`, `models`, `adapter` — never `bench` or `notebook`.
"""
