"""Real text for the parity tests: the gettext catalogs every Debian machine ships.

/usr/share/locale/<lang>/LC_MESSAGES/*.mo hold the English messages of system programs and
their translations, written by people who never heard of this project: ~40k English/Japanese
pairs, and catalogs in ~190 other languages.

Every function that reads the catalogs returns a non-empty list, or stops the test: a test fed no text would
compare [] with [] and pass without checking anything. Where /usr/share/locale holds no
catalog at all (a minimal container), the test is skipped with that reason; where it holds
catalogs but none for the language asked for, the test fails.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

import pytest

LOCALE = Path("/usr/share/locale")


def _nonempty(texts: list, what: str) -> list:
    if texts:
        return texts
    if not any(LOCALE.glob("*/LC_MESSAGES/*.mo")):
        pytest.skip(f"no gettext catalogs in {LOCALE} to take {what} from (a minimal system; "
                    "on Debian most packages install theirs)")
    raise AssertionError(f"no {what} in the gettext catalogs of {LOCALE}")


@lru_cache(maxsize=None)
def pairs(lang: str) -> tuple[tuple[str, str], ...]:
    """(English message, translation) for every message of every catalog of `lang`, in a
    stable order (catalog file name, then message), duplicates removed."""
    seen = set()
    out = []
    for mo in sorted((LOCALE / lang / "LC_MESSAGES").glob("*.mo")):
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError, IndexError):
            continue  # a few catalogs declare charsets Python cannot read, or a malformed
            # Plural-Forms header (gettext raises IndexError on one in Mongolian); skip them
        for msgid, msgstr in catalog.items():
            if isinstance(msgid, tuple):  # plural forms: (msgid, n)
                msgid = msgid[0]
            if not msgid or (msgid, msgstr) in seen:
                continue  # "" is the catalog header
            seen.add((msgid, msgstr))
            out.append((msgid, msgstr))
    return tuple(_nonempty(out, f"messages in {LOCALE / lang / 'LC_MESSAGES'}"))


def english(lang: str = "ja") -> list[str]:
    """Distinct English messages (the source side of `lang`'s catalogs)."""
    return _nonempty(list(dict.fromkeys(en for en, _ in pairs(lang))), f"English messages ({lang})")


def translations(lang: str) -> list[str]:
    """Distinct translated messages of `lang`, non-empty."""
    return _nonempty(list(dict.fromkeys(tr for _, tr in pairs(lang) if tr.strip())),
                     f"{lang} translations")


def lines(texts, limit: int | None = None) -> list[str]:
    """Split messages into their non-blank lines (messages are often multi-line help texts)."""
    out = []
    for t in texts:
        out.extend(line for line in t.splitlines() if line.strip())
    out = list(dict.fromkeys(out))
    return _nonempty(out[:limit] if limit else out, "non-blank lines")


def spread(texts: list[str], n: int) -> list[str]:
    """n texts taken evenly across the list, so every catalog is represented."""
    if len(texts) <= n:
        return list(texts)
    step = len(texts) / n
    return [texts[int(i * step)] for i in range(n)]


@lru_cache(maxsize=None)
def every_language() -> tuple[str, ...]:
    """The English messages and the translations of every language that has catalogs here
    (~190 languages, over a million distinct messages; reading them takes seconds), for the
    tests of Unicode handling that should see every script. Languages whose catalogs hold no
    readable message are left out."""
    langs = sorted(p.parent.name for p in LOCALE.glob("*/LC_MESSAGES") if any(p.glob("*.mo")))
    texts = []
    for lang in langs:
        try:
            texts.extend(m for pair in pairs(lang) for m in pair if m.strip())
        except AssertionError:  # catalogs, but no message in them
            continue
    return tuple(_nonempty(list(dict.fromkeys(texts)), "messages"))
