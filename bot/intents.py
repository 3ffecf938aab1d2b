"""What a farmer's free text means. Matching is on `fold()`ed text: case, Turkish dotted/dotless i,
diacritics, punctuation and extra spaces do not matter."""

from __future__ import annotations

import enum
import re

from bot.normalize import fold


class Intent(enum.StrEnum):
    MENU = "menu"
    GREETING = "greeting"  # the menu, but a submission in progress goes on
    THANKS = "thanks"
    CANCEL = "cancel"
    HELP = "help"
    QUOTA = "quota"
    LANGUAGE = "language"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    DELETE_DATA = "delete_data"
    WITHDRAW_CONSENT = "withdraw_consent"  # after accepting the privacy notice; before it, a refusal
    HUMAN = "human"  # wants a person from support
    HISTORY = "history"
    ANALYZE = "analyze"
    CODE = "code"


# Whole-message matches (folded). Short words only match alone, so "dur" inside a sentence is not
# an opt-out and "kota" as a village name in a location would need to be the whole message.
EXACT: dict[str, Intent] = {
    **dict.fromkeys(["menu", "ana menu", "0"], Intent.MENU),
    **dict.fromkeys(["iptal", "vazgec", "vazgectim", "cancel", "iptal et"], Intent.CANCEL),
    **dict.fromkeys(["yardim", "help", "nasil", "yardim lazim"], Intent.HELP),
    **dict.fromkeys(["kota", "hakkim", "haklarim", "kalan", "quota", "kalan hak", "kac hakkim var"], Intent.QUOTA),
    **dict.fromkeys(["dil", "language", "lang", "dil language", "english", "ingilizce", "turkce", "turkish"],
                    Intent.LANGUAGE),
    **dict.fromkeys(["dur", "stop", "abonelikten cik", "unsubscribe"], Intent.OPT_OUT),
    **dict.fromkeys(["basla", "start"], Intent.OPT_IN),  # not `devam`: mid-flow it means "go on" (CONTINUE)
    **dict.fromkeys(["kabul etmiyorum", "onayimi geri aliyorum", "onayimi geri cekiyorum", "i do not accept",
                     "i withdraw my consent"], Intent.WITHDRAW_CONSENT),
    **dict.fromkeys(["son analizlerim", "analizlerim", "gecmis", "history", "my analyses"], Intent.HISTORY),
    **dict.fromkeys(["analiz", "analiz gonder", "yeni analiz", "analyze", "analysis", "new analysis"],
                    Intent.ANALYZE),
    **dict.fromkeys(["kod", "kod kullan", "code", "use a code", "kupon"], Intent.CODE),
    **dict.fromkeys(["temsilci", "insan", "yetkili", "canli destek", "destek", "human", "agent", "support"],
                    Intent.HUMAN),
}
# Phrases that mean the same wherever they appear in the message.
_CONTAINS: tuple[tuple[str, Intent], ...] = (
    ("verilerimi sil", Intent.DELETE_DATA),
    ("delete my data", Intent.DELETE_DATA),
    ("musteri temsilcisi", Intent.HUMAN),
    ("canli destek", Intent.HUMAN),
    ("bir insanla", Intent.HUMAN),
    ("talk to a human", Intent.HUMAN),
    ("real person", Intent.HUMAN),
    ("kalan hakkim", Intent.QUOTA),
    ("kalan kota", Intent.QUOTA),
    ("remaining quota", Intent.QUOTA),
)

YES = {"evet", "kabul", "kabul ediyorum", "onay", "onayliyorum", "tamam", "olur", "yes", "ok", "okay", "accept",
       "i accept", "gonder", "send"}
NO = {"hayir", "kabul etmiyorum", "etmiyorum", "istemiyorum", "red", "reddet", "no", "decline", "i decline",
      "i do not accept"}
# Greetings and thanks: never a crop's or a place's name. Said with words of address around them (`kolay gelsin usta`,
# `merhaba hocam`, `hi there`), or two together (`merhaba kolay gelsin`): see `_pleasantry`.
GREETINGS = {"merhaba", "merhabalar", "mrb", "mrhb", "selam", "selamlar", "slm", "sa", "selamun aleykum",
             "selamunaleykum", "iyi gunler", "gunaydin", "iyi aksamlar", "iyi geceler", "iyi sabahlar",
             "hayirli gunler", "hayirli aksamlar", "hayirli sabahlar", "hayirli isler", "iyi calismalar",
             "kolay gelsin", "bereket versin", "allah bereket versin", "hello", "hi", "hey", "good morning",
             "good afternoon", "good evening"}
