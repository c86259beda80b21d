"""Blueprints: public pages, the JSON API, health, the outbox viewer."""
