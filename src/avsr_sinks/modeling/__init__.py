"""The AVSR model and the LLMs it is built on."""
