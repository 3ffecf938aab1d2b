"""staff_users logins_ended: raised to end every login of a person (password change, deactivation)

Part of the fingerprint that access tokens and console sessions hold, so a deactivated account's
logins stay ended when it is reactivated. 0 keeps the fingerprints of today's logins.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 12:00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('staff_users') as batch_op:
        batch_op.add_column(sa.Column('logins_ended', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('staff_users') as batch_op:
        batch_op.drop_column('logins_ended')
