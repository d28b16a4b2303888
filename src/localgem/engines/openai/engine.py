"""A model served by another server that speaks the OpenAI API: llama.cpp's llama-server, vLLM, SGLang,
Ollama, LocalAI.

On llama-server and vLLM, localgem keeps doing what it does for its own engine: it renders the chat template
(function declarations, thinking, code execution, cached contents included) and tokenizes the prompt with the
upstream engine's own tokenizer, so that what it counts is what the engine computes: in its own process where it
has that tokenizer (the GGUF file llama-server serves, or the ``tokenizer`` configured) and it tokenizes test
texts exactly as the server's ``/tokenize`` does, else through that ``/tokenize`` (a round trip). The
engine gets the token ids on ``/v1/completions`` (streamed; each SSE chunk is relayed as it comes) with the
sampling parameters mapped one by one (each candidate is a request of its own, in turn, seeded
``seed + index``), and enforces the output constraint itself:

* llama-server (it answers ``/props``): the GBNF grammar localgem builds for its own llama.cpp engine
  (``engines.llama.constraints``), so that JSON schemas, enums and function calls (lazily, after the open
  tag, when calls are optional) are enforced exactly as they are locally;
* vLLM (its ``/v1/models`` entries are ``owned_by: vllm``): the same GBNF grammar as ``structured_outputs``
  ``grammar`` (its xgrammar backend reads GBNF); optional function calls as a structural tag (free text until
  the model writes the open tag, then one of the declared calls with valid arguments);
* any other server (Ollama, LocalAI, a hosted API): its ``/v1/chat/completions``, the one endpoint all of them
  have. It renders the conversation with its own template (localgem sends the messages, calls and results as
  structured messages); JSON output as ``response_format`` ``json_schema`` (or ``json_object``); function calls
  through its tools API (``tools``, ``tool_choice``: ``auto`` in mode AUTO, ``required`` or the one function
  in mode ANY), its ``tool_calls`` turned into localgem's call blocks. A tools API need not enforce anything
  (llama-server's did not, in mode ANY), so the generation layer checks every call against the declarations
  (``function_calling.CallRules``): a broken one ends MALFORMED_FUNCTION_CALL. What it cannot enforce at all
  (an enum as text) is refused with 400, never generated unconstrained. The prompt's length in ``usage`` is
  the engine's; countTokens counts localgem's rendering of the same conversation.

A schema the engine itself rejects comes back as its 400, which becomes ours. Prefix caching is the
engine's: it reports the prompt tokens it reused (``usage.prompt_tokens_details.cached_tokens``, or
llama-server's ``timings.cache_n``), and cached contents on such a model keep their contents (no KV state of
its own: ``kept_prefixes`` is off). Closing a generation closes the HTTP response, which aborts the request
upstream. The engine's 429 and 503 become ours; an engine that does not answer is a 503, and a probe thread
(``/health``) makes ``healthy()`` false while it is down, so that ``/readyz`` says not ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from localgem import errors
from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    ChoiceOutput,
    DeadlineReached,
    EngineCapabilities,
    EngineEvent,
    EngineStats,
    FinishReason,
    GenerationRequest,
    JsonOutput,
    ModelInfo,
    OutputConstraint,
    Picture,
    StepLogprobs,
    TextDelta,
    TokenLogprob,
    ToolCalls,
    UnenforceableSchema,
    tokenize_in_process,
)

log = logging.getLogger(__name__)

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.MAX_TOKENS, "tool_calls": FinishReason.STOP}
#: llama.cpp's ``COMMON_GRAMMAR_TRIGGER_TYPE_WORD``: a lazy grammar starts where the output writes this word.
_TRIGGER_WORD = 1


def api_root(base_url: str) -> str:
    """The server's root: ``base_url`` may be given with or without its ``/v1``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


@dataclass(frozen=True)
class Served:
    """What an OpenAI-compatible server says it serves."""

    props: dict | None  # llama-server's /props; None: not a llama-server
    models: list[dict]  # /v1/models' data
    model: str  # the one to use: the configured one, else the first listed


LLAMA_SERVER, VLLM, GENERIC = "llama-server", "vllm", "generic"


