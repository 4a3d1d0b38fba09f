"""Settings at the bottom of the library: params.yaml loaded and validated, the experiment grid, and the run
spec every stage takes its settings from.
"""
