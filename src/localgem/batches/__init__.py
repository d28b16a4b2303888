"""Batch mode: batchGenerateContent and asyncBatchEmbedContent as long-running operations."""
