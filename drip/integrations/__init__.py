"""What integrators use: API keys, the event feed, and (later) outgoing webhooks."""
