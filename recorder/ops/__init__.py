"""Operations: metrics, health, structured logs and the systemd notify protocol."""
