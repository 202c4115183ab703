"""GraphProt as an HTTP service (FastAPI): a shield in front of a saved model or an upstream
endpoint, and a plain endpoint for a saved model.

Needs the ``service`` extra (``pip install -e .[service]``). Entry points:
``create_app(settings)`` (the shield) and ``create_model_app(settings)`` (the plain model).
"""

from gnnbackdoor.service.app import create_app, create_model_app
from gnnbackdoor.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app", "create_model_app"]
