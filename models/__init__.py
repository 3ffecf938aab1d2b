"""SQLAlchemy 2 typed models. Import from here: `from models import Farmer, Message`."""

from models.base import Base, utcnow
from models.conversation import Conversation
from models.farmer import Farmer
from models.message import (
    OUTBOUND_RANK,
    Direction,
    Message,
    MessageStatus,
    MessageStatusEvent,
    UnhandledWebhook,
)

__all__ = [
    "OUTBOUND_RANK",
    "Base",
    "Conversation",
    "Direction",
    "Farmer",
    "Message",
    "MessageStatus",
    "MessageStatusEvent",
    "UnhandledWebhook",
    "utcnow",
]
