"""Logs, metrics and tracing: what the other floors report through. Imports only
``shared.contracts``.
"""