# "How are you", alone or after a greeting (`merhaba nasılsınız`): a hello too.
HOW_ARE_YOU = {"nasilsiniz", "nasilsin", "how are you"}
THANKS = {"tesekkurler", "tesekkur ederim", "cok tesekkurler", "cok tesekkur ederim", "tesekkur", "sagol", "sag ol",
          "sagolun", "sag olun", "saol", "saolun", "sagolasin", "cok sagol", "cok sag ol", "cok sagolun",
          "cok sag olun", "cok saol", "eyvallah", "tsk", "tskler", "tsk ederim", "eline saglik",
          "allah razi olsun", "thanks", "thank you", "thanks a lot", "thx", "thank you so much", "thanks so much",
          "thank you very much", "thanks very much", "many thanks", "cheers"}
# Words of address said with a greeting or thanks (`kolay gelsin abi`, `sağ olun hocam`, `hi there`, `thanks guys`):
# they change nothing of what it means.
ADDRESS_WORDS = frozenset({
    "abi", "abim", "agabey", "abla", "ablam", "hocam", "hoca", "usta", "ustam", "kardes", "kardesim", "efendim",
    "bey", "beyefendi", "hanim", "hanimefendi", "arkadaslar", "arkadasim", "dostum", "herkese", "size", "kanka",
    "reis", "there", "guys", "friend", "friends", "all", "everyone", "sir", "madam", "mate", "bro", "team",
})
_PLEASANTRIES = {**dict.fromkeys(GREETINGS | HOW_ARE_YOU, Intent.GREETING), **dict.fromkeys(THANKS, Intent.THANKS)}
_LONGEST_PLEASANTRY = max(len(p.split()) for p in _PLEASANTRIES)
# "Go on": sends at the confirmation, skips the place; elsewhere the open question comes again.
CONTINUE = {"devam", "devam et", "devam edelim", "devam edin", "continue", "go on"}
SKIP = {"gec", "atla", "skip", "yok", "bilmiyorum", "gecmek istiyorum", "pas"}
# The `Gönder` button's own word typed: the one word that sends where a yes would not (after `Fotoğraf ekle`).
SEND = {"gonder", "send", "gonderin", "gonder gitsin"}
# "No more photos" after `Fotoğraf ekle`: back to the confirmation (nothing is cancelled).
NO_MORE = {"ekleme", "eklemeyecegim", "eklemiyorum", "vazgectim ekleme", "baska yok", "baska fotograf yok",
           "bu kadar", "yeter", "no more", "that is all", "thats all", "no more photos"}


# Emoji alone (fold drops them): a wave is a hello; folded hands a thank-you, and a thumbs up the same kind word
# (as a 👍 reaction is thanked): an acknowledgement, never an answer's content.
_EMOJI = {"👋": Intent.GREETING, "🙋": Intent.GREETING, "🙏": Intent.THANKS, "👍": Intent.THANKS}
_EMOJI_MODIFIERS = re.compile("[\ufe0f\u200d\U0001f3fb-\U0001f3ff\u2642\u2640\\s]")


def match(text: str | None) -> Intent | None:
    folded = fold(text)
    if not folded:
        emoji = set(_EMOJI_MODIFIERS.sub("", text or ""))
        kinds = {_EMOJI.get(e) for e in emoji}
        return kinds.pop() if len(kinds) == 1 else None
    if folded in EXACT:
        return EXACT[folded]
    pleasantry = _pleasantry(folded)
    if pleasantry is not None:
        return pleasantry
    for phrase, intent in _CONTAINS:
        if phrase in folded:
            return intent
    return None


