"""llama.cpp: GGUF models on the CPU, a continuous-batching scheduler, output constraints enforced as GBNF
grammars (``constraints``). The generation engine that imports llama_cpp, only once a model is loaded or a
grammar built."""
