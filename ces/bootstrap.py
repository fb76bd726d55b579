"""Wiring: builds the real clients and the Faust app from settings. Tests build the same graph with fakes."""

from __future__ import annotations

import logging

import faust

from ces.agents.app import create_app
from ces.settings import Settings


def build_worker_app(settings: Settings) -> faust.App:
    return create_app(settings)


def run_worker(settings: Settings) -> None:
    app = build_worker_app(settings)
    worker = faust.Worker(app, loglevel=logging.getLevelName(settings.log_level.upper()))
    worker.execute_from_commandline()
