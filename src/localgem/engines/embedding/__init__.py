"""Embedding engines (sentence-transformers models via ONNX/Torch) and the batcher that lets concurrent callers
share batches."""
