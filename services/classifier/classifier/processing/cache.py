"""The worker's in-memory customer states, valid while the stored row is unchanged.

A state is cached with the row version it was loaded or saved as (PostgreSQL's
`xmin`: every write of the row, by anyone, makes a new one). A batch takes the
states of its customers out of the cache and locks their rows; a row whose
version is still the cached one is not decoded again, the cached state is used.
Only after the batch commits are its states put back, with the versions their
writes got: a batch that fails leaves nothing behind, so a rolled-back change
can never be read from memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from classifier.processing.state import CustomerState


class StateCache:
    """At most `size` customer states, least recently used first out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._states: OrderedDict[str, tuple[str, CustomerState]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def take(self, customer_ids: Iterable[str]) -> dict[str, tuple[str, CustomerState]]:
        """Remove and return the cached (row version, state) of these customers."""
        taken = {}
        for cid in customer_ids:
            entry = self._states.pop(cid, None)
            if entry is not None:
                taken[cid] = entry
        return taken

    def put(self, states: Iterable[CustomerState], versions: Mapping[str, str]) -> None:
        """Cache committed states under the row versions their commit wrote."""
        if self.size <= 0:
            return
        for state in states:
            version = versions.get(state.customer_id)
            if version is None:
                continue
            state.new_facts.clear()
            state.dirty = False
            self._states[state.customer_id] = (version, state)
            self._states.move_to_end(state.customer_id)
        while len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()
