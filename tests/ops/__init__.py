"""Operations: metrics scraped by a real Prometheus, alert rules, readiness."""
