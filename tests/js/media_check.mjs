// The official JS SDK (@google/genai) against localgem's image and video generation (tiny pipelines):
// generateVideos + getVideosOperation (Veo's predictLongRunning), generateContent with IMAGE output.
// Prints one JSON object with what it saw.
import { GoogleGenAI } from "@google/genai";

const [baseUrl, apiKey] = process.argv.slice(2);
const ai = new GoogleGenAI({ apiKey, httpOptions: { baseUrl, apiVersion: "v1beta" } });
const seen = {};

let operation = await ai.models.generateVideos({
  model: "veo-3.0-generate-001",
  prompt: "Waves on a beach",
  config: { aspectRatio: "9:16", numberOfVideos: 1, negativePrompt: "people" },
});
seen.started = { name: operation.name, done: operation.done ?? false };
let polls = 0;
while (!operation.done && polls < 600) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  operation = await ai.operations.getVideosOperation({ operation });
  polls += 1;
}
const video = operation.response.generatedVideos[0].video;
const download = await fetch(video.uri, { headers: { "x-goog-api-key": apiKey } });
const bytes = Buffer.from(await download.arrayBuffer());
seen.video = {
  done: operation.done,
  uri: video.uri,
  status: download.status,
  type: download.headers.get("content-type"),
  box: bytes.subarray(4, 8).toString("latin1"),
  size: bytes.length,
};

const drawn = await ai.models.generateContent({
  model: "gemini-2.5-flash-image",
  contents: "A kite over the sea",
  config: { responseModalities: ["IMAGE"], imageConfig: { aspectRatio: "4:3" }, seed: 3 },
});
const part = drawn.candidates[0].content.parts[0];
const png = Buffer.from(part.inlineData.data, "base64");
seen.image = {
  mimeType: part.inlineData.mimeType,
  signature: png.subarray(1, 4).toString("latin1"),
  width: png.readUInt32BE(16),
  height: png.readUInt32BE(20),
  imageTokens: drawn.usageMetadata.candidatesTokensDetails[0],
};
console.log(JSON.stringify(seen));
