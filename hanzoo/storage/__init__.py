"""Model folders on disk and their scoring: integrity checks, cards, the store, evaluation.

Each module is imported on use (`from hanzoo.storage import integrity`), so importing this package
loads nothing heavy."""

__all__ = ["integrity", "card", "store", "evaluate"]
