"""Constrained output that always ends valid: closed within its token budget instead of cut.

A structured output (or a function call's arguments) that would run past ``maxOutputTokens`` is
ended early with the shortest text that completes its grammar — open strings closed, required
properties added with their shortest values, brackets closed — so it still parses, and the response
still reports MAX_TOKENS. The sampler asks, before it takes each token, whether the shortest
completion after it would still fit in what is left; the first token that would not is replaced by
that completion (from the state before it, which did fit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from localgem.engines.llama.gbnf import CompiledGrammar, GrammarFollower

log = logging.getLogger(__name__)

#: The most tokens one character of a completion can take (UTF-8 bytes, one token each at worst).
_TOKENS_PER_CHAR = 4


class BudgetCloser:
    """Follows one constrained output and its budget of tokens. ``tokenize`` turns a completion into
    the model's tokens (plain text: no special tokens)."""

    def __init__(self, grammar: CompiledGrammar, budget: int, tokenize: Callable[[str], list[int]]) -> None:
        self._follower = GrammarFollower(grammar)
        self._tokenize = tokenize
        self.left = budget
        #: The follower could not follow what the sampler's grammar allowed: closing is off.
        self.lost = False
        self._next = self._follower.state

    def fits(self, piece: bytes) -> bool:
        """Can the output take ``piece`` (one token) and still close in the tokens left after it?"""
        if self.lost:
            return True
        state = self._follower.after(piece)
        if not state:
            log.warning("the output left its grammar as this server follows it; it will not be closed early")
            self.lost = True
            return True
        self._next = state
        return self._room(self._follower.grammar.shortest_cost(state), lambda: self._completion_of(state))

    def take(self) -> None:
        """The token ``fits`` was asked about is part of the output now."""
        self.left -= 1
        if not self.lost:
            self._follower.take(self._next)

    @property
    def complete(self) -> bool:
        """May the output end here?"""
        return self._follower.grammar.complete(self._follower.state)

    def room_to_start(self) -> bool:
        """Is there room, after one more token, for the shortest whole output of the grammar (a lazy
        grammar, about to start)?"""
        state = self._follower.state
        return self._room(self._follower.grammar.shortest_cost(state), lambda: self._completion_of(state), after=1)

    def closing_tokens(self) -> list[int]:
        """The shortest completion of the output so far, as tokens."""
        return self._tokenize(self._follower.completion() or "")

    def _room(self, cost: float, completion: Callable[[], str | None], after: int = 1) -> bool:
        left = self.left - after
        if cost * _TOKENS_PER_CHAR <= left:  # surely fits: no need to tokenize
            return True
        text = completion()
        return text is not None and len(self._tokenize(text)) <= left

    def _completion_of(self, state) -> str | None:
        return self._follower.grammar.shortest_completion(state)
