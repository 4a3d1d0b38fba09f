"""Foreign checkpoints: the Llama-AVSR authors' checkpoints converted into this pipeline's."""
