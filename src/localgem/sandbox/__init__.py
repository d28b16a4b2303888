"""Untrusted code, run in a real sandbox (bubblewrap): the codeExecution tool's runtime."""
