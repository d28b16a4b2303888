"""The PaLM-era methods Gemini's reference keeps (generateText, generateMessage, countTextTokens,
countMessageTokens), generateAnswer (AQA) and the ``dynamic/{id}`` endpoints, served over the same generation."""
