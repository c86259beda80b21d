"""Operations: health checks, funnel and lesson statistics, Prometheus metrics, and logging."""
