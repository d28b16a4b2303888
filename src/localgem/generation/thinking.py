"""``generationConfig.thinkingConfig`` → how long a model that thinks may think, and whether the client sees it.

A model thinks natively when its chat template writes a thinking tag (``<think>``: Qwen3, DeepSeek-R1
distills, SmolLM3) or its settings say so; it then thinks unless the budget is 0. Any other chat model
thinks by prompting when the request asks for it (a positive budget or level, or includeThoughts): the
system instruction asks it to reason inside the tags first. Either way the prompt opens the thought
(unless the template already did), the thought runs until the model closes it or the budget is spent,
then the closing tag is written for it and the answer follows (see ``generation.rounds``). A budget of 0
closes an empty thought at once, as Qwen3's own template does for ``enable_thinking=False``. With
``thinking_by_prompt`` off, a model that does not think refuses a positive budget with a 400 naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from localgem import errors
from localgem.generation.loaded import LoadedModel
from localgem.types.generation import GenerationConfig

#: Google's thinkingLevel, as budgets (Gemini 3 documents levels, not their token counts).
LEVEL_BUDGETS = {"MINIMAL": 128, "LOW": 1024, "MEDIUM": 4096, "HIGH": 8192}
#: The largest budget Google accepts (Gemini 2.5 Pro).
MAX_BUDGET = 32768


@dataclass(frozen=True)
class ThinkingPlan:
    budget: int  # tokens the thought may take; 0: none (an empty thought is closed in the prompt)
    include: bool  # the thought goes to the client as ``thought: true`` parts
    open_tag: str
    close_tag: str
    #: The chat template's generation prompt already opens the thought (DeepSeek-R1's does).
    opened: bool = False
    #: A model that does not think natively, asked to by its system instruction (``PROMPT``).
    prompted: bool = False

    @property
    def prompt(self) -> str:
        return (
            f"Think before you answer: first reason step by step between {self.open_tag} and {self.close_tag}, "
            f"briefly, then write your answer after {self.close_tag}."
        )


def thinking_plan(
    config: GenerationConfig | None, loaded: LoadedModel, where: str, *, dynamic_budget: int, by_prompt: bool
) -> ThinkingPlan | None:
    """None: the model does not think (and the request did not ask it to). ``by_prompt``: models that do
    not think natively think by prompting when asked to."""
    thinking = config.thinking_config if config is not None else None
    budget: int | None = None
    include = False
    if thinking is not None:
        here = f"{where}.thinking_config"
        include = bool(thinking.include_thoughts)
        level = thinking.thinking_level if thinking.thinking_level != "THINKING_LEVEL_UNSPECIFIED" else None
        if thinking.thinking_budget is not None and level is not None:
            raise errors.invalid_field(here, "Set thinkingBudget or thinkingLevel, not both.")
        if level is not None:
            budget = LEVEL_BUDGETS[level]
            field = f"{here}.thinking_level"
        else:
            budget = thinking.thinking_budget
            field = f"{here}.thinking_budget"
        if budget is not None and not -1 <= budget <= MAX_BUDGET:
            raise errors.invalid_field(
                field, f"The thinking budget {budget} is invalid: use -1 (dynamic), 0 (off) or 1 to {MAX_BUDGET}."
            )
        if budget is not None and budget > 0 and not loaded.thinks and not by_prompt:
            raise errors.invalid_field(
                field,
                f"{loaded.entry.name} does not think: thinkingBudget may only be 0 or -1 (dynamic) for it. Serve a "
                "model whose chat template thinks (or set thinking: true in its settings) to use a budget.",
            )
    asked = (budget is not None and budget > 0) or (include and budget != 0)
    if not loaded.thinks and not (by_prompt and asked):
        return None
    if budget is None or budget < 0:
        budget = dynamic_budget
    open_tag, close_tag = loaded.entry.config.thinking_tags
    return ThinkingPlan(budget, include, open_tag, close_tag, prompted=not loaded.thinks)


def signature(response_id: str, index: int, thought: str) -> bytes:
    """The ``thoughtSignature`` of a candidate's thought: opaque to clients, accepted back and ignored."""
    return b"lg1" + hashlib.sha256(f"{response_id}/{index}\n{thought}".encode()).digest()[:24]
