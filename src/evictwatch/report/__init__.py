"""Look instead of read: the drain report (``evictwatch report``) and the Grafana dashboard.

``render`` turns records into one self-contained HTML page (pure), ``collect`` lists the
records of a window, ``browser`` drives headless Chromium for PNGs, ``dashboard`` builds the
Grafana dashboard (``deploy/grafana/evictwatch.json``), and ``command`` is the click command.
"""
