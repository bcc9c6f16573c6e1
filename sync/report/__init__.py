"""``phala-sync report``: one self-contained HTML page of the fleet, drawn from the BI views.

- :mod:`~sync.report.data`: the figures, SQL aggregates over the views (``fleet_daily``,
  ``fleet_daily_usage``, ``current_cvms``, ``run_log``), never a row per CVM.
- :mod:`~sync.report.charts`: one function per chart, figures in, inline SVG and a table out.
- :mod:`~sync.report.page`: the HTML page (no script, no request leaves it).
- :mod:`~sync.report.build`: all three in one read transaction; writes the file.
- :mod:`~sync.report.fleet_change`: the fleet by status and region now and at the previous
  successful run (the per-run table artifact; no matplotlib).

Nothing is imported here: :mod:`~sync.report.charts` imports matplotlib (about half a second),
which the per-run artifact does not need.
"""
