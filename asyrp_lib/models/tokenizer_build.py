"""Build the toy CLIP's tokenizer: a real byte-level BPE ``CLIPTokenizer`` over the caption vocabulary.

The vocabulary holds every byte symbol, alone and with the end-of-word mark ``</w>`` (so any text,
even an unseen word, tokenises into characters), plus merges learned by plain BPE on the caption
words until every caption word is a single token.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table of byte-level BPE (as in GPT-2 and CLIP)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def learn_merges(words) -> list[tuple[str, str]]:
    """BPE merges, most frequent pair first, until every word in ``words`` is one symbol."""
    b2u = _bytes_to_unicode()
    seqs = []
    for w in sorted(set(words)):
        sym = [b2u[b] for b in w.lower().encode("utf-8")]
        sym[-1] += "</w>"
        seqs.append(sym)
    merges = []
    while True:
        pairs = Counter()
        for s in seqs:
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]  # ties broken deterministically
        merges.append(best)
        for i, s in enumerate(seqs):
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and (s[j], s[j + 1]) == best:
                    out.append(s[j] + s[j + 1])
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out


def build_tokenizer(words, folder):
    """Write a ``CLIPTokenizer`` for ``words`` into ``folder`` (vocab.json, merges.txt, tokenizer.json, ...)."""
    from transformers import CLIPTokenizer
    b2u = _bytes_to_unicode()
    base = [b2u[b] for b in range(256)]
    vocab: dict[str, int] = {}
    for tok in base + [t + "</w>" for t in base]:
        vocab[tok] = len(vocab)
    merges = learn_merges(words)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merge_lines = [f"{a} {b}" for a, b in merges]
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in merges], model_max_length=32)
    tok.save_pretrained(str(folder))
    # the plain files too, for readers (and transformers versions) that build the tokenizer from them
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merge_lines) + "\n")
    return CLIPTokenizer.from_pretrained(str(folder))
