"""localgem: the Gemini API, served from open-weight models on your own machine."""

import os

# llama.cpp and PyTorch share the process's OpenMP runtime, libgomp (see localgem.one_thread). Where its thread
# pools hold more threads than the machine has cores (two models loaded, each computing on its own thread), a
# waiting thread spins 100 times before it sleeps, unless the wait policy is active: then 1,000, which covers most
# of llama.cpp's waits between the ops of a decode step. The spin count is otherwise libgomp's default, so idle
# threads still sleep within about a millisecond. libgomp reads these once, as it loads: before any model.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", "300000")

__version__ = "0.1.0"
