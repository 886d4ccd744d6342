"""One module per decoding method, each reading like its paper's pseudo-code.

May import: `core`, `models`, `adapter` — never `bench` or `notebook`.
"""
