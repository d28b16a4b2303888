// The official JS SDK (@google/genai) against localgem: files, generateContent with a file,
// structured output, function calling. Prints one JSON object with what it saw.
import { GoogleGenAI, createPartFromUri, Type, FunctionCallingConfigMode } from "@google/genai";
import { writeFileSync } from "node:fs";

const [baseUrl, apiKey, workDir] = process.argv.slice(2);
const ai = new GoogleGenAI({ apiKey, httpOptions: { baseUrl, apiVersion: "v1beta" } });
const seen = {};

const path = `${workDir}/story.txt`;
writeFileSync(path, "Mira keeps bees on the roof of the old library. Every June she sells honey to the baker.");
const file = await ai.files.upload({ file: path, config: { mimeType: "text/plain", displayName: "story" } });
seen.uploaded = { name: file.name, state: file.state, sizeBytes: file.sizeBytes, displayName: file.displayName };
seen.got = (await ai.files.get({ name: file.name })).name;
const listed = [];
for await (const f of await ai.files.list({ config: { pageSize: 10 } })) listed.push(f.name);
seen.listed = listed;

const withFile = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: [createPartFromUri(file.uri, file.mimeType), "Who buys the honey?"],
  config: { temperature: 0, maxOutputTokens: 24 },
});
seen.withFile = { text: withFile.text, promptTokens: withFile.usageMetadata.promptTokenCount };

const structured = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: "Describe a cat.",
  config: {
    responseMimeType: "application/json",
    responseSchema: {
      type: Type.OBJECT,
      properties: { name: { type: Type.STRING }, legs: { type: Type.INTEGER, minimum: 0, maximum: 8 } },
      required: ["name", "legs"],
    },
    temperature: 0,
  },
});
seen.structured = JSON.parse(structured.text);

const called = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: "Add 2 and 3.",
  config: {
    tools: [{ functionDeclarations: [{
      name: "add",
      description: "Add two integers.",
      parameters: { type: Type.OBJECT, properties: { a: { type: Type.INTEGER }, b: { type: Type.INTEGER } }, required: ["a", "b"] },
    }] }],
    toolConfig: { functionCallingConfig: { mode: FunctionCallingConfigMode.ANY } },
    temperature: 0,
  },
});
seen.functionCalls = called.functionCalls;

const stream = await ai.models.generateContentStream({ model: "gemini-2.5-flash", contents: "Say hi.", config: { maxOutputTokens: 8 } });
let streamed = "";
for await (const chunk of stream) streamed += chunk.text ?? "";
seen.streamed = streamed;

await ai.files.delete({ name: file.name });
try {
  await ai.files.get({ name: file.name });
  seen.afterDelete = "still there";
} catch (error) {
  seen.afterDelete = error.status;
}
console.log(JSON.stringify(seen));
