"""Submissions: ``submissions/<name>/submission.toml`` manifests, validated into a registry.

A manifest names the codec class (``module:Class``; a module that is a ``.py`` file in the
submission folder is loaded from there), its ``[params]``, its ``[operating_points]`` and an
optional ``[rate_control]`` policy. Every error names the file and the offending field.

``status = "training"`` marks a submission whose weights are still being trained, and
``status = "external"`` one whose weights come from outside the repository (compressai's zoo:
its README says how to get them): discovery (runs, the regression gate, the shipped-manifest
checks) leaves both out; ``discover(include_unready=True)`` lists them. ``"ready"`` is the default.

The optional ``[sandbox]`` table widens what its sandboxed processes may read
(:mod:`bench.sandbox.policy`): ``submissions`` names other submissions whose folders it reads
(shared weights), ``torch_hub = true`` the torch hub's checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.codec import Codec, OperatingPoints
from bench.paths import SUBMISSIONS_DIR
from bench.ratecontrol import POLICIES
from bench.registry import Registry
from bench.sources import source_closure

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_GRID = 256
#: A continuous knob's spacing (``operating_points.scale``) → the offset of its log: "log"
#: spaces the sweep evenly in log(v) (λ), "log1p" in log(1 + v) (qualities from 0).
SCALES = {"linear": 0.0, "log": 0.0, "log1p": 1.0}
TOP_FIELDS = {"name", "description", "codec", "params", "operating_points", "rate_control", "status", "sandbox"}
STATUSES = ("ready", "training", "external")
SANDBOX_FIELDS = {"submissions", "torch_hub"}


class SubmissionError(ValueError):
    """A manifest or codec that cannot be used; the message says which file and field."""


@dataclass(frozen=True)
class Submission:
    name: str
    description: str
    codec_ref: str
    root: Path
    params: dict[str, Any] = field(default_factory=dict)
    points: OperatingPoints = OperatingPoints("discrete", (0,))
    policy: str = "per-image"   # CLIC mode: choose a point per image, or one point for all ("shared")
    status: str = "ready"       # "training": no weights yet; "external": weights from outside; both left out
    shares: tuple[str, ...] = ()  # [sandbox] submissions: other submissions' folders it reads
    torch_hub: bool = False     # [sandbox] torch_hub: it reads the torch hub's checkpoints

    def codec_class(self) -> type[Codec]:
        """The codec class, imported into this process: for codec workers
        (:mod:`bench.sandbox.worker`), trusted studies and tests; the harness itself never
        imports a submission's code (:mod:`bench.sandbox.client`)."""
        return load_codec_class(self.codec_ref, self.root)

    def make_codec(self) -> Codec:
        """A codec instance in this process (see :meth:`codec_class`)."""
        cls = self.codec_class()
        try:
            codec = cls(self.params, self.root)
        except (TypeError, ValueError, KeyError, OSError) as e:
            raise SubmissionError(f"{self.root / 'submission.toml'}: codec {self.codec_ref} rejected "
                                  f"its [params]: {e}") from e
        if "params" not in vars(codec) or "device" not in vars(codec):
            raise SubmissionError(f"{self.root / 'submission.toml'}: {cls.__name__}.__init__ does not call "
                                  f"super().__init__(params, root): add that call as the first line of "
                                  f"{cls.__name__}.__init__ (bench.codec.Codec sets params, root and device)")
        return codec

    def sandbox_roots(self) -> list[Path]:
        """The folders its sandboxed processes read: its own and those of ``[sandbox] submissions``."""
        return [self.root, *(self.root.parent / name for name in self.shares)]

    def files_hash(self) -> str:
        """The hash of everything a bitstream depends on that the harness can read without
        running the codec: the submission folder (manifest, weights, local code), the codec's
        module and every module of this project it imports (:func:`bench.sources.source_closure`)."""
        h = hashlib.sha256()
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(self.root)).encode())
                h.update(p.read_bytes())
        src = codec_module_file(self.codec_ref, self.root)
        if src:
            package_root = Path(__file__).resolve().parent
            for f in source_closure(src, package_root):
                name = f.relative_to(package_root) if f.is_relative_to(package_root) else f.name
                h.update(str(name).encode())
                h.update(f.read_bytes())
        return h.hexdigest()

    def content_hash(self, versions: dict[str, str], files_hash: str | None = None) -> str:
        """Changes whenever anything that can change a bitstream changes: :meth:`files_hash`
        and the library ``versions`` the codec states (:meth:`Codec.versions`, asked of its
        sandboxed process). Nothing is imported."""
        h = hashlib.sha256((files_hash or self.files_hash()).encode())
        h.update(repr(sorted(versions.items())).encode())
        return h.hexdigest()[:16]


