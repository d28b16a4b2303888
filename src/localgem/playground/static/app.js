// The localgem playground: plain JavaScript over the server's own Gemini API (v1beta), no libraries.
// The API key stays in this browser (localStorage) and travels only as the x-goog-api-key header.
// Model output is only ever set as textContent, never parsed as markup.
"use strict";

const API = "/v1beta";
const KEY_STORAGE = "localgem.apiKey";
const $ = (id) => document.getElementById(id);

const state = {
  history: [], // Content objects sent so far: {role, parts}
  attachments: [], // uploaded files for the next message: {name, uri, mimeType, displayName}
  busy: false,
  abort: null,
};

// ---- HTTP ------------------------------------------------------------------------------------

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { "x-goog-api-key": apiKey(), ...headers }, signal };
  if (body !== undefined) {
    init.body = typeof body === "string" || body instanceof Blob ? body : JSON.stringify(body);
    if (!(body instanceof Blob) && !headers["Content-Type"]) init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function errorText(response) {
  const raw = await response.text();
  try {
    const error = JSON.parse(raw).error;
    if (error) return `${error.code} ${error.status}: ${error.message}`;
  } catch (_) {
    /* not JSON */
  }
  return `${response.status} ${response.statusText}: ${raw.slice(0, 500)}`;
}

// Server-sent events from a fetch body: "data: {...}" lines, events separated by a blank line.
async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = done ? "" : events.pop();
    for (const event of events) {
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield JSON.parse(data);
    }
    if (done) return;
  }
}

// ---- The request that the screen describes ---------------------------------------------------------

function numberOf(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : Number(raw);
}

function parseJsonField(id, what) {
  const raw = $(id).value.trim();
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

function generationConfig() {
  const config = {};
  const put = (key, value) => {
    if (value !== undefined && !Number.isNaN(value)) config[key] = value;
  };
  put("temperature", numberOf("temperature"));
  put("topP", numberOf("top-p"));
  put("topK", numberOf("top-k"));
  put("maxOutputTokens", numberOf("max-tokens"));
  const stops = $("stop").value.split("\n").filter((line) => line !== "");
  if (stops.length) config.stopSequences = stops;
  if ($("json-mode").checked) {
    config.responseMimeType = "application/json";
    const schema = parseJsonField("schema", "The schema");
    if (schema !== undefined) config[$("schema-kind").value] = schema;
  }
  return config;
}

function functionDeclarations() {
  if (!$("tools-on").checked) return undefined;
  let declarations = parseJsonField("functions", "The function declarations");
  if (declarations === undefined) return undefined;
  if (!Array.isArray(declarations)) declarations = [declarations];
  return declarations;
}

// The pending message (what is typed and attached), as a user Content, or null.
function pendingContent() {
  const parts = state.attachments.map((file) => ({ fileData: { fileUri: file.uri, mimeType: file.mimeType } }));
  const text = $("prompt").value;
  if (text.trim()) parts.push({ text });
  return parts.length ? { role: "user", parts } : null;
}

// The generateContent body for `contents`; throws with a readable message on a bad setting.
function requestBody(contents) {
  const body = { contents };
  const system = $("system").value.trim();
  if (system) body.systemInstruction = { parts: [{ text: system }] };
  const declarations = functionDeclarations();
  if (declarations) body.tools = [{ functionDeclarations: declarations }];
  const config = generationConfig();
  if (Object.keys(config).length) body.generationConfig = config;
  return body;
}

function model() {
  return $("model").value;
}

// ---- Rendering ---------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function scrollDown() {
  $("messages").scrollTop = $("messages").scrollHeight;
}

function fileLabel(fileData) {
  const known = state.shown?.get(fileData.fileUri);
  return `${known || fileData.fileUri} (${fileData.mimeType})`;
}

// A message box; returns an object that renders the parts of one Content into it as they stream in.
function messageBox(role) {
  const box = element("div", `message ${role}`);
  box.append(element("div", "role", role === "user" ? "You" : model()));
  const body = element("div", "body");
  box.append(body);
  $("messages").append(box);
  return { box, body };
}

