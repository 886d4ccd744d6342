"""One module per decoding method, each reading like its paper's pseudo-code."""
