"""Loading the models a profile runs on: ``profiles`` (the toy and CelebA-HQ profiles), ``unets``, ``hub``
(reaching the model hub), ``clip`` (CLIP encoders), ``perceptual`` (LPIPS and its weights), ``tokenizer_build``."""
