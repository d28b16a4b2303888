"""The retrieval core that File Search stores and Semantic Retriever corpora share: chunking, metadata
filters, rank fusion."""
