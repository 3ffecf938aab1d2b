"""code exported_at: when a sponsor code first left us in a CSV export (the dashboard's "distributed")

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 08:40:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sponsor_codes') as batch_op:
        batch_op.add_column(sa.Column('exported_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sponsor_codes') as batch_op:
        batch_op.drop_column('exported_at')
