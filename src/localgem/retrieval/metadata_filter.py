"""``metadataFilter``: Google's AIP-160 list-filter syntax over a document's ``customMetadata``.

    author = "Robert Graves" AND (year >= 1930 OR NOT genre = poetry) AND tags : "war"

Comparators ``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` and ``:`` (has: a string list holds the value);
``AND``, ``OR`` (binding tighter than AND, as AIP-160 says), ``NOT`` or ``-``, parentheses, and
terms side by side (an implicit AND). Values are quoted strings, numbers or bare words; a bare value
runs on over the following bare words (``author=Robert Graves``, as Google's own examples write it).
Keys may be dotted (``chunk.custom_metadata.year``: the last part is the key).

A comparison whose types do not fit (a number against a string, a missing key) is false, as Google
says ("if the value types are not consistent, the result will be an empty set"); ``=`` on a string
list is membership. A filter that does not parse is a 400 naming the position (1-based) where it fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from localgem import errors

Value = str | float | list[str]
Metadata = Mapping[str, Value]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<minus>-(?=[A-Za-z_(]))
      | (?P<word>[^\s()<>=!:"']+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT"}
_COMPARATORS = {"=", "!=", "<", "<=", ">", ">=", ":"}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, op, paren, minus, word, end
    text: str
    at: int  # 0-based offset in the filter


@dataclass(frozen=True)
class Comparison:
    key: str
    comparator: str
    value: str | float
    quoted: bool  # a string literal: never read as a number


@dataclass(frozen=True)
class Not:
    operand: Filter


@dataclass(frozen=True)
class All:
    operands: tuple[Filter, ...]


@dataclass(frozen=True)
class Any:
    operands: tuple[Filter, ...]


Filter = Comparison | Not | All | Any


def parse(text: str, field: str = "metadata_filter") -> Filter | None:
    """The filter ``text`` says (None for an empty one), or a 400 about ``field``."""
    if not text or not text.strip():
        return None
    return _Parser(text, field).parse()


def matches(condition: Filter | None, metadata: Metadata) -> bool:
    if condition is None:
        return True
    if isinstance(condition, All):
        return all(matches(c, metadata) for c in condition.operands)
    if isinstance(condition, Any):
        return any(matches(c, metadata) for c in condition.operands)
    if isinstance(condition, Not):
        return not matches(condition.operand, metadata)
    return _compare(condition, metadata.get(condition.key))


def _compare(c: Comparison, value: Value | None) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        if c.comparator in (":", "="):
            return str(c.value) in value if not isinstance(c.value, float) else _number_text(c.value) in value
        if c.comparator == "!=":
            return str(c.value) not in value
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if c.quoted or not isinstance(c.value, float):
            return False
        return _ordered(c.comparator, float(value), c.value)
    literal = c.value if isinstance(c.value, str) else _number_text(c.value)
    if c.comparator == ":":
        return literal == value
    if c.comparator in ("=", "!="):
        return (value == literal) == (c.comparator == "=")
    return _ordered(c.comparator, value, literal)


def _ordered(comparator: str, left: str | float, right: str | float) -> bool:
    match comparator:
        case "=" | ":":
            return left == right
        case "!=":
            return left != right
        case "<":
            return left < right  # type: ignore[operator]
        case "<=":
            return left <= right  # type: ignore[operator]
        case ">":
            return left > right  # type: ignore[operator]
        case _:
            return left >= right  # type: ignore[operator]


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self._text = text
        self._field = field
        self._tokens = self._lex(text)
        self._i = 0

    def parse(self) -> Filter:
        result = self._expression()
        if self._peek().kind != "end":
            self._fail(self._peek(), "expected AND, OR or the end of the filter")
        return result

    # expression := sequence {AND sequence}; sequence := factor {factor}; factor := term {OR term}
    def _expression(self) -> Filter:
        operands = [self._sequence()]
        while self._keyword("AND"):
            self._i += 1
            operands.append(self._sequence())
        return operands[0] if len(operands) == 1 else All(tuple(operands))

    def _sequence(self) -> Filter:
        operands = [self._factor()]
        while self._starts_term():
            operands.append(self._factor())
        return operands[0] if len(operands) == 1 else All(tuple(operands))

    def _factor(self) -> Filter:
        operands = [self._term()]
        while self._keyword("OR"):
            self._i += 1
            operands.append(self._term())
        return operands[0] if len(operands) == 1 else Any(tuple(operands))

    def _term(self) -> Filter:
        token = self._peek()
        if token.kind == "minus" or self._keyword("NOT"):
            self._i += 1
            return Not(self._term())
        if token.kind == "paren" and token.text == "(":
            self._i += 1
            inner = self._expression()
            closing = self._peek()
            if closing.kind != "paren" or closing.text != ")":
                self._fail(closing, "expected ')'")
            self._i += 1
            return inner
        return self._comparison()

    def _comparison(self) -> Comparison:
        key = self._peek()
        if key.kind != "word" or key.text.upper() in _KEYWORDS:
            self._fail(key, "expected a metadata key")
        self._i += 1
        comparator = self._peek()
        if comparator.kind != "op":
            self._fail(comparator, f"expected a comparator (=, !=, <, <=, >, >=, :) after {key.text!r}")
        self._i += 1
        value = self._peek()
        name = key.text.rsplit(".", 1)[-1]
        if value.kind == "string":
            self._i += 1
            return Comparison(name, comparator.text, _unquote(value.text), True)
        if value.kind != "word" or value.text.upper() in _KEYWORDS:
            self._fail(value, f"expected a value after {key.text} {comparator.text}")
        self._i += 1
        number = _number(value.text)
        if number is not None:
            return Comparison(name, comparator.text, number, False)
        words = [value.text]
        while self._bare_word_follows():
            words.append(self._peek().text)
            self._i += 1
        return Comparison(name, comparator.text, " ".join(words), False)

    def _bare_word_follows(self) -> bool:
        token = self._peek()
        if token.kind != "word" or token.text.upper() in _KEYWORDS:
            return False
        after = self._tokens[self._i + 1]
        return after.kind != "op"  # a word before a comparator is the next comparison's key

    def _starts_term(self) -> bool:
        token = self._peek()
        return (
            token.kind in ("word", "minus")
            and not self._keyword("AND")
            and not self._keyword("OR")
            or (token.kind == "paren" and token.text == "(")
        )

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        return token.kind == "word" and token.text == word

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _lex(self, text: str) -> list[_Token]:
        tokens, at = [], 0
        while at < len(text):
            if text[at:].strip() == "":
                break
            found = _TOKEN.match(text, at)
            if found is None or found.lastgroup is None:
                where = at + len(text[at:]) - len(text[at:].lstrip())
                self._fail(_Token("bad", text[where], where), f"unexpected {text[where]!r}")
            assert found is not None and found.lastgroup is not None
            tokens.append(_Token(found.lastgroup, found.group(found.lastgroup), found.start(found.lastgroup)))
            at = found.end()
        tokens.append(_Token("end", "", len(text)))
        return tokens

    def _fail(self, token: _Token, why: str) -> None:
        what = "the end of the filter" if token.kind == "end" else repr(token.text)
        raise errors.invalid_field(
            self._field, f"Invalid metadataFilter {self._text!r}: at position {token.at + 1} ({what}): {why}."
        )


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
