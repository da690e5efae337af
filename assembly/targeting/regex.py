"""JavaScript regular expressions on Python's ``re``: a translator for ``$regex`` and ``$regexi``.

``compile_regex(source, insensitive)`` rewrites a JavaScript pattern (no ``u`` flag, Annex B
syntax) into a Python pattern with the same meaning and compiles it, or returns None when
JavaScript would reject the pattern (``(?i)``, possessive ``a++``...); ``utf16_view(text)`` gives
the text as JavaScript sees it, so matching runs on UTF-16 code units.

What the translation keeps from JavaScript: ``\\d \\w \\b`` are ASCII, ``\\s`` is JavaScript's
whitespace, ``.`` excludes line terminators, ``$`` is end of input, ``[]`` never matches and
``[^]`` matches anything, ``(?<name>...)``, Annex B escapes (``\\cX``, legacy octal, identity
escapes), and a backreference to a group that has not matched matches empty. Known differences:
with the ``i`` flag Python also folds a few special letters (long s, dotless i, the Kelvin sign,
sharp s), and captures are not reset on each repetition of a group.

The translator was measured against ``regress`` (a maintained ECMAScript engine) on GrowthBook's
conformance cases and spec-derived edge cases; it is the more correct of the two
(docs/architecture.md).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Final


class _NotJavaScript(Exception):
    """The pattern is not a valid JavaScript regular expression."""


def _class_body(ranges: Iterable[tuple[int, int]]) -> str:
    """Inclusive code point ranges as the inside of a Python ``[...]`` class."""
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The code points outside the sorted, disjoint inclusive ``ranges``."""
    gaps, low = [], 0
    for start, end in ranges:
        if start > low:
            gaps.append((low, start - 1))
        low = end + 1
    return [*gaps, (low, sys.maxunicode)]


_DIGIT_RANGES: Final = [(0x30, 0x39)]
_WORD_RANGES: Final = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE_RANGES: Final = sorted(
    [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)]
    + [(c, c) for c in (0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF)]
)
# Inside a class, JavaScript's (ASCII) shorthands; outside, each as a class of its own.
_CLASS_ESCAPES: Final = {
    **{k: _class_body(r) for k, r in (("d", _DIGIT_RANGES), ("w", _WORD_RANGES))},
    **{k: _class_body(_complement(r)) for k, r in (("D", _DIGIT_RANGES), ("W", _WORD_RANGES))},
    "s": _class_body(_SPACE_RANGES),
    "S": _class_body(_complement(_SPACE_RANGES)),
    "f": r"\f",
    "n": r"\n",
    "r": r"\r",
    "t": r"\t",
    "v": r"\x0b",
    "b": r"\x08",  # backspace inside a class
}
_SHORTHANDS: Final = frozenset("dDwWsS")
# JavaScript's shorthand classes are closed under its (non-unicode) case folding, so they match
# case-sensitively even with the `i` flag; Python's folding would add e.g. the Kelvin sign to \w.
_WORD_CLASS: Final = f"[{_CLASS_ESCAPES['w']}]"
_ESCAPES: Final = {
    **{k: f"(?-i:[{v}])" if k in _SHORTHANDS else v for k, v in _CLASS_ESCAPES.items()},
    "b": f"(?-i:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))",
    "B": f"(?-i:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))",
}
_ASSERTION_ESCAPES: Final = (_ESCAPES["b"], _ESCAPES["B"])
_ANY_BUT_LINE_END: Final = r"[^\n\r\u2028\u2029]"
_QUANTIFIER_BRACES: Final = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_HEX2: Final = re.compile(r"[0-9a-fA-F]{2}")
_HEX4: Final = re.compile(r"[0-9a-fA-F]{4}")
_DECIMALS: Final = re.compile(r"[1-9][0-9]*")
_LEGACY_OCTAL: Final = re.compile(r"[0-3][0-7]{0,2}|[4-7][0-7]?")
_GROUP_NAME: Final = re.compile(r"<([A-Za-z_$][A-Za-z0-9_$]*)>")
_CAPTURING_GROUP: Final = re.compile(r"\\.|\[(?:\\.|[^\]\\])*\]|\((?!\?)|\(\?<(?![=!])", re.S)
_NAMED_GROUP: Final = re.compile(r"\(\?<[A-Za-z_$]")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_SIMPLE_TOKENS: Final = {".": _ANY_BUT_LINE_END, "$": r"\Z", "{": r"\{", "}": r"\}", "]": r"\]"}
_LOOKBEHINDS: Final = ("(?<=", "(?<!")
_PLAIN_OPENERS: Final = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_CLASS_LITERALS_TO_ESCAPE: Final = frozenset("[&~|")


