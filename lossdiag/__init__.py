"""lossdiag: probe Keras losses for batch-axis mistakes."""

__version__ = "0.1.0"
