"""The launch agent: a standalone process that claims launch jobs from the registry over HTTP and runs them.

It needs only the standard library and ``requests`` (never Django or the database), so it runs on any machine that
reaches the API. ``client`` speaks the agent protocol, ``runner`` runs one item as a local process, ``cli`` is the
``launch-agent`` console script.
"""
