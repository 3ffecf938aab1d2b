"""farmer marketing_preference_at: when the last applied `user_preferences` event was made

An older stop / resume arriving late (a retry, a delivery out of order) no longer undoes a newer one.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('farmers') as batch_op:
        batch_op.add_column(sa.Column('marketing_preference_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('farmers') as batch_op:
        batch_op.drop_column('marketing_preference_at')
