"""GBNF grammars in Python: where a constrained output stands, and the shortest text that completes it.

llama.cpp's grammar sampler decides which tokens may come next, but cannot say how much output the
grammar still needs. This recognizer follows the same output over the same grammar (llama.cpp's
syntax and its pushdown semantics: a set of stacks of positions in rules) and answers that, so an
output about to run out of tokens can be closed validly instead of cut (see ``Sampler``).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from functools import lru_cache

Stack = tuple[int, ...]
State = frozenset[Stack]

_END = -1  # the end of an alternative
_NICE = "a0 "  # what a completion writes where any of several characters would do


class GrammarSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class _Chars:
    """One character out of ``ranges`` (inclusive code point pairs), or out of everything else."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def matches(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.ranges) != self.negated

    def pick(self) -> str:
        for char in _NICE:
            if self.matches(ord(char)):
                return char
        if not self.negated:
            return chr(self.ranges[0][0])
        return next(chr(code) for code in range(0x21, 0x10FFFF) if self.matches(code))


# An element is a _Chars, a rule number (int ≥ 0), or _END.
_Element = _Chars | int


class _Parser:
    """llama.cpp's GBNF syntax → rules, each a list of alternatives, each a list of elements.
    Groups and repetitions become rules of their own, as llama.cpp's parser makes them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.names: dict[str, int] = {}
        self.rules: list[list[list[_Element]] | None] = []

    def parse(self) -> tuple[list[list[list[_Element]]], int]:
        """The rules, and the number of the root rule."""
        self.space(newlines=True)
        while self.pos < len(self.text):
            name = self.word()
            self.space()
            self.expect("::=")
            self.space(newlines=True)
            rule = self.rule_id(name)
            if self.rules[rule] is not None:
                raise GrammarSyntaxError(f"rule {name!r} is defined twice")
            self.rules[rule] = self.alternatives(nested=False)
            self.space(newlines=True)
        undefined = [name for name, rule in self.names.items() if self.rules[rule] is None]
        if undefined:
            raise GrammarSyntaxError(f"undefined rules: {', '.join(undefined)}")
        if "root" not in self.names:
            raise GrammarSyntaxError("the grammar has no root rule")
        return [rule for rule in self.rules if rule is not None], self.names["root"]

    def rule_id(self, name: str) -> int:
        if name not in self.names:
            self.names[name] = self.new_rule(None)
        return self.names[name]

    def new_rule(self, alternatives: list[list[_Element]] | None) -> int:
        self.rules.append(alternatives)
        return len(self.rules) - 1

    def alternatives(self, nested: bool) -> list[list[_Element]]:
        found = [self.sequence(nested)]
        while self.peek("|"):
            self.pos += 1
            self.space(newlines=True)
            found.append(self.sequence(nested))
        return found

    def sequence(self, nested: bool) -> list[_Element]:
        out: list[_Element] = []
        while self.pos < len(self.text):
            start = len(out)
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                while not self.peek('"'):
                    code = self.char()
                    out.append(_Chars(((code, code),), False))
                self.pos += 1
            elif char == "[":
                out.append(self.char_class())
            elif char == ".":
                self.pos += 1
                out.append(_Chars((), True))
            elif char == "(":
                self.pos += 1
                self.space(newlines=True)
                inner = self.alternatives(nested=True)
                self.expect(")")
                out.append(self.new_rule(inner))
            elif char.isalnum() or char in "-_":
                out.append(self.rule_id(self.word()))
            else:
                break
            self.space(newlines=nested)
            self.repetition(out, start)
        return out

    def repetition(self, out: list[_Element], start: int) -> None:
        """A postfix operator applies to what the last item added."""
        if self.pos >= len(self.text) or self.text[self.pos] not in "*+?{":
            return
        operator = self.text[self.pos]
        self.pos += 1
        if operator == "*":
            low, high = 0, None
        elif operator == "+":
            low, high = 1, None
        elif operator == "?":
            low, high = 0, 1
        else:
            low, high = self.braces()
        item = out[start:]
        del out[start:]
        out.extend(item * low)
        if high is None:  # many ::= item many | ε
            many = self.new_rule(None)
            self.rules[many] = [[*item, many], []]
            out.append(many)
        else:  # (item (item ...)?)?, innermost first
            following: int | None = None
            for _ in range(high - low):
                following = self.new_rule([[*item, *([following] if following is not None else [])], []])
            if following is not None:
                out.append(following)
        self.space(newlines=False)

    def braces(self) -> tuple[int, int | None]:
        self.space()
        low = self.number()
        self.space()
        if self.peek("}"):
            self.pos += 1
            return low, low
        self.expect(",")
        self.space()
        high = None if self.peek("}") else self.number()
        self.space()
        self.expect("}")
        if high is not None and high < low:
            raise GrammarSyntaxError(f"repetition {{{low},{high}}} is empty")
        return low, high

    def char_class(self) -> _Chars:
        self.pos += 1
        negated = self.peek("^")
        self.pos += negated
        ranges = []
        while not self.peek("]"):
            low = self.char()
            high = low
            if self.peek("-") and self.text[self.pos + 1 : self.pos + 2] != "]":
                self.pos += 1
                high = self.char()
            ranges.append((low, high))
        self.pos += 1
        return _Chars(tuple(ranges), negated)

    _ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^"}

    def char(self) -> int:
        if self.pos >= len(self.text):
            raise GrammarSyntaxError("unexpected end of grammar")
        char = self.text[self.pos]
        if char != "\\":
            self.pos += 1
            return ord(char)
        escape = self.text[self.pos + 1 : self.pos + 2]
        digits = {"x": 2, "u": 4, "U": 8}.get(escape)
        if digits:
            value = self.text[self.pos + 2 : self.pos + 2 + digits]
            self.pos += 2 + digits
            try:
                return int(value, 16)
            except ValueError:
                raise GrammarSyntaxError(f"bad escape \\{escape}{value}") from None
        if escape not in self._ESCAPES:
            raise GrammarSyntaxError(f"unknown escape \\{escape}")
        self.pos += 2
        return ord(self._ESCAPES[escape])

    def word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "-_"):
            self.pos += 1
        if start == self.pos:
            raise GrammarSyntaxError(f"expected a name at {self.text[start : start + 20]!r}")
        return self.text[start : self.pos]

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        if start == self.pos:
            raise GrammarSyntaxError("expected a number")
        return int(self.text[start : self.pos])

    def space(self, newlines: bool = False) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "#":
                while self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                    self.pos += 1
            elif char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            else:
                return

    def peek(self, text: str) -> bool:
        return self.text.startswith(text, self.pos)

    def expect(self, text: str) -> None:
        if not self.peek(text):
            raise GrammarSyntaxError(f"expected {text!r} at {self.text[self.pos : self.pos + 20]!r}")
        self.pos += len(text)


class CompiledGrammar:
    """A grammar's alternatives laid end to end (positions index ``elements``), with the shortest text
    from every position to the end of its alternative."""

    def __init__(self, text: str) -> None:
        rules, self._root = _Parser(text).parse()
        self.elements: list[_Element] = []
        self.starts: list[list[int]] = []
        for alternatives in rules:
            starts = []
            for sequence in alternatives:
                starts.append(len(self.elements))
                self.elements += [*sequence, _END]
            self.starts.append(starts)
        self._cost = self._shortest_costs()
        self._texts: dict[int, str] = {}

    def _shortest_costs(self) -> list[float]:
        """Characters from each position to the end of its alternative, at least (a fixpoint, as
        rules refer to each other)."""
        rule_cost = [float("inf")] * len(self.starts)
        cost = [0.0] * len(self.elements)
        changed = True
        while changed:
            changed = False
            for position in range(len(self.elements) - 1, -1, -1):
                element = self.elements[position]
                if element == _END:
                    cost[position] = 0.0
                elif isinstance(element, _Chars):
                    cost[position] = 1.0 + cost[position + 1]
                else:
                    cost[position] = rule_cost[element] + cost[position + 1]
            for rule, starts in enumerate(self.starts):
                best = min(cost[start] for start in starts)
                if best < rule_cost[rule]:
                    rule_cost[rule] = best
                    changed = True
        if rule_cost[self._root] == float("inf"):
            raise GrammarSyntaxError("the grammar accepts no text")
        return cost

    def initial(self) -> State:
        found: set[Stack] = set()
        for start in self.starts[self._root]:
            self._expand(() if self.elements[start] == _END else (start,), found)
        return frozenset(found)

    def advance(self, state: State, text: str) -> State:
        """The state after ``text``; empty when the grammar does not allow it."""
        for char in text:
            code = ord(char)
            found: set[Stack] = set()
            for stack in state:
                if not stack:
                    continue
                position = stack[-1]
                element = self.elements[position]
                assert isinstance(element, _Chars)
                if element.matches(code):
                    following = position + 1
                    rest = stack[:-1] if self.elements[following] == _END else (*stack[:-1], following)
                    self._expand(rest, found)
            state = frozenset(found)
            if not state:
                break
        return state

    def _expand(self, stack: Stack, found: set[Stack]) -> None:
        """Rule references on top are replaced by their alternatives until a character is on top."""
        pending = [stack]
        seen: set[Stack] = set()
        while pending:
            stack = pending.pop()
            if stack in seen:
                continue
            seen.add(stack)
            element = self.elements[stack[-1]] if stack else None
            if not isinstance(element, int) or element == _END:
                found.add(stack)
                continue
            following = stack[-1] + 1
            rest = stack[:-1] if self.elements[following] == _END else (*stack[:-1], following)
            for start in self.starts[element]:
                pending.append(rest if self.elements[start] == _END else (*rest, start))

    @staticmethod
    def complete(state: State) -> bool:
        """May the output end here?"""
        return () in state

    def shortest_cost(self, state: State) -> float:
        """Characters the shortest completion needs (inf: none exists)."""
        return min((sum(self._cost[p] for p in stack) for stack in state), default=float("inf"))

    def shortest_completion(self, state: State) -> str | None:
        if not state:
            return None
        stack = min(state, key=lambda s: (sum(self._cost[p] for p in s), s))
        return "".join(self._text_from(position) for position in reversed(stack))

    def _text_from(self, position: int) -> str:
        out = []
        while (element := self.elements[position]) != _END:
            out.append(element.pick() if isinstance(element, _Chars) else self._rule_text(element))
            position += 1
        return "".join(out)

    def _rule_text(self, rule: int) -> str:
        if rule not in self._texts:
            start = min(self.starts[rule], key=lambda s: self._cost[s])
            self._texts[rule] = self._text_from(start)
        return self._texts[rule]


@lru_cache(maxsize=64)
def compile_grammar(text: str) -> CompiledGrammar:
    """Compiled once per grammar text (requests with one schema share it)."""
    return CompiledGrammar(text)


class GrammarFollower:
    """Follows one output, fed as bytes (a token may end inside a character), over a compiled grammar."""

    def __init__(self, grammar: CompiledGrammar) -> None:
        self.grammar = grammar
        self.state = grammar.initial()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._decoded_after: tuple[bytes, int] = self._decoder.getstate()

    def after(self, data: bytes) -> State:
        """The state after ``data``, not taken (see ``take``); empty if the grammar does not allow it."""
        before = self._decoder.getstate()
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError:
            return frozenset()
        finally:
            self._decoded_after = self._decoder.getstate()
            self._decoder.setstate(before)
        return self.grammar.advance(self.state, text)

    def take(self, state: State) -> None:
        """Moves on to ``state``, the one ``after`` just returned."""
        self.state = state
        self._decoder.setstate(self._decoded_after)

    def remaining(self) -> float:
        """Characters the shortest completion needs."""
        return self.grammar.shortest_cost(self.state)

    def completion(self) -> str | None:
        return self.grammar.shortest_completion(self.state)
