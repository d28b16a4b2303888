// The official JS SDK's Live API (ai.live.connect) against localgem: two turns (clientContent, then
// realtimeInput text), and a bad key's close reason. Prints one JSON object with what it saw.
import { GoogleGenAI, Modality } from "@google/genai";

const [baseUrl, apiKey] = process.argv.slice(2);
const model = "gemini-live-2.5-flash-preview";

function open(key) {
  const ai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl, apiVersion: "v1beta" } });
  const messages = [];
  const waiting = [];
  const state = { closed: null };
  const deliver = () => {
    while (waiting.length && (messages.length || state.closed)) waiting.shift()();
  };
  const sessionPromise = ai.live.connect({
    model,
    config: { responseModalities: [Modality.TEXT], maxOutputTokens: 12, temperature: 0 },
    callbacks: {
      onmessage: (m) => { messages.push(m); deliver(); },
      onerror: (e) => { state.error = String(e.message ?? e); },
      onclose: (e) => { state.closed = { code: e.code, reason: e.reason }; deliver(); },
    },
  });
  const next = () => new Promise((resolve) => { waiting.push(resolve); deliver(); }).then(() => messages.shift());
  return { sessionPromise, next, state };
}

async function turn(next) {
  let text = "";
  for (;;) {
    const m = await next();
    if (m === undefined) throw new Error("the session closed mid-turn");
    text += m.text ?? "";
    if (m.serverContent?.turnComplete) return { text, usage: m.usageMetadata };
  }
}

const seen = {};
const { sessionPromise, next, state } = open(apiKey);
const session = await sessionPromise;
const setup = await next();
seen.setupComplete = setup.setupComplete !== undefined;
session.sendClientContent({ turns: "Name a colour.", turnComplete: true });
seen.first = await turn(next);
session.sendRealtimeInput({ text: "Name another one." });
seen.second = await turn(next);
session.close();

// A bad key: the server closes the socket with a reason, which reaches onclose (connect() itself waits
// for a setupComplete that never comes, with Google as here).
const bad = open("not-a-key");
seen.badKeyMessage = (await bad.next()) ?? null;
seen.badKeyClose = bad.state.closed;
console.log(JSON.stringify(seen));
process.exit(0);
