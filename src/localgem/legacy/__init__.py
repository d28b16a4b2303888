"""The PaLM-era methods that Gemini's reference keeps (``generateText``), served over the same generation."""