function renderParts(body, parts) {
  body.replaceChildren();
  let text = null;
  for (const part of parts) {
    if (part.text !== undefined && !part.thought) {
      // Consecutive text parts form one paragraph, as the stream delivers them piece by piece.
      if (!text) body.append((text = element("div", "text", "")));
      text.textContent += part.text;
      continue;
    }
    text = null;
    if (part.thought) body.append(element("div", "thought", part.text || ""));
    else if (part.fileData) body.append(element("div", "part", `file: ${fileLabel(part.fileData)}`));
    else if (part.functionCall) {
      const call = part.functionCall;
      body.append(element("div", "part function-call", `functionCall ${call.name}(${JSON.stringify(call.args || {})})`));
    } else if (part.functionResponse) {
      const answer = part.functionResponse;
      body.append(element("div", "part", `functionResponse ${answer.name}: ${JSON.stringify(answer.response)}`));
    } else if (part.inlineData) {
      const img = element("img");
      if (part.inlineData.mimeType?.startsWith("image/")) {
        img.src = `data:${part.inlineData.mimeType};base64,${part.inlineData.data}`;
        body.append(img);
      } else body.append(element("div", "part", `inlineData ${part.inlineData.mimeType}`));
    } else body.append(element("div", "part", JSON.stringify(part)));
  }
}

function renderUser(content) {
  const { body } = messageBox("user");
  renderParts(body, content.parts);
  scrollDown();
}

function usageLine(usage) {
  if (!usage) return "";
  const bits = [`prompt ${usage.promptTokenCount ?? 0}`, `output ${usage.candidatesTokenCount ?? 0}`];
  if (usage.thoughtsTokenCount) bits.push(`thoughts ${usage.thoughtsTokenCount}`);
  bits.push(`total ${usage.totalTokenCount ?? 0}`);
  return `Tokens: ${bits.join(" · ")}`;
}

// ---- Chatting -----------------------------------------------------------------------------------

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("stop-button").hidden = !busy;
  for (const button of document.querySelectorAll(".function-answer button")) button.disabled = busy;
}

async function send(event) {
  event?.preventDefault();
  if (state.busy) return;
  const content = pendingContent();
  if (!content) return;
  await generate([...state.history, content], () => {
    $("prompt").value = "";
    state.attachments = [];
    renderAttachments();
    renderUser(content);
  });
}

// Count the prompt's tokens, then stream the answer. `accepted` runs once the request is known to be valid.
async function generate(contents, accepted) {
  showError("");
  let body;
  try {
    body = requestBody(contents);
  } catch (error) {
    showError(error.message);
    return;
  }
  setBusy(true);
  const controller = new AbortController();
  state.abort = controller;
  let promptTokens = null;
  try {
    const counted = await api(`${API}/models/${model()}:countTokens`, {
      method: "POST",
      body: { generateContentRequest: { model: `models/${model()}`, ...body } },
      signal: controller.signal,
    });
    promptTokens = (await counted.json()).totalTokens;
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message); // what cannot be counted cannot be answered
    state.abort = null;
    setBusy(false);
    return;
  }
  state.history = contents;
  accepted?.();
  const reply = messageBox("model");
  reply.box.dataset.state = "streaming";
  const usage = element("div", "usage", `Prompt: ${promptTokens} tokens (countTokens)`);
  reply.box.append(usage);
  const parts = [];
  let finish = null;
  try {
    const response = await api(`${API}/models/${model()}:streamGenerateContent?alt=sse`, {
      method: "POST",
      body,
      signal: controller.signal,
    });
    for await (const chunk of serverSentEvents(response)) {
      reply.box.dataset.chunks = Number(reply.box.dataset.chunks || 0) + 1;
      if (chunk.error) throw new Error(`${chunk.error.code} ${chunk.error.status}: ${chunk.error.message}`);
      const candidate = chunk.candidates?.[0];
      for (const part of candidate?.content?.parts || []) {
        const last = parts[parts.length - 1];
        const joins = part.text !== undefined && last?.text !== undefined && !!part.thought === !!last.thought;
        if (joins && Object.keys(part).every((key) => key === "text" || key === "thought")) last.text += part.text;
        else parts.push({ ...part });
      }
      if (candidate?.finishReason) finish = candidate.finishReason;
      if (chunk.usageMetadata) {
        usage.textContent = `${usageLine(chunk.usageMetadata)} (countTokens said ${promptTokens})`;
        if (finish && finish !== "STOP") usage.textContent += ` · finish ${finish}`;
      }
      renderParts(reply.body, parts);
      scrollDown();
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    state.abort = null;
    reply.box.dataset.state = "done";
    if (parts.length) state.history = [...state.history, { role: "model", parts }];
    setBusy(false);
  }
  const calls = parts.filter((part) => part.functionCall).map((part) => part.functionCall);
  if (calls.length) offerFunctionAnswers(reply.box, calls);
  scrollDown();
}

