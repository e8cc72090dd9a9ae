#!/usr/bin/env python3
"""Refresh loaxa's translation catalogs, with Python only (no gettext tools needed).

    python3 scripts/update-translations.py            # extract, merge, compile
    python3 scripts/update-translations.py --check    # exit 1 if anything is out of date

1. Extracts every `_("...")` and `N_("...")` string of the shipped packages into
   loaxa/locale/loaxa.pot (read with `ast`, so only real calls count; an f-string inside
   `_()` cannot be extracted and is reported). References name the file, not the line,
   so editing a file elsewhere leaves the catalogs as they are.
2. Merges it into loaxa/locale/<lang>/LC_MESSAGES/loaxa.po for each language: existing
   translations are kept; a string that is new but close to one that went away gets
   the old translation marked fuzzy (to be checked; not used until the mark is removed);
   translations of strings that went away are kept at the end as obsolete (#~).
3. Compiles each .po into loaxa.mo (fuzzy and empty translations left out).

The output depends only on the sources and the .po files (no dates), so running it
twice changes nothing: safe to re-run at any time, and in CI with --check.
"""

import argparse
import ast
import difflib
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("loaxa", "device", "scheduler", "audio", "provisioning", "hw", "fleet")
LOCALE = ROOT / "loaxa" / "locale"
DOMAIN = "loaxa"
LANGUAGES = {"vi": "Vietnamese", "en": "English"}
PLURAL_FORMS = {"vi": "nplurals=1; plural=0;", "en": "nplurals=2; plural=(n != 1);"}
MARKERS = ("_", "N_")
FUZZY_CUTOFF = 0.8


@dataclass
class Entry:
    msgid: str
    msgstr: str = ""
    refs: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)   # translator comments, kept as written
    obsolete: bool = False

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags


# ---------------------------------------------------------------- extraction

def source_files(root: Path = ROOT) -> list[Path]:
    files = []
    for package in PACKAGES:
        folder = root / package
        if folder.is_dir():
            files += [path for path in folder.rglob("*.py") if "__pycache__" not in path.parts]
    return sorted(files)


def _marker(node: ast.Call) -> bool:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name in MARKERS


def _built_in_place(arg: ast.expr) -> bool:
    """An f-string, "a" + b, "a %s" % b or "a {}".format(b) inside _(): untranslatable."""
    if isinstance(arg, ast.JoinedStr):
        return True
    if isinstance(arg, ast.BinOp):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and not isinstance(getattr(side, "value", ""), int)
                   for side in (arg.left, arg.right))
    return (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format"
            and isinstance(arg.func.value, ast.Constant))


def extract(files, root: Path = ROOT, warn=print) -> list[Entry]:
    """Every marked string, in order of first appearance (file by file, line by line)."""
    found: dict[str, Entry] = {}
    for path in files:
        relative = path.relative_to(root).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        except (SyntaxError, UnicodeDecodeError) as exc:
            warn(f"update-translations: skipping {relative}: {exc}")
            continue
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _marker(node)]
        for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
            if not node.args:
                continue
            arg = node.args[0]
            if _built_in_place(arg):  # a variable or a lookup is N_()'s way: fine
                warn(f"update-translations: {relative}:{node.lineno}: not a plain string inside _(); "
                     "not extracted (use _(\"... {name} ...\").format(name=...))")
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                continue
            if not arg.value:
                continue
            entry = found.setdefault(arg.value, Entry(arg.value))
            if relative not in entry.refs:  # the file, not the line: edits elsewhere change nothing
                entry.refs.append(relative)
    for entry in found.values():
        if "{" in entry.msgid:
            entry.flags = ["python-brace-format"]
    return list(found.values())


# ---------------------------------------------------------------- PO files

def _quote(text: str) -> str:
    return '"' + (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                  .replace("\t", "\\t").replace("\r", "\\r")) + '"'


