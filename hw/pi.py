"""The Raspberry Pi: GPIO through gpiozero (lgpio on Bookworm and the Pi 5), audio
through ALSA, the Pi's own health reports, and the clock vouched for by NTP, GPS or RTC.

Imports cleanly on any machine: gpiozero looks for GPIO chips only when the
first GPIO part is made, and a PC then gets a one-line HardwareError. Serial
devices are the same drivers as in mock mode; without a port a GPS or modem is
absent and the amplifier relay-only (SPEC).
"""

from audio import AlsaSink, AudioSink

from ._api import BatteryAdc, HardwareFactory, InputLine, Relay, StatusLed
from ._gpio import GpioBatteryAdc, GpioInput, GpioRelay, GpioStatusLed
from .clock import Clock, UnitClock
from .probes import PiProbes


class PiHardware(HardwareFactory):
    """Relays as gpiozero DigitalOutputDevices on gpiozero's default pin factory
    (lgpio on Raspberry Pi OS Bookworm; `GPIOZERO_PIN_FACTORY` picks another),
    and an AlsaSink on `audio_device`."""

    mock = False

    def __init__(self, audio_device: str = "default", clock: Clock | None = None):
        super().__init__(clock or UnitClock(step_from_gps=True))
        self.audio_device = audio_device

    def _make_relay(self, role: str, pin: int, active_high: bool) -> Relay:
        return GpioRelay(role, pin, active_high, pin_factory=None)

    def _make_input(self, role: str, pin: int, active_high: bool, bounce_s) -> InputLine:
        return GpioInput(role, pin, active_high, pin_factory=None, bounce_s=bounce_s)

    def _make_status_led(self, pin: int, active_high: bool) -> StatusLed:
        return GpioStatusLed(pin, active_high, pin_factory=None)

    def _make_battery_adc(self, channel: int, divider: float, vref: float) -> BatteryAdc:
        return GpioBatteryAdc(channel, divider, vref, pin_factory=None)

    def _make_speaker(self) -> AudioSink:
        return AlsaSink(self.audio_device)

    def _make_probes(self) -> PiProbes:
        return PiProbes()

    def gps(self, port=None, **options):
        """As the factory's, and GPS time becomes a source for the unit's clock."""
        receiver = super().gps(port, **options)
        if receiver is not None and isinstance(self.clock, UnitClock):
            from .gps import GpsClockSource

            self.clock.attach_gps(GpsClockSource(receiver))
        return receiver
