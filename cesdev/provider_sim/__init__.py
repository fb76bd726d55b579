"""A local FX provider simulator (ECB XML and Fixer JSON from real ECB history) so rate ingestion runs offline."""

from __future__ import annotations

from cesdev.provider_sim.app import create_sim_app, run_sim

__all__ = ["create_sim_app", "run_sim"]
