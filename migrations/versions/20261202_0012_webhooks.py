"""Outbound webhooks: subscriptions (with rotatable signing secrets) and deliveries

Revision ID: 0012wh
Revises: 0011pv
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0012wh'
down_revision: str | None = '0011pv'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhook_subscriptions',
        sa.Column('id', sa.Uuid(), primary_key=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column(
            'filter',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('disabled_reason', sa.Text()),
        # HMAC keys (whsec_...): the dispatcher signs with them, so they are kept usable.
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('previous_secret', sa.Text()),
        sa.Column('previous_expires_at', sa.DateTime(timezone=True)),
        sa.Column('created_by', sa.String(200), nullable=False),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            'updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_table(
        'webhook_deliveries',
        # The webhook-id header: the same on every attempt of this delivery.
        sa.Column('id', sa.String(40), primary_key=True),
        sa.Column('seq', sa.BigInteger(), sa.Identity(), nullable=False, unique=True),
        sa.Column(
            'subscription_id',
            sa.Uuid(),
            sa.ForeignKey('webhook_subscriptions.id', ondelete='CASCADE'),
            nullable=False,
        ),
        sa.Column('change_id', sa.String(64), nullable=False),
        sa.Column('customer_id', sa.String(200), nullable=False),
        # pending (never tried), failed (a retry is due at next_attempt_at),
        # delivered, dead (attempts exhausted, or the subscription answered 410)
        sa.Column('status', sa.String(16), server_default='pending', nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column(
            'next_attempt_at',
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column('last_status_code', sa.Integer()),
        sa.Column('last_error', sa.Text()),
        sa.Column('latency_ms', sa.Float()),
        sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        # When the change reached the topic (the record's timestamp): latency is from here.
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True)),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            'updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint(
            'subscription_id', 'change_id', name='uq_webhook_deliveries_subscription_id'
        ),
    )
    # The dispatcher's claims (open rows of a subscription in order), its next wake-up
    # and the per-customer order check touch only open rows.
    op.create_index(
        'ix_webhook_deliveries_open',
        'webhook_deliveries',
        ['subscription_id', 'seq'],
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )
    op.create_index(
        'ix_webhook_deliveries_due',
        'webhook_deliveries',
        ['next_attempt_at'],
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )
    op.create_index(
        'ix_webhook_deliveries_open_customer',
        'webhook_deliveries',
        ['subscription_id', 'customer_id', 'seq'],
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )
    op.create_index(
        'ix_webhook_deliveries_log', 'webhook_deliveries', ['subscription_id', 'seq']
    )


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_subscriptions')
