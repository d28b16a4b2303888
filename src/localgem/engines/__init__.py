"""Inference engines behind one small contract (``base.Engine``); llama.cpp on the CPU today."""
