"""embedContent, batchEmbedContents, countTokens on embedding models, and the PaLM-era embedText methods."""
