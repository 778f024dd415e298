"""What the consume loop tells the scheduler: owned partitions consumed to the end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionProgress:
    """Shared between the consumer and the scheduler of one worker process.

    The scheduler only moves a customer forward in time once every event of
    that customer's partition has been applied; otherwise a backlog (a replay,
    a bulk import) would be overtaken by time-driven reviews and the history
    would depend on timing.

    `changed` wakes the scheduler: it is set after every committed batch (which
    may have brought a customer's `next_review_at` forward) and whenever the
    owned or caught-up partitions change, so the scheduler can sleep until the
    earliest due instant instead of polling.
    """

    caught_up: frozenset[int] = field(default_factory=frozenset)
    events_since_cutoffs: int = 0
    owned: frozenset[int] = field(default_factory=frozenset)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fully_caught_up(self) -> bool:
        return bool(self.owned) and self.caught_up == self.owned

    def update(self, owned: frozenset[int], caught_up: frozenset[int]) -> None:
        """Record the partitions owned and consumed to the end; wake the scheduler if new."""
        caught_up &= owned
        if owned != self.owned or caught_up != self.caught_up:
            self.owned, self.caught_up = owned, caught_up
            self.changed.set()
