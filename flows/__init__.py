"""Prefect flows and deployments: a thin orchestration layer over :mod:`sync`.

Importing a submodule imports Prefect; nothing in :mod:`sync` imports this package.
"""
