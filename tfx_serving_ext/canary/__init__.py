"""The canary: serve candidate and baseline, drive traffic, compare, judge, report; `backends/`
start the model server (embedded, Docker, Kubernetes, a running endpoint)."""
