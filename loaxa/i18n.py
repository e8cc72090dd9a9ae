"""Translations for everything a technician reads (gettext; Vietnamese first).

Mark strings with `_()`; mark a string that is translated later (a table of labels,
a message template) with `N_()`, which only marks it. The language is `$LOAXA_LANG`,
else the locale's (`LC_ALL`, `LC_MESSAGES`, `LANG`), Vietnamese when unknown;
`set_language()` switches (e.g. `--lang en`). `language(code)` switches for one piece
of work on the current thread only: the daemon answers a control request (`loaxa
selftest`, `loaxa status`) in the language of the technician who asked, whatever its
own, while its other threads carry on in theirs. Catalogs live in
`loaxa/locale/<lang>/LC_MESSAGES/loaxa.mo`; a missing catalog or a string without a
translation falls back to the English source text. `scripts/update-translations.py`
extracts every marked string into `loaxa/locale/loaxa.pot`, merges it into the `.po`
files and compiles the `.mo` files.

Error messages are plain English built from values (`unit.id: required`,
`audio.lufs (line 9): must be between -40 and -5, got 3`). `translate_problem()`
translates such a line by matching it against message templates marked with `N_()`
(`"must be between {low} and {high}, got {value}"`); a line that matches none stays
as it is, so a reworded message degrades to English, never to nonsense.
"""

import contextvars
import gettext
import importlib
import os
import re
from contextlib import contextmanager
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "loaxa"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
# Modules holding `TEMPLATES`, lists of N_()-marked message templates (imported on first use).
TEMPLATE_MODULES = ["provisioning.messages"]

_translation = None
_language = None
_templates = None
# (language, translation) for the work in hand on this thread (see `language()`); a new
# thread starts without one and so uses the process's language.
_override = contextvars.ContextVar("loaxa_language", default=None)


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
    global _translation, _language
    language = language or detect_language()
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)
    _language = language
    return language


def current_language() -> str:
    override = _override.get()
    if override is not None:
        return override[0]
    if _translation is None:
        set_language()
    return _language


@contextmanager
def language(code: str | None):
    """Translate into `code` inside the block, on this thread only; an unknown or missing
    code leaves the process's language in force."""
    if code not in LANGUAGES:
        yield current_language()
        return
    token = _override.set((code, gettext.translation(DOMAIN, LOCALE_DIR, languages=[code], fallback=True)))
    try:
        yield code
    finally:
        _override.reset(token)


def _(message: str) -> str:
    override = _override.get()
    if override is not None:
        return override[1].gettext(message)
    if _translation is None:
        set_language()
    return _translation.gettext(message)


def N_(message: str) -> str:
    """Mark `message` for the catalog without translating it now."""
    return message


# ---------------------------------------------------------------- templated messages

class Template:
    """A message with `{name}` fields, matched against finished English text."""

    # A field named `hint` is an optional parenthesised remark at the end of a message.
    FIELD_PATTERNS = {"hint": r"(?: \(.*\))?"}

    def __init__(self, text: str):
        self.text = text
        self.regex = re.compile(self._pattern(text), re.DOTALL)

    def _pattern(self, text: str) -> str:
        parts = re.split(r"\{(\w+)\}", text)
        pattern = ""
        for index, part in enumerate(parts):
            if index % 2 == 0:  # literal text, where str.format's "{{" stands for "{"
                pattern += re.escape(part.replace("{{", "{").replace("}}", "}"))
            else:
                pattern += f"(?P<{part}>{self.FIELD_PATTERNS.get(part, '.*?')})"
        return pattern + r"\Z"

    def translate(self, message: str) -> str | None:
        match = self.regex.match(message)
        if match is None:
            return None
        values = {name: translate_message(value) if value else value
                  for name, value in match.groupdict().items()}
        translated = _(self.text)
        try:
            return translated.format(**values)
        except (KeyError, IndexError, ValueError):  # a broken translation: say it in English
            return self.text.format(**values)


def _load_templates() -> list[Template]:
    templates = []
    for name in TEMPLATE_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        templates += [Template(text) for text in getattr(module, "TEMPLATES", ())]
    # The most literal template first: "must not be empty" before "{path}: {reason}".
    templates.sort(key=lambda t: -len(re.sub(r"\{\w+\}", "", t.text)))
    return templates


def translate_message(message: str) -> str:
    """`message` in the current language when a template matches it, else unchanged."""
    global _templates
    if _templates is None:
        _templates = _load_templates()
    for template in _templates:
        translated = template.translate(message)
        if translated is not None:
            return translated
    return message


PROBLEM_RE = re.compile(r"(?P<key>[^\s:]+(?: \(line (?P<line>\d+)\))?): (?P<message>.*)\Z", re.DOTALL)


def translate_problem(problem: str) -> str:
    """One `key[ (line N)]: message` line of a config error, in the current language.

    A line that is not of that shape is translated as a whole message.
    """
    match = PROBLEM_RE.match(problem)
    if match is None:
        return translate_message(problem)
    key = match["key"]
    if match["line"]:
        key = key.replace(f"(line {match['line']})", _("(line {line})").format(line=match["line"]))
    return f"{key}: {translate_message(match['message'])}"
