"""The orchestration on top: the pipeline's file layout, dvc.yaml generation, the command-line plumbing and
one entry point per stage.
"""
