"""paperzoo: faithful, fast, tested PyTorch implementations of research systems.

Quick start::

    import paperzoo
    result = paperzoo.run("conve", preset="tiny")          # trains, evaluates, returns RunResult
    print(result.metrics["test/mrr"])

    from paperzoo.methods.conve import ConvE                # or use a model as a plain nn.Module
"""
__version__ = "0.1.0"

from paperzoo.runner import run  # noqa: E402

__all__ = ["run", "__version__"]
