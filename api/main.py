"""ASGI entry point for uvicorn: `uvicorn helpdesk_triage.api.main:app`."""

from helpdesk_triage.api.app import create_app

app = create_app()
