"""Observability as code: Grafana dashboards and Prometheus rules, generated into the chart.

Pure: builds plain data (dicts) from typed panel functions and the SLATier types; the only
I/O is :mod:`llmfleet.observe.generate`, which writes the chart's generated files.
"""
