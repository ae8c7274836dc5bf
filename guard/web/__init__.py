"""The web listener: review pages, /healthz, /metrics, the development outbox."""
