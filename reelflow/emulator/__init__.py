"""A local server speaking the providers' HTTP APIs, for offline development and tests.

Replicate (under `/replicate`), fal's queue (under `/fal`) and the Gemini API's Veo (under
`/gemini`): it renders real MP4s, signs webhooks exactly as the providers do and injects faults
per provider; see `EmulatorConfig` for the knobs and `create_app` for the routes.
"""

from reelflow.emulator.app import create_app
from reelflow.emulator.config import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app"]
