"""The launch agent: a standalone process that claims launch jobs from the registry over HTTP and runs them.

It comes with the client (``pip install registry-client`` gives the ``launch-agent`` command), needs nothing but
``requests`` (never Django or the database), and runs on any machine that reaches the API. ``client`` speaks the
agent protocol over the client's transport, ``runner`` runs one item as a local process, ``cli`` is the
``launch-agent`` console script.
"""
