"""`python -m kangaroo_lite.cli …`: the `kangaroo-lite` command (what `accelerate launch -m` needs)."""

from . import main

main()
