"""What every decoding method shares: the sampling rule, cache rollback, input checks, the result and its trace,
and the ragged layout of a batch's caches.

May import: nothing else of kangaroo_lite (the ground floor).
"""
