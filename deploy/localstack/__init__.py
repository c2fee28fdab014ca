"""The local stack without Docker: a real Kafka broker, PostgreSQL and Redis on this machine.

Run it as ``python -m deploy.localstack up|down|status [--profile dev|test|bench]`` (``make up``
does, ``make bench`` with ``bench``); the test suite calls :func:`up` and :func:`down` with the
``test`` profile.
"""

from deploy.localstack.errors import StackError
from deploy.localstack.profiles import PROFILES, Profile
from deploy.localstack.stack import UpReport, down, status, up

__all__ = ["PROFILES", "Profile", "StackError", "UpReport", "down", "status", "up"]
