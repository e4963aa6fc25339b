"""A tiny random CLIP and its tokenizer, built without the model hub (see ``asyrp_lib.models.clip.random_clip``)."""
from pathlib import Path

from asyrp_lib.models.clip import random_clip

WORDS = ("the", "of", "face", "a", "photo", "smiling")


def make_tiny_clip(folder: Path, *, image_size: int = 224, patch_size: int = 16, seed: int = 0):
    """A random ``CLIPModel`` (ViT vision tower with the given image/patch size, small widths) and its tokenizer."""
    return random_clip(image_size=image_size, patch_size=patch_size, words=WORDS, seed=seed, folder=folder)
