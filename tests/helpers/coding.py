"""A codec's encode and decode as bare bytes and pixels (the contract lets them return
:class:`~bench.codec.Encoded` / :class:`~bench.codec.Decoded` with measures)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.codec import Codec, JobMeasures, as_decoded, as_encoded


def encode(codec: Codec, image: np.ndarray, point: Any) -> bytes:
    return as_encoded(codec.encode(image, point), type(codec).__name__).data


def decode(codec: Codec, data: bytes) -> np.ndarray:
    return as_decoded(codec.decode(data), type(codec).__name__).pixels


def round_trip_measures(codec: Codec, image: np.ndarray, point: Any) -> tuple[bytes, JobMeasures]:
    """One job's file and what its encode and decode measured, merged as the harness merges them."""
    enc = as_encoded(codec.encode(image, point), type(codec).__name__)
    dec = as_decoded(codec.decode(enc.data), type(codec).__name__)
    return enc.data, enc.measures.merged(dec.measures)
