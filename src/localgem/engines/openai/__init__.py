"""An engine that is another server: anything that speaks the OpenAI API (llama.cpp's llama-server, vLLM,
SGLang, Ollama, LocalAI), reached over HTTP (see ``engine``)."""
