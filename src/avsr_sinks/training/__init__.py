"""Training the projectors and LoRA adapters: the loop, its resume and averaging saves, the decorrelation
loss and the non-finite guard.
"""
