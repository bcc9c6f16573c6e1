"""A faithful Phala Cloud simulator: a seeded fleet served in the API's exact shapes.

- :class:`Fleet`: the seeded fleet (10 to 200,000 CVMs), its paging, rendering and evolution
  (``evolve`` and the ``changes`` ground truth).
- :func:`create_app`: the Starlette app (``/api/v1/cvms/paginated``, ``/api/v1/apps``, ``/admin``).
- :class:`SimulatorTransport`: an in-process httpx transport over the app.
- :class:`SimulatorServer` / :func:`run_simulator_in_thread`: uvicorn in a background thread.
- :class:`SimulatorProcess` / :func:`run_simulator_subprocess`: the simulator in a child process.
- :class:`AdminClient`: evolve, ground truth and faults of a running simulator.
- :class:`Faults` / :class:`FaultRule`: faults on demand (syntax in :mod:`.faults`).

The CLI command is :data:`simulator.command.simulate`.

Every page of both endpoints in every version validates with the server's OpenAPI file
(``../shared/reference``), the official Python SDK's models (``phala-cloud`` 0.2.0) and, last
checked, the official TypeScript SDK's schemas (``@phala/cloud`` 0.2.9); tests check the first two.
Where they disagree, the simulator renders this (OpenAPI first, then the SDK that types a field):

- ``node_info.device_ids`` (2026-01-21+, some CVMs): not in OpenAPI's ``NodeRef`` nor the TS SDK;
  the Python SDK types it ``list[DeviceIdEntry]``, so each entry is ``{device_id,
  algorithm_version, os_image_ids, enabled}``, not a bare string.
- ``manifest_version`` on a 2026-01-21+ item: not in OpenAPI nor the TS SDK; the Python SDK types
  it ``str``, so ``"2"``. The compose file's own ``manifest_version`` (2025-10-28
  ``hosted.configuration.compose_file``) stays an integer, as OpenAPI's ``AppComposeV2`` and the
  TS SDK have it.
- ``hourly_rate`` on a 2026-01-21+ item: not in OpenAPI nor the TS SDK's CVM schema; the Python
  SDK types it ``{total, compute, disk}`` (decimal strings) or null: the compute price is the
  total, ``disk`` is null, and a CVM with no price has a null rate.
- Minimal apps (2026-01-21+, ``{app_id}`` with the rest null or left out): OpenAPI
  (``DstackAppMinimalResponse``) and the TS SDK allow them; the Python SDK's typed app models
  require ``id``, ``name``, ``created_at``, ``kms_type``, ``cvms`` and ``cvm_count`` and reject
  them. They stay, as the server's schema has them (the SDK client itself validates ``GET /apps``
  only loosely); the tests allow exactly these rejections and no other.
- ``/apps`` in 2025-10-28: the Python SDK has no typed model for it (only an envelope-only
  ``AppListResponse``); pages follow OpenAPI.
- ``hosted.exited_at`` (2025-10-28): optional in OpenAPI, a required key in the TS SDK: always
  sent, null unless exited or stopped. ``machine_info`` and ``updated_at`` of 2025-10-28
  ``/cvms/paginated`` items are in the TS SDK's model only (OpenAPI has them on app members);
  OpenAPI and both SDKs accept fields they do not list.
"""

from simulator.admin import AdminClient
from simulator.app import SimulatedDisconnect, Simulator, create_app, simulator_of
from simulator.faults import FaultRule, Faults, FaultSpecError
from simulator.fleet import Fleet
from simulator.serve import (
    SimulatorProcess,
    SimulatorServer,
    run_simulator_in_thread,
    run_simulator_subprocess,
)
from simulator.shapes import DEFAULT_VERSION, SUPPORTED_VERSIONS
from simulator.transport import SimulatorTransport

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
