"""A local server speaking the providers' HTTP APIs, for offline development and tests.

It renders real MP4s, signs webhooks exactly as the providers do and can inject faults; see
`EmulatorConfig` for the knobs and `create_app` for the routes.
"""

from reelflow.emulator.app import create_app
from reelflow.emulator.config import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app"]
