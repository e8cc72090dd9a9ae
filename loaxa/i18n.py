"""Translations for everything a technician reads (gettext; Vietnamese first).

Mark strings with `_()`. The language is `$LOAXA_LANG`, else the locale's
(`LC_ALL`, `LC_MESSAGES`, `LANG`), Vietnamese when unknown; `set_language()`
switches (e.g. `--lang en`). Catalogs live in `loaxa/locale/<lang>/LC_MESSAGES/loaxa.mo`;
a missing catalog falls back to the English source text.
"""

import gettext
import os
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "loaxa"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"

_translation = None


def detect_language(environ=os.environ) -> str:
    for var in ("LOAXA_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var, "")
        code = value.split(".")[0].split("_")[0].lower()
        if code in LANGUAGES:
            return code
        if value and var != "LOAXA_LANG" and code not in ("", "c", "posix"):
            break
    return DEFAULT_LANGUAGE


def set_language(language: str | None = None) -> str:
    global _translation
    language = language or detect_language()
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)
    return language


def _(message: str) -> str:
    if _translation is None:
        set_language()
    return _translation.gettext(message)
