"""The report of an experiment run: tables (Markdown, HTML, CSV) and figures (PNG).

:mod:`~seqtransfer.report.read` reads a run folder into :class:`ReportData`,
:mod:`~seqtransfer.report.tables` computes the numbers, :mod:`~seqtransfer.report.render`
writes them.
"""

from seqtransfer.report.read import ReportData, read_report_data
from seqtransfer.report.render import render_report, write_report

__all__ = ["ReportData", "read_report_data", "render_report", "write_report"]
