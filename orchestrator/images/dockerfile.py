"""What a Dockerfile makes the engine's builder fetch (images, ADD sources), read the way that builder reads them.

The builder is the engine's classic one (``/build`` without BuildKit), whose parser this follows: lines
split on ``\\n`` only, a trailing ``\\r`` dropped; comment lines skipped, also inside a continuation;
empty continuation lines skipped; the line-continuation character is the ``escape`` parser directive's
(backslash by default). Where a text could be read two ways, it is read both ways and every image either
reading finds is returned: the directive's effect (it only counts at the top, and engine versions differ
on what ends that top), and a line ending in several ``\\r`` (older engines drop one, so a backslash
before the other continues nothing; newer ones drop them all). Flags (``--from=``) are tokenised byte by
byte as the builder does it, quotes and backslashes included.

Images come from ``FROM <image>`` (not an earlier stage's name, not ``scratch``), ``COPY|ADD --from=``
(not an earlier stage's name or index), ``RUN --mount=...,from=...`` (BuildKit syntax, which the classic
builder rejects; read anyway), and the same flags in ``ONBUILD`` triggers (they run in a later build that
starts FROM this image, where no stage of this file exists, so every value there counts as an image).

ADD sources (``add_sources``) are the words before the destination, of ``ADD`` and ``ONBUILD ADD``, after
the flags: a JSON array when the arguments parse as one (the builder's JSON reader takes the first value
and ignores what follows), else split on ASCII blanks. They are returned as written; the builder then
expands each one (variables, quotes, the escape character) before it asks whether it is a URL.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["AddSource", "ImageUse", "add_sources", "image_uses"]

_WS = re.compile(r"[\t\v\f\r ]+")
_ESCAPE_DIRECTIVE = re.compile(r"#\s*escape\s*=", re.IGNORECASE)  # the builder's \s is [\t\n\f\r ]: \s covers it
_INDEX = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class ImageUse:
    where: str  # the instruction, e.g. "FROM" or "COPY --from"
    ref: str


@dataclass(frozen=True)
class AddSource:
    where: str  # "ADD" or "ONBUILD ADD"
    source: str


def image_uses(text: str) -> list[ImageUse]:
    """Every image reference in the Dockerfile ``text`` (decoded with ``surrogateescape`` to keep its bytes)."""
    uses: list[ImageUse] = []
    for lines in _readings(text):
        for use in _uses(lines):
            if use not in uses:
                uses.append(use)
    return uses


def add_sources(text: str) -> list[AddSource]:
    """Every source of an ``ADD`` (``ONBUILD ADD`` too) in the Dockerfile ``text``, as written."""
    found: list[AddSource] = []
    for lines in _readings(text):
        for line in lines:
            keyword, rest = _split(line)
            _, args = _builder_flags(rest)
            where = "ADD"
            if keyword == "onbuild":
                keyword, rest = _split(args)
                _, args = _builder_flags(rest)
                where = "ONBUILD ADD"
            if keyword != "add":
                continue
            words = _arguments(args)
            for source in words[:-1] if len(words) > 1 else words:
                if AddSource(where, source) not in found:
                    found.append(AddSource(where, source))
    return found


def _readings(text: str) -> list[list[str]]:
    """The instructions of ``text`` with each escape character, and each reading of line ends, it may be read with."""
    escapes = ["\\"]
    # The builder drops a BOM before it looks for directives: '\ufeff# escape=`' sets the escape too.
    if any(_ESCAPE_DIRECTIVE.match(_lstrip(line)) for line in text.removeprefix("\ufeff").split("\n")):
        escapes.append("`")
    crs = [False, True] if "\r\r" in text else [False]
    return [_instructions(text, escape, every_cr) for escape in escapes for every_cr in crs]


def _arguments(args: str) -> list[str]:
    args = _strip(args)
    if args.startswith("["):
        try:
            value, _ = json.JSONDecoder().raw_decode(args)
        except ValueError:
            value = None
        # Python also reads NaN and Infinity, which the builder's reader refuses: those fall through too.
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return [w for w in _WS.split(args) if w]


def _is_space(c: str) -> bool:
    return c.isspace() and c not in "\x1c\x1d\x1e\x1f"  # Go's unicode.IsSpace


def _lstrip(s: str) -> str:
    i = 0
    while i < len(s) and _is_space(s[i]):
        i += 1
    return s[i:]


def _strip(s: str) -> str:
    s = _lstrip(s)
    j = len(s)
    while j > 0 and _is_space(s[j - 1]):
        j -= 1
    return s[:j]


def _instructions(text: str, escape: str, every_cr: bool) -> list[str]:
    def end(line: str) -> str:
        return line.rstrip("\r") if every_cr else line.removesuffix("\r")

    continuation = re.compile(re.escape(escape) + r"[ \t]*\Z")
    lines = text.split("\n")
    lines[0] = lines[0].removeprefix("\ufeff")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = _lstrip(end(lines[i]))
        i += 1
        if line.startswith("#"):
            continue
        line, more = continuation.sub("", line), continuation.search(line) is not None
        if not more and line == "":
            continue
        while more and i < len(lines):
            nxt = end(lines[i])
            i += 1
            if _lstrip(nxt).startswith("#") or _lstrip(nxt) == "":
                continue
            more = continuation.search(nxt) is not None
            line += continuation.sub("", nxt)
        out.append(line)
    return out


def _split(line: str) -> tuple[str, str]:
    words = _WS.split(_strip(line), maxsplit=1)
    return words[0].lower(), (words[1] if len(words) > 1 else "")


def _builder_flags(rest: str) -> tuple[list[str], str]:
    """The leading ``--flag`` words of an instruction's arguments and what follows, tokenised byte by byte
    with quotes and backslash escapes, as the builder does (which also turns each byte of a flag into the
    character of that code point: the words are returned that way too)."""
    line = rest.encode("utf-8", "surrogateescape").decode("latin-1")
    words: list[str] = []
    word, quote, blank_ok, phase = "", "", False, "spaces"
    pos = 0
    while pos <= len(line):
        ch = line[pos] if pos < len(line) else ""
        if phase == "spaces":
            if pos == len(line):
                break
            if _is_space(ch):
                pos += 1
                continue
            if not line.startswith("--", pos):
                return words, _decoded(line[pos:])
            phase = "word"
        if pos == len(line):
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if _is_space(ch):
                phase = "spaces"
                if word == "--":
                    return words, _decoded(line[pos:])
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
            elif ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            elif ch == "\\":
                if pos + 1 < len(line):
                    pos += 1
                    word += line[pos]
            else:
                word += ch
        elif ch == quote:
            phase = "word"
        elif ch == "\\":
            if pos + 1 == len(line):
                phase = "word"
            else:
                pos += 1
                word += line[pos]
        else:
            word += ch
        pos += 1
    return words, ""


def _decoded(s: str) -> str:
    return s.encode("latin-1").decode("utf-8", "surrogateescape")


def _flag_values(flags: list[str], name: str) -> list[str]:
    return [f.split("=", 1)[1] for f in flags if f.lower().startswith(f"--{name}=")]


def _mount_froms(flags: list[str]) -> list[str]:
    froms = []
    for value in _flag_values(flags, "mount"):
        for field in next(csv.reader([value]), []):
            key, sep, val = field.partition("=")
            if sep and key.strip().lower() == "from":
                froms.append(val)
    return froms


def _from_flags(keyword: str, flags: list[str], stages: list[str | None] | None, where: str) -> Iterator[ImageUse]:
    values = _flag_values(flags, "from") if keyword in ("copy", "add") else []
    values += _mount_froms(flags) if keyword == "run" else []
    for value in values:
        if not value:
            continue
        if stages is not None:
            earlier = stages[:-1]  # the stage being built is not one it can copy from
            if value.lower() in earlier:
                continue
            if _INDEX.fullmatch(value) and 0 <= int(value) < len(earlier):
                continue
        yield ImageUse(f"{where}{keyword.upper()} --{'from' if keyword != 'run' else 'mount from'}", value)


def _uses(lines: list[str]) -> Iterator[ImageUse]:
    stages: list[str | None] = []
    for line in lines:
        keyword, rest = _split(line)
        flags, args = _builder_flags(rest)
        if keyword == "onbuild":
            inner, inner_rest = _split(args)
            inner_flags, _ = _builder_flags(inner_rest)
            yield from _from_flags(inner, inner_flags, None, "ONBUILD ")
        elif keyword == "from":
            words = [w for w in _WS.split(_strip(args)) if w]
            if not words:
                continue
            if words[0] not in stages and words[0] != "scratch":
                yield ImageUse("FROM", words[0])
            stages.append(words[2].lower() if len(words) == 3 and words[1].lower() == "as" else None)
        elif keyword in ("copy", "add", "run"):
            yield from _from_flags(keyword, flags, stages, "")
