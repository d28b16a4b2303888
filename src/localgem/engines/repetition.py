"""Outputs stuck in a loop: a small model often ends up writing the same stretch of tokens over and
over until its token budget runs out (minutes on a CPU). Seen exactly, such a loop is stopped."""

from __future__ import annotations

#: The longest stretch of tokens whose exact repetition counts as a loop.
MAX_PERIOD = 128


class RepetitionWatch:
    """Watches one output, token by token: it loops once its last ``span`` tokens each equal the token
    one period before, for some period of at most MAX_PERIOD (and at least two periods are seen)."""

    def __init__(self, span: int) -> None:
        self._span = span
        # _runs[p]: how many of the latest tokens equal the token p places before them, in a row.
        self._runs = [0] * (MAX_PERIOD + 1)

    def looping(self, tokens: list[int]) -> int:
        """Called with the output's tokens (after any prompt) each time one is added: how many tokens
        the loop the output is in has lasted (0: it is in none)."""
        newest = len(tokens) - 1
        token = tokens[newest]
        runs = self._runs
        longest = 0
        for period in range(1, min(MAX_PERIOD, newest) + 1):
            if tokens[newest - period] == token:
                runs[period] += 1
                if runs[period] > longest and runs[period] >= period:
                    longest = runs[period]
            else:
                runs[period] = 0
        return longest if longest >= self._span else 0
