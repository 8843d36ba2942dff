"""seqtransfer: graph-guided sequential transfer for medical image segmentation.

The package follows the pipeline in the order data flows:
``data`` (read, verify, tasks, preprocess, benchmark) -> ``affinity`` -> ``graph`` ->
``selection`` (landmark, path) -> ``training`` -> ``evaluation`` -> ``baselines`` ->
``experiment`` -> ``report`` -> ``cli``.
"""


def __getattr__(name: str) -> str:
    """``__version__``: the installed package's version, read from its metadata on first use.

    The number is written only in ``pyproject.toml``; the installed metadata carries it.
    Read lazily because importing ``importlib.metadata`` costs ~30 ms, a third of the
    start-up of ``seqtransfer --help``.
    """
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("seqtransfer")
        except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
