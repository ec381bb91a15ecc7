"""Submission folders for tests: one builder for every ``submission.toml`` a test writes.

``write_submission(root, name, codec, points=..., params=..., ...)`` creates
``root/name/submission.toml`` (and ``codec.py`` when given its source) and returns the
manifest's path. ``points`` is a list (a discrete ``[operating_points]`` table) or a whole
table as a dict (see :func:`continuous`). Tests of malformed manifests start from
``manifest_text(...)``, edit the text, and write it with ``write_submission(root, name, text=...)``.

    write_submission(tmp_path / "subs", "five", "bench.codecs.classical:JpegCodec",
                     points=[10, 25, 45], rate_control="shared")
    write_submission(root, "vr", "bench.codecs.variable_rate:VariableRateCodec",
                     params={"weights": "vr.pt"}, points=continuous(0.5, 16.0, scale="log"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Points = Sequence[Any] | Mapping[str, Any]


def continuous(low: float, high: float, **options: Any) -> dict[str, Any]:
    """A continuous ``[operating_points]`` table: ``low``, ``high`` and any of ``integer``,
    ``direction``, ``scale``, ``grid`` (written in the order given)."""
    return {"kind": "continuous", "low": low, "high": high, **options}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"write a non-finite TOML number by hand (text=...), not {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)        # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__} {v!r}")


def _table(header: str, body: Mapping[str, Any]) -> str:
    return f"[{header}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in body.items())


def manifest_text(name: str, codec: str, points: Points, *, description: str = "test codec",
                  params: Mapping[str, Any] | None = None, rate_control: str | None = None) -> str:
    """The text of a ``submission.toml``: ``name``, ``description``, ``codec``, then the
    ``[params]`` table (only when ``params`` is not empty), ``[operating_points]`` and the
    ``[rate_control]`` table (only with a ``rate_control`` policy)."""
    table = dict(points) if isinstance(points, Mapping) else {"kind": "discrete", "points": list(points)}
    text = f"name = {_value(name)}\ndescription = {_value(description)}\ncodec = {_value(codec)}\n"
    if params:
        text += _table("params", params)
    text += _table("operating_points", table)
    if rate_control is not None:
        text += _table("rate_control", {"policy": rate_control})
    return text


def write_submission(root: Path, name: str, codec: str | None = None, *, points: Points | None = None,
                     description: str = "test codec", params: Mapping[str, Any] | None = None,
                     rate_control: str | None = None, codec_source: str | None = None,
                     text: str | None = None) -> Path:
    """Write ``root/name/submission.toml`` (folders created, an existing manifest replaced)
    and, with ``codec_source``, ``root/name/codec.py``; the manifest's path.

    ``text`` writes that manifest text as it is (for malformed manifests) instead of one
    built from ``codec``, ``points`` and the rest."""
    if text is None:
        if codec is None or points is None:
            raise TypeError("write_submission needs codec and points (or the whole text)")
        text = manifest_text(name, codec, points, description=description, params=params,
                             rate_control=rate_control)
    elif codec is not None or points is not None or params is not None or rate_control is not None:
        raise TypeError("write_submission takes either text or the manifest's fields, not both")
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "submission.toml"
    path.write_text(text, encoding="utf-8")
    if codec_source is not None:
        (folder / "codec.py").write_text(codec_source, encoding="utf-8")
    return path
