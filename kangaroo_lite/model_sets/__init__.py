"""Model sets by name: a tokenizer, a target, its draft model and its Kangaroo adapter, loaded together.

May import: `core`, `models`, `adapter`.
"""
