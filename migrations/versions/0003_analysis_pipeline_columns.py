"""analysis pipeline columns

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:37:54.137311
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('species', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('severity', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('prognosis', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('diseases', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('pests', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('token_usage', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cost_usd', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('image_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('original_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('n8n_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delay_notice_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_column('attempts')
        batch_op.drop_column('delay_notice_at')
        batch_op.drop_column('n8n_requested_at')
        batch_op.drop_column('original_key')
        batch_op.drop_column('image_key')
        batch_op.drop_column('cost_usd')
        batch_op.drop_column('token_usage')
        batch_op.drop_column('urgent')
        batch_op.drop_column('pests')
        batch_op.drop_column('diseases')
        batch_op.drop_column('prognosis')
        batch_op.drop_column('severity')
        batch_op.drop_column('species')

