"""What ships: the Hub (load, push, pins) and `hanzoo export` (every format, test_data_set_0,
manifest).

Each module is imported on use (`from hanzoo.publishing import hub`), so importing this package
loads nothing heavy."""

__all__ = ["hub", "export"]
