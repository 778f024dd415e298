"""Customers' public documents: rendered once when a customer is written, sent as bytes.

A lookup must cost what a cache hit costs, so the worker renders each written
customer's part of `CustomerOut` (classes with their explanations, features,
overrides, scheme version, evaluation instant) as JSON bytes into
`customers.document`, and the API sends those bytes (see customers/reads.py):
no JSONB decoding, no dict building, no JSON encoding per read.

Some of what a customer's answer shows moves with the read itself: values that
move with time alone (days since, decaying scores: `customers.motion`) are shown
as of the read, and an override is active until it expires. The renderer notes
where each such value sits in the bytes (`slots`: start, end, kind, key), and a
read splices in the values as of its instant (`present`), a handful of byte
slices per customer.

`document_rev` is bumped by every write that renders; a trigger empties the
document when any other write changes what it shows (a merge, a cut-off
flagging), and a read of a customer without one renders from its columns.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from classifier.engine import from_micros
from classifier.engine.features import moved

# A slot: [start, end, kind, key]. Kinds: "v" a feature's value as a JSON value,
# "s" the same value inside a string (a summary), "a" an override's `active`
# (key: its expiry, µs).
Slot = list[Any]

_NONCE = secrets.token_hex(8)
_MARK = re.compile(rb'"@' + _NONCE.encode() + rb'[va](\d+)@"|@' + _NONCE.encode() + rb"s(\d+)@")


def _instant(us: int | None) -> datetime | None:
    return None if us is None else from_micros(us)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


class _Marks:
    """Markers standing for moving values while the document is encoded."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, Any, Any]] = []  # kind, key, value as evaluated

    def mark(self, kind: str, key: Any, value: Any) -> str:
        self.keys.append((kind, key, value))
        return f"@{_NONCE}{kind}{len(self.keys) - 1}@"


def _explanation(explanation: Mapping[str, Any], moving: Mapping[str, Any], marks: _Marks) -> Any:
    """The public explanation (without `next`, `changes_at`, `basis`), moving values marked."""
    out = {k: v for k, v in explanation.items() if k not in ("next", "changes_at", "basis")}
    checks = out.get("checks")
    if checks and any(c.get("feature") in moving for c in checks):
        summary = out.get("summary", "")
        marked = []
        for check in checks:
            name = check.get("feature")
            if name in moving:
                actual = check["actual"]
                if isinstance(summary, str):
                    summary = summary.replace(
                        f"{name} = {actual!r}", f"{name} = {marks.mark('s', name, actual)}"
                    )
                check = {**check, "actual": marks.mark("v", name, actual)}
            marked.append(check)
        out["checks"] = marked
        out["summary"] = summary
    features = out.get("features")
    if isinstance(features, dict) and any(k in moving for k in features):
        out["features"] = {
            k: marks.mark("v", k, v) if k in moving else v for k, v in features.items()
        }
    return out


def render(
    *,
    classes: Mapping[str, Mapping[str, Any]],
    features: Mapping[str, Any],
    motion: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]],
    scheme_version: int | None,
    evaluated_at: datetime | None,
) -> tuple[bytes, list[Slot]]:
    """A customer's public part of `CustomerOut` as JSON bytes, with its slots.

    The bytes hold the values as evaluated; `present` brings them to a read.
    """
    marks = _Marks()
    document = {
        "classes": {
            dim: {
                "dimension": dim,
                "class": c["class"],
                "since": _instant(c["since"]),
                "scheme_version": c["scheme_version"],
                "rule": c["rule"],
                "explanation": _explanation(c["explanation"], motion, marks),
                "next": c["explanation"].get("next"),
                "changes_at": c["explanation"].get("changes_at"),
            }
            for dim, c in classes.items()
        },
        "features": {k: marks.mark("v", k, v) if k in motion else v for k, v in features.items()},
        "scheme_version": scheme_version,
        "overrides": {
            dim: {
                "class": o["class"],
                "reason": o["reason"],
                "expires_at": _instant(o.get("expires_at")),
                "set_at": _instant(o["set_at"]),
                "active": True
                if o.get("expires_at") is None
                else marks.mark("a", o["expires_at"], True),
            }
            for dim, o in overrides.items()
        },
        "evaluated_at": evaluated_at,
    }
    encoded = _dumps(document)
    if not marks.keys:
        return encoded, []
    parts: list[bytes] = []
    slots: list[Slot] = []
    pos = size = 0
    for match in _MARK.finditer(encoded):
        kind, key, value = marks.keys[int(match.group(1) or match.group(2))]
        text = _text(kind, value)
        piece = encoded[pos : match.start()]
        parts += (piece, text)
        size += len(piece)
        slots.append([size, size + len(text), kind, key])
        size += len(text)
        pos = match.end()
    parts.append(encoded[pos:])
    return b"".join(parts), slots


def _text(kind: str, value: Any) -> bytes:
    if kind == "s":
        return repr(value).encode()
    return _dumps(value)


def present(
    body: bytes, slots: Sequence[Slot], motion: Mapping[str, Any], now: int | None, due: bool
) -> bytes:
    """The document as of `now`: moving values moved (unless the review is `due`:
    then they stay as evaluated, as the classes do), overrides active or not."""
    if not slots or now is None:
        return body
    parts: list[bytes] = []
    pos = 0
    values: dict[str, bytes] = {}
    for start, end, kind, key in slots:
        if kind == "a":
            text = b"true" if key > now else b"false"
        elif due or key not in motion:
            continue
        else:
            cache_key = kind + key
            found = values.get(cache_key)
            if found is None:
                found = values[cache_key] = _text(kind, moved(motion[key], now))
            text = found
        parts += (body[pos:start], text)
        pos = end
    if not parts:
        return body
    parts.append(body[pos:])
    return b"".join(parts)
