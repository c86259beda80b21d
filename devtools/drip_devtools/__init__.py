"""Development-only tools for drip, kept out of the package that ships.

Installed beside drip by `make run` and `make test` (`pip install -e ./devtools`);
its commands join the `drip` command through the ``drip.commands`` entry point.
"""
