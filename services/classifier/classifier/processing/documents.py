"""Customers' public documents: rendered once when a customer is written, sent as bytes.

A lookup must cost what a cache hit costs, so the worker renders each written
customer's part of `CustomerOut` (classes with their explanations, features,
overrides, scheme version, evaluation instant) as JSON bytes into
`customers.document`, and the API sends those bytes (see customers/reads.py):
no JSONB decoding, no dict building, no JSON encoding per read.

Some of what a customer's answer shows moves with the read itself: values that
move with time alone (days since, decaying scores: `customers.motion`) are shown
as of the read, and an override is active until it expires. The renderer puts
a marker where each such value goes (a string made with a random nonce of the
document's own, so no text of the customer's can look like one) and keeps what
fills them (`slots`: the nonce, each moving feature's name and value as
evaluated, each override's expiry); a read replaces the markers with the
values as of its instant (`present`). Where the markers sit is found once, when
the document is rendered (`slots["o"]`), so a read cuts the stored bytes at
those offsets and puts the values between the pieces: no search through the
document per read. (Documents rendered before the offsets were kept are filled
by replacing their markers.)

`document_rev` is bumped by every write that renders; a trigger empties the
document when any other write changes what it shows (a merge, a cut-off
flagging), and a read of a customer without one renders from its columns.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from classifier.engine.features import moved
from classifier.processing.state import instant

# What fills a document's markers: {"n": nonce, "f": [feature], "v": [value as
# evaluated], "a": [override expiry, µs], "o": [start, end, kind, index, ...]}.
# Markers: `"@<n>v<i>@"` a feature's value (a JSON value), `@<n>s<i>@` the same
# inside a string (a summary), `"@<n>a<i>@"` an override's `active`; "o" lists
# every marker's byte offsets in the document, in order, with its kind (_VALUE,
# _TEXT, _ACTIVE) and index.
Slots = dict[str, Any]
_VALUE, _TEXT, _ACTIVE = 0, 1, 2
_KINDS = {ord("v"): _VALUE, ord("s"): _TEXT, ord("a"): _ACTIVE}


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


class _Marks:
    """Markers standing for the moving values while the document is encoded."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(6)
        self.features: dict[str, int] = {}
        self.values: list[Any] = []
        self.expiries: list[int] = []

    def mark(self, kind: str, name: str, value: Any) -> str:
        index = self.features.get(name)
        if index is None:
            index = self.features[name] = len(self.values)
            self.values.append(value)
        return f"@{self.nonce}{kind}{index}@"

    def expiry(self, expires_at: int) -> str:
        self.expiries.append(expires_at)
        return f"@{self.nonce}a{len(self.expiries) - 1}@"

    def slots(self, body: bytes) -> Slots | None:
        if not self.values and not self.expiries:
            return None
        return {
            "n": self.nonce,
            "f": list(self.features),
            "v": self.values,
            "a": self.expiries,
            "o": self._offsets(body),
        }

    def _offsets(self, body: bytes) -> list[int]:
        """Where the markers sit in `body` (see Slots): found with `bytes.find`, a
        search at C speed (a pattern of its own per nonce would be compiled per
        document)."""
        mark = b"@" + self.nonce.encode()
        size = len(mark)
        offsets: list[int] = []
        find, index_of = body.find, body.index
        at = find(mark)
        while at >= 0:
            kind = _KINDS[body[at + size]]
            close = index_of(64, at + size)  # "@"
            if kind == _TEXT:
                end = close + 1
                offsets += (at, end, kind, int(body[at + size + 1 : close]))
            else:  # a whole JSON string: its quotes go too
                end = close + 2
                offsets += (at - 1, end, kind, int(body[at + size + 1 : close]))
            at = find(mark, end)
        return offsets


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
) -> tuple[bytes, Slots | None]:
    """A customer's public part of `CustomerOut` as JSON bytes with markers, and what
    fills them (None: nothing moves); `present` makes the answer of a read."""
    marks = _Marks()
    document = {
        "classes": {
            dim: {
                "dimension": dim,
                "class": c["class"],
                "since": instant(c["since"]),
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
                "class": o.get("class"),
                "reason": o.get("reason"),
                "expires_at": instant(o.get("expires_at")),
                "set_at": instant(o.get("set_at")),
                "active": True if o.get("expires_at") is None else marks.expiry(o["expires_at"]),
            }
            for dim, o in overrides.items()
        },
        "evaluated_at": evaluated_at,
    }
    body = _dumps(document)
    return body, marks.slots(body)


def present(
    body: bytes, slots: Slots | None, motion: Mapping[str, Any], now: int | None, due: bool
) -> bytes:
    """The document as of `now`: moving values moved (unless the review is `due`:
    then they stay as evaluated, as the classes do), overrides active or not."""
    return b"".join(present_parts(body, slots, motion, now, due, 0))


def present_parts(
    body: bytes,
    slots: Slots | None,
    motion: Mapping[str, Any],
    now: int | None,
    due: bool,
    start: int,
) -> list[bytes | memoryview]:
    """`present`'s answer from byte `start` on, as pieces to join (the caller joins
    the pieces of many documents at once)."""
    if not slots:
        return [memoryview(body)[start:]]
    offsets: Sequence[int] | None = slots.get("o")
    if offsets is None:  # rendered before the offsets were kept
        return [memoryview(_replaced(body, slots, motion, now, due))[start:]]
    current = [
        moved(motion[name], now) if now is not None and not due and name in motion else value
        for name, value in zip(slots["f"], slots["v"], strict=True)
    ]
    encoded: dict[tuple[int, int], bytes] = {}
    view = memoryview(body)
    parts: list[bytes | memoryview] = []
    at = start
    for i in range(0, len(offsets), 4):
        begin, end, kind, index = offsets[i : i + 4]
        parts.append(view[at:begin])
        piece = encoded.get((kind, index))
        if piece is None:
            if kind == _VALUE:
                piece = _dumps(current[index])
            elif kind == _TEXT:
                piece = repr(current[index]).encode()
            else:
                piece = b"true" if now is None or slots["a"][index] > now else b"false"
            encoded[kind, index] = piece
        parts.append(piece)
        at = end
    parts.append(view[at:])
    return parts


def _replaced(
    body: bytes, slots: Slots, motion: Mapping[str, Any], now: int | None, due: bool
) -> bytes:
    nonce = slots["n"].encode()
    for index, (name, value) in enumerate(zip(slots["f"], slots["v"], strict=True)):
        if now is not None and not due and name in motion:
            value = moved(motion[name], now)
        body = body.replace(b'"@%sv%d@"' % (nonce, index), _dumps(value))
        body = body.replace(b"@%ss%d@" % (nonce, index), repr(value).encode())
    for index, expires_at in enumerate(slots["a"]):
        active = b"true" if now is None or expires_at > now else b"false"
        body = body.replace(b'"@%sa%d@"' % (nonce, index), active)
    return body
