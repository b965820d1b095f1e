"""The two numeric helpers every backend needs: unit rows for cosine, and the stored form of the base vectors."""

from __future__ import annotations

import numpy as np


def normalize_rows(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    if out is None:
        return x / norms[:, None]
    np.divide(x, norms[:, None], out=out)
    return out



def prepare_base(vectors: np.ndarray, metric: str, chunk: int = 65536) -> np.ndarray:
    """The stored form of the base vectors: C-contiguous float32, unit rows for cosine.

    An input that is already in that form is used as is, without a copy: at 1M x 1024 a copy is 4 GB. Otherwise
    the conversion runs in chunks so the only extra memory is the output itself.
    """
    vectors = np.asarray(vectors)
    if vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        if metric == "euclidean" or _rows_are_unit(vectors, chunk):
            return vectors
    out = np.empty(vectors.shape, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        block = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        if metric == "cosine":
            normalize_rows(block, out=out[start:start + chunk])
        else:
            out[start:start + chunk] = block
    return out



def _rows_are_unit(x: np.ndarray, chunk: int, tol: float = 1e-4) -> bool:
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        norms = np.einsum("ij,ij->i", block, block)
        if not np.all(np.abs(norms - 1.0) <= tol):
            return False
    return True
