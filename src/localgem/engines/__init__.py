"""Inference engines behind one engine-neutral contract (``base.Engine``: requests, constraints, events,
capabilities), one package each (``llama/``, ``embedding/``); ``registry`` maps the engine a model's
config names to its factory, imported only when a model of it is loaded."""
