"""Every PostgreSQL advisory lock the classifier takes, in one place: no two share a key."""

from __future__ import annotations

from enum import IntEnum, unique


@unique  # two names with one number would be the same lock: refused at import
class Lock(IntEnum):
    """Advisory lock keys (transaction-scoped unless the caller says otherwise)."""

    SEED_SCHEME = 7_001  # one process seeds the first scheme version
    RELAY = 7_002  # one outbox relay publishes at a time
    CUTOFFS = 7_003  # one worker recomputes population cut-offs
    ACTIVATION = 7_004  # one scheme activation at a time
    INBOX_PRUNE = 7_005  # one worker prunes the inbox at a time
    RELAY_LEADER = 7_006  # session-scoped: the one relay in the group that publishes
    INTAKE_PRUNE = 7_007  # session-scoped, taken by ingest: one process prunes fingerprints
    # The key space of per-customer-id locks (two-key form: this, hashtext(id)) that
    # identity resolution takes for every id it resolves to or makes an alias.
    CUSTOMER_ID = 7_008