// Under a model turn that called functions: a place to type each function's result and send it back.
function offerFunctionAnswers(box, calls) {
  const form = element("form", "function-answer");
  const fields = calls.map((call) => {
    const label = element("label", "", `Result of ${call.name} (JSON object)`);
    const field = element("textarea");
    field.rows = 2;
    field.value = '{"result": ""}';
    form.append(label, field);
    return field;
  });
  const button = element("button", "", "Send function response");
  button.type = "submit";
  form.append(button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let parts;
    try {
      parts = calls.map((call, i) => {
        let response = JSON.parse(fields[i].value || "{}");
        if (response === null || typeof response !== "object" || Array.isArray(response)) response = { result: response };
        const answer = { name: call.name, response };
        if (call.id) answer.id = call.id;
        return { functionResponse: answer };
      });
    } catch (error) {
      showError(`A function result is not valid JSON: ${error.message}`);
      return;
    }
    const content = { role: "user", parts };
    await generate([...state.history, content], () => {
      form.remove();
      renderUser(content);
    });
  });
  box.append(form);
}

// ---- Files: the Files API's resumable upload, then fileData parts -----------------------------------

async function upload(file) {
  const mimeType = file.type || "application/octet-stream";
  const started = await api("/upload/v1beta/files", {
    method: "POST",
    headers: {
      "X-Goog-Upload-Protocol": "resumable",
      "X-Goog-Upload-Command": "start",
      "X-Goog-Upload-Header-Content-Length": String(file.size),
      "X-Goog-Upload-Header-Content-Type": mimeType,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ file: { displayName: file.name } }),
  });
  // As the JS SDK does, send the chunk to this origin whatever host the server named.
  const target = new URL(started.headers.get("x-goog-upload-url"), location.href);
  const finished = await api(target.pathname + target.search, {
    method: "POST",
    headers: { "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0" },
    body: file,
  });
  let record = (await finished.json()).file;
  for (let wait = 250; record.state === "PROCESSING"; wait = Math.min(2000, wait * 2)) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    record = await (await api(`${API}/${record.name}`)).json();
  }
  if (record.state === "FAILED") throw new Error(`${file.name}: ${record.error?.message || "processing failed"}`);
  return { name: record.name, uri: record.uri, mimeType: record.mimeType || mimeType, displayName: file.name };
}

async function attach(event) {
  const files = [...event.target.files];
  event.target.value = "";
  showError("");
  for (const file of files) {
    const chip = element("span", "chip uploading", `Uploading ${file.name}…`);
    $("attachments").append(chip);
    try {
      const uploaded = await upload(file);
      state.shown.set(uploaded.uri, uploaded.displayName);
      state.attachments.push(uploaded);
    } catch (error) {
      showError(`Upload of ${file.name} failed: ${error.message}`);
    } finally {
      chip.remove();
      renderAttachments();
    }
  }
}

function renderAttachments() {
  const chips = state.attachments.map((file, i) => {
    const chip = element("span", "chip attachment", `${file.displayName} (${file.mimeType})`);
    chip.dataset.uri = file.uri;
    const remove = element("button", "", "×");
    remove.type = "button";
    remove.title = "Remove";
    remove.addEventListener("click", () => {
      state.attachments.splice(i, 1);
      renderAttachments();
    });
    chip.append(remove);
    return chip;
  });
  $("attachments").querySelectorAll(".attachment").forEach((chip) => chip.remove());
  $("attachments").append(...chips);
  countSoon();
}

// ---- Token count of what is typed -------------------------------------------------------------------

let countTimer = null;
function countSoon() {
  clearTimeout(countTimer);
  countTimer = setTimeout(countNow, 400);
}

async function countNow() {
  const content = pendingContent();
  if (!content || !model() || !apiKey()) {
    $("token-count").textContent = "";
    return;
  }
  try {
    const body = requestBody([...state.history, content]);
    const response = await api(`${API}/models/${model()}:countTokens`, {
      method: "POST",
      body: { generateContentRequest: { model: `models/${model()}`, ...body } },
    });
    $("token-count").textContent = `${(await response.json()).totalTokens} tokens in the prompt`;
  } catch (error) {
    $("token-count").textContent = "";
  }
}

// ---- Get code -----------------------------------------------------------------------------------

