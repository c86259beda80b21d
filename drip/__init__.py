"""drip: an email-course drip service.

The package is layered; each folder is one job, and imports only point down
(checked by import-linter in `make test`; the layers are in pyproject.toml):

    wsgi, worker          entry points for gunicorn and celery
    cli                   the `drip` command
    app, celery_app       wiring: the Flask and Celery factories
    web, tasks            faces: HTTP blueprints and Celery tasks
    subscribers, ops      use cases and operations
    services              the dependencies the use cases are handed
    sending               the engine: schedule, tick, delivery, circuit, rate
    course, mail          course files and rendering; mail backends
    data                  database, tables, migrations
    tokens, clock, config helpers and settings at the bottom
"""
