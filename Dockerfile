# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY drip ./drip
COPY course ./course
RUN pip install --no-cache-dir ".[ops]" && useradd --create-home --uid 10001 drip && mkdir -p /app/var && chown drip /app/var
# By number, so a platform that checks for a non-root user (runAsNonRoot) can tell.
USER 10001
EXPOSE 5000
CMD ["gunicorn", "--workers", "4", "--bind", "0.0.0.0:5000", "drip.wsgi:app"]
