"""closedloop: the shared domain package of every closedloop function (shipped in the Lambda layer)."""

__version__ = "0.1.0"
