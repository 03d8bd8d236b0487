"""A real bf16 training loop in numpy: a small GPT-style proxy on a learnable synthetic corpus.

Parameters are stored as bfloat16 (ml_dtypes); matmuls run in float32 BLAS and their results are
rounded to bf16, as the Tensor engine accumulates in fp32 and writes bf16. AdamW keeps fp32 master
weights. Each batch is split across the emulated cores and the per-core gradients are all-reduced
numerically (summed in fp32 from bf16, then averaged).

The model: token + position embeddings, one causal single-head self-attention block and one GELU MLP
block with residuals and RMSNorm, and an unembedding. Backward passes are written by hand.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

BF16 = ml_dtypes.bfloat16


def bf16_round(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bf16 and back: what a bf16 tensor would hold."""
    return x.astype(BF16).astype(np.float32)


def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matmul in fp32 with the result rounded to bf16."""
    return bf16_round(a @ b)


class MarkovCorpus:
    """A first-order Markov chain over a small vocabulary: each token has two likely successors.

    Its entropy rate is far below log(vocab), so the loss has somewhere to fall; a model that
    learns the transition table reaches it.
    """

    def __init__(self, vocab: int, rng: np.random.Generator) -> None:
        self.vocab = vocab
        self.trans = np.full((vocab, vocab), 0.02 / vocab)
        for t in range(vocab):
            a, b = rng.choice(vocab, size=2, replace=False)
            self.trans[t, a] += 0.7
            self.trans[t, b] += 0.28
        self.trans /= self.trans.sum(axis=1, keepdims=True)
        self.cdf = np.cumsum(self.trans, axis=1)

    def entropy_rate(self) -> float:
        p = self.trans
        return float(-(p * np.log(p)).sum(axis=1).mean())

    def batch(self, rng: np.random.Generator, batch: int, seq: int) -> np.ndarray:
        out = np.empty((batch, seq + 1), dtype=np.int64)
        out[:, 0] = rng.integers(0, self.vocab, size=batch)
        u = rng.random((batch, seq))
        for i in range(seq):
            out[:, i + 1] = (u[:, i, None] > self.cdf[out[:, i]]).sum(axis=1).clip(max=self.vocab - 1)
        return out


def _gelu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.sqrt(2 / np.pi)
    inner = c * (x + 0.044715 * x**3)
    th = np.tanh(inner)
    y = 0.5 * x * (1 + th)
    dy = 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * c * (1 + 3 * 0.044715 * x**2)
    return y, dy


def _rmsnorm(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, tuple]:
    r = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6)
    xn = x * r
    return xn * g, (xn, r, g)


def _rmsnorm_back(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    xn, r, g = cache
    dg = (dy * xn).reshape(-1, xn.shape[-1]).sum(axis=0)
    dxn = dy * g
    d = xn.shape[-1]
    dx = r * (dxn - xn * (dxn * xn).sum(axis=-1, keepdims=True) / d)
    return dx, dg


class ProxyGPT:
    """Parameters in bf16, fp32 master copy and AdamW moments."""

    def __init__(self, seed: int, vocab: int = 16, d: int = 32, seq: int = 32, batch: int = 16,
                 shards: int = 4, lr: float = 3e-3, weight_decay: float = 0.01) -> None:
        self.rng = np.random.default_rng(seed)
        self.corpus = MarkovCorpus(vocab, self.rng)
        self.vocab, self.d, self.seq, self.batch, self.shards = vocab, d, seq, batch, shards
        self.lr, self.wd = lr, weight_decay
        s = 1 / np.sqrt(d)
        shapes = {
            "tok": (vocab, d, 0.5), "pos": (seq, d, 0.1),
            "wq": (d, d, s), "wk": (d, d, s), "wv": (d, d, s), "wo": (d, d, s),
            "w1": (d, 4 * d, s), "w2": (4 * d, d, 1 / np.sqrt(4 * d)), "wu": (d, vocab, s),
        }
        self.master = {k: (self.rng.standard_normal((a, b)) * sc).astype(np.float32) for k, (a, b, sc) in shapes.items()}
        self.master["g1"] = np.ones(d, np.float32)
        self.master["g2"] = np.ones(d, np.float32)
        self.m = {k: np.zeros_like(v) for k, v in self.master.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.master.items()}
        self.params = {k: v.astype(BF16) for k, v in self.master.items()}
        self.step_count = 0
        self.last_loss = float("nan")
        self.first_loss = float("nan")

    def _forward_backward(self, tokens: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        p = {k: v.astype(np.float32) for k, v in self.params.items()}
        x_in, y = tokens[:, :-1], tokens[:, 1:]
        b, t = x_in.shape
        d = self.d
        h0 = bf16_round(p["tok"][x_in] + p["pos"][:t])
        n1, c1 = _rmsnorm(h0, p["g1"])
        q, k, v = mm(n1, p["wq"]), mm(n1, p["wk"]), mm(n1, p["wv"])
        sc = (q @ k.transpose(0, 2, 1)) / np.sqrt(d)
        mask = np.triu(np.ones((t, t), dtype=bool), 1)
        sc = np.where(mask, -1e9, sc)
        sc -= sc.max(axis=-1, keepdims=True)
        a = np.exp(sc)
        a /= a.sum(axis=-1, keepdims=True)
        av = bf16_round(a @ v)
        h1 = bf16_round(h0 + mm(av, p["wo"]))
        n2, c2 = _rmsnorm(h1, p["g2"])
        z = mm(n2, p["w1"])
        gz, dgz = _gelu(z)
        h2 = bf16_round(h1 + mm(gz, p["w2"]))
        logits = h2 @ p["wu"]
        logits -= logits.max(axis=-1, keepdims=True)
        pr = np.exp(logits)
        pr /= pr.sum(axis=-1, keepdims=True)
        n = b * t
        loss = float(-np.log(pr.reshape(n, -1)[np.arange(n), y.reshape(-1)] + 1e-12).mean())

        g: dict[str, np.ndarray] = {}
        dl = pr.copy()
        dl.reshape(n, -1)[np.arange(n), y.reshape(-1)] -= 1
        dl /= n
        g["wu"] = h2.reshape(n, d).T @ dl.reshape(n, -1)
        dh2 = dl @ p["wu"].T
        g["w2"] = gz.reshape(n, -1).T @ dh2.reshape(n, d)
        dz = (dh2 @ p["w2"].T) * dgz
        g["w1"] = n2.reshape(n, d).T @ dz.reshape(n, -1)
        dn2 = dz @ p["w1"].T
        dh1_norm, g["g2"] = _rmsnorm_back(dn2, c2)
        dh1 = dh2 + dh1_norm
        g["wo"] = av.reshape(n, d).T @ dh1.reshape(n, d)
        dav = dh1 @ p["wo"].T
        da = dav @ v.transpose(0, 2, 1)
        dv = a.transpose(0, 2, 1) @ dav
        dsc = a * (da - (da * a).sum(axis=-1, keepdims=True)) / np.sqrt(d)
        dq = dsc @ k
        dk = dsc.transpose(0, 2, 1) @ q
        g["wq"] = n1.reshape(n, d).T @ dq.reshape(n, d)
        g["wk"] = n1.reshape(n, d).T @ dk.reshape(n, d)
        g["wv"] = n1.reshape(n, d).T @ dv.reshape(n, d)
        dn1 = dq @ p["wq"].T + dk @ p["wk"].T + dv @ p["wv"].T
        dh0_norm, g["g1"] = _rmsnorm_back(dn1, c1)
        dh0 = dh1 + dh0_norm
        g["pos"] = np.zeros_like(p["pos"])
        g["pos"][:t] = dh0.sum(axis=0)
        g["tok"] = np.zeros_like(p["tok"])
        np.add.at(g["tok"], x_in.reshape(-1), dh0.reshape(n, d))
        # Gradients leave the core in bf16, as the all-reduce would carry them.
        return loss, {k: bf16_round(val.astype(np.float32)) for k, val in g.items()}

    def step(self) -> float:
        """One data-parallel training step over all emulated cores; returns the loss."""
        tokens = self.corpus.batch(self.rng, self.batch, self.seq)
        shards = np.array_split(tokens, self.shards)
        losses, grads = [], []
        for sh in shards:
            loss, g = self._forward_backward(sh)
            losses.append(loss)
            grads.append(g)
        # Numerical all-reduce: fp32 sum of the bf16 shard gradients, then the mean.
        avg = {k: np.sum([gr[k] for gr in grads], axis=0, dtype=np.float32) / len(grads) for k in grads[0]}
        self.step_count += 1
        b1, b2, eps = 0.9, 0.95, 1e-8
        for k, gk in avg.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * gk
            self.v[k] = b2 * self.v[k] + (1 - b2) * gk * gk
            mh = self.m[k] / (1 - b1**self.step_count)
            vh = self.v[k] / (1 - b2**self.step_count)
            self.master[k] -= self.lr * (mh / (np.sqrt(vh) + eps) + self.wd * self.master[k])
            self.params[k] = self.master[k].astype(BF16)
        self.last_loss = float(np.mean(losses))
        if self.step_count == 1:
            self.first_loss = self.last_loss
        return self.last_loss
