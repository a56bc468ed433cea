"""Look instead of read: the drain report (``evictwatch report``), data first, then view.

``collect`` lists the records of a window; ``data`` turns them into plain summaries (what was
still blocked at the end, impossible budgets, per workload, per starved resource); ``charts``
places the marks; ``render`` fills the Jinja2 templates in ``templates/`` (autoescaped);
``browser`` drives headless Chromium for PNGs and PDFs. The click command is
``evictwatch.cli_report``. The Grafana dashboard is ``deploy/grafana/evictwatch.json``.
"""
