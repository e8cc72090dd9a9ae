"""Where each key of a TOML file is written: line numbers for config errors.

tomllib gives values, not positions. `key_lines(text)` scans the source (already known
to be valid TOML) and maps every dotted key path to the line it is written on: table
headers (`[gpio]` -> "gpio"), keys in tables, dotted keys (`unit.id = ...`) and keys of
inline tables (`keys = { a = "..." }` -> "trust.keys.a"). Keys inside arrays are not
tracked. `add_line_numbers(errors, text)` turns `gpio.mute: ...` into
`gpio.mute (line 14): ...`; a key that is not written (a required one missing, a clash
with a default) gets the line of its table's header when there is one.
"""

import json
import re

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ERROR_KEY = re.compile(r"(?P<key>[^:\[]+?)(?P<index>\[\d+\])*: ")


class _Scanner:
    """A minimal TOML tokenizer: enough to find keys, strings and brackets."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def startswith(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def advance(self, count: int = 1) -> str:
        chunk = self.text[self.pos:self.pos + count]
        self.line += chunk.count("\n")
        self.pos += count
        return chunk

    def skip_blank(self, newlines: bool) -> None:
        """Spaces, tabs, comments and (when asked) newlines."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.advance()
            else:
                return

    def string(self) -> str:
        """A basic or literal string, single- or multi-line; returns its decoded text."""
        start = self.pos
        for quote in ('"""', "'''", '"', "'"):
            if self.startswith(quote):
                self.advance(len(quote))
                break
        while self.pos < len(self.text) and not self.startswith(quote):
            self.advance(2 if quote[0] == '"' and self.peek() == "\\" else 1)
        closing = len(quote)
        if closing == 3:  # up to two quotes of the content may touch the closing three
            while closing < 5 and self.text[self.pos + closing:self.pos + closing + 1] == quote[0]:
                closing += 1
        self.advance(closing)
        raw = self.text[start:self.pos]
        return _decode_key(raw)

    def key(self) -> list[str]:
        """A dotted key: `a`, `a.b`, `"a b".c`."""
        parts = []
        while True:
            self.skip_blank(False)
            if self.peek() in "\"'":
                parts.append(self.string())
            else:
                match = BARE_KEY.match(self.text, self.pos)
                if not match:
                    return parts
                parts.append(match.group())
                self.advance(len(match.group()))
            self.skip_blank(False)
            if self.peek() != ".":
                return parts
            self.advance()


def _decode_key(raw: str) -> str:
    if raw.startswith("'"):
        return raw.strip("'")
    try:
        return json.loads(raw) if not raw.startswith('"""') else raw[3:-3]
    except ValueError:
        return raw.strip('"')


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Every key path written in `text` and its 1-based line number (first mention)."""
    scanner = _Scanner(text)
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    while True:
        scanner.skip_blank(True)
        if scanner.pos >= len(text):
            return lines
        if scanner.peek() == "[":
            table = _header(scanner, lines)
        else:
            _key_value(scanner, table, lines)


def _header(scanner: _Scanner, lines: dict) -> tuple[str, ...]:
    line = scanner.line
    brackets = 2 if scanner.startswith("[[") else 1
    scanner.advance(brackets)
    path = tuple(scanner.key())
    scanner.skip_blank(False)
    scanner.advance(brackets)
    lines.setdefault(path, line)
    return path


def _key_value(scanner: _Scanner, table: tuple[str, ...], lines: dict) -> None:
    line = scanner.line
    path = table + tuple(scanner.key())
    if len(path) == len(table):  # not a key: skip the character and go on
        scanner.advance()
        return
    lines.setdefault(path, line)
    scanner.skip_blank(False)
    if scanner.peek() == "=":
        scanner.advance()
    _value(scanner, path, lines)


def _value(scanner: _Scanner, path: tuple[str, ...], lines: dict) -> None:
    scanner.skip_blank(False)
    char = scanner.peek()
    if char in "\"'":
        scanner.string()
    elif char == "{":
        _inline_table(scanner, path, lines)
    elif char == "[":
        _array(scanner)
    else:
        while scanner.pos < len(scanner.text) and scanner.peek() not in ",]}\n#":
            scanner.advance()


def _inline_table(scanner: _Scanner, path: tuple[str, ...], lines: dict) -> None:
    scanner.advance()  # {
    while scanner.pos < len(scanner.text):
        scanner.skip_blank(True)
        if scanner.peek() == "}":
            scanner.advance()
            return
        if scanner.peek() == ",":
            scanner.advance()
            continue
        _key_value(scanner, path, lines)


def _array(scanner: _Scanner) -> None:
    scanner.advance()  # [
    while scanner.pos < len(scanner.text):
        scanner.skip_blank(True)
        char = scanner.peek()
        if char == "]":
            scanner.advance()
            return
        if char == ",":
            scanner.advance()
        elif char in "\"'":
            scanner.string()
        elif char == "[":
            _array(scanner)
        elif char == "{":
            _inline_table(scanner, (), {})
        else:
            scanner.advance()


def _label(path: tuple[str, ...]) -> str:
    """A key path as config errors name it: `trust.keys.name`, or quoted when not bare."""
    return ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part, ensure_ascii=False)
                    for part in path)


def add_line_numbers(errors: list[str], text: str) -> list[str]:
    """Each `key: message` error with the key's line: `key (line N): message`."""
    try:
        located = {_label(path): line for path, line in key_lines(text).items()}
    except (IndexError, ValueError):  # the scanner met something it does not know: no lines
        return list(errors)
    return [_with_line(error, located) for error in errors]


def _with_line(error: str, located: dict[str, int]) -> str:
    for label in sorted(located, key=len, reverse=True):
        for end in (": ", "["):
            if error.startswith(label + end):
                return _insert(error, label, located[label])
    key = ERROR_KEY.match(error)
    if key:  # not written: point at its table's header, where it would go
        table = key["key"].split(".")[0]
        if table in located and table != key["key"]:
            return _insert(error, key.group()[:-2], located[table])
    return error


def _insert(error: str, key: str, line: int) -> str:
    """Put `(line N)` after the key and any `[index]` that follows it."""
    rest = error[len(key):]
    index = re.match(r"(\[\d+\])*", rest).group()
    return f"{key}{index} (line {line}){rest[len(index):]}"


def errors_with_lines(errors: list[str], path) -> list[str]:
    """add_line_numbers() for the TOML file at `path`; the errors as they are if it cannot be read."""
    try:
        text = open(path, "rb").read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return list(errors)
    return add_line_numbers(errors, text)
