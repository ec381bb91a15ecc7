"""Submissions run sandboxed: each codec's encoder and decoder in their own long-lived worker
process (:mod:`bench.sandbox.worker`), started under bubblewrap with a read-only allow-list
(:mod:`bench.sandbox.policy`), spoken to over a pipe whose frames carry JSON and raw bytes,
never pickles (:mod:`bench.sandbox.wire`). The harness keeps the images, writes the files and
computes the metrics; a decoder gets a file's bytes and nothing else (:mod:`bench.sandbox.client`)."""
