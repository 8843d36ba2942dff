"""The report of an experiment run: tables (Markdown, HTML, CSV) and figures (PNG)."""

from seqtransfer.report.render import write_report

__all__ = ["write_report"]
