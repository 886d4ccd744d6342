"""The Kangaroo adapter: the model, its training by distillation from the target, its draft vocabulary.

May import: `core`, `models`.
"""
