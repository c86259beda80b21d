"""Fail early, in one line, when the Python that builds the venv is too old."""

import sys

if sys.version_info < (3, 11):  # noqa: UP036 - this script runs on any Python
    sys.exit(
        f"drip needs Python 3.11 or newer; this is {sys.version.split()[0]} (set PYTHON=python3.11)"
    )
