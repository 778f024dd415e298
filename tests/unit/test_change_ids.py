"""Change ids are uuid5 of the change's key: the fast path must give the same strings."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from classifier.processing.state import CHANGE_NAMESPACE, change_id, uuid5_str


@given(st.text())
def test_fast_uuid5_equals_the_standard_library(name: str) -> None:
    assert uuid5_str(name) == str(uuid.uuid5(CHANGE_NAMESPACE, name))


def test_change_id_is_stable_and_depends_on_every_part() -> None:
    base = ("cust-42", "abc_tier", 1_700_000_000_000_000, "A", "event", "evt-1")
    assert change_id(*base) == change_id(*base)
    for i in range(len(base)):
        other = list(base)
        other[i] = 7 if isinstance(other[i], int) else f"{other[i]}x"
        assert change_id(*other) != change_id(*base)  # type: ignore[arg-type]
