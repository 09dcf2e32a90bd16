"""The demo model's tokenizer: CLIP's byte-level BPE format over the captions' own vocabulary.

The real CLIP vocabulary cannot ship here, so the tokenizer is built: the 256 byte symbols (each
alone and word-final, so any text encodes), the two special tokens, and BPE merges learned on the
caption vocabulary until every word of it is one token. A word outside it falls apart into
pieces and bytes the text encoder saw only inside known words: prompts outside the vocabulary run,
they just mean little to the model. ``CLIPTokenizer.from_pretrained`` reads the folder.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenes  # noqa: E402

MAX_LENGTH = 32  # tokens, start and end included: the longest caption has 17


def byte_alphabet() -> list[str]:
    """The printable stand-ins byte-level BPE (GPT-2, CLIP) uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in printable)})
    return [mapping[b] for b in range(256)]


def caption_words() -> list[str]:
    phrases = [*[w for words in scenes.TERRAIN_WORDS.values() for w in words],
               *[w for words in scenes.TIME_WORDS.values() for w in words],
               *[w for words in scenes.MATERIAL_WORDS.values() for w in words],
               "a photo of a landscape with a lake the sun the moon clouds and"]
    return sorted({word for phrase in phrases for word in phrase.replace(",", " ").split()} | {","})


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Greedy BPE on ``words`` (each counted once) until each is a single symbol; ties broken by
    the pair's text, so the merges are the same on every machine."""
    pieces = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges = []
    while True:
        pairs = Counter(p for seq in pieces.values() for p in zip(seq, seq[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for word, seq in pieces.items():
            out, k = [], 0
            while k < len(seq):
                if k + 1 < len(seq) and (seq[k], seq[k + 1]) == best:
                    out.append(seq[k] + seq[k + 1])
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            pieces[word] = out


def build_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = learn_merges(caption_words())
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(folder)
    return tokenizer
