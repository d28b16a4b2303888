"""What runs inside a sandbox: drops to the sandbox's own user, imports the common libraries while the
process waits in the warm pool, then reads the code from stdin and runs it as ``__main__``.

Matplotlib figures that the code shows or leaves open are written as PNGs to ``$SANDBOX_FIGURES``
(figures it saved itself are files in the working directory). Standard library only: nothing of
localgem is visible in here.
"""

import math
import os
import resource
import sys
import traceback

#: Written to stdout when the sandbox is ready for its code (the imports of the warm pool done).
READY = b"\x00localgem-sandbox-ready\n"


def _drop_privileges() -> None:
    uid = int(os.environ.pop("SANDBOX_UID", "0") or 0)
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root: every capability goes with it


def _preimport() -> None:
    for name in filter(None, os.environ.pop("SANDBOX_PREIMPORT", "").split(",")):
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a missing library fails the code that uses it, not the sandbox
            pass


class _Figures:
    """Figures shown (``plt.show``) or still open when the code ends → PNG files; saved ones are not repeated."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.count = 0
        self.saved: set[int] = set()
        self.patched = False

    def patch(self) -> None:
        if self.patched or "matplotlib.pyplot" not in sys.modules:
            return
        self.patched = True
        import matplotlib.figure
        import matplotlib.pyplot as plt

        savefig = matplotlib.figure.Figure.savefig
        figures = self

        def tracked_savefig(fig, *args, **kwargs):  # type: ignore[no-untyped-def]
            figures.saved.add(id(fig))
            return savefig(fig, *args, **kwargs)

        def show(*args, **kwargs):  # type: ignore[no-untyped-def]
            figures.flush(close=True)

        matplotlib.figure.Figure.savefig = tracked_savefig  # type: ignore[method-assign]
        plt.show = show

    def flush(self, close: bool) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for number in plt.get_fignums():
            figure = plt.figure(number)
            if id(figure) not in self.saved and figure.axes:
                self.count += 1
                figure.savefig(os.path.join(self.folder, f"figure_{self.count:03d}.png"), format="png")
                self.saved.add(id(figure))
            if close:
                plt.close(figure)


def _limit_cpu() -> None:
    """The code's CPU time, counted from now (the imports of the warm pool do not count)."""
    seconds = int(os.environ.pop("SANDBOX_CPU_SECONDS", "30"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main() -> int:
    _drop_privileges()
    _preimport()
    figures = _Figures(os.environ.pop("SANDBOX_FIGURES", "/tmp"))
    figures.patch()
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    source = sys.stdin.read()
    sys.stdin.close()
    if "matplotlib" in source and "matplotlib.pyplot" not in sys.modules:  # a cold sandbox imports lazily
        os.environ["SANDBOX_PREIMPORT"] = "matplotlib.pyplot"
        _preimport()
        figures.patch()
    _limit_cpu()
    status = 0
    try:
        code = compile(source, "<code>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 - inside the sandbox
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001 - the code's own error is its outcome
        tb = exc.__traceback__
        # The harness's own frame is not the code's: start the traceback at the code.
        traceback.print_exception(type(exc), exc, tb.tb_next if tb is not None else None)
        status = 1
    figures.patch()  # the code may have imported pyplot itself
    try:
        figures.flush(close=False)
    except Exception:  # noqa: BLE001 - a figure that cannot be drawn is reported, the output still counts
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    return status


if __name__ == "__main__":
    os._exit(main())  # no interpreter teardown: the libraries' finalizers take longer than most code
