"""What a person reads: the reliability report (one self-contained HTML page, its JSON and its
figures, :func:`build`), and the figures on their own (matplotlib, imported only when a figure is
drawn)."""

from reliability.report.document import assemble, load_result
from reliability.report.figures import plot_accuracy, plot_fit_qq, plot_ranking, plot_tail_check, plot_worst_case
from reliability.report.page import Report, build, rebuild
from reliability.report.pipeline import run_report

__all__ = ["build", "rebuild", "run_report", "Report", "assemble", "load_result", "plot_fit_qq", "plot_ranking", "plot_tail_check",
           "plot_accuracy", "plot_worst_case"]
