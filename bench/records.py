"""The job record: what one image × operating point gave, as the runner stores it (one JSON
line in ``records.jsonl``) and rate control, the run and the report read it; and the
exception that says which images' jobs failed.

A record stays a plain dict on disk and in memory (records written before a key existed
still load); :class:`JobRecord` names every key and its type, for readers and checkers.
"""

from __future__ import annotations

from typing import Any, TypedDict


class JobRecord(TypedDict, total=False):
    # what it is about (the cache key: content hash × image bytes × point)
    submission: str
    content_hash: str
    image_id: str
    image_sha256: str
    height: int
    width: int
    point: Any
    point_key: str
    # the file
    bytes: int
    bpp: float
    file: str                  # relative to the run folder once stored
    decoded_sha256: str        # bench.job.decoded_hash of the decoder's pixels
    # where and how it ran
    device: str                # "cpu (N threads)" or "cuda (<GPU>)"
    sandbox: str               # "bwrap" or "off" (bench.sandbox)
    enc_s: float
    file_s: float
    dec_s: float
    metrics_s: float
    job_s: float
    # metrics (bench.metrics.image_metrics)
    sse: float
    mse: float
    psnr: float
    msssim: float
    msssim_db: float
    msssim_scales: int
    # what the codec measured (bench.codec.JobMeasures)
    est_bits: float
    enc_net_s: float
    enc_coder_s: float
    dec_net_s: float
    dec_coder_s: float
    eff_enc_macs: float
    eff_dec_macs: float
    dense_enc_macs: float
    dense_dec_macs: float
    overhead_pct: float
    # an estimate instead of a coded file (bench.job.probe)
    estimated: bool
    estimated_bytes: int       # the raw estimate, once rate control corrects ``bytes``
    probe_s: float


class JobsFailed(Exception):
    """Jobs of some images failed (the codec raised, decoded a wrong shape, ran out of memory):
    ``images`` are their ids, ``errors`` one line per failed job. The run leaves those images
    out and rate-controls the rest again (their records are cached: nothing is coded twice)."""

    def __init__(self, images: set[str], errors: list[str]) -> None:
        self.images, self.errors = set(images), list(errors)
        super().__init__(f"jobs failed for {len(self.images)} image(s): {'; '.join(self.errors[:3])}"
                         f"{'…' if len(self.errors) > 3 else ''}")
