"""Datasets from the Hugging Face hub (CLIC 2020/2021), loaded with the ``datasets`` library.

``materialise_hub_dataset(spec)`` turns ``REPO_ID``, ``REPO_ID:SPLIT`` (``REPO_ID/SUBDIR[:SPLIT]``
for a repository that keeps several sets in folders) or a local folder that ``load_dataset``
understands (parquet files, an image folder) into a folder of PNG files, which the rest of the
harness reads like any other dataset folder. The PNGs are the original bytes where the set
stores PNG, and a lossless re-encoding otherwise. A finished folder is reused: no second load.

The friendly names below (``clic2020-test``, ``clic2021-valid``, …) are registered in
``bench.data.DATASETS`` with a download step that materialises the hub set into ``data/<name>``,
so the usual lookup order (``$BENCH_DATA``, ``data/``, the shared mirror) is tried first.

Offline: with ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``) set, or when a short probe of the
hub fails, a ``DatasetError`` says so at once instead of ``datasets``' retries (~25 s and more).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.dataspec import DATASETS, DatasetError, DatasetSpec
from bench.paths import LOCAL_DATA_DIR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMPLETE_MARKER = ".complete.json"       # written last: a folder without it is not reused
DEFAULT_SPLIT_FILE = "DEFAULT_SPLIT"      # which split a spec without one resolved to
SPLIT_PREFERENCE = ("test", "validation", "valid", "val", "train")
NAME_COLUMNS = ("id", "image_id", "name", "filename", "file_name", "file", "image_name", "key")
PROBE_TIMEOUT_S = 10.0                    # one HTTP request; override with BENCH_HUB_TIMEOUT


def hub_cache_root() -> Path:
    """Where ``hf:`` datasets are materialised: ``$BENCH_HUB_CACHE`` or ``data/hub``."""
    return Path(os.environ.get("BENCH_HUB_CACHE") or LOCAL_DATA_DIR / "hub")


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Read at call time (``datasets`` and ``huggingface_hub`` only read it at import)."""
    return _truthy("HF_HUB_OFFLINE") or _truthy("HF_DATASETS_OFFLINE")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


@dataclass(frozen=True)
class HubRef:
    """What a spec names: a hub repository (with an optional folder in it) or a local folder."""

    repo: str                 # repo id, or the absolute local folder
    split: str | None = None
    data_dir: str | None = None
    local: bool = False

    @property
    def label(self) -> str:
        return self.repo + (f"/{self.data_dir}" if self.data_dir else "")

    def cache_name(self) -> str:
        if not self.local:
            return _safe(self.label.replace("/", "--"))
        # A local folder: its name plus a hash of its path and listing, so that a changed
        # folder at the same path is materialised afresh.
        root = Path(self.repo)
        listing = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in root.rglob("*") if p.is_file())
        digest = hashlib.sha256(json.dumps([self.repo, listing]).encode()).hexdigest()[:12]
        return f"local-{_safe(root.name)}-{digest}"


def parse_spec(spec: str) -> HubRef:
    """``REPO_ID``, ``REPO_ID:SPLIT``, ``OWNER/NAME/SUBDIR[:SPLIT]``, or ``PATH[:SPLIT]``."""
    spec = spec.strip()
    if not spec:
        raise DatasetError("empty hub dataset spec; expected hf:REPO_ID[:SPLIT] or hf:PATH")
    candidates = [(spec, None)]
    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        candidates.append((head, tail or None))
    for path, split in candidates:                   # a local folder wins over a repo id
        p = Path(path).expanduser()
        if p.is_dir():
            return HubRef(str(p.resolve()), split, local=True)
    repo, split = candidates[-1]
    if repo.startswith((".", "/", "~")) or "\\" in repo:
        raise DatasetError(f"hub dataset folder {repo} does not exist")
    parts = repo.split("/")
    if len(parts) < 2 or not all(parts):
        raise DatasetError(f"{repo!r} is neither a folder nor a hub repo id (OWNER/NAME)")
    return HubRef("/".join(parts[:2]), split, "/".join(parts[2:]) or None)


