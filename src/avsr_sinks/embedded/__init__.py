"""What only the embedded default builds: the small video encoder it pretrains and the bundled SmolLM2
install.
"""
