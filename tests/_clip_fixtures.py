"""A tiny random CLIP model and a character-level CLIP tokenizer, built without the model hub."""

import json
import string
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

_CHARS = list(string.ascii_lowercase) + list(".,!?'-0123456789")
_MERGES = ["t h", "th e</w>", "o f</w>", "a c", "ac e</w>"]


def write_tokenizer_files(folder: Path) -> Path:
    """A minimal CLIP BPE vocabulary (characters, a few merges, the two special tokens)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for suffix in ("", "</w>"):
        for c in _CHARS:
            vocab[c + suffix] = len(vocab)
    for merge in _MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    return folder


def make_tiny_clip(folder: Path, *, image_size: int = 224, patch_size: int = 16, seed: int = 0):
    """A random ``CLIPModel`` (ViT vision tower with the given image/patch size, small widths) and its tokenizer."""
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer_files(folder))
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=16,
    )
    return CLIPModel(config).eval(), tokenizer
