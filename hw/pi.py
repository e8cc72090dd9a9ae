"""The Raspberry Pi: relays on real GPIO lines, audio through ALSA.

Imports cleanly on any machine: gpiozero looks for GPIO chips only when the
first relay is made, and a PC then gets a one-line HardwareError.
"""

from audio import AlsaSink, AudioSink

from ._api import HardwareFactory, Relay
from ._gpio import GpioRelay
from .clock import Clock


class PiHardware(HardwareFactory):
    """Relays as gpiozero DigitalOutputDevices on gpiozero's default pin factory
    (lgpio on Raspberry Pi OS Bookworm; `GPIOZERO_PIN_FACTORY` picks another),
    and an AlsaSink on `audio_device`."""

    mock = False

    def __init__(self, audio_device: str = "default", clock: Clock | None = None):
        super().__init__(clock)
        self.audio_device = audio_device

    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        return GpioRelay(role, pin, active_high, pin_factory=None)

    def _make_speaker(self) -> AudioSink:
        return AlsaSink(self.audio_device)
