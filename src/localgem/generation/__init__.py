"""generateContent, streamGenerateContent and countTokens: one entry point that turns a request (REST, batch
line, Live turn) into a plan an engine runs, and engine events back into responses."""
