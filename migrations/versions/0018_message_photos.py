"""messages photo_state, photo_key: a farmer's photo sent during a takeover, kept for support

The copy the console shows (the optimised JPEG) and what became of it: waiting, stored, not_downloaded,
rejected, purged. Both indexes are partial: almost no message has a photo kept for support.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch_op:
        batch_op.add_column(sa.Column('photo_state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('photo_key', sa.String(length=200), nullable=True))
    op.create_index('ix_messages_photo_key', 'messages', ['photo_key'],
                    postgresql_where=sa.text('photo_key IS NOT NULL'), sqlite_where=sa.text('photo_key IS NOT NULL'))
    op.create_index('ix_messages_photo_waiting', 'messages', ['id'],
                    postgresql_where=sa.text("photo_state = 'waiting'"),
                    sqlite_where=sa.text("photo_state = 'waiting'"))


def downgrade() -> None:
    op.drop_index('ix_messages_photo_waiting', table_name='messages')
    op.drop_index('ix_messages_photo_key', table_name='messages')
    with op.batch_alter_table('messages') as batch_op:
        batch_op.drop_column('photo_key')
        batch_op.drop_column('photo_state')
