"""template attribute stamps: status, quality and category each ordered by their own event time

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The shared stamp becomes the status's; quality and category start from it (as strict as before).
    with op.batch_alter_table('whatsapp_templates') as batch_op:
        batch_op.alter_column('updated_at', new_column_name='status_at',
                              existing_type=sa.DateTime(timezone=True), existing_nullable=False)
        batch_op.add_column(sa.Column('quality_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('category_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE whatsapp_templates SET quality_at = status_at, category_at = status_at")
    with op.batch_alter_table('whatsapp_templates') as batch_op:
        batch_op.alter_column('quality_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column('category_at', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('whatsapp_templates') as batch_op:
        batch_op.drop_column('category_at')
        batch_op.drop_column('quality_at')
        batch_op.alter_column('status_at', new_column_name='updated_at',
                              existing_type=sa.DateTime(timezone=True), existing_nullable=False)
