"""llama.cpp: GGUF models on the CPU, a continuous-batching scheduler, GBNF-constrained decoding. The only
package that imports llama_cpp."""
