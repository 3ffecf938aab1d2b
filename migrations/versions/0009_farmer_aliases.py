"""farmer aliases: a farmer known by phone, by Meta's business-scoped user id, or both; our number per message

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('farmers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.String(length=150), nullable=True))
        batch_op.add_column(sa.Column('parent_user_id', sa.String(length=150), nullable=True))
        batch_op.add_column(sa.Column('username', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('our_number_id', sa.String(length=30), nullable=True))
        batch_op.alter_column('phone', existing_type=sa.String(length=20), nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_farmers_user_id'), ['user_id'])

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_number_id', sa.String(length=30), nullable=True))
        batch_op.alter_column('phone', existing_type=sa.String(length=20), type_=sa.String(length=150),
                              existing_nullable=False)


def downgrade() -> None:
    # Farmers known only by a user id cannot be kept without a phone.
    op.execute("DELETE FROM farmers WHERE phone IS NULL")
    op.execute("DELETE FROM messages WHERE length(phone) > 20")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.alter_column('phone', existing_type=sa.String(length=150), type_=sa.String(length=20),
                              existing_nullable=False)
        batch_op.drop_column('phone_number_id')

    with op.batch_alter_table('farmers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_farmers_user_id'), type_='unique')
        batch_op.alter_column('phone', existing_type=sa.String(length=20), nullable=False)
        batch_op.drop_column('our_number_id')
        batch_op.drop_column('username')
        batch_op.drop_column('parent_user_id')
        batch_op.drop_column('user_id')
