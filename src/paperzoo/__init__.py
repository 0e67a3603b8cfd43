"""paperzoo: faithful, fast, tested PyTorch implementations of research systems.

Quick start::

    import paperzoo
    result = paperzoo.run("conve", preset="tiny")          # trains, evaluates, returns RunResult
    print(result.metrics["test/mrr"])

    from paperzoo.methods.conve import ConvE                # or use a model as a plain nn.Module
"""
__version__ = "0.1.0"

__all__ = ["__version__", "run"]


def __getattr__(name: str):
    """``paperzoo.run`` is imported on first use, so that importing any part of paperzoo (e.g.
    ``paperzoo.core.runs``) does not pull in the runner, the registry and the method contract."""
    if name == "run":
        from paperzoo.runner import run

        return run
    raise AttributeError(f"module 'paperzoo' has no attribute {name!r}")
