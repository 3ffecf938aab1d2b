"""album: every photo of a submission on its analysis (first = media_id)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('analyses') as batch_op:
        batch_op.add_column(sa.Column('media_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                                         'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analyses') as batch_op:
        batch_op.drop_column('media_ids')