def codec_module_file(ref: str, root: Path) -> Path | None:
    """The file of a codec entry point's module, found without running it: ``codec.py`` in the
    submission folder, else the installed module's file (its parent packages are imported to
    find it, as Python's import system does; a submission's own code never is)."""
    module_name = ref.partition(":")[0]
    local = Path(root) / (module_name.replace(".", "/") + ".py")
    if local.is_file():
        return local.resolve()
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def load_codec_class(ref: str, root: Path) -> type[Codec]:
    module_name, sep, cls_name = ref.partition(":")
    if not sep or not module_name or not cls_name:
        raise SubmissionError(f"codec entry point {ref!r} must look like 'module:Class'")
    if not (MODULE_RE.match(module_name) and IDENT_RE.match(cls_name)):
        raise SubmissionError(f"codec entry point {ref!r} must be a dotted module name and a class name "
                              "('module:Class'): no paths, no relative imports")
    local = root / (module_name.replace(".", "/") + ".py")
    if local.is_file() and not local.resolve().is_relative_to(Path(root).resolve()):
        raise SubmissionError(f"codec entry point {ref!r}: {local} resolves outside the submission folder {root}")
    try:
        if local.is_file():
            key = f"bench_submission_{root.name}_{module_name}".replace(".", "_").replace("-", "_")
            if key not in sys.modules:
                spec = importlib.util.spec_from_file_location(key, local)
                module = importlib.util.module_from_spec(spec)
                sys.modules[key] = module
                spec.loader.exec_module(module)
            module = sys.modules[key]
        else:
            module = importlib.import_module(module_name)
    except ImportError as e:
        raise SubmissionError(f"codec entry point {ref!r}: cannot import module {module_name!r} ({e})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise SubmissionError(f"codec entry point {ref!r}: module {module_name!r} has no {cls_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, Codec)):
        raise SubmissionError(f"codec entry point {ref!r}: {cls_name} is not a subclass of bench.codec.Codec")
    return cls


def _expect(value: Any, types: type | tuple, where: str, what: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SubmissionError(f"{where}: field {what!r} must be {types}, got a boolean")
    if not isinstance(value, types):
        raise SubmissionError(f"{where}: field {what!r} must be {getattr(types, '__name__', types)}, "
                              f"got {type(value).__name__} {value!r}")
    return value


def parse_points(table: Any, where: str) -> OperatingPoints:
    _expect(table, dict, where, "operating_points")
    kind = table.get("kind")
    if kind == "discrete":
        pts = _expect(table.get("points"), list, where, "operating_points.points")
        if not pts or len(set(map(str, pts))) != len(pts):
            raise SubmissionError(f"{where}: field 'operating_points.points' must be a non-empty list of "
                                  "distinct values")
        return OperatingPoints("discrete", tuple(pts))
    if kind == "continuous":
        for key in ("low", "high"):
            if key not in table:
                raise SubmissionError(f"{where}: field 'operating_points.{key}' is missing")
            _expect(table[key], (int, float), where, f"operating_points.{key}")
            if not math.isfinite(table[key]):
                raise SubmissionError(f"{where}: field 'operating_points.{key}' must be a finite number")
        if not table["low"] < table["high"]:
            raise SubmissionError(f"{where}: field 'operating_points.low' must be below 'high'")
        direction = table.get("direction", "quality-up")
        if direction not in ("quality-up", "quality-down"):
            raise SubmissionError(f"{where}: field 'operating_points.direction' must be 'quality-up' "
                                  f"(larger value, more bits) or 'quality-down', got {direction!r}")
        grid = _expect(table.get("grid", 8), int, where, "operating_points.grid")
        if not 2 <= grid <= MAX_GRID:
            raise SubmissionError(f"{where}: field 'operating_points.grid' must be 2..{MAX_GRID}, got {grid}")
        _expect(table.get("integer", False), bool, where, "operating_points.integer")
        scale = table.get("scale", "linear")
        if scale not in SCALES:
            raise SubmissionError(f"{where}: field 'operating_points.scale' must be one of {list(SCALES)}, "
                                  f"got {scale!r}")
        if not table["low"] + SCALES[scale] > 0 and scale != "linear":
            raise SubmissionError(f"{where}: a knob with scale = '{scale}' needs low > {0.0 - SCALES[scale]:g}, "
                                  f"got {table['low']}")
        unknown = set(table) - {"kind", "low", "high", "direction", "integer", "grid", "scale"}
        if unknown:
            raise SubmissionError(f"{where}: unknown field(s) {sorted('operating_points.' + u for u in unknown)}")
        return OperatingPoints("continuous", (), float(table["low"]), float(table["high"]),
                               direction == "quality-up", bool(table.get("integer", False)), max(grid, 2),
                               scale != "linear", SCALES[scale])
    raise SubmissionError(f"{where}: field 'operating_points.kind' must be 'discrete' or 'continuous', got {kind!r}")


def _check_ref(ref: str, where: str) -> str:
    module_name, sep, cls_name = ref.partition(":")
    if not (sep and MODULE_RE.match(module_name) and IDENT_RE.match(cls_name)):
        raise SubmissionError(f"{where}: field 'codec' {ref!r} must look like 'module:Class' (a dotted module "
                              "name and a class name; no paths, no relative imports)")
    return ref


def load_manifest(path: Path) -> Submission:
    """Read and validate one submission.toml."""
    where = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise SubmissionError(f"{where}: not valid TOML ({e})") from None
    except OSError as e:
        raise SubmissionError(f"{where}: cannot read ({e})") from None
    unknown = set(raw) - TOP_FIELDS
    if unknown:
        raise SubmissionError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(TOP_FIELDS)}")
    for key in ("name", "description", "codec", "operating_points"):
        if key not in raw:
            raise SubmissionError(f"{where}: required field {key!r} is missing")
    name = _expect(raw["name"], str, where, "name")
    if not NAME_RE.match(name):
        raise SubmissionError(f"{where}: field 'name' {name!r} must be lower-case letters, digits, '_' or '-' "
                              "(no path separators: a submission cannot point outside submissions/)")
    if name != Path(path).parent.name:
        raise SubmissionError(f"{where}: field 'name' is {name!r} but the folder is {Path(path).parent.name!r}; "
                              "they must match")
    rc = _expect(raw.get("rate_control", {}), dict, where, "rate_control")
    policy = rc.get("policy", "per-image")
    if policy not in POLICIES:
        raise SubmissionError(f"{where}: field 'rate_control.policy' must be one of {POLICIES}, got {policy!r}")
    status = raw.get("status", "ready")
    if status not in STATUSES:
        raise SubmissionError(f"{where}: field 'status' must be one of {STATUSES}, got {status!r}")
    shares, torch_hub = _sandbox_table(raw.get("sandbox", {}), where, Path(path).parent)
    return Submission(
        name=name,
        description=_expect(raw["description"], str, where, "description").strip(),
        codec_ref=_check_ref(_expect(raw["codec"], str, where, "codec"), where),
        root=Path(path).parent.resolve(),
        params=_expect(raw.get("params", {}), dict, where, "params"),
        points=parse_points(raw["operating_points"], where),
        policy=policy,
        status=status,
        shares=shares,
        torch_hub=torch_hub,
    )


