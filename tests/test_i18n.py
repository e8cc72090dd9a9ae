"""Translations: the language chosen, the catalogs, config errors in Vietnamese, the update script."""

import gettext
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaxa import i18n
from loaxa.errors import ConfigError
from provisioning import SCHEMA, parse_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "update-translations.py"
LOCALE = ROOT / "loaxa" / "locale"
# The strings of provisioning (issue 6): every one must have its Vietnamese.
MINE = ("provisioning/", "loaxa/commands/provision.py", "loaxa/i18n.py")


def load_script():
    spec = importlib.util.spec_from_file_location("update_translations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def vietnamese():
    i18n.set_language("vi")
    yield
    i18n.set_language(None)


@pytest.mark.parametrize("environ, language", [
    ({}, "vi"),
    ({"LANG": "C.UTF-8"}, "vi"),
    ({"LANG": "POSIX"}, "vi"),
    ({"LANG": "en_GB.UTF-8"}, "en"),
    ({"LANG": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "fr_FR.UTF-8"}, "vi"),
    ({"LC_ALL": "en_US.UTF-8", "LANG": "vi_VN.UTF-8"}, "en"),
    ({"LOAXA_LANG": "en", "LANG": "vi_VN.UTF-8"}, "en"),
    ({"LOAXA_LANG": "xx", "LANG": "en_GB.UTF-8"}, "en"),
])
def test_language_from_the_environment(environ, language):
    assert i18n.detect_language(environ) == language


def test_catalog_translates_and_falls_back(vietnamese):
    assert i18n._("Next steps:") == "Các bước tiếp theo:"
    assert i18n._("a string nobody translated") == "a string nobody translated"
    i18n.set_language("en")
    assert i18n._("Next steps:") == "Next steps:"


def test_a_language_for_one_piece_of_work_stays_on_its_thread(vietnamese):
    """How the daemon answers a control request in the asker's language (issue 11, item 13)."""
    import threading
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(5)
        seen["other"] = (i18n._("Next steps:"), i18n.current_language())
        release.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with i18n.language("en") as code:
        inside.set()
        release.wait(5)
        seen["inside"] = (i18n._("Next steps:"), code, i18n.current_language())
    worker.join(5)
    assert seen == {"inside": ("Next steps:", "en", "en"), "other": ("Các bước tiếp theo:", "vi")}
    assert i18n._("Next steps:") == "Các bước tiếp theo:"
    with i18n.language("klingon"), i18n.language(None):  # unknown or none: the process's own
        assert i18n._("Next steps:") == "Các bước tiếp theo:"


# ---------------------------------------------------------------- the catalogs in the tree

def catalog(language: str):
    _header, entries = load_script().parse_po((LOCALE / language / "LC_MESSAGES" / "loaxa.po").read_text())
    return entries


def test_mo_files_are_compiled_from_the_po_files():
    script = load_script()
    for language in ("vi", "en"):
        po = LOCALE / language / "LC_MESSAGES" / "loaxa.po"
        header, entries = script.parse_po(po.read_text())
        assert po.with_suffix(".mo").read_bytes() == script.compile_mo(header, entries), language


def test_every_provisioning_string_has_its_vietnamese():
    entries = [e for e in catalog("vi") if not e.obsolete and any(ref.startswith(MINE) for ref in e.refs)]
    assert len(entries) > 150
    missing = [e.msgid for e in entries if not e.msgstr or e.fuzzy]
    assert missing == []


def test_translations_keep_their_placeholders():
    for entry in catalog("vi"):
        if entry.msgstr:
            fields = sorted(re.findall(r"\{[^{}]*\}", entry.msgid.replace("{{", "").replace("}}", "")))
            assert sorted(re.findall(r"\{[^{}]*\}", entry.msgstr.replace("{{", "").replace("}}", ""))) == fields, \
                entry.msgid


def test_vietnamese_has_its_diacritics():
    text = " ".join(e.msgstr for e in catalog("vi"))
    for word in ("thiết bị", "mật khẩu", "cấu hình", "không", "máy chủ"):
        assert word in text


# ---------------------------------------------------------------- config errors in Vietnamese

WRONG_VALUES = ({"x": 1}, ["x"], True, "zzz not valid", -99999, 1.5e300, "", "/", "2026-01-01")


def config_errors() -> list[str]:
    """Every kind of message the schema gives: each key with each kind of wrong value."""
    errors = []
    sample = {"unit": {"id": "abc", "state_dir": "/nonexistent"}, "broker": {"url": "mqtt://h"},
              "hardware": {"mode": "mock"}}
    for table, keys in SCHEMA.items():
        for key in keys:
            for value in WRONG_VALUES:
                data = {name: dict(values) for name, values in sample.items()}
                data.setdefault(table, {})[key] = value
                try:
                    parse_config(data, base_dir=Path("/"), environ={})
                except ConfigError as exc:
                    errors += exc.errors
    for data in ({"brokr": {}}, {"unit": {"idd": 1}}, {"gpio": {"mute": 17}}, {"trust": {"keys": {"k": "abc"}}}):
        try:
            parse_config({**sample, **{t: {**sample.get(t, {}), **v} for t, v in data.items()}},
                         base_dir=Path("/"), environ={})
        except ConfigError as exc:
            errors += exc.errors
    return sorted(set(errors))


def test_every_config_error_reads_in_vietnamese(vietnamese):
    """A new message in provisioning/config.py needs its template in provisioning/messages.py."""
    errors = config_errors()
    assert len(errors) > 40
    untranslated = [error for error in errors if i18n.translate_problem(error) == error]
    assert untranslated == []


def test_translated_problem_keeps_key_line_and_values(vietnamese):
    problem = "hardware.mode (line 12): must be one of 'pi', 'mock', got 'mok' (did you mean 'mock'?)"
    assert i18n.translate_problem(problem) == (
        "hardware.mode (dòng 12): phải là một trong 'pi', 'mock', nhưng là 'mok' (có phải ý bạn là 'mock'?)")
    assert i18n.translate_problem("unit.id: required") == "unit.id: bắt buộc phải có"
    assert i18n.translate_problem("gpio.zones[1]: expected an integer, got true (a boolean)") == \
        "gpio.zones[1]: cần một số nguyên, nhưng nhận được true (giá trị đúng/sai)"
    assert i18n.translate_problem("something else entirely") == "something else entirely"


def test_template_with_a_broken_translation_falls_back_to_english(vietnamese):
    template = i18n.Template("got {value} here")
    i18n._translation._catalog["got {value} here"] = "nhận {gia_tri}"   # a translator's typo
    try:
        assert template.translate("got 3 here") == "got 3 here"
    finally:
        del i18n._translation._catalog["got {value} here"]


# ---------------------------------------------------------------- the update script

def make_tree(tmp_path: Path) -> Path:
    """A copy of the parts of the tree the script reads and writes."""
    root = tmp_path / "tree"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts")
    shutil.copytree(LOCALE, root / "loaxa" / "locale")
    (root / "provisioning").mkdir()
    (root / "provisioning" / "sample.py").write_text(
        'from loaxa.i18n import _, N_\n'
        'LABELS = [N_("Unit id")]\n'
        'def f(unit):\n'
        '    print(_("Unit {unit} is provisioned. Files written:").format(unit=unit))\n'
        '    print(_("Folder for the config files"))\n'
        '    print(_("A brand new string\\nwith two lines"))\n'
        '    print(_(f"an f-string {unit}"))\n')
    return root


def run_script(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "update-translations.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_script_extracts_merges_compiles_and_is_idempotent(tmp_path):
    root = make_tree(tmp_path)
    first = run_script(root)
    assert first.returncode == 0, first.stderr
    assert "sample.py:7: not a plain string inside _()" in first.stderr
    pot = (root / "loaxa/locale/loaxa.pot").read_text()
    assert '#: provisioning/sample.py\n' in pot and 'msgid "A brand new string\\n"' not in pot
    assert 'msgid ""\n"A brand new string\\n"\n"with two lines"' in pot
    assert "an f-string" not in pot
    po = (root / "loaxa/locale/vi/LC_MESSAGES/loaxa.po").read_text()
    assert 'msgstr "Thư mục ghi các tệp cấu hình"' in po        # kept
    assert '#~ msgid "Next steps:"' in po                        # gone from the sources: obsolete
    assert "vi: 3 translated, 0 fuzzy, 1 untranslated of 4" in first.stdout
    before = {p: p.read_bytes() for p in (root / "loaxa/locale").rglob("*") if p.is_file()}
    again = run_script(root, "--check")
    assert again.returncode == 0, again.stdout
    assert run_script(root).returncode == 0
    assert before == {p: p.read_bytes() for p in (root / "loaxa/locale").rglob("*") if p.is_file()}
    mo = root / "loaxa/locale/vi/LC_MESSAGES/loaxa.mo"
    with open(mo, "rb") as handle:
        translation = gettext.GNUTranslations(handle)
    assert translation.gettext("Unit id") == "Mã thiết bị"
    assert translation.gettext("Folder for the config files") == "Thư mục ghi các tệp cấu hình"
    assert translation.gettext("A brand new string\nwith two lines") == "A brand new string\nwith two lines"


def test_reworded_string_gets_the_old_translation_marked_fuzzy(tmp_path):
    root = make_tree(tmp_path)
    assert run_script(root).returncode == 0
    sample = root / "provisioning" / "sample.py"
    sample.write_text(sample.read_text().replace("Folder for the config files", "Folder for the config file"))
    assert run_script(root, "--check").returncode == 1
    assert run_script(root).returncode == 0
    po = (root / "loaxa/locale/vi/LC_MESSAGES/loaxa.po").read_text()
    block = po[po.index('msgid "Folder for the config file"'):].split("\n\n")[0]
    assert 'msgstr "Thư mục ghi các tệp cấu hình"' in block
    assert "#, fuzzy" in po[:po.index('msgid "Folder for the config file"')].rsplit("\n\n", 1)[-1]
    with open(root / "loaxa/locale/vi/LC_MESSAGES/loaxa.mo", "rb") as handle:   # fuzzy: not used yet
        assert gettext.GNUTranslations(handle).gettext("Folder for the config file") == "Folder for the config file"


def test_script_check_passes_on_the_tree_as_committed():
    """The catalogs match the sources; if this fails, run scripts/update-translations.py."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
