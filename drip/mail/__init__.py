"""Mail backends: one small protocol, an outbox for development and SendGrid for production."""
