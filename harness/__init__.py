"""What the test suite and the benchmarks share to run the system from the outside: its processes (the Procfile's
lines, Celery workers, private Redis and PostgreSQL, moto's S3 server, ``./dev up``), loopback webhook receivers and
a client of the REST API.

Development only: the production distribution does not ship it (pyproject.toml lists the packages it installs).
Nothing here imports Django settings at import time, so a receiver or a benchmark driver can import it without
configuring the project.
"""