def _surrogate_pair(match: re.Match[str]) -> str:
    offset = ord(match.group()) - 0x10000
    return chr(0xD800 | offset >> 10) + chr(0xDC00 | offset & 0x3FF)


def utf16_view(text: str) -> str:
    """``text`` with characters outside the BMP split into surrogates, as JavaScript sees it."""
    if text.isascii() or not _ASTRAL.search(text):
        return text
    return _ASTRAL.sub(_surrogate_pair, text)


@lru_cache(maxsize=1024)
def compile_regex(source: str, insensitive: bool) -> re.Pattern[str] | None:
    """The JavaScript pattern ``source`` (flag ``i`` if ``insensitive``) compiled, or None."""
    try:
        python = _RegexTranslator(utf16_view(source)).translate()
        return re.compile(python, re.IGNORECASE if insensitive else 0)
    except (_NotJavaScript, re.error, OverflowError, RecursionError):
        return None


class _RegexTranslator:
    """Rewrites one JavaScript pattern (no ``u`` flag, Annex B syntax) for Python's ``re``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.total_groups = len(
            [m for m in _CAPTURING_GROUP.finditer(source) if m.group()[0] == "("]
        )
        self.has_named_groups = bool(_NAMED_GROUP.search(source))
        self.groups: list[str | None] = []  # names of the groups opened so far, in order
        self.open: list[int | str] = []  # per open parenthesis: group number, or the opener
        self.closed: set[int] = set()

    def translate(self) -> str:
        out: list[str] = []
        last = "start"  # the previous token: start, atom, assertion, quantifier or lazy
        while self.pos < len(self.source):
            braces = _QUANTIFIER_BRACES.match(self.source, self.pos)
            if braces or self.source[self.pos] in "*+?":
                token = braces.group() if braces else self.source[self.pos]
                last = _quantifier_state(last, token)
                self.pos += len(token)
            else:
                token, repeatable = self.atom()
                last = "atom" if repeatable else "assertion"
            out.append(token)
        if self.open:
            raise _NotJavaScript("unterminated group")
        return "".join(out)

    def atom(self) -> tuple[str, bool]:
        """Translate the token at ``pos`` (not a quantifier), move past it, and tell whether a
        quantifier may follow (not after ``^``, ``$``, ``\\b``, ``\\B`` or a lookbehind)."""
        char = self.source[self.pos]
        if char == "\\":
            text = self.escape()
            return text, text not in _ASSERTION_ESCAPES
        if char == "[":
            return self.character_class(), True
        if char == "(":
            return self.group_opener(), True
        self.pos += 1
        if char == ")":
            return ")", self.close_group() not in _LOOKBEHINDS
        return _SIMPLE_TOKENS.get(char, char), char not in "^$"

    def escape(self) -> str:
        """``\\x`` outside a class: shorthand, backreference, or an escaped character."""
        if self.pos + 1 >= len(self.source):
            raise _NotJavaScript("\\ at end of pattern")
        char = self.source[self.pos + 1]
        decimals = _DECIMALS.match(self.source, self.pos + 1)
        if decimals and int(decimals.group()) <= self.total_groups:
            self.pos = decimals.end()
            return self.backreference(int(decimals.group()))
        if char == "k" and self.has_named_groups:
            return self.named_backreference()
        if char in _ESCAPES:
            self.pos += 2
            return _ESCAPES[char]
        return self.character_escape(in_class=False)

    def character_escape(self, *, in_class: bool) -> str:
        """An escape that denotes one character (shared by classes and the outside)."""
        source, i = self.source, self.pos
        char = source[i + 1]
        if char == "c":
            return self.control_escape(in_class=in_class)
        for prefix, digits in (("x", _HEX2), ("u", _HEX4)):
            hex_digits = digits.match(source, i + 2) if char == prefix else None
            if hex_digits:
                self.pos = hex_digits.end()
                return f"\\{prefix}{hex_digits.group()}"
        octal = _LEGACY_OCTAL.match(source, i + 1)
        if octal:
            self.pos = octal.end()
            return f"\\x{int(octal.group(), 8):02x}"
        self.pos += 2
        return re.escape(char)  # identity escape: `\/` is "/", `\e` is "e", `\8` is "8"

    def control_escape(self, *, in_class: bool) -> str:
        """``\\cX`` is the control character X % 32; without a letter it is a literal ``\\c``."""
        letter = self.source[self.pos + 2 : self.pos + 3]
        if letter.isascii() and (
            letter.isalpha() or (in_class and (letter.isdigit() or letter == "_"))
        ):
            self.pos += 3
            return f"\\x{ord(letter) % 32:02x}"
        self.pos += 1
        return r"\\"  # Annex B: the backslash is literal, "c" is read next

    def backreference(self, number: int) -> str:
        """JavaScript: a group that has not closed yet (or did not match) matches empty."""
        if number not in self.closed:
            return "(?:)"
        return f"(?({number})\\{number})"

    def named_backreference(self) -> str:
        """``\\k<name>`` (only a backreference when the pattern has named groups)."""
        named = _GROUP_NAME.match(self.source, self.pos + 2)
        if not named or f"(?<{named.group(1)}>" not in self.source:
            raise _NotJavaScript("invalid named reference")
        self.pos = named.end()
        name = named.group(1)
        return self.backreference(self.groups.index(name) + 1) if name in self.groups else "(?:)"

    def character_class(self) -> str:
        """``[...]``; JavaScript's ``[]`` never matches and ``[^]`` matches anything."""
        source = self.source
        self.pos += 1
        negated = source.startswith("^", self.pos)
        self.pos += negated
        members: list[tuple[str, bool]] = []  # (Python text, is a shorthand such as \d)
        while self.pos < len(source) and source[self.pos] != "]":
            members.append(self.class_member())
        if self.pos >= len(source):
            raise _NotJavaScript("unterminated character class")
        self.pos += 1
        return _assemble_class(members, negated)

    def class_member(self) -> tuple[str, bool]:
        char = self.source[self.pos]
        if char == "\\":
            if self.pos + 1 >= len(self.source):
                raise _NotJavaScript("\\ at end of pattern")
            letter = self.source[self.pos + 1]
            if letter in _CLASS_ESCAPES:
                self.pos += 2
                return _CLASS_ESCAPES[letter], letter in _SHORTHANDS
            return self.character_escape(in_class=True), False
        self.pos += 1
        return ("\\" + char if char in _CLASS_LITERALS_TO_ESCAPE else char), False

    def group_opener(self) -> str:
        """``(``, ``(?:``, lookarounds and ``(?<name>``; other ``(?`` forms are not JavaScript."""
        source = self.source
        for opener in _PLAIN_OPENERS:
            if source.startswith(opener, self.pos):
                self.pos += len(opener)
                self.open.append(opener)
                return opener
        if not source.startswith("(?", self.pos):
            return self.open_capture(None, self.pos + 1)
        named = _GROUP_NAME.match(source, self.pos + 2)
        if not named:
            raise _NotJavaScript("invalid group")  # inline flags, atomic groups, (?P<...>), ...
        return self.open_capture(named.group(1), named.end())

    def open_capture(self, name: str | None, end: int) -> str:
        self.groups.append(name)
        self.open.append(len(self.groups))
        self.pos = end
        return "(" if name is None else f"(?P<{name}>"

    def close_group(self) -> int | str:
        """Close the innermost group; return its number, or its opener if not capturing."""
        if not self.open:
            raise _NotJavaScript("unmatched )")
        group = self.open.pop()
        if isinstance(group, int):
            self.closed.add(group)
        return group


