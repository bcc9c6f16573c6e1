"""A faithful Phala Cloud simulator: a seeded fleet served in the API's exact shapes.

- :class:`Fleet`: the seeded fleet (10 to 200,000 CVMs), its paging, rendering and evolution
  (``evolve`` and the ``changes`` ground truth).
- :func:`create_app`: the Starlette app (``/api/v1/cvms/paginated``, ``/api/v1/apps``, ``/admin``).
- :class:`SimulatorTransport`: an in-process httpx transport over the app.
- :class:`SimulatorServer` / :func:`run_simulator_in_thread`: uvicorn in a background thread.
- :class:`SimulatorProcess` / :func:`run_simulator_subprocess`: the simulator in a child process.
- :class:`AdminClient`: evolve, ground truth and faults of a running simulator.
- :class:`Faults` / :class:`FaultRule`: faults on demand (syntax in :mod:`.faults`).

The CLI command is :data:`sync.simulator.command.simulate`.
"""

from sync.simulator.admin import AdminClient
from sync.simulator.app import SimulatedDisconnect, Simulator, create_app, simulator_of
from sync.simulator.faults import FaultRule, Faults, FaultSpecError
from sync.simulator.fleet import Fleet
from sync.simulator.serve import (
    SimulatorProcess,
    SimulatorServer,
    run_simulator_in_thread,
    run_simulator_subprocess,
)
from sync.simulator.transport import SimulatorTransport
from sync.simulator.versions import DEFAULT_VERSION, SUPPORTED_VERSIONS

__all__ = [
    "DEFAULT_VERSION",
    "SUPPORTED_VERSIONS",
    "AdminClient",
    "FaultRule",
    "FaultSpecError",
    "Faults",
    "Fleet",
    "SimulatedDisconnect",
    "Simulator",
    "SimulatorProcess",
    "SimulatorServer",
    "SimulatorTransport",
    "create_app",
    "run_simulator_in_thread",
    "run_simulator_subprocess",
    "simulator_of",
]
