"""What the notebooks and the demo draw: coloured token views, the MTAD tree, the threshold-slider app.

May import: every other folder (the top floor, beside `cli`).
"""