def flavour_of(served: Served, kind: str = "auto") -> str:
    """Which kind of server it is, for what it can enforce: llama-server answers /props (GBNF grammars), vLLM
    owns its models (``structured_outputs`` grammars, structural tags); any other takes chat messages, JSON
    schemas and tools. ``kind``: the configured one, where it is not "auto"."""
    if kind != "auto":
        return kind
    if served.props is not None:
        return LLAMA_SERVER
    if any(m.get("owned_by") == "vllm" for m in served.models):
        return VLLM
    return GENERIC


@dataclass(frozen=True)
class TokenizerFolder:
    """What a Hugging Face tokenizer's folder says of its model's chat: a server other than llama-server
    (vLLM) does not say its template or special tokens."""

    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""


def tokenizer_folder(tokenizer: Path | None) -> TokenizerFolder:
    """The chat template (``chat_template.jinja``, else ``tokenizer_config.json``'s) and the BOS/EOS tokens
    (``tokenizer_config.json``) beside a tokenizer; empty where there is none."""
    if tokenizer is None or tokenizer.suffix == ".gguf":
        return TokenizerFolder()
    folder = tokenizer if tokenizer.is_dir() else tokenizer.parent
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    jinja = folder / "chat_template.jinja"
    template = jinja.read_text(encoding="utf-8") if jinja.is_file() else config.get("chat_template")
    return TokenizerFolder(
        template if isinstance(template, str) else None,
        _token_text(config.get("bos_token")),
        _token_text(config.get("eos_token")),
    )


def _token_text(token: Any) -> str:
    if isinstance(token, dict):  # the older form: an AddedToken
        token = token.get("content")
    return token if isinstance(token, str) else ""


def tokenize_body(flavour: str, model: str, text: str, add_special: bool, parse_special: bool) -> dict[str, Any]:
    """A ``/tokenize`` request in the server's own form (llama-server's, or vLLM's and SGLang's); both at once
    for a server of another kind (each reads its own fields)."""
    llama_form = {"content": text, "add_special": add_special, "parse_special": parse_special}
    vllm_form = {"model": model, "prompt": text, "add_special_tokens": add_special}
    if flavour == LLAMA_SERVER:
        return llama_form
    return vllm_form if flavour == VLLM else llama_form | vllm_form


#: What a tokenizer in localgem's process must tokenize exactly as the server does (with and without BOS) before
#: it stands in for the server's ``/tokenize``: chat markers, whitespace runs, digits, accents, CJK, emoji, code.
TOKENIZER_PROBES = (
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\n<bos>Hello<end_of_turn>\n<s>[INST] x [/INST]</s><|endoftext|><|eot_id|>",
    "  Two  spaces,\ttab,\n\n\nnewlines;   1234567890 3.14159 -42 1e-9 $100.00 50%",
    "naïve café, Straße, Ærøskøbing, São Paulo — “quotes” ‘x’ … € £ ¥",
    "東京都 日本語のテキスト 한국어 中文 Русский текст العربية हिन्दी 🙂👍🏽🚀 ∑∫√",
    'def f(x: int) -> dict:\n    return {"a": [1, 2], "b": None}  # comment\n\tif x != 0 && y <= 3: pass',
    "https://example.com/path?q=a+b&r=%20 user@example.org C:\\Windows\\ <tag attr='v'/>",
)


class LocalTokenizer:
    """A model's tokenizer in this process: llama.cpp's over a GGUF file's vocabulary (what llama-server runs),
    else Hugging Face's ``tokenizer.json`` (what vLLM and SGLang run), a file or the folder holding it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.suffix == ".gguf":
            from localgem.engines.llama.native import GgufVocabulary

            self._gguf: Any = GgufVocabulary(path)
            self.tokenize = self._gguf.tokenize
        else:
            from tokenizers import Tokenizer

            self._gguf = None
            hugging_face = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
            self.tokenize = lambda text, add_bos: list(hugging_face.encode(text, add_special_tokens=add_bos).ids)

    def close(self) -> None:
        if self._gguf is not None:
            self._gguf.close()


def token_ids(tokenized: dict) -> list[int]:
    """A ``/tokenize`` answer's ids: llama-server's (ids, or ``{"id", "piece"}`` objects) or vLLM's."""
    return [int(t) if not isinstance(t, dict) else int(t["id"]) for t in tokenized["tokens"]]


def served_file(props: dict | None) -> Path | None:
    """The GGUF file llama-server says it serves, where this machine has it too (localgem beside its engine)."""
    path = Path(str((props or {}).get("model_path") or ""))
    return path if path.suffix == ".gguf" and path.is_file() else None


