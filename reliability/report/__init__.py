"""What a person reads: figures (matplotlib, imported only when a figure is drawn), and later
HTML/Markdown/JSON reports."""

from reliability.report.figures import plot_fit_qq, plot_ranking

__all__ = ["plot_fit_qq", "plot_ranking"]
