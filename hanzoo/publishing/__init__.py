"""What ships: the Hub (load, push, pins), `hanzoo export` (every format, test_data_set_0,
manifest), and which fp16/int8 variants ship.

Each module is imported on use (`from hanzoo.publishing import hub`), so importing this package
loads nothing heavy."""

__all__ = ["hub", "export", "ship"]