def _sandbox_table(table: Any, where: str, folder: Path) -> tuple[tuple[str, ...], bool]:
    """``[sandbox]``: the other submissions' folders it reads (plain names of existing
    submission folders) and whether it reads the torch hub's checkpoints."""
    _expect(table, dict, where, "sandbox")
    unknown = set(table) - SANDBOX_FIELDS
    if unknown:
        raise SubmissionError(f"{where}: unknown field(s) {sorted('sandbox.' + u for u in unknown)}; "
                              f"known: {sorted(SANDBOX_FIELDS)}")
    names = _expect(table.get("submissions", []), list, where, "sandbox.submissions")
    for name in names:
        if not (isinstance(name, str) and NAME_RE.match(name) and (folder.parent / name).is_dir()):
            raise SubmissionError(f"{where}: field 'sandbox.submissions' lists {name!r}, which is not a submission "
                                  f"folder next to this one (plain names of folders under {folder.parent})")
    return tuple(names), bool(_expect(table.get("torch_hub", False), bool, where, "sandbox.torch_hub"))


def discover(root: Path = SUBMISSIONS_DIR, include_unready: bool = False) -> Registry[Submission]:
    """All submissions under ``root`` (those still training or needing external weights only
    with ``include_unready``; folders starting with ``_`` are templates, never submissions);
    a broken manifest stops discovery with its error."""
    reg: Registry[Submission] = Registry("submission")
    for manifest in sorted(Path(root).glob("*/submission.toml")):
        if manifest.parent.name.startswith("_"):
            continue                  # _template: a folder to copy, not a submission
        sub = load_manifest(manifest)
        if include_unready or sub.status == "ready":
            reg.add(sub.name, sub)
    return reg


def get_submission(name: str, root: Path = SUBMISSIONS_DIR) -> Submission:
    if not NAME_RE.match(name or ""):
        raise SubmissionError(f"submission name {name!r} is not a plain name (letters, digits, '_', '-'); "
                              "submissions live in folders directly under submissions/")
    sub = discover(root, include_unready=True).get(name)
    if sub.status == "training":
        raise SubmissionError(f"submission {name!r} is still training (status = \"training\" in "
                              f"{sub.root / 'submission.toml'}): it has no weights to run yet; train it "
                              f"(make train SUBMISSION={name}) and set status = \"ready\"")
    return sub