// A JSON value as a Python literal (JSON's string escapes are Python's too).
function python(value, indent = "") {
  const inner = indent + "    ";
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((item) => inner + python(item, inner)).join(",\n")},\n${indent}]`;
  }
  const keys = Object.keys(value);
  if (!keys.length) return "{}";
  return `{\n${keys.map((key) => `${inner}${JSON.stringify(key)}: ${python(value[key], inner)}`).join(",\n")},\n${indent}}`;
}

const SNAKE = (key) => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

function codeFor(body) {
  const base = location.origin;
  const url = `${base}${API}/models/${model()}:streamGenerateContent?alt=sse`;
  const curl = [
    `curl "${url}" \\`,
    `  -H "x-goog-api-key: $GEMINI_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -X POST --no-buffer -d @- <<'EOF'`,
    JSON.stringify(body, null, 2),
    "EOF",
  ].join("\n");

  const config = [];
  if (body.systemInstruction) config.push(["system_instruction", body.systemInstruction.parts[0].text]);
  for (const [key, value] of Object.entries(body.generationConfig || {})) config.push([SNAKE(key), value]);
  const lines = [
    "import os",
    "",
    "from google import genai",
    "from google.genai import types",
    "",
    "client = genai.Client(",
    '    api_key=os.environ["GEMINI_API_KEY"],',
    `    http_options=types.HttpOptions(base_url=${JSON.stringify(base)}, api_version="v1beta"),`,
    ")",
    "",
    "stream = client.models.generate_content_stream(",
    `    model=${JSON.stringify(model())},`,
    `    contents=${python(body.contents, "    ")},`,
  ];
  if (config.length || body.tools) {
    lines.push("    config=types.GenerateContentConfig(");
    for (const [key, value] of config) lines.push(`        ${key}=${python(value, "        ")},`);
    if (body.tools) {
      const declarations = python(body.tools[0].functionDeclarations, "            ");
      lines.push(`        tools=[types.Tool(function_declarations=${declarations})],`);
    }
    lines.push("    ),");
  }
  lines.push(
    ")",
    "for chunk in stream:",
    "    if chunk.function_calls:",
    "        print(chunk.function_calls)",
    "    print(chunk.text or \"\", end=\"\", flush=True)",
    "print()",
  );
  return { curl, python: lines.join("\n") };
}

function showCode() {
  showError("");
  const pending = pendingContent();
  const contents = pending ? [...state.history, pending] : state.history;
  try {
    const code = codeFor(requestBody(contents));
    $("code-curl").textContent = code.curl;
    $("code-python").textContent = code.python;
    $("code-panel").hidden = false;
  } catch (error) {
    showError(error.message);
  }
}

// ---- Start ----------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  const previous = select.value;
  select.replaceChildren();
  if (!apiKey()) {
    $("key-status").textContent = "Enter an API key to start.";
    return;
  }
  try {
    const models = [];
    let pageToken = "";
    do {
      const page = await (await api(`${API}/models?pageSize=1000${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ""}`)).json();
      models.push(...(page.models || []));
      pageToken = page.nextPageToken || "";
    } while (pageToken);
    for (const entry of models) {
      if (!(entry.supportedGenerationMethods || []).includes("generateContent")) continue;
      const id = entry.name.replace(/^models\//, "");
      const option = element("option", "", entry.displayName && entry.displayName !== id ? `${id} — ${entry.displayName}` : id);
      option.value = id;
      select.append(option);
    }
    if ([...select.options].some((option) => option.value === previous)) select.value = previous;
    $("key-status").textContent = `${select.options.length} models`;
  } catch (error) {
    $("key-status").textContent = "";
    showError(`Could not list the models: ${error.message}`);
  }
}

function clearChat() {
  if (state.abort) state.abort.abort();
  state.history = [];
  $("messages").replaceChildren();
  $("code-panel").hidden = true;
  showError("");
  countSoon();
}

function start() {
  state.shown = new Map(); // file URI → the name it was uploaded under
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    showError("");
    loadModels();
  });
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    loadModels();
  });
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send(event);
  });
  $("prompt").addEventListener("input", countSoon);
  $("settings").addEventListener("change", countSoon);
  $("file").addEventListener("change", attach);
  $("stop-button").addEventListener("click", () => state.abort?.abort());
  $("clear").addEventListener("click", clearChat);
  $("get-code").addEventListener("click", showCode);
  $("close-code").addEventListener("click", () => ($("code-panel").hidden = true));
  loadModels();
}

start();
