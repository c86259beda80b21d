"""Use cases for subscribers: signup and confirmation, preferences, privacy (export and
erasure), CSV import, provider events and clicks, and the periodic clean-up."""