def structural_tag(calls: ToolCalls) -> dict[str, Any]:
    """Optional function calls as vLLM's structural tag: free text until the output writes the open tag, then
    ``{"name": ..., args_key: ...}`` naming a declared function with arguments valid against its parameters."""
    return {
        "type": "structural_tag",
        "structures": [
            {
                "begin": f'{calls.open_tag}\n{{"name": {json.dumps(f.name)}, {json.dumps(calls.args_key)}: ',
                "schema": f.parameters,
                "end": "}" + calls.close_tag,
            }
            for f in calls.functions
        ],
        "triggers": [calls.open_tag],
    }


def tools_fields(calls: ToolCalls, declared: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """Function calls through a chat API's tools: ``auto`` when optional; when required, the one function
    (where one is allowed) or ``required``."""
    choice: Any = "auto"
    if calls.required:
        choice = {"type": "function", "function": {"name": calls.functions[0].name}}
        if len(calls.functions) > 1:
            choice = "required"
    return {"tools": list(declared), "tool_choice": choice, "parallel_tool_calls": calls.max_calls > 1}


def openai_messages(messages: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Chat-template messages (``ChatPrompt``) in the OpenAI chat API's form: a call's arguments as a JSON
    string and an id on every call; each ``tool`` message names the call it answers (``tool_call_id``: the
    earliest unanswered call of its function)."""
    converted: list[dict[str, Any]] = []
    unanswered: list[tuple[str, str]] = []  # (function, call id)
    numbered = 0
    for message in messages:
        out = {"role": message["role"], "content": message.get("content", "")}
        if message.get("tool_calls"):
            out["tool_calls"] = []
            for call in message["tool_calls"]:
                function = call["function"]
                numbered += 1
                call_id = call.get("id") or f"call_{numbered}"
                unanswered.append((function["name"], call_id))
                arguments = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
                out["tool_calls"].append(
                    {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}
                )
            out["content"] = out["content"] or None
        if message["role"] == "tool":
            name = message.get("name") or ""
            answered = next((entry for entry in unanswered if entry[0] == name), None)
            if answered is not None:
                unanswered.remove(answered)
            out["tool_call_id"] = answered[1] if answered is not None else f"call_{name}"
            out["name"] = name
        converted.append(out)
    return converted


class CallDeltas:
    """A chat API's streamed ``tool_calls``: pieces of each call (its ``index``), the arguments a JSON string
    written piece by piece."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, pieces: list[dict[str, Any]]) -> None:
        for n, piece in enumerate(pieces):
            call = self._calls.setdefault(int(piece.get("index", n)), {"name": "", "arguments": ""})
            function = piece.get("function") or {}
            call["name"] += function.get("name") or ""
            arguments = function.get("arguments")
            call["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments or {})

    def blocks(self, calls: ToolCalls) -> str:
        """The calls as the model's own call blocks (which the generation layer parses and checks): arguments
        that are not a JSON object go as the string they are, so that the call reads as malformed."""
        written = []
        for _, call in sorted(self._calls.items()):
            try:
                arguments: Any = json.loads(call["arguments"] or "{}")
            except ValueError:
                arguments = call["arguments"]
            body = json.dumps({"name": call["name"], calls.args_key: arguments}, ensure_ascii=False)
            written.append(f"{calls.open_tag}\n{body}\n{calls.close_tag}")
        return "\n".join(written)


def discover(http: httpx.Client, root: str, model: str | None) -> Served:
    """Asks the server at ``root`` what it serves; Unavailable or FailedPrecondition if it cannot say."""
    props = _probe_json(http, root, "/props")
    listed = _probe_json(http, root, "/v1/models") or {}
    models = [m for m in listed.get("data", []) if isinstance(m, dict)]
    if model is None:
        if not models:
            raise errors.FailedPrecondition(f"The upstream engine at {root} lists no model: set its model.")
        model = str(models[0]["id"])
    return Served(props, models, model)


def _probe_json(http: httpx.Client, root: str, path: str) -> dict | None:
    """GET ``path``'s JSON; None if the server has no such endpoint."""
    try:
        response = http.get(path)
    except httpx.TransportError as exc:
        raise errors.Unavailable(f"The upstream engine at {root} does not answer ({type(exc).__name__}).") from None
    if response.status_code in (404, 405, 501):
        return None
    if response.status_code == 503:
        raise errors.Unavailable(f"The upstream engine at {root} is not ready (it is loading its model).")
    if response.status_code in (401, 403):
        raise errors.FailedPrecondition(f"The upstream engine at {root} refused localgem's API key.")
    if response.status_code != 200:
        raise errors.Unavailable(f"The upstream engine at {root} answered {path} with {response.status_code}.")
    return response.json()


class OpenAIEngine:
    """One model of an OpenAI-compatible server. Construction asks the server what it serves (blocking:
    the model pool calls it off the event loop); ``errors.Unavailable`` if it does not answer."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        context_length: int | None = None,
        tokenizer: Path | None = None,
        kind: str = "auto",
        timeout: float = 600.0,
        probe_interval: float = 1.0,
    ) -> None:
        self.root = api_root(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.stats = EngineStats()
        with httpx.Client(base_url=self.root, headers=self._headers, timeout=10.0) as http:
            found = discover(http, self.root, model)
        self.flavour = flavour_of(found, kind)
        self.capabilities = EngineCapabilities(
            constrained_output=True, logprobs=True, renders_chat=self.flavour == GENERIC
        )
        self.model = model = found.model
        served = next((m for m in found.models if m.get("id") == model), {})
        meta = served.get("meta") or {}
        props = found.props or {}
        folder = tokenizer_folder(tokenizer)
        settings = props.get("default_generation_settings") or {}
        served_context = settings.get("n_ctx") or served.get("max_model_len") or meta.get("n_ctx_train")
        if not served_context and context_length is None:
            raise errors.FailedPrecondition(
                f"The upstream engine at {self.root} does not say its context length: set context_length."
            )
        context = min(int(served_context or context_length), context_length or int(served_context))  # type: ignore[arg-type]
        self.info = ModelInfo(
            context_length=context,
            trained_context_length=int(meta.get("n_ctx_train") or served_context or context),
            vocab_size=int(meta.get("n_vocab") or 0),
            chat_template=props.get("chat_template") or folder.chat_template,
            bos_token=props.get("bos_token") or folder.bos_token,
            eos_token=props.get("eos_token") or folder.eos_token,
            # llama-server's tokenizer adds BOS where its model wants one (add_special). vLLM renders a chat
            # template with the special tokens it writes and tokenizes it adding none: so does localgem, so
            # that its prompts are the ones vLLM's own chat API would make.
            add_bos=self.flavour != VLLM,
        )
        self.local_tokenizer = self._tokenizer_like_the_servers(tokenizer, served_file(found.props))
        # llama-server closes the connection after each stream without saying so (no ``Connection: close``):
        # one it had closed, taken again from the pool for the next request, fails that request.
        self._stream_headers = {"Connection": "close"} if found.props is not None else {}
        self._client: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up = True
        self._closed = threading.Event()
        self._probe_interval = probe_interval
        self._prober = threading.Thread(target=self._probe_loop, name="upstream-probe", daemon=True)
        self._prober.start()

    # -- the HTTP client ------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        """aiohttp, not httpx, on the hot path: its C HTTP parser spends about a quarter of httpx's CPU per
        request and half per relayed chunk (bench: localgem's own CPU shares the cores with the engine)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=600.0),
                # Idle connections go before servers close them (uvicorn and llama-server: after 5 s).
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=4.0),
                read_bufsize=1 << 22,  # an SSE line may hold a long text with its logprobs
                raise_for_status=False,
            )
            self._loop = loop
        return self._client

    def _down(self, exc: Exception) -> errors.Unavailable:
        self._up = False
        return errors.Unavailable(f"The upstream engine at {self.root} does not answer ({type(exc).__name__}).")

    def _probe_loop(self) -> None:
        with httpx.Client(base_url=self.root, headers=self._headers, timeout=2.0) as http:
            while not self._closed.wait(self._probe_interval):
                try:
                    response = http.get("/health")
                    if response.status_code == 404:
                        response = http.get("/v1/models")
                    self._up = response.status_code == 200
                except httpx.HTTPError:
                    self._up = False

    def healthy(self) -> bool:
        return self._up

    async def _error(self, response: aiohttp.ClientResponse) -> errors.ApiError:
        """The engine's refusal as ours: its 429 and 503 as Google's, its 400 (a grammar or schema it could
        not take) as a 400 that says so."""
        try:
            body = (await response.read()).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError):
            body = ""
        message = body
        try:
            parsed = json.loads(body)
            error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
            message = error.get("message", body) if isinstance(error, dict) else str(error)
        except ValueError:
            pass
        status = response.status
        if status == 429:
            return errors.ResourceExhausted(f"The upstream engine is at capacity: {message}")
        if status == 503:
            return errors.Unavailable(f"The upstream engine is unavailable: {message}")
        if status in (400, 422):
            return errors.InvalidArgument(f"The upstream engine refused the request: {message}")
        return errors.Internal(f"The upstream engine failed ({status}): {message}")

    # -- tokens -----------------------------------------------------------------------------------------

    def _tokenizer_like_the_servers(self, configured: Path | None, served: Path | None) -> LocalTokenizer | None:
        """A tokenizer in this process to use instead of the server's ``/tokenize`` (one round trip less per
        request, which on a busy engine's cores takes milliseconds): the configured one, else the GGUF file
        llama-server serves where this machine has it; used only if it tokenizes ``TOKENIZER_PROBES`` exactly
        as the server does. The configured one is used unchecked on a server with no ``/tokenize``."""
        path = configured or served
        if path is None:
            return None
        try:
            local = LocalTokenizer(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: the server's /tokenize instead
            log.warning("cannot read the tokenizer %s (%s): counting with the upstream engine's /tokenize", path, exc)
            return None
        with httpx.Client(base_url=self.root, headers=self._headers, timeout=10.0) as http:
            for text in TOKENIZER_PROBES:
                for add_bos in (False, True):
                    body = tokenize_body(self.flavour, self.model, text, add_bos, parse_special=True)
                    try:
                        response = http.post("/tokenize", json=body)
                    except httpx.TransportError:
                        return None  # it answered a moment ago: the server's /tokenize, checked request by request
                    if response.status_code in (404, 405):
                        return local if configured is not None else None
                    if response.status_code != 200 or local.tokenize(text, add_bos) != token_ids(response.json()):
                        log.warning(
                            "%s does not tokenize as the upstream engine at %s does: counting with its /tokenize",
                            path,
                            self.root,
                        )
                        return None
        return local

    async def tokenize(self, text: str, add_bos: bool = False, pictures: Sequence[Picture] = ()) -> list[int]:
        if pictures:
            raise errors.InvalidArgument("This model's upstream engine does not take images through localgem.")
        if self.local_tokenizer is not None:
            return await tokenize_in_process(self.local_tokenizer.tokenize, text, add_bos)
        body = tokenize_body(self.flavour, self.model, text, add_bos, parse_special=True)
        try:
            async with self._http().post(self.root + "/tokenize", json=body) as response:
                if response.status == 200:
                    return token_ids(json.loads(await response.read()))
                if response.status not in (404, 405):
                    raise await self._error(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._down(exc) from None
        raise errors.FailedPrecondition(
            f"The upstream engine at {self.root} cannot tokenize (no /tokenize), and the model has no "
            "tokenizer configured: localgem counts tokens exactly or not at all."
        )

    # -- constraints ------------------------------------------------------------------------------------

    def check_constraint(self, constraint: OutputConstraint) -> None:
        if self.flavour in (LLAMA_SERVER, VLLM):
            from localgem.engines.llama.constraints import grammar_for

            grammar_for(constraint)  # UnenforceableSchema where no grammar can enforce it
            return
        if isinstance(constraint, ChoiceOutput):
            raise UnenforceableSchema(
                None, "this upstream engine takes JSON schemas only, not an enum answered as plain text"
            )

    def _constraint_fields(
        self, constraint: OutputConstraint | None, declared: tuple[dict[str, Any], ...] = ()
    ) -> dict[str, Any]:
        if constraint is None:
            return {}
        self.check_constraint(constraint)
        if self.flavour == LLAMA_SERVER:
            from localgem.engines.llama.constraints import grammar_for
            from localgem.engines.llama.schema_grammar import tool_calls_grammar

            if isinstance(constraint, ToolCalls) and not constraint.required:
                # llama.cpp's lazy grammar matches from the trigger on (the open tag included).
                return {
                    "grammar": tool_calls_grammar(constraint),
                    "grammar_lazy": True,
                    "grammar_triggers": [{"type": _TRIGGER_WORD, "value": constraint.open_tag}],
                    "preserved_tokens": [constraint.open_tag],
                }
            return {"grammar": grammar_for(constraint).gbnf}
        if self.flavour == VLLM:
            from localgem.engines.llama.constraints import grammar_for

            if isinstance(constraint, ToolCalls) and not constraint.required:
                return {"response_format": structural_tag(constraint)}
            return {"structured_outputs": {"grammar": grammar_for(constraint).gbnf}}
        if isinstance(constraint, ToolCalls):
            return tools_fields(constraint, declared)
        assert isinstance(constraint, JsonOutput)
        if constraint.schema is None:
            return {"response_format": {"type": "json_object"}}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": constraint.schema, "strict": True},
            }
        }

    # -- generation -------------------------------------------------------------------------------------

    def _endpoint(self, request: GenerationRequest, index: int) -> tuple[str, dict[str, Any]]:
        """Where a candidate's request goes, and its body."""
        if request.adapter is not None:
            raise errors.InvalidArgument("Tuned models do not run on an upstream engine.")
        if not self.capabilities.renders_chat:
            body = {"prompt": request.prompt_tokens, **self._sampling(request, index)}
            if request.logprobs is not None:
                body["logprobs"] = max(request.logprobs, 1)  # /v1/completions: how many alternatives per token
            if self.flavour == LLAMA_SERVER:
                body["cache_prompt"] = True  # reuse the engine's KV cache for a shared prefix
            return "/v1/completions", body | self._constraint_fields(request.constraint)
        if request.chat is None:
            raise errors.Internal("An upstream chat engine was given no conversation.")
        body = {"messages": openai_messages(request.chat.messages), **self._sampling(request, index)}
        if request.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = request.logprobs
        return "/v1/chat/completions", body | self._constraint_fields(request.constraint, request.chat.tools)

    def _sampling(self, request: GenerationRequest, index: int) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": max(sampling.temperature, 0.0),
            "top_p": sampling.top_p,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
        }
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k  # llama-server, vLLM, SGLang
        if sampling.seed is not None:
            body["seed"] = sampling.seed + index  # candidates differ, reproducibly
        if request.stop_sequences:
            body["stop"] = list(request.stop_sequences)
        return body

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        self.stats.requests_started += 1
        finished = False
        try:
            for index in range(request.candidates):
                # aclosing: a consumer that leaves closes the candidate's stream (and its upstream request) now.
                async with aclosing(self._candidate(request, index)) as events:
                    async for event in events:
                        yield event
                        if isinstance(event, DeadlineReached):
                            finished = True
                            return
            finished = True
            self.stats.requests_finished += 1
        finally:
            if not finished:
                self.stats.requests_aborted += 1

    async def _candidate(self, request: GenerationRequest, index: int) -> AsyncGenerator[EngineEvent, None]:
        path, body = self._endpoint(request, index)
        http = self._http()
        loop = asyncio.get_running_loop()
        produced = 0
        reason: FinishReason | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        calls = CallDeltas()
        self.stats.active_sequences += 1
        try:
            try:
                # Leaving this block (a client that left, a deadline) closes the response: the engine sees
                # the connection close and aborts the request.
                async with http.post(self.root + path, json=body, headers=self._stream_headers) as response:
                    if response.status != 200:
                        self.stats.requests_rejected += 1
                        raise await self._error(response)
                    read = response.content.readline
                    while True:
                        if request.deadline is None:
                            line = await read()
                        elif request.deadline <= loop.time():
                            yield DeadlineReached()
                            return
                        else:
                            try:
                                async with asyncio.timeout_at(request.deadline):
                                    line = await read()
                            except aiohttp.ServerTimeoutError:
                                raise  # the engine said nothing for sock_read seconds: it is down (below)
                            except TimeoutError:
                                yield DeadlineReached()
                                return
                        if not line:
                            break  # the end of the stream
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            error = chunk["error"]
                            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                            raise errors.Internal(f"The upstream engine failed mid-stream: {message}")
                        usage = chunk.get("usage") or usage
                        timings = chunk.get("timings") or timings
                        for choice in chunk.get("choices") or ():
                            delta = choice.get("delta")  # the chat API's form
                            text = (delta.get("content") if delta else choice.get("text")) or ""
                            if delta and delta.get("tool_calls"):
                                calls.add(delta["tool_calls"])
                            steps = _logprobs(choice.get("logprobs"))
                            produced += max(len(steps), 1 if text else 0)
                            if text or steps:
                                yield TextDelta(index, text, steps if request.logprobs is not None else ())
                            if choice.get("finish_reason"):
                                reason = _FINISH.get(choice["finish_reason"], FinishReason.STOP)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._down(exc) from None
        finally:
            self.stats.active_sequences -= 1
        if calls and isinstance(request.constraint, ToolCalls):
            yield TextDelta(index, calls.blocks(request.constraint))
        output = int(usage.get("completion_tokens") or timings.get("predicted_n") or produced)
        prompt = int(usage.get("prompt_tokens") or len(request.prompt_tokens))
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is None:
            cached = timings.get("cache_n", 0)
        self.stats.prompt_tokens_reused += int(cached or 0)
        self.stats.prompt_tokens_evaluated += max(prompt - int(cached or 0), 0)
        self.stats.tokens_generated += output
        self.stats.last_request_tokens_generated = output
        if index == 0:
            # A server that rendered the prompt itself counted it: its count is the one usage reports.
            counted = prompt if self.capabilities.renders_chat and usage.get("prompt_tokens") else None
            yield Admitted(cached_tokens=int(cached or 0), prompt_tokens=counted)
        yield CandidateFinished(index, reason or FinishReason.STOP, output)

    async def keep_prefix(self, key: str, prompt: list[int]) -> None:
        raise errors.Unimplemented("An upstream engine keeps no prefixes: it caches prompt prefixes itself.")

    async def drop_prefix(self, key: str) -> None:
        pass

    async def close(self) -> None:
        self._closed.set()
        if self.local_tokenizer is not None:
            self.local_tokenizer.close()
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # its event loop is gone
                pass
            self._client = None


