"""The results cache's key: a run's hash (the submission's content hash, and where and how
its codec ran) × an image's SHA-256 × the operating point's text."""

from __future__ import annotations

from typing import Any


def point_key(point: Any) -> str:
    """A stable, file-name-safe text for an operating point (part of the cache key)."""
    if isinstance(point, float):
        return repr(round(point, 6))
    return str(point).replace("/", "_").replace(" ", "_")


def run_hash(content_hash: str, device: str = "cpu", sandboxed: bool = True, device_tag: str = "") -> str:
    """The content hash, with the device kind when the networks ran elsewhere than on the CPU
    (``+cuda``, then ``-<device_tag>``: :func:`bench.device.identity_tag` of the GPU model and
    the CUDA, cuDNN and torch versions, which change a CUDA file's bytes) and ``+nosandbox``
    when the codec ran unsandboxed: such records are cached apart, so a row never mixes them
    with the default's, nor one GPU's with another's. CPU keys are what they always were."""
    where = "" if device == "cpu" else "+" + device.split(":")[0] + (f"-{device_tag}" if device_tag else "")
    return content_hash + where + ("" if sandboxed else "+nosandbox")
