"""Token specificity for NIDF-weighted decoding (See et al. 2019, "What makes a good
conversation? How controllable attributes affect human judgments").

A seq2seq chatbot trained by likelihood favours replies that fit any context ("I don't know").
Weighted decoding adds `specificity` times each token's normalized inverse document frequency
(NIDF) to its logit at every step, so rarer, more content-bearing tokens win more often. The
NIDF of a piece is its IDF over the training replies, log(replies / replies holding it), scaled
to [0, 1] between the commonest and the rarest piece that any reply holds. Pieces no training
reply holds get 0: the model never learned to emit them, and boosting them only adds noise.
"""

from __future__ import annotations

import numpy as np


def nidf(frequencies: np.ndarray) -> np.ndarray:
    """float32 [V] NIDF from each piece's count of the replies holding it
    (`chatbot.shards.target_frequencies`): 0 for the commonest piece and for pieces no reply
    holds, 1 for the rarest held."""
    frequencies = np.asarray(frequencies, np.float64)
    held = frequencies > 0
    if not held.any():
        return np.zeros(frequencies.shape, np.float32)
    idf = np.log(frequencies.max() / np.where(held, frequencies, 1.0))
    spread = idf[held].max()
    scaled = idf / spread if spread > 0 else np.zeros_like(idf)
    return np.where(held, scaled, 0.0).astype(np.float32)
