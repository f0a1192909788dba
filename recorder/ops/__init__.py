"""Operations: metrics, the /metrics and /healthz endpoint, structured logs and systemd notify."""
