"""Shared fixtures. Shared code that is not a fixture (Kodak crops, manifest builders, tiny
models, the fuzz kinds) lives in tests/helpers/; see tests/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.images import crop_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small real Kodak crops as PNGs in a folder (a ``folder:`` dataset)."""
    return crop_folder(tmp_path / "imgs")


@pytest.fixture
def jpeg_run(image_folder, tmp_path):
    """A real JPEG run (targets 0.05, 0.6, 1.2; 0.05 is infeasible) of ``image_folder`` into
    ``tmp_path / "reports"``: (the run's result, the image folder, tmp_path)."""
    from bench.run import run_benchmark

    res = run_benchmark("jpeg", f"folder:{image_folder}", targets=[0.05, 0.6, 1.2], jobs=1,
                        reports_dir=tmp_path / "reports", progress=False)
    return res, image_folder, tmp_path


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    """No test reads a developer's BENCH_DATA, writes hub caches outside tmp_path or goes online."""
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("BENCH_HUB_CACHE", str(tmp_path / "hubcache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("BENCH_HUB_REPO_CLIC2020_TEST", "BENCH_HUB_REPO_CLIC2021_TEST", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def dataset_dirs(tmp_path, monkeypatch):
    """Empty stand-ins for data/ and the shared mirror, plus a BENCH_DATA root (not yet set):
    ``{"bench": ..., "local": ..., "shared": ...}``."""
    import bench.data as data

    d = {"bench": tmp_path / "bench", "local": tmp_path / "local", "shared": tmp_path / "shared"}
    for p in d.values():
        p.mkdir()
    monkeypatch.setattr(data, "LOCAL_DATA_DIR", d["local"])
    monkeypatch.setattr(data, "SHARED_DATA_DIR", d["shared"])
    return d
