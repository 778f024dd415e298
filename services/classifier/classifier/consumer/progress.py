"""What the consume loop tells the scheduler: owned partitions consumed to the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionProgress:
    """Shared between the consumer and the scheduler of one worker process.

    The scheduler only moves a customer forward in time once every event of
    that customer's partition has been applied; otherwise a backlog (a replay,
    a bulk import) would be overtaken by time-driven reviews and the history
    would depend on timing.
    """

    caught_up: frozenset[int] = field(default_factory=frozenset)
    events_since_cutoffs: int = 0
    owned: frozenset[int] = field(default_factory=frozenset)

    @property
    def fully_caught_up(self) -> bool:
        return bool(self.owned) and self.caught_up == self.owned
