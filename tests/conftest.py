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


#: Test files whose tests start no process of their own (no run, no codec worker, no browser,
#: cluster or training): ``make test-fast`` runs these; every other file is marked ``slow``.
FAST = {"test_complexity", "test_container", "test_data", "test_hub", "test_import_graph", "test_metrics",
        "test_ratecontrol", "test_rd", "test_report", "test_results", "test_submission", "test_ecg",
        "test_scale_shift", "test_perceptual", "test_confidence"}


def pytest_collection_modifyitems(config, items):
    """``slow`` on the tests of files not in FAST; a skip, with what to do, on tests that read the
    Kodak images when no copy of them is here."""
    from tests.helpers.images import KODAK, KODAK_MISSING

    kodak_here = (KODAK / "kodim01.png").is_file()
    for item in items:
        if item.path.stem not in FAST:
            item.add_marker(pytest.mark.slow)
        if not kodak_here and _reads_kodak(item):
            item.add_marker(pytest.mark.skip(reason=KODAK_MISSING))


def _reads_kodak(item) -> bool:
    """The test's file reads Kodak pixels (a crop, a folder of crops, the dataset or the gate's profile)."""
    text = item.path.read_text(encoding="utf-8")
    return any(word in text for word in ("kodak", "crop_folder", "image_folder", "jpeg_run", "KODAK", "profile"))
