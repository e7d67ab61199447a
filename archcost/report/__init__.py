"""Reports of result documents: Markdown (GitHub job summaries), a self-contained HTML page
with hand-written SVG plots, and regression diffs between two documents of the same kind.

Every renderer is a pure function from document dicts to text; reading files lives in
``document``. Modules:

- ``document``  read and check result documents and Chrome traces (the only I/O here)
- ``schema``    the schema of each kind and version (``schemas/``), the check every read runs
- ``validator`` the JSON Schema subset those schemas use, naming the first offending field
- ``fmt``       numbers with units
- ``tables``    a document as titled tables (shared by Markdown and HTML)
- ``markdown``  tables as GitHub-flavoured Markdown, user strings escaped
- ``timeline``  pipeline lanes from a Chrome trace or from ``estimate.pipeline``
- ``svg``       chart primitives (bars, stacked and signed bars, scatter on log or
                categorical axes, roofline, heatmap, Gantt)
- ``plots``     which charts a document gets, with their data
- ``infer_tables``, ``infer_plots``  the tables and charts of inference documents and sweeps
- ``html``      the page: tables and plots, no script, no network
- ``metrics``   the comparable figures of a document, with unit and better direction
- ``diff``      two documents' metrics compared with direction and threshold: the CI gate
"""

from archcost.report.diff import DiffResult, diff_documents, parse_threshold
from archcost.report.document import KINDS, load_document, load_trace
from archcost.report.html import to_html
from archcost.report.markdown import to_markdown

__all__ = ["KINDS", "DiffResult", "diff_documents", "load_document", "load_trace",
           "parse_threshold", "to_html", "to_markdown"]