def _assemble_class(members: list[tuple[str, bool]], negated: bool) -> str:
    """A Python class, or an alternation when shorthands must match case-sensitively."""
    if not members:
        return "(?s:.)" if negated else "(?!)"  # JavaScript's [^] and []
    shorthands = [text for text, is_shorthand in members if is_shorthand]
    if not shorthands:
        return "[" + "^" * negated + "".join(text for text, _ in members) + "]"
    plain = [
        "\\-" if text == "-" and _next_to_shorthand(members, n) else text
        for n, (text, is_shorthand) in enumerate(members)
        if not is_shorthand
    ]  # Annex B: `[a-\d]` is "a", "-" or a digit, not a range
    union = f"(?-i:[{''.join(shorthands)}])" + (f"|[{''.join(plain)}]" if plain else "")
    return f"(?:(?!{union})(?s:.))" if negated else f"(?:{union})"


def _next_to_shorthand(members: list[tuple[str, bool]], n: int) -> bool:
    return any(0 <= m < len(members) and members[m][1] for m in (n - 1, n + 1))


def _quantifier_state(last: str, token: str) -> str:
    """Only an atom can be repeated: ``a*?`` is lazy, but ``a*+`` (possessive in Python) and
    ``^*`` are JavaScript errors."""
    if token == "?" and last == "quantifier":
        return "lazy"
    if last != "atom":
        raise _NotJavaScript("nothing to repeat")
    return "quantifier"