def _po_string(keyword: str, text: str, prefix: str = "") -> list[str]:
    pieces = text.split("\n")
    if len(pieces) == 1:
        return [f"{prefix}{keyword} {_quote(text)}"]
    chunks = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    return [f'{prefix}{keyword} ""'] + [f"{prefix}{_quote(chunk)}" for chunk in chunks]


def _unquote(text: str) -> str:
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"')):
        raise ValueError(f"expected a quoted string, got {text!r}")
    body, out, index = text[1:-1], [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            out.append(escapes.get(body[index + 1], body[index + 1]))
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse_po(text: str) -> tuple[str, list[Entry]]:
    """(header msgstr, entries) of a PO file as this script writes it (and as most tools do)."""
    header, entries = "", []
    for block in text.split("\n\n"):
        entry = _parse_block([line for line in block.splitlines() if line.strip()])
        if entry is None:
            continue
        if entry.msgid == "" and not entry.obsolete:
            header = entry.msgstr
        else:
            entries.append(entry)
    return header, entries


def _parse_block(lines: list[str]) -> Entry | None:
    entry, current, parts = Entry(""), None, {"msgid": [], "msgstr": []}
    seen = False
    for line in lines:
        obsolete = line.startswith("#~")
        if obsolete:
            entry.obsolete = True
            line = line[2:].strip()
        if line.startswith("#,"):
            entry.flags += [flag.strip() for flag in line[2:].split(",") if flag.strip()]
        elif line.startswith("#:"):
            entry.refs += line[2:].split()
        elif line.startswith("# ") or line == "#":
            entry.comments.append(line)
        elif line.startswith("#"):
            continue  # extracted comments and the like: regenerated, not kept
        elif line.startswith(("msgid ", "msgstr ")):
            current, _sep, rest = line.partition(" ")
            parts[current].append(_unquote(rest))
            seen = True
        elif line.startswith('"') and current:
            parts[current].append(_unquote(line))
    if not seen:
        return None
    entry.msgid, entry.msgstr = "".join(parts["msgid"]), "".join(parts["msgstr"])
    return entry


def header_text(language: str, existing: str = "") -> str:
    fields = {"Project-Id-Version": "loaxa", "Language": language,
              "MIME-Version": "1.0", "Content-Type": "text/plain; charset=UTF-8",
              "Content-Transfer-Encoding": "8bit", "Plural-Forms": PLURAL_FORMS.get(language, "")}
    for line in existing.splitlines():  # keep what a translator added (Last-Translator, ...)
        key, sep, value = line.partition(":")
        if sep and key not in ("Content-Type", "Content-Transfer-Encoding", "MIME-Version"):
            fields[key] = value.strip()
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value)


def render_po(header: str, entries: list[Entry], title: str) -> str:
    blocks = [f"# {title}\n# Updated by scripts/update-translations.py; edit the msgstr lines only.\n"
              + "\n".join(_po_string("msgid", "") + _po_string("msgstr", header))]
    for entry in entries:
        prefix = "#~ " if entry.obsolete else ""
        lines = list(entry.comments)
        if entry.refs and not entry.obsolete:
            lines.append("#: " + " ".join(entry.refs))
        if entry.flags:
            lines.append("#, " + ", ".join(entry.flags))
        lines += _po_string("msgid", entry.msgid, prefix) + _po_string("msgstr", entry.msgstr, prefix)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def merge(template: list[Entry], old: list[Entry]) -> list[Entry]:
    """The template's entries with the old translations; leftovers become obsolete."""
    by_id = {entry.msgid: entry for entry in old}
    used = {entry.msgid for entry in template}
    gone = {entry.msgid: entry for entry in old if entry.msgstr and entry.msgid not in used}
    merged = []
    for new in template:
        entry = Entry(new.msgid, refs=list(new.refs), flags=list(new.flags))
        previous = by_id.get(new.msgid)
        if previous is not None:
            entry.msgstr, entry.comments = previous.msgstr, previous.comments
            if previous.fuzzy and previous.msgstr:
                entry.flags = ["fuzzy"] + entry.flags
        else:
            close = difflib.get_close_matches(new.msgid, list(gone), n=1, cutoff=FUZZY_CUTOFF)
            if close:
                entry.msgstr = gone[close[0]].msgstr
                entry.flags = ["fuzzy"] + entry.flags
        merged.append(entry)
    leftovers = sorted(gone.values(), key=lambda e: e.msgid)
    merged += [Entry(e.msgid, e.msgstr, comments=e.comments, obsolete=True) for e in leftovers]
    return merged