def _logprobs(raw: Any) -> tuple[StepLogprobs, ...]:
    """A chunk's log probabilities, in either form servers send: OpenAI's completions form (``tokens``,
    ``token_logprobs``, ``top_logprobs``) or the chat form llama-server uses (``content``: one entry a token)."""
    if not isinstance(raw, dict):
        return ()
    steps: list[StepLogprobs] = []
    if isinstance(raw.get("content"), list):
        for entry in raw["content"]:
            chosen = TokenLogprob(int(entry.get("id", -1)), entry.get("token", ""), float(entry.get("logprob", 0.0)))
            top = tuple(
                TokenLogprob(int(t.get("id", -1)), t.get("token", ""), float(t.get("logprob", 0.0)))
                for t in entry.get("top_logprobs") or ()
            )
            steps.append(StepLogprobs(chosen, top))
        return tuple(steps)
    tokens = raw.get("tokens") or []
    values = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    for token, value, top in zip(tokens, values, tops, strict=False):
        # vLLM writes a probability of zero (a log probability of -inf) as null: -9999, as its chat API does.
        ranked = sorted(((t, _logprob(v)) for t, v in (top or {}).items()), key=lambda item: -item[1])
        alternatives = tuple(TokenLogprob(-1, t, v) for t, v in ranked)
        steps.append(StepLogprobs(TokenLogprob(-1, token, _logprob(value)), alternatives))
    return tuple(steps)


