"""The WhatsApp message templates registered at Meta (`services.whatsapp.messages.build_template` builds them).

Outside the 24-hour window only an approved template may be sent. The bodies are Turkish
definitions registered at Meta as they are (not gettext strings): positional `{{1}}`, `{{2}}`...
in one BODY component. A wrong parameter count is Meta's error 132000, so `build_template` checks it first.
`flask templates --json` prints what Meta's template-creation API expects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot import reply_ids as rid
from bot.reply_ids import encode

Category = Literal["UTILITY", "MARKETING"]
PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")
NAME = re.compile(r"[a-z0-9_]{1,512}")
BODY_MAX = 1024
QUICK_REPLY_MAX = 25  # Meta's limit for a template's quick-reply button text
QUICK_REPLIES_MAX = 10


@dataclass(frozen=True)
class QuickReply:
    """A button tapped by the farmer: the webhook brings `payload` back (a reply id the conversation knows)."""

    text: str
    payload: str


@dataclass(frozen=True)
class Template:
    name: str
    category: Category
    body: str
    param_names: tuple[str, ...]  # what {{1}}, {{2}}... mean, in order
    example: tuple[str, ...]  # one realistic value per parameter (Meta requires them for review)
    buttons: tuple[QuickReply, ...] = ()
    language: str = "tr"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(f"template {self.name}: " + "; ".join(problems))

    @property
    def positions(self) -> list[int]:
        """The distinct {{n}} of the body, in order of first appearance."""
        return list(dict.fromkeys(int(n) for n in PLACEHOLDER.findall(self.body)))

    def problems(self) -> list[str]:
        """What Meta would reject, or what would make a send fail with 132000."""
        problems: list[str] = []
        positions = self.positions
        if not NAME.fullmatch(self.name):
            problems.append("name: lower-case letters, digits and underscores")
        if sorted(positions) != list(range(1, len(positions) + 1)):
            problems.append(f"placeholders must be {{{{1}}}}..{{{{n}}}} without gaps, got {positions}")
        if len(self.param_names) != len(positions) or len(self.example) != len(positions):
            problems.append(f"{len(positions)} placeholders, {len(self.param_names)} param_names, "
                            f"{len(self.example)} examples")
        stripped = self.body.strip()
        if PLACEHOLDER.match(stripped) or re.search(r"\{\{\d+\}\}\W*$", stripped):
            problems.append("the body must not start or end with a parameter")
        if len(self.body) > BODY_MAX:
            problems.append(f"body: at most {BODY_MAX} characters")
        if len(self.buttons) > QUICK_REPLIES_MAX or any(len(b.text) > QUICK_REPLY_MAX for b in self.buttons):
            problems.append(f"at most {QUICK_REPLIES_MAX} quick replies of at most {QUICK_REPLY_MAX} characters")
        return problems

    def render(self, params: Sequence[str]) -> str:
        """The text the farmer reads, for the message log."""
        return PLACEHOLDER.sub(lambda m: params[int(m.group(1)) - 1], self.body)

    def to_meta(self) -> dict[str, Any]:
        """The body of `POST /{waba_id}/message_templates`."""
        components: list[dict[str, Any]] = [
            {"type": "BODY", "text": self.body, "example": {"body_text": [list(self.example)]}},
        ]
        if self.buttons:
            components.append({"type": "BUTTONS",
                               "buttons": [{"type": "QUICK_REPLY", "text": b.text} for b in self.buttons]})
        return {"name": self.name, "language": self.language, "category": self.category, "components": components}

    def describe(self) -> str:
        """For operators: what the template says and what each parameter is."""
        lines = [f"{self.name}  ({self.category}, {self.language})", *("    " + line for line in self.body.split("\n"))]
        lines += [f"  {{{{{i}}}}} {name}  (e.g. {example!r})"
                  for i, (name, example) in enumerate(zip(self.param_names, self.example, strict=True), start=1)]
        if self.buttons:
            lines.append("  buttons: " + ", ".join(f"{b.text} [{b.payload}]" for b in self.buttons))
        return "\n".join(lines)


DETAILS = QuickReply("Detaylar", encode(rid.Details(None)))
NEW_ANALYSIS = QuickReply("Yeni analiz", encode(rid.NewAnalysis()))
SEND_ANALYSIS = QuickReply("Analiz gönder", encode(rid.Menu(rid.MenuChoice.ANALYZE)))
QUOTA = QuickReply("Kalan hakkım", encode(rid.Menu(rid.MenuChoice.QUOTA)))
USE_CODE = QuickReply("Kod kullan", encode(rid.Menu(rid.MenuChoice.CODE)))
HELP = QuickReply("Yardım", encode(rid.Menu(rid.MenuChoice.HELP)))
MENU = QuickReply("Menü", encode(rid.BackToMenu()))

_ALL = (
    Template(
        name="analysis_complete_tr",
        category="UTILITY",
        body="Merhaba {{1}}, {{2}} fotoğrafınızın analizi tamamlandı.\n\n"
             "Sağlık puanı: {{3}}\n"
             "Ana sorun: {{4}}\n\n"
             "Önerileri görmek için Detaylar düğmesine dokunun.",
        param_names=("farmer name", "crop", "health score (x/10)", "main concern"),
        example=("Mehmet", "Domates", "6/10", "Erken yanıklık"),
        buttons=(DETAILS, NEW_ANALYSIS),
    ),
    Template(
        name="urgent_health_alert_tr",
        category="UTILITY",
        body="⚠️ Acil uyarı: {{1}} bitkinizde {{2}} tespit edildi.\n\n"
             "Hemen yapmanız gereken: {{3}}\n\n"
             "Diğer öneriler için Detaylar düğmesine dokunun.",
        param_names=("crop", "problem", "first urgent action"),
        example=("domates", "geç yanıklık", "Hastalıklı yaprakları toplayıp tarladan uzaklaştırın."),
        buttons=(DETAILS,),
    ),
    Template(
        name="subscription_expiry_tr",
        category="UTILITY",
        body="Aboneliğiniz hakkında bilgilendirme: {{1}} paketiniz {{2}} tarihinde sona eriyor ({{3}} gün kaldı).\n\n"
             "Analizlere kesintisiz devam etmek için bir sponsor kodu kullanabilirsiniz.",
        param_names=("tier", "end date", "days left"),
        example=("Premium", "30 Kasım 2026", "7"),
        buttons=(USE_CODE, QUOTA),
    ),
    Template(
        name="redemption_confirmation_tr",
        category="UTILITY",
        body="Kodunuz kabul edildi: {{1}} paketiniz {{2}} sponsorluğunda kullanıma açıldı.\n\n"
             "Günlük analiz hakkı: {{3}}\n"
             "Aylık analiz hakkı: {{4}}\n"
             "Geçerlilik: {{5}} tarihine kadar\n\n"
             "Bitkinizin fotoğrafını göndererek hemen başlayabilirsiniz.",
        param_names=("tier", "sponsor", "daily limit", "monthly limit", "end date"),
        example=("Premium", "Anadolu Tohum A.Ş.", "5", "100", "22 Şubat 2027"),
        buttons=(SEND_ANALYSIS,),
    ),
    Template(
        name="usage_alert_tr",
        category="UTILITY",
        body="Kullanım bilgisi: bugün {{1}} analiz yaptınız, günlük hakkınız {{2}} analiz.\n"
             "Hakkınızın yenileneceği zaman: {{3}}\n\n"
             "Daha fazla analiz için bir sponsor kodu kullanabilirsiniz.",
        param_names=("used today", "daily limit", "reset time"),
        example=("4", "5", "23 Kas 2026 00:00"),
        buttons=(QUOTA, USE_CODE),
    ),
    Template(
        name="welcome_message_tr",
        category="MARKETING",
        body="Merhaba {{1}}, ZiraAI bitki sağlığı asistanına hoş geldiniz! 🌱\n\n"
             "Bitkinizin fotoğrafını gönderin; sorunu tespit edip neler yapmanız gerektiğini anlatalım.\n\n"
             "Bu mesajları almak istemiyorsanız DUR yazabilirsiniz.",
        param_names=("farmer name",),
        example=("Mehmet",),
        buttons=(SEND_ANALYSIS, HELP),
    ),
    Template(
        name="sponsor_message_tr",
        category="MARKETING",
        body="Sponsorunuz {{1}} size bir mesaj gönderdi:\n\n"
             "{{2}}\n\n"
             "Bu mesajları almak istemiyorsanız DUR yazabilirsiniz.",
        param_names=("sponsor name", "message text"),
        example=("Anadolu Tohum A.Ş.", "Bu hafta bölgenizde yağış bekleniyor; ilaçlamayı yağıştan sonraya bırakın."),
        buttons=(MENU,),
    ),
)
TEMPLATES: dict[str, Template] = {t.name: t for t in _ALL}

