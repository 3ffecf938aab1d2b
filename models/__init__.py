"""SQLAlchemy 2 typed models. Import from here: `from models import Farmer, Message`."""

from models.analysis import Analysis, AnalysisStatus
from models.base import Base, utcnow
from models.conversation import Conversation
from models.farmer import Farmer
from models.message import (
    OUTBOUND_RANK,
    REACHED_FARMER,
    Direction,
    Message,
    MessageStatus,
    MessageStatusEvent,
    PhotoState,
    UnhandledWebhook,
    WebhookError,
)
from models.runtime_setting import RuntimeSetting
from models.sponsorship import (
    CodeStatus,
    PurchaseRequest,
    PurchaseRequestStatus,
    Sponsor,
    SponsorCode,
    SponsorPurchase,
)
from models.staff import AuditLog, RefreshToken, StaffRole, StaffUser
from models.subscription import LedgerKind, Subscription, SubscriptionStatus, Tier, UsageCounter, UsageLedger
from models.support import CannedReply, SupportNote
from models.whatsapp_health import WhatsAppAccountEvent, WhatsAppAccountState, WhatsAppTemplate

__all__ = [
    "OUTBOUND_RANK",
    "REACHED_FARMER",
    "Analysis",
    "AnalysisStatus",
    "AuditLog",
    "Base",
    "CannedReply",
    "CodeStatus",
    "Conversation",
    "Direction",
    "Farmer",
    "LedgerKind",
    "Message",
    "MessageStatus",
    "MessageStatusEvent",
    "PhotoState",
    "PurchaseRequest",
    "PurchaseRequestStatus",
    "RefreshToken",
    "RuntimeSetting",
    "Sponsor",
    "SponsorCode",
    "SponsorPurchase",
    "StaffRole",
    "StaffUser",
    "Subscription",
    "SubscriptionStatus",
    "SupportNote",
    "Tier",
    "UnhandledWebhook",
    "UsageCounter",
    "UsageLedger",
    "WebhookError",
    "WhatsAppAccountEvent",
    "WhatsAppAccountState",
    "WhatsAppTemplate",
    "utcnow",
]