def _how_to_get(ref: HubRef, dest: Path) -> str:
    return (f"To get it: run once with HF_HUB_OFFLINE=0 on a machine that can reach the hub "
            f"(the PNGs are written to {dest}; copy that folder here), or put the images in a "
            f"folder and use folder:PATH")


def _unreachable(ref: HubRef, dest: Path, why: str) -> DatasetError:
    return DatasetError(f"the Hugging Face hub could not be reached for dataset repo {ref.label!r} "
                        f"({why}). {_how_to_get(ref, dest)}")


def _probe_hub(ref: HubRef, dest: Path) -> None:
    """One short request before ``load_dataset``, whose own retries take half a minute offline."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError as e:
        raise DatasetError(f"huggingface_hub cannot be imported ({e}); install the project's "
                           f"dependencies (pip install -e .)") from None
    timeout = float(os.environ.get("BENCH_HUB_TIMEOUT") or PROBE_TIMEOUT_S)
    try:
        HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(ref.repo, timeout=timeout)
    except RepositoryNotFoundError as e:     # also gated and private repositories
        raise DatasetError(f"dataset repo {ref.repo!r} was not found on the Hugging Face hub or "
                           f"needs access ({type(e).__name__}); check the id, log in "
                           f"(hf auth login) or use folder:PATH") from None
    except Exception as e:                    # connection, DNS, timeout, proxy, 5xx …
        raise _unreachable(ref, dest, f"{type(e).__name__}: {e}") from None


def _import_datasets():
    try:
        import datasets
    except Exception as e:                    # ImportError, or a broken pyarrow/numpy pair
        raise DatasetError(f"the Hugging Face `datasets` library cannot be imported "
                           f"({type(e).__name__}: {e}); fix the environment (pip install -e .) "
                           f"or use folder:PATH") from None
    return datasets


def _pick_split(names: list[str], ref: HubRef) -> str:
    if len(names) == 1:
        return names[0]
    for want in SPLIT_PREFERENCE:
        if want in names:
            return want
    raise DatasetError(f"{ref.label} has splits {', '.join(names)}; name one as hf:{ref.label}:SPLIT")


def _image_column(features, ref: HubRef) -> str:
    from datasets import Image as HFImage
    cols = [k for k, f in features.items() if isinstance(f, HFImage)]
    if not cols:
        raise DatasetError(f"{ref.label}: no image column (features: {', '.join(features)})")
    for pref in ("image", "img"):
        if pref in cols:
            return pref
    return cols[0]


def _stem(value) -> str:
    s = str(value).replace("\\", "/").rsplit("/", 1)[-1]
    if Path(s).suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}:
        s = Path(s).stem
    return _safe(s) if s else ""


def _names(ds, image_col: str, ref: HubRef) -> list[str]:
    """Stable file names: an id/file-name column, else the image files' names, else the index."""
    from datasets import Value
    n = len(ds)
    for col in NAME_COLUMNS:
        f = ds.features.get(col)
        if isinstance(f, Value) and (f.dtype == "string" or f.dtype.startswith(("int", "uint"))):
            names = [_stem(v) for v in ds[col]]
            if all(names) and len(set(names)) == n:
                return names
    paths = [(row[image_col] or {}).get("path") for row in ds.select_columns([image_col])]
    if all(paths):
        names = [_stem(p) for p in paths]
        if all(names) and len(set(names)) == n:
            return names
    width = max(4, len(str(n - 1)))
    return [f"{i:0{width}d}" for i in range(n)]


