// The official JS SDK (@google/genai) against localgem: files, generateContent with a file,
// structured output, function calling, File Search stores. Prints one JSON object with what it saw.
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
const store = await ai.fileSearchStores.create({ config: { displayName: "js store" } });
const manual = `${workDir}/kettle.txt`;
writeFileSync(manual, "The Zorblax 9000 kettle boils water in exactly 47 seconds.");
let upload = await ai.fileSearchStores.uploadToFileSearchStore({
  fileSearchStoreName: store.name,
  file: manual,
  config: { mimeType: "text/plain", displayName: "kettle", customMetadata: [{ key: "kind", stringValue: "manual" }] },
});
while (!upload.done) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  upload = await ai.operations.get({ operation: upload });
}
const importedFile = await ai.files.upload({ file: path, config: { mimeType: "text/plain", displayName: "story2" } });
let imported = await ai.fileSearchStores.importFile({ fileSearchStoreName: store.name, fileName: importedFile.name });
while (!imported.done) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  imported = await ai.operations.get({ operation: imported });
}
const documents = [];
for await (const d of await ai.fileSearchStores.documents.list({ parent: store.name })) documents.push(d.displayName);
const grounded = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: "How long does the Zorblax 9000 take to boil water?",
  config: { tools: [{ fileSearch: { fileSearchStoreNames: [store.name], topK: 1 } }], maxOutputTokens: 8 },
});
const doc = await ai.fileSearchStores.documents.get({ name: upload.response.documentName });
await ai.fileSearchStores.documents.delete({ name: doc.name, config: { force: true } });
const storeAfter = await ai.fileSearchStores.get({ name: store.name });
await ai.fileSearchStores.delete({ name: store.name, config: { force: true } });
seen.fileSearch = {
  uploadedDocument: upload.response.documentName,
  importedDocument: imported.response.documentName,
  documents: documents.sort(),
  groundingTitle: grounded.candidates[0].groundingMetadata.groundingChunks[0].retrievedContext.title,
  documentState: doc.state,
  activeAfterDelete: storeAfter.activeDocumentsCount,
  stores: [],
};
for await (const s of await ai.fileSearchStores.list()) seen.fileSearch.stores.push(s.name);
seen.fileSearch.deletedStore = store.name;

const coded = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: "Calculate 12345 * 6789 with Python code.",
  config: { tools: [{ codeExecution: {} }], temperature: 0, maxOutputTokens: 200 },
});
const codedParts = coded.candidates[0].content.parts;
seen.codeExecution = {
  code: codedParts.find((p) => p.executableCode)?.executableCode,
  result: codedParts.find((p) => p.codeExecutionResult)?.codeExecutionResult,
};
const thought = await ai.models.generateContent({
  model: "gemini-2.5-flash",
  contents: "Why is the sky blue?",
  config: { thinkingConfig: { thinkingBudget: 16, includeThoughts: true }, temperature: 0, maxOutputTokens: 64 },
});
seen.thinking = {
  firstIsThought: thought.candidates[0].content.parts[0].thought === true,
  thoughts: thought.usageMetadata.thoughtsTokenCount,
  text: thought.text,
};

console.log(JSON.stringify(seen));
