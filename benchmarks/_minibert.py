"""A NumPy forward pass of a BERT sentence embedder (all-MiniLM-L6-v2's architecture), for
the benchmarks that measure what a compressed model still computes (not a benchmark itself).

    model = MiniBert.from_folder(folder)       # model.safetensors, vocab.txt, config.json
    emb = model.embed(["A sentence.", ...])    # mean-pooled token states, (batch, hidden)
    model.embed(sentences, weights={name: W})  # with some matrices replaced
    model.embed(sentences, capture=inputs)     # inputs[name]: the rows each matrix multiplied

The tokenizer is BERT's uncased WordPiece (lower case, accents stripped, punctuation split,
greedy longest match with "##" continuations); the network is the usual post-LayerNorm
encoder with exact (erf) GELU, followed by mean pooling over the real tokens.
"""
import json
import os
import unicodedata

import numpy as np
from scipy.special import erf


# ------------------------------------------------------------------ WordPiece
def _is_punctuation(ch):
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(code):
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F
            or 0x2B820 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
            or 0x2F800 <= code <= 0x2FA1F)


class WordPiece:
    """BERT's uncased tokenizer over a ``vocab.txt`` (one token per line, id = line number)."""

    def __init__(self, vocab_path, max_length=256):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.max_length = max_length
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.unk, self.pad = self.vocab["[UNK]"], self.vocab["[PAD]"]

    def _words(self, text):
        chars = []
        for ch in text:
            code = ord(ch)
            if code in (0, 0xFFFD) or (unicodedata.category(ch).startswith("C")
                                       and ch not in "\t\n\r"):
                continue
            chars.append(f" {ch} " if _is_cjk(code) else " " if ch.isspace() else ch)
        text = unicodedata.normalize("NFD", "".join(chars).lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        words = []
        for token in text.split():
            current = ""
            for ch in token:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _pieces(self, word):
        if len(word) > 100:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    out.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return out

    def encode(self, text):
        ids = [i for w in self._words(text) for i in self._pieces(w)]
        return [self.cls] + ids[:self.max_length - 2] + [self.sep]

    def batch(self, texts):
        """(ids, mask): int64 and float32 arrays of shape (batch, longest), padded."""
        seqs = [self.encode(t) for t in texts]
        n = max(len(s) for s in seqs)
        ids = np.full((len(seqs), n), self.pad, np.int64)
        mask = np.zeros((len(seqs), n), np.float32)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask


# ------------------------------------------------------------------ the network
def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniBert:
    """A BERT encoder with mean pooling (all-MiniLM-L6-v2 and models of its layout)."""

    def __init__(self, tensors, config, tokenizer):
        self.t = tensors
        self.config = config
        self.tokenizer = tokenizer
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        self.eps = config.get("layer_norm_eps", 1e-12)

    @classmethod
    def from_folder(cls, folder):
        from safetensors.numpy import load_file
        tensors = load_file(os.path.join(folder, "model.safetensors"))
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        return cls(tensors, config, WordPiece(os.path.join(folder, "vocab.txt")))

    def matrix_names(self):
        """The names of the encoder's weight matrices (6 per layer), in order."""
        parts = ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "intermediate.dense", "output.dense")
        return [f"encoder.layer.{i}.{p}.weight" for i in range(self.layers) for p in parts]

    def _linear(self, x, name, weights, capture):
        if capture is not None:
            capture.setdefault(name + ".weight", []).append(x.reshape(-1, x.shape[-1]).copy())
        w = weights.get(name + ".weight", self.t[name + ".weight"])
        return x @ np.asarray(w, np.float32).T + self.t[name + ".bias"]

    def hidden(self, ids, mask, weights=None, capture=None):
        """Token states of the last layer, (batch, tokens, hidden), float32."""
        weights = weights or {}
        t = self.t
        pos = np.arange(ids.shape[1])
        x = (t["embeddings.word_embeddings.weight"][ids]
             + t["embeddings.position_embeddings.weight"][pos][None]
             + t["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"],
                        self.eps)
        b, n, h = x.shape
        dh = h // self.heads
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(y):
                return y.reshape(b, n, self.heads, dh).transpose(0, 2, 1, 3)
            q = split(self._linear(x, p + "attention.self.query", weights, capture))
            k = split(self._linear(x, p + "attention.self.key", weights, capture))
            v = split(self._linear(x, p + "attention.self.value", weights, capture))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(dh)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = (scores / scores.sum(-1, keepdims=True)) @ v
            att = att.transpose(0, 2, 1, 3).reshape(b, n, h)
            x = _layer_norm(x + self._linear(att, p + "attention.output.dense", weights, capture),
                            t[p + "attention.output.LayerNorm.weight"],
                            t[p + "attention.output.LayerNorm.bias"], self.eps)
            y = self._linear(x, p + "intermediate.dense", weights, capture)
            y = 0.5 * y * (1.0 + erf(y / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + self._linear(y.astype(np.float32), p + "output.dense", weights,
                                             capture),
                            t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"],
                            self.eps)
        return x.astype(np.float32)

    def embed(self, texts, weights=None, capture=None):
        """Mean-pooled sentence embeddings, (batch, hidden) float64 (not normalised).
        ``capture``: a dict that collects, per weight name, the rows each matrix multiplied
        (only the real tokens: padding rows are left out)."""
        ids, mask = self.tokenizer.batch(texts)
        inner = None if capture is None else {}
        x = self.hidden(ids, mask, weights, inner).astype(np.float64)
        if capture is not None:
            keep = mask.reshape(-1) > 0
            for name, rows in inner.items():
                capture.setdefault(name, []).extend(r[keep] for r in rows)
        return (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def cosine(a, b):
    """Row-wise cosine similarity of two (batch, dim) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