def _png_bytes(entry: dict, name: str, ref: HubRef) -> bytes:
    data = entry.get("bytes")
    if data is None and entry.get("path") and Path(entry["path"]).is_file():
        data = Path(entry["path"]).read_bytes()
    if data is None:
        raise DatasetError(f"{ref.label}: image {name} has neither bytes nor a readable file")
    if data[:8] == PNG_SIGNATURE:
        return data                              # the original file, bit for bit
    from PIL import Image as PILImage
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im.load()
            out = io.BytesIO()
            try:
                im.save(out, format="PNG")
            except (OSError, ValueError, KeyError):  # a mode PNG cannot hold (CMYK, F, …)
                out = io.BytesIO()
                im.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (OSError, SyntaxError, ValueError):
        # Unreadable: keep the bytes so that decoding reports this image by name later (and
        # Dataset.images(errors=[...]) can skip it) instead of failing the whole set here.
        return data


def _load(ref: HubRef, dest: Path, cache_dir: Path):
    datasets = _import_datasets()
    kwargs = {"cache_dir": str(cache_dir)}
    if ref.data_dir:
        kwargs["data_dir"] = ref.data_dir
    split = ref.split
    try:
        if split is None:
            try:
                names = datasets.get_dataset_split_names(ref.repo,
                                                         **{k: v for k, v in kwargs.items() if k == "data_dir"})
            except Exception:
                names = None
            if names:
                split = _pick_split(list(names), ref)
        if split is None:
            dd = datasets.load_dataset(ref.repo, **kwargs)
            split = _pick_split(list(dd), ref)
            return dd[split], split
        return datasets.load_dataset(ref.repo, split=split, **kwargs), split
    except DatasetError:
        raise
    except ConnectionError as e:              # datasets' "Couldn't reach … on the Hub"
        raise _unreachable(ref, dest, str(e)) from None
    except ValueError as e:
        if "split" in str(e).lower():
            raise DatasetError(f"{ref.label}: no split {split!r} ({e})") from None
        raise DatasetError(f"{ref.label}: datasets.load_dataset failed: {e}") from None
    except Exception as e:
        raise DatasetError(f"{ref.label}: datasets.load_dataset failed "
                           f"({type(e).__name__}: {e})") from None


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _write_folder(ds, split: str, ref: HubRef, dest: Path) -> None:
    """All PNGs into a temporary sibling, the marker last, then one rename: never half a set."""
    from datasets import Image as HFImage
    col = _image_column(ds.features, ref)
    ds = ds.cast_column(col, HFImage(decode=False))
    names = _names(ds, col, ref)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))
    try:
        for name, row in zip(names, ds.select_columns([col])):   # one image in memory at a time
            (tmp / f"{name}.png").write_bytes(_png_bytes(row[col] or {}, name, ref))
        (tmp / COMPLETE_MARKER).write_text(json.dumps(
            {"source": ref.label, "local": ref.local, "split": split, "images": len(names),
             "image_column": col}, indent=1))
        if dest.exists():
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            elif not _is_complete(dest):
                shutil.rmtree(dest)             # an unfinished earlier attempt
        if dest.exists():                       # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.replace(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def materialise_hub_dataset(spec: str, dest: Path | None = None) -> Path:
    """The folder of PNGs for hub/local spec ``spec``; loads it through ``datasets`` only once.

    Without ``dest`` the folder is ``<hub cache>/<safe-name>/<split>/`` (see ``hub_cache_root``);
    with it (the registered CLIC names), the PNGs go straight into ``dest``.
    """
    ref = parse_spec(spec)
    root = hub_cache_root()
    base = root / ref.cache_name()
    if dest is None:
        split = ref.split
        if split is None and (base / DEFAULT_SPLIT_FILE).is_file():
            split = (base / DEFAULT_SPLIT_FILE).read_text().strip()
        if split is not None and _is_complete(base / _safe(split)):
            return base / _safe(split)
        shown = base / (_safe(split) if split else "<split>")
    else:
        dest = Path(dest)
        if _is_complete(dest):
            return dest
        shown = dest
    if not ref.local:
        if hub_offline():
            raise _unreachable(ref, shown, "HF_HUB_OFFLINE is set and it is not materialised yet")
        _probe_hub(ref, shown)
    ds, split = _load(ref, shown, root / ".datasets-cache")
    if dest is None:
        dest = base / _safe(split)
        if ref.split is None:
            base.mkdir(parents=True, exist_ok=True)
            (base / DEFAULT_SPLIT_FILE).write_text(split + "\n")
        if _is_complete(dest):
            return dest
    if len(ds) == 0:
        raise DatasetError(f"{ref.label}: split {split!r} has no rows")
    _write_folder(ds, split, ref, dest)
    return dest