# ---------------------------------------------------------------- MO files

def compile_mo(header: str, entries: list[Entry]) -> bytes:
    """GNU gettext's binary catalog: what Python's gettext module reads."""
    pairs = {"": header}
    pairs.update({e.msgid: e.msgstr for e in entries if e.msgstr and not e.fuzzy and not e.obsolete})
    keys = sorted(pairs, key=lambda k: k.encode("utf-8"))
    ids = [k.encode("utf-8") for k in keys]
    strs = [pairs[k].encode("utf-8") for k in keys]
    count = len(keys)
    ids_start = 7 * 4 + count * 16
    offsets, data = [], b""
    for blob in ids:
        offsets.append((len(blob), ids_start + len(data)))
        data += blob + b"\0"
    for blob in strs:
        offsets.append((len(blob), ids_start + len(data)))
        data += blob + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, count, 7 * 4, 7 * 4 + count * 8, 0, 0)
    table = b"".join(struct.pack("<2I", length, offset) for length, offset in offsets)
    return head + table + data


# ---------------------------------------------------------------- the whole run

POT_HEADER = ("Project-Id-Version: loaxa\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
              "Content-Transfer-Encoding: 8bit\n")


def outputs(root: Path = ROOT, warn=print, keep_obsolete: bool = True) -> dict[Path, bytes]:
    """Every file this script writes, with its new content."""
    locale = root / "loaxa" / "locale"
    template = extract(source_files(root), root, warn)
    files = {locale / f"{DOMAIN}.pot": render_po(
        POT_HEADER, template, "Strings of loaxa for translation (generated: do not edit)").encode("utf-8")}
    languages = set(LANGUAGES) | {p.parent.parent.name for p in locale.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    for language in sorted(languages):
        po_path = locale / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        old_header, old = parse_po(po_path.read_text(encoding="utf-8")) if po_path.exists() else ("", [])
        header = header_text(language, old_header)
        merged = [e for e in merge(template, old) if keep_obsolete or not e.obsolete]
        title = f"{LANGUAGES.get(language, language)} translation of loaxa"
        files[po_path] = render_po(header, merged, title).encode("utf-8")
        files[po_path.with_suffix(".mo")] = compile_mo(header, merged)
    return files


def stats(files: dict[Path, bytes]) -> list[str]:
    lines = []
    for path, content in files.items():
        if path.suffix == ".po":
            _header, entries = parse_po(content.decode("utf-8"))
            live = [e for e in entries if not e.obsolete]
            done = sum(1 for e in live if e.msgstr and not e.fuzzy)
            fuzzy = sum(1 for e in live if e.fuzzy)
            lines.append(f"{path.parent.parent.name}: {done} translated, {fuzzy} fuzzy, "
                         f"{len(live) - done - fuzzy} untranslated of {len(live)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument("--drop-obsolete", action="store_true",
                        help="forget the translations of strings no longer in the sources")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warn = lambda message: print(message, file=sys.stderr)  # noqa: E731
    files = outputs(args.root.resolve(), warn, keep_obsolete=not args.drop_obsolete)
    stale = [path for path, content in files.items() if not path.exists() or path.read_bytes() != content]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(args.root.resolve())}")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
    for line in stats(files):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