def _logprob(value: Any) -> float:
    return -9999.0 if value is None else max(float(value), -9999.0)


def check_constraint(constraint: OutputConstraint) -> None:
    """Before a model is loaded: which upstream it is is not known yet, so anything a schema can say passes
    here; the loaded engine's ``check_constraint`` (called before every request) decides."""


def openai_factory(settings: Any) -> Any:
    """The engine's factory (``engines.registry``): a model entry → an engine for its upstream server (a chat
    model), or an embedding batcher over it (``task = "embed"``: its ``/v1/embeddings``)."""

    def load(entry: Any) -> Any:
        config = entry.config
        if not config.base_url:
            raise errors.FailedPrecondition(f"{entry.name} runs on an upstream engine but has no base_url.")
        if entry.embeds:
            from localgem.engines.embedding.engine import EmbeddingBatcher
            from localgem.engines.openai.embedder import OpenAIEmbedder

            embedder = OpenAIEmbedder(
                config.base_url,
                api_key=config.api_key,
                model=config.upstream_model,
                max_tokens=config.input_token_limit or config.context_length,
            )
            return EmbeddingBatcher(embedder, max_texts=settings.embedding_batch_size * 16)
        return OpenAIEngine(
            config.base_url,
            api_key=config.api_key,
            model=config.upstream_model,
            context_length=config.context_length,
            tokenizer=config.tokenizer,
            kind=config.upstream_kind,
        )

    return load
