"""quota, sponsorship, analyses

Tiers (seeded here), subscriptions, usage counters and ledger, sponsors, purchases, codes, analyses.
Two foreign keys close cycles (sponsor_codes.subscription_id <-> subscriptions.code_id and
usage_ledger.analysis_id <-> analyses.charge_ledger_id); they are added after both tables exist
(`use_alter` in the models) and dropped first on the way down.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:07:09.399441
"""

from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TIERS = [
    {'code': 'TRIAL', 'name': 'Deneme', 'daily_limit': 1, 'monthly_limit': 30, 'price_try': Decimal('0.00')},
    {'code': 'S', 'name': 'S Paketi', 'daily_limit': 5, 'monthly_limit': 50, 'price_try': Decimal('99.99')},
    {'code': 'M', 'name': 'M Paketi', 'daily_limit': 20, 'monthly_limit': 200, 'price_try': Decimal('299.99')},
    {'code': 'L', 'name': 'L Paketi', 'daily_limit': 50, 'monthly_limit': 500, 'price_try': Decimal('599.99')},
    {'code': 'XL', 'name': 'XL Paketi', 'daily_limit': 200, 'monthly_limit': 2000, 'price_try': Decimal('1499.99')},
]

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sponsors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('logo_url', sa.String(length=500), nullable=True),
    sa.Column('contact_email', sa.String(length=254), nullable=True),
    sa.Column('contact_phone', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sponsors'))
    )
    op.create_table('tiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('daily_limit', sa.Integer(), nullable=False),
    sa.Column('monthly_limit', sa.Integer(), nullable=False),
    sa.Column('price_try', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('default_days', sa.Integer(), server_default='30', nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tiers')),
    sa.UniqueConstraint('code', name=op.f('uq_tiers_code'))
    )
    op.create_table('sponsor_purchases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sponsor_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('code_valid_days', sa.Integer(), nullable=False),
    sa.Column('subscription_days', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sponsor_id'], ['sponsors.id'], name=op.f('fk_sponsor_purchases_sponsor_id_sponsors')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_sponsor_purchases_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sponsor_purchases'))
    )
    with op.batch_alter_table('sponsor_purchases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sponsor_purchases_sponsor_id'), ['sponsor_id'], unique=False)

    op.create_table('sponsor_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('sponsor_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), server_default='unused', nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('redeemed_by_farmer_id', sa.Integer(), nullable=True),
    sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['sponsor_purchases.id'], name=op.f('fk_sponsor_codes_purchase_id_sponsor_purchases')),
    sa.ForeignKeyConstraint(['redeemed_by_farmer_id'], ['farmers.id'], name=op.f('fk_sponsor_codes_redeemed_by_farmer_id_farmers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sponsor_id'], ['sponsors.id'], name=op.f('fk_sponsor_codes_sponsor_id_sponsors')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_sponsor_codes_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sponsor_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_sponsor_codes_code'))
    )
    with op.batch_alter_table('sponsor_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sponsor_codes_purchase_id'), ['purchase_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sponsor_codes_redeemed_by_farmer_id'), ['redeemed_by_farmer_id'], unique=False)
        batch_op.create_index('ix_sponsor_codes_sponsor_status', ['sponsor_id', 'status'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('farmer_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sponsor_id', sa.Integer(), nullable=True),
    sa.Column('code_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['code_id'], ['sponsor_codes.id'], name=op.f('fk_subscriptions_code_id_sponsor_codes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['farmer_id'], ['farmers.id'], name=op.f('fk_subscriptions_farmer_id_farmers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sponsor_id'], ['sponsors.id'], name=op.f('fk_subscriptions_sponsor_id_sponsors'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_subscriptions_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_code_id'), ['code_id'], unique=False)
        batch_op.create_index('ix_subscriptions_farmer_status', ['farmer_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriptions_sponsor_id'), ['sponsor_id'], unique=False)

    op.create_table('usage_counters',
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('period_key', sa.String(length=12), nullable=False),
    sa.Column('used', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_usage_counters_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscription_id', 'period_key', name=op.f('pk_usage_counters'))
    )
    op.create_table('usage_ledger',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('farmer_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('day_key', sa.String(length=12), nullable=False),
    sa.Column('month_key', sa.String(length=12), nullable=False),
    sa.Column('refund_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['farmer_id'], ['farmers.id'], name=op.f('fk_usage_ledger_farmer_id_farmers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['refund_of'], ['usage_ledger.id'], name=op.f('fk_usage_ledger_refund_of_usage_ledger'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_usage_ledger_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_ledger')),
    sa.UniqueConstraint('refund_of', name=op.f('uq_usage_ledger_refund_of'))
    )
    with op.batch_alter_table('usage_ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_ledger_analysis_id'), ['analysis_id'], unique=False)
        batch_op.create_index('ix_usage_ledger_farmer_created', ['farmer_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_ledger_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('analyses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('farmer_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('media_id', sa.String(length=100), nullable=True),
    sa.Column('crop', sa.String(length=100), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('location_text', sa.String(length=300), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=20), server_default='received', nullable=False),
    sa.Column('failure_reason', sa.String(length=300), nullable=True),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('sponsor_id', sa.Integer(), nullable=True),
    sa.Column('charge_ledger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processing_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('health_score', sa.Integer(), nullable=True),
    sa.Column('primary_concern', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['charge_ledger_id'], ['usage_ledger.id'], name=op.f('fk_analyses_charge_ledger_id_usage_ledger'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['farmer_id'], ['farmers.id'], name=op.f('fk_analyses_farmer_id_farmers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_analyses_message_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sponsor_id'], ['sponsors.id'], name=op.f('fk_analyses_sponsor_id_sponsors'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_analyses_subscription_id_subscriptions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analyses'))
    )
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index('ix_analyses_farmer_created', ['farmer_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_analyses_sponsor_created', ['sponsor_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_subscription_id'), ['subscription_id'], unique=False)

    with op.batch_alter_table('sponsor_codes', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_sponsor_codes_subscription_id_subscriptions'), 'subscriptions',
                                    ['subscription_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('usage_ledger', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_usage_ledger_analysis_id_analyses'), 'analyses',
                                    ['analysis_id'], ['id'], ondelete='SET NULL')

    tiers = sa.table('tiers', sa.column('code', sa.String), sa.column('name', sa.String),
                     sa.column('daily_limit', sa.Integer), sa.column('monthly_limit', sa.Integer),
                     sa.column('price_try', sa.Numeric(10, 2)), sa.column('default_days', sa.Integer),
                     sa.column('active', sa.Boolean))
    op.bulk_insert(tiers, [{**t, 'default_days': 30, 'active': True} for t in TIERS])


def downgrade() -> None:
    with op.batch_alter_table('usage_ledger', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_usage_ledger_analysis_id_analyses'), type_='foreignkey')
    with op.batch_alter_table('sponsor_codes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sponsor_codes_subscription_id_subscriptions'), type_='foreignkey')

    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyses_subscription_id'))
        batch_op.drop_index('ix_analyses_sponsor_created')
        batch_op.drop_index(batch_op.f('ix_analyses_message_id'))
        batch_op.drop_index('ix_analyses_farmer_created')

    op.drop_table('analyses')
    with op.batch_alter_table('usage_ledger', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_ledger_subscription_id'))
        batch_op.drop_index('ix_usage_ledger_farmer_created')
        batch_op.drop_index(batch_op.f('ix_usage_ledger_analysis_id'))

    op.drop_table('usage_ledger')
    op.drop_table('usage_counters')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_sponsor_id'))
        batch_op.drop_index('ix_subscriptions_farmer_status')
        batch_op.drop_index(batch_op.f('ix_subscriptions_code_id'))

    op.drop_table('subscriptions')
    with op.batch_alter_table('sponsor_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_sponsor_codes_sponsor_status')
        batch_op.drop_index(batch_op.f('ix_sponsor_codes_redeemed_by_farmer_id'))
        batch_op.drop_index(batch_op.f('ix_sponsor_codes_purchase_id'))

    op.drop_table('sponsor_codes')
    with op.batch_alter_table('sponsor_purchases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sponsor_purchases_sponsor_id'))

    op.drop_table('sponsor_purchases')
    op.drop_table('tiers')
    op.drop_table('sponsors')
