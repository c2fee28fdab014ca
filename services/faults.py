"""The reference system's failure-injection body: faults apply to orders, by ``order_ids``.

The platform names a fault's keys after the catalogue's key field (``Platform.configure``);
these are the same classes, for the tests and tools that build a fault without a service.
"""

from __future__ import annotations

from shared.consuming.faults import ActiveFault as AnyActiveFault
from shared.consuming.faults import FaultSpec as AnyFaultSpec

__all__ = ["ActiveFault", "FaultSpec"]

FaultSpec = AnyFaultSpec.keyed_by("order_ids")
ActiveFault = AnyActiveFault.keyed_by("order_ids")