# --- The CLIC sets under friendly names ------------------------------------------------------
#
# Repo ids found with the search tool (no network here, so none could be opened to verify):
# * SCU-VIP-Lab/compression-eval-datasets, folder clic2021_valid/ (imagefolder, one split
#   "train"): its card lists "CLIC professional validation images … 41". CLIC 2021's image track
#   reused the CLIC 2020 "professional" train/valid data (clic.compression.cc/2021/tasks), and
#   the professional validation set is those 41 images, so both clic2020-valid and
#   clic2021-valid point at it.
# * CLIC 2020 professional test (428 images) and CLIC 2021 test (60 images): no hub repository
#   holding them could be found or confirmed. The names are wired (lookup order: $BENCH_DATA,
#   data/, the mirror) and say so when the images are nowhere; pass hf:REPO[:SPLIT] or
#   folder:PATH, or set BENCH_HUB_REPO_CLIC2020_TEST=REPO[:SPLIT] (likewise …_CLIC2021_TEST).

@dataclass(frozen=True)
class HubName:
    name: str
    description: str
    spec: str | None          # hf spec (REPO[/SUBDIR][:SPLIT]) or None when none is confirmed
    source: str


HUB_NAMES = {h.name: h for h in (
    HubName("clic2020-valid", "CLIC 2020 professional validation set: 41 PNG (hub)",
            "SCU-VIP-Lab/compression-eval-datasets/clic2021_valid:train",
            "https://huggingface.co/datasets/SCU-VIP-Lab/compression-eval-datasets (clic2021_valid/)"),
    HubName("clic2021-valid", "CLIC 2021 image validation set (= CLIC 2020 professional valid): 41 PNG (hub)",
            "SCU-VIP-Lab/compression-eval-datasets/clic2021_valid:train",
            "https://huggingface.co/datasets/SCU-VIP-Lab/compression-eval-datasets (clic2021_valid/)"),
    HubName("clic2020-test", "CLIC 2020 professional test set: 428 PNG (no confirmed hub repo)", None,
            "https://data.vision.ee.ethz.ch/cvl/clic/test/CLIC2020Professional_test.zip"),
    HubName("clic2021-test", "CLIC 2021 image test set: 60 PNG (no confirmed hub repo)", None,
            "http://clic.compression.cc/2021/ (test images)"),
)}


def hub_spec_for(name: str) -> str | None:
    """The hf spec for a friendly name: ``$BENCH_HUB_REPO_<NAME>`` overrides the pinned one."""
    env = os.environ.get("BENCH_HUB_REPO_" + re.sub(r"[^A-Z0-9]", "_", name.upper()))
    return env or HUB_NAMES[name].spec


def _download_named(name: str, dest: Path) -> None:
    spec = hub_spec_for(name)
    if spec is None:
        env = "BENCH_HUB_REPO_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
        raise DatasetError(f"no Hugging Face repo id is pinned for {name} (none could be "
                           f"confirmed); set {env}=REPO[:SPLIT], use hf:REPO[:SPLIT] or folder:PATH, "
                           f"or put the PNGs from {HUB_NAMES[name].source} in {dest}")
    materialise_hub_dataset(spec, dest=dest)


def _register() -> None:
    for h in HUB_NAMES.values():
        if h.name not in DATASETS:
            DATASETS.add(h.name, DatasetSpec(
                h.name, h.description, checksums=None,
                download=lambda dest, _n=h.name: _download_named(_n, dest), source=h.source))


_register()
