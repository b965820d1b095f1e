"""FC-like synthetic feature vectors for tests and benchmarks of the indexes.

Real fc7 outputs of a detector are non-negative (after a ReLU), sparse-ish, and concentrated near a
low-dimensional structure: a handful of object kinds, each varying along a few appearance factors. Uniform random
vectors have none of that (every neighbour is about as far as any other point), so they would make every
approximate index look either useless or perfect. This generator draws:

    z = centre[cluster] + factors @ basis[cluster] * local_scale + jitter      (latent, `latent` dims)
    x = relu(z @ mix + bias + noise)                                             (`dim` dims, float32)

with `clusters` centres, `local_dims` factors per cluster, one random (latent x dim) mixing matrix and
per-coordinate Gaussian noise. Deterministic for a given seed: rows are produced in fixed chunks, each from its own
seeded stream, so the first n rows are the same whatever n is asked for.
"""

from __future__ import annotations

import numpy as np

CHUNK = 32768


class FCLikeGenerator:
    def __init__(self, dim: int = 1024, latent: int = 64, clusters: int = 48, local_dims: int = 8,
                 local_scale: float = 0.6, jitter: float = 0.15, noise: float = 0.25, seed: int = 0):
        rng = np.random.default_rng([seed, 0xFC])
        self.dim, self.latent, self.clusters, self.local_dims = dim, latent, clusters, local_dims
        self.local_scale, self.jitter, self.noise = local_scale, jitter, noise
        self.centres = rng.standard_normal((clusters, latent)).astype(np.float32)
        basis = rng.standard_normal((clusters, local_dims, latent)).astype(np.float32)
        self.basis = basis / np.linalg.norm(basis, axis=2, keepdims=True)
        self.mix = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)
        # A negative bias makes roughly half the coordinates zero after the ReLU, as in real fc7 outputs.
        self.bias = rng.normal(-0.3, 0.2, dim).astype(np.float32)
        self.seed = seed

    def generate(self, n: int, stream: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """n vectors (n, dim) float32; `stream` picks an independent sequence (e.g. 0 = pool, 1 = queries).
        Written into `out` if given, chunk by chunk, so the only large allocation is the result."""
        if out is None:
            out = np.empty((n, self.dim), dtype=np.float32)
        for c, start in enumerate(range(0, n, CHUNK)):
            stop = min(n, start + CHUNK)
            m = stop - start
            rng = np.random.default_rng([self.seed, stream, c])
            labels = rng.integers(0, self.clusters, m)
            factors = rng.standard_normal((m, self.local_dims), dtype=np.float32) * self.local_scale
            z = self.centres[labels] + np.einsum("mr,mrl->ml", factors, self.basis[labels])
            z += rng.standard_normal((m, self.latent), dtype=np.float32) * self.jitter
            block = out[start:stop]
            np.matmul(z, self.mix, out=block)
            block += self.bias
            noise = rng.standard_normal((m, self.dim), dtype=np.float32)
            noise *= self.noise
            block += noise
            np.maximum(block, 0.0, out=block)
        return out


def fc_like_vectors(n: int, dim: int = 1024, seed: int = 0, stream: int = 0, **kwargs) -> np.ndarray:
    return FCLikeGenerator(dim=dim, seed=seed, **kwargs).generate(n, stream=stream)
