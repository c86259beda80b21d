"""The fault suite: real processes, real faults, counted at a SendGrid stand-in.

Run it with `make faults` (``python -m faults``); `make test` runs a short
version (tests/test_faults_short.py) and three Ctrl-C stops of `drip run`.
"""