def _pleasantry(folded: str) -> Intent | None:
    """A hello or a thank-you, as a rule rather than a list of every way to say it: greetings and thanks
    (`GREETINGS`, `HOW_ARE_YOU`, `THANKS`), one or more, with words of address anywhere (`ADDRESS_WORDS`):
    `kolay gelsin usta`, `merhaba hocam nasılsınız`, `hayırlı işler abi kolay gelsin`, `thank you so much guys`.
    A thank-you among them makes it thanks; anything else in the message makes it neither.

    The words are split into phrases from left to right, one position at a time (no recursion: a message of
    a thousand `hi` is as safe as one): `thanks[i]` says whether the words before `i` split into phrases
    (None: they do not) and whether a thank-you is among them."""
    words = [word for word in folded.split() if word not in ADDRESS_WORDS]
    if not words:
        return None
    thanks: list[bool | None] = [False] + [None] * len(words)
    for start in range(len(words)):
        said_thanks = thanks[start]
        if said_thanks is None:
            continue
        for size in range(1, min(_LONGEST_PLEASANTRY, len(words) - start) + 1):
            intent = _PLEASANTRIES.get(" ".join(words[start:start + size]))
            if intent is not None:
                thanks[start + size] = bool(thanks[start + size]) or said_thanks or intent is Intent.THANKS
    if thanks[-1] is None:
        return None
    return Intent.THANKS if thanks[-1] else Intent.GREETING


def is_yes(text: str | None) -> bool:
    return fold(text) in YES


def is_no(text: str | None) -> bool:
    return fold(text) in NO


def is_continue(text: str | None) -> bool:
    return fold(text) in CONTINUE


def is_skip(text: str | None) -> bool:
    return fold(text) in SKIP


def is_send(text: str | None) -> bool:
    return fold(text) in SEND


def is_no_more(text: str | None) -> bool:
    """No more photos: a no, a skip, or words that say so (`vazgeçtim ekleme`, `bu kadar`)."""
    folded = fold(text)
    return folded in NO_MORE or folded in NO or folded in SKIP


# Words that make a message a sentence about the plant rather than a name (a crop's, a place's): pronouns,
# question words and particles, the plant and its parts, little words of grammar (folded, Turkish and English).
_SENTENCE_WORDS = frozenset({
    "bu", "bunlar", "bunu", "bunun", "sunlar", "ayni", "hepsi", "hep", "benim", "bizim", "bende", "neden", "niye",
    "nicin", "nasil", "ne", "neler", "mi", "mu", "misin", "miyim", "midir", "mudur", "var", "ve", "ile", "icin",
    "ama", "cok", "gibi", "acaba", "lutfen", "olmus", "oldu", "yapmaliyim", "yapayim",
    "the", "same", "plant", "plants", "leaf", "leaves", "why", "what", "how", "is", "are", "this", "these", "that",
    "my", "it", "its", "and", "with", "please", "does", "do", "have", "has",
})
# Beginnings of words about the plant itself (`yapraklar`, `bitkim`, `lekeler`, `hastalığı`, `sarardı`).
_SENTENCE_STEMS = ("yaprak", "bitki", "leke", "hastalik", "sarar", "kurudu", "kuruyor", "curudu", "curuyor", "curumus")
# Endings of Turkish verbs farmers write in a sentence: `sararıyor`, `yapmalıyım`, `olmuş`.
_VERB_ENDINGS = ("iyor", "uyor", "meli", "mali", "meliyim", "maliyim", "yorum")


def is_sentence(text: str | None) -> bool:
    """A sentence or a question rather than a name: a question mark, a word of conversation about the plant
    (`bunlar aynı bitki`, `yapraklar neden sarardı`, `same plant`), or a verb's ending. Names typed freely
    (`Konya Ereğli`, `Çumra köyü`, `şeker pancarı`) have none of these."""
    if "?" in (text or ""):
        return True
    words = fold(text).split()
    return any(word in _SENTENCE_WORDS or word.startswith(_SENTENCE_STEMS)
               or (len(word) > 5 and word.endswith(_VERB_ENDINGS)) for word in words)


def is_small_talk(text: str | None) -> bool:
    """A word of conversation rather than an answer's content (a crop's or a place's name): a command, yes, no,
    skip, go on, a greeting or thanks (with words of address: `kolay gelsin usta`), or words of address alone."""
    folded = fold(text)
    only_address = bool(folded) and all(word in ADDRESS_WORDS for word in folded.split())
    return (folded in YES or folded in NO or folded in SKIP or folded in CONTINUE or only_address
            or match(text) is not None)
