"""Draft tokens for decode rows that would otherwise take a companion row (see ``NativeModel._companions``).

A decode row alone in its run of streams, deep into its context, needs a second row in its step to stay off
llama.cpp's split kernel. Where that second row is a guess at the sequence's next token, in the sequence's own
stream, it can pay for itself: when the guess is what the sequence then samples, the row's logits are the next
step's (llama.cpp reads both rows of the stream in one pass, which is how it reads any decode row), and the sequence
takes two tokens in one step. The guess is prompt lookup: the token that followed the last earlier occurrence of
the sequence's last two tokens (outputs that quote or repeat their context are common), else its last token.
"""

from __future__ import annotations

from collections.abc import Sequence as Tokens


class PromptLookup:
    """One sequence's index of which token followed each pair of tokens, kept up to date as the sequence grows."""

    def __init__(self) -> None:
        self._following: dict[tuple[int, int], int] = {}
        self._indexed = 2  # the tokens before this index have been indexed as followers

    def draft(self, tokens: Tokens[int]) -> int:
        """A guess at the token after ``tokens`` (which only grow between calls)."""
        following = self._following
        for i in range(self._indexed, len(tokens)):
            following[(tokens[i - 2], tokens[i - 1])] = tokens[i]
        self._indexed = max(self._indexed, len(tokens))
        if len(tokens) < 2:
            return tokens[-1]
        return following.get((tokens[-2], tokens[-1]), tokens[-1])
