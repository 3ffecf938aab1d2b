"""purchase requests: a sponsor user asks, an admin approves (the purchase and its codes are created then) or rejects

What a sponsor sees of an analysis now follows the tier of the code that paid for it:
analyses.subscription_id (set at submission) -> subscriptions.code_id -> the code's purchase -> its tier.
Every analysis already records its paying subscription, so no analysis column is added or backfilled.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:29:27.798711
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('purchase_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sponsor_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('code_valid_days', sa.Integer(), nullable=False),
    sa.Column('subscription_days', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('status', sa.String(length=10), server_default='pending', nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rejection_reason', sa.String(length=500), nullable=True),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by'], ['staff_users.id'], name=op.f('fk_purchase_requests_decided_by_staff_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['purchase_id'], ['sponsor_purchases.id'], name=op.f('fk_purchase_requests_purchase_id_sponsor_purchases')),
    sa.ForeignKeyConstraint(['requested_by'], ['staff_users.id'], name=op.f('fk_purchase_requests_requested_by_staff_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sponsor_id'], ['sponsors.id'], name=op.f('fk_purchase_requests_sponsor_id_sponsors')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_purchase_requests_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_requests')),
    sa.UniqueConstraint('purchase_id', name=op.f('uq_purchase_requests_purchase_id'))
    )
    with op.batch_alter_table('purchase_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchase_requests_sponsor_id'), ['sponsor_id'], unique=False)
        batch_op.create_index('ix_purchase_requests_status_created', ['status', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('purchase_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_requests_status_created')
        batch_op.drop_index(batch_op.f('ix_purchase_requests_sponsor_id'))

    op.drop_table('purchase_requests')
