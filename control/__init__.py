"""The control plane's client side of the workflows: start, signal and query them, and the
schedules. Used by the API, the CLI and the worker; ``core`` never imports it."""
