"""The operations console: a page of live charts over the other services' /metrics, the triage queue and the
weekly ranking, for hubs without Grafana (`gridhub up`). It reads the others over HTTP only."""
