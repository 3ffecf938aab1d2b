"""support: human takeover, notes, canned replies, who wrote a reply, a farmer asking for a person, deleted farmers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 08:40:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch_op:
        batch_op.add_column(sa.Column('taken_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('taken_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(op.f('fk_conversations_taken_by_staff_users'), 'staff_users', ['taken_by'],
                                    ['id'], ondelete='SET NULL')
    with op.batch_alter_table('farmers') as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('human_requested_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('messages') as batch_op:
        batch_op.add_column(sa.Column('staff_user_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_messages_staff_user_id_staff_users'), 'staff_users', ['staff_user_id'],
                                    ['id'], ondelete='SET NULL')
    op.create_table(
        'support_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('farmer_id', sa.Integer(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['farmer_id'], ['farmers.id'], name=op.f('fk_support_notes_farmer_id_farmers'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['author_id'], ['staff_users.id'],
                                name=op.f('fk_support_notes_author_id_staff_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_support_notes')),
    )
    op.create_index(op.f('ix_support_notes_farmer_id'), 'support_notes', ['farmer_id'], unique=False)
    op.create_table(
        'canned_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=100), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('updated_by', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['updated_by'], ['staff_users.id'],
                                name=op.f('fk_canned_replies_updated_by_staff_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_replies')),
    )


def downgrade() -> None:
    op.drop_table('canned_replies')
    op.drop_index(op.f('ix_support_notes_farmer_id'), table_name='support_notes')
    op.drop_table('support_notes')
    with op.batch_alter_table('messages') as batch_op:
        batch_op.drop_constraint(op.f('fk_messages_staff_user_id_staff_users'), type_='foreignkey')
        batch_op.drop_column('staff_user_id')
    with op.batch_alter_table('farmers') as batch_op:
        batch_op.drop_column('human_requested_at')
        batch_op.drop_column('deleted_at')
    with op.batch_alter_table('conversations') as batch_op:
        batch_op.drop_constraint(op.f('fk_conversations_taken_by_staff_users'), type_='foreignkey')
        batch_op.drop_column('taken_until')
        batch_op.drop_column('taken_at')
        batch_op.drop_column('taken_by')
