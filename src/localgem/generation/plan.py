"""What ``GenerationService.plan`` returns: a request validated and ready to run on its model."""

from __future__ import annotations

from dataclasses import dataclass

from localgem.engines.base import GenerationRequest
from localgem.generation.code_execution import CodePlan
from localgem.generation.image_output import ImagePlan
from localgem.generation.loaded import LoadedModel
from localgem.generation.responses import ResponseShape
from localgem.generation.speech_output import SpeechPlan
from localgem.generation.thinking import ThinkingPlan
from localgem.generation.tools import ServerTool


@dataclass(frozen=True)
class GenerationPlan:
    """Every 4xx has been raised before a plan exists; running it can only fail on the server's side
    (deadline, capacity, a client that left)."""

    model: LoadedModel
    #: What the engine runs: prompt tokens, sampling, constraint, kept prefix.
    request: GenerationRequest
    #: How engine events become responses (response id, model version, usage).
    shape: ResponseShape
    #: The server-side tools the request uses (see ``generation.tools``).
    server_tools: tuple[ServerTool, ...] = ()
    #: responseModalities AUDIO: how the answer is spoken (None: text only).
    speech: SpeechPlan | None = None
    #: How long the model thinks first (None: a model that does not think).
    thinking: ThinkingPlan | None = None
    #: The codeExecution tool: the sandbox and the request's files (None: not used).
    code: CodePlan | None = None
    #: responseModalities IMAGE: what is drawn, and by which image model (None: no image).
    image: ImagePlan | None = None
