"""Analysis: plots and tables of results."""

from spikeshield.analysis.plots import format_table, plot_curves, table_to_csv

__all__ = ["format_table", "plot_curves", "table_to_csv"]
