"""album images: the stored keys of every photo of an analysis (first = image_key / original_key)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('analyses') as batch_op:
        batch_op.add_column(sa.Column('image_keys', _json(), nullable=True))
        batch_op.add_column(sa.Column('original_keys', _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analyses') as batch_op:
        batch_op.drop_column('original_keys')
        batch_op.drop_column('image_keys')
