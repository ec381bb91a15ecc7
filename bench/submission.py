"""Submissions: ``submissions/<name>/submission.toml`` manifests, validated into a registry.

A manifest names the codec class (``module:Class``; a module that is a ``.py`` file in the
submission folder is loaded from there), its ``[params]``, its ``[operating_points]`` and an
optional ``[rate_control]`` policy. Every error names the file and the offending field.

``status = "training"`` marks a submission whose weights are still being trained: discovery
(runs, the regression gate, the shipped-manifest checks) leaves it out until it says
``"ready"`` (the default); ``discover(include_training=True)`` lists it.
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
TOP_FIELDS = {"name", "description", "codec", "params", "operating_points", "rate_control", "status"}
STATUSES = ("ready", "training")


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
    status: str = "ready"       # "training": no weights yet, left out of discovery

    def codec_class(self) -> type[Codec]:
        return load_codec_class(self.codec_ref, self.root)

    def make_codec(self) -> Codec:
        cls = self.codec_class()
        try:
            return cls(self.params, self.root)
        except (TypeError, ValueError, KeyError, OSError) as e:
            raise SubmissionError(f"{self.root / 'submission.toml'}: codec {self.codec_ref} rejected "
                                  f"its [params]: {e}") from e

    def content_hash(self) -> str:
        """Changes whenever anything that can change a bitstream changes: the submission folder
        (manifest, weights, local code), the codec's module and every module of this project it
        imports (:func:`bench.sources.source_closure`), and its library versions."""
        h = hashlib.sha256()
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(self.root)).encode())
                h.update(p.read_bytes())
        cls = self.codec_class()
        src = inspect.getsourcefile(cls)
        if src:
            package_root = Path(__file__).resolve().parent
            for f in source_closure(Path(src), package_root):
                name = f.relative_to(package_root) if f.is_relative_to(package_root) else f.name
                h.update(str(name).encode())
                h.update(f.read_bytes())
        h.update(repr(sorted(cls(self.params, self.root).versions().items())).encode())
        return h.hexdigest()[:16]


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
            raise SubmissionError(f"{where}: field 'operating_points.points' must be a non-empty list of distinct values")
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
    return Submission(
        name=name,
        description=_expect(raw["description"], str, where, "description").strip(),
        codec_ref=_check_ref(_expect(raw["codec"], str, where, "codec"), where),
        root=Path(path).parent.resolve(),
        params=_expect(raw.get("params", {}), dict, where, "params"),
        points=parse_points(raw["operating_points"], where),
        policy=policy,
        status=status,
    )


def discover(root: Path = SUBMISSIONS_DIR, include_training: bool = False) -> Registry[Submission]:
    """All submissions under ``root`` (those still training only with ``include_training``);
    a broken manifest stops discovery with its error."""
    reg: Registry[Submission] = Registry("submission")
    for manifest in sorted(Path(root).glob("*/submission.toml")):
        sub = load_manifest(manifest)
        if include_training or sub.status != "training":
            reg.add(sub.name, sub)
    return reg


def get_submission(name: str, root: Path = SUBMISSIONS_DIR) -> Submission:
    if not NAME_RE.match(name or ""):
        raise SubmissionError(f"submission name {name!r} is not a plain name (letters, digits, '_', '-'); "
                              "submissions live in folders directly under submissions/")
    sub = discover(root, include_training=True).get(name)
    if sub.status == "training":
        raise SubmissionError(f"submission {name!r} is still training (status = \"training\" in "
                              f"{sub.root / 'submission.toml'}): it has no weights to run yet; train it "
                              f"(make train SUBMISSION={name}) and set status = \"ready\"")
    return sub
