"""The language models: loading checkpoints, the tokenizer, training them, the synthetic corpus and question files.

May import: `core`.
"""
