"""The ALSA sink: PCM piped into `aplay`, one process per playback.

Why aplay rather than an ALSA binding (pyalsaaudio, sounddevice):
- no compiled dependency: nothing to build on the Pi, and a pip install of loaxa
  never fails for want of libasound headers;
- alsa-utils (which ships aplay) is on every Raspberry Pi OS image, Lite included;
- a player in its own process cannot take the daemon down: a driver bug or a
  crash in libasound kills aplay, and the daemon reports a HardwareError and
  carries on with the next item.
The cost is one fork per playback, nothing at the scale of a bulletin.

The pipe to aplay is shrunk, and aplay's ALSA buffer capped at BUFFER_US, so that
`write` blocks close to real time: a stop then fades out within a fraction of a
second instead of after a 64 KiB pipe and a half-second ALSA buffer have drained.

`open` waits OPEN_CHECK_S to see whether aplay could open the device at all, so
a missing, busy or forbidden device is a HardwareError there, in words a
technician can act on (docs/audio.md lists them). The player opens the sink before
it waits for the scheduled time, so this check never delays the first sample.
"""

import fcntl
import re
import subprocess
import tempfile
import threading

from loaxa.errors import HardwareError

from ._api import OUTPUT_FORMAT, AudioSink, PcmFormat

PIPE_BYTES = 16384  # ~0.17 s at 48 kHz s16 mono
BUFFER_US = 200_000  # ALSA buffer: deep enough for a busy Pi, shallow enough for a prompt stop
OPEN_CHECK_S = 0.05  # aplay opens the device at once; one that fails exits within this
DRAIN_TIMEOUT_S = 10.0  # pipe + ALSA buffer hold well under a second; beyond this it is hung
LIST_TIMEOUT_S = 10.0
_SAMPLE_FORMATS = {1: "U8", 2: "S16_LE", 3: "S24_3LE", 4: "S32_LE"}
# An ALSA device name ("default", "plughw:CARD=Headphones,DEV=0", "hw:1,0", "null"...):
# one argv word, and never one aplay would take for an option.
_DEVICE_NAME = re.compile(r"[^\s-]\S*")
# aplay's complaints, and what they mean for whoever stands at the cabinet.
_EXPLAINED = (
    ("Device or resource busy", "is busy: another program is using it"),
    ("Unknown PCM", "does not exist (`aplay -L` lists the devices)"),
    ("No such file or directory", "does not exist or its card is missing (`aplay -L` lists the devices)"),
    ("No such device", "does not exist or its card is missing (`aplay -L` lists the devices)"),
    ("Permission denied", "may not be used by this user (add it to the 'audio' group)"),
)


class AlsaSink(AudioSink):
    """Plays through `aplay -q -D DEVICE -t raw -f S16_LE -r 48000 -c 1 -B 200000` fed on stdin."""

    def __init__(self, device: str = "default", fmt: PcmFormat = OUTPUT_FORMAT,
                 *, aplay: str = "aplay"):
        if fmt.width not in _SAMPLE_FORMATS:
            raise HardwareError(f"aplay cannot play {fmt.width}-byte samples")
        if not isinstance(device, str) or not _DEVICE_NAME.fullmatch(device):
            raise HardwareError(f"not an ALSA device name: {device!r} (like 'default' or "
                                "'plughw:CARD=Headphones,DEV=0')")
        self.device, self.fmt, self.aplay = device, fmt, aplay
        self.label = None
        self._lock = threading.Lock()
        self._proc = None
        self._stderr = None

    def command(self) -> list[str]:
        """The aplay argv for this device and format."""
        fmt = self.fmt
        return [self.aplay, "-q", "-D", self.device, "-t", "raw", "-f", _SAMPLE_FORMATS[fmt.width],
                "-r", str(fmt.rate), "-c", str(fmt.channels), "-B", str(BUFFER_US)]

    def check(self, seconds: float = 0.1) -> None:
        """Play `seconds` of silence: HardwareError saying why unless the device works
        (for the self-test; the amplifier should be muted)."""
        self.open("check")
        try:
            self.write(bytes(self.fmt.nbytes(seconds)))
        except HardwareError:
            self.abort()
            raise
        self.close()

    def open(self, label: str) -> None:
        if self._proc is not None:
            raise HardwareError(f"audio output {self.device} is already playing {self.label}")
        self.label = label
        # stderr to a file, not a pipe: nobody reads it while playing, and a
        # chatty aplay must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, bufsize=0,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as exc:
            self._stderr.close()
            self._stderr = None
            raise HardwareError(f"cannot start {self.aplay} (install alsa-utils): "
                                f"{exc.strerror}") from exc
        _shrink_pipe(self._proc.stdin)
        self._check_started()

    def _check_started(self) -> None:
        """HardwareError when aplay exits at once: it could not open the device."""
        try:
            self._proc.wait(timeout=OPEN_CHECK_S)
        except subprocess.TimeoutExpired:
            return  # still running: the device is open and waiting for audio
        returncode, said = self._end(kill=False)
        raise HardwareError(self._failure(f"could not start (exit code {returncode})", said))

    def write(self, pcm: bytes) -> None:
        proc = self._proc
        if proc is None:
            raise HardwareError(f"audio output {self.device} is not open")
        view = memoryview(pcm)
        try:
            while view:
                view = view[proc.stdin.write(view):]
        except (OSError, ValueError) as exc:  # BrokenPipeError: aplay is gone
            if self._proc is not proc:  # abort() from another thread got there first
                raise HardwareError(f"playback on {self.device} was aborted") from exc
            _, said = self._end(kill=True)
            raise HardwareError(self._failure("stopped playing", said)) from exc

    def close(self) -> None:
        if self._proc is None:
            return
        returncode, said = self._end(kill=False)
        if returncode != 0:
            raise HardwareError(self._failure(f"exited with code {returncode}", said))

    def abort(self) -> None:
        if self._proc is not None:
            self._end(kill=True)

    def _end(self, kill: bool) -> tuple[int, str]:
        """Stop feeding aplay, wait for it (or kill it), forget it: (exit code, its last line)."""
        with self._lock:  # abort() may race the player thread's close()
            proc, stderr = self._proc, self._stderr
            self._proc = self._stderr = None
        if proc is None:
            return 0, ""
        if kill:
            proc.kill()
        try:
            proc.stdin.close()  # end of input: aplay drains its buffer and exits
        except OSError:
            pass  # already broken: aplay died first
        try:
            returncode = proc.wait(timeout=DRAIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = -1
        return returncode, _last_line(stderr)

    def _failure(self, what: str, said: str) -> str:
        """One line: which device, what happened in plain words, and aplay's own last word."""
        for needle, meaning in _EXPLAINED:
            if needle in said:
                return f"audio output {self.device} {meaning} (aplay: {said})"
        return f"aplay on {self.device} {what}" + (f": {said}" if said else "")


def list_devices(aplay: str = "aplay") -> list[str]:
    """The ALSA device names `aplay -L` knows (for the self-test and docs/audio.md)."""
    try:
        result = subprocess.run([aplay, "-L"], capture_output=True, text=True, errors="replace",
                                timeout=LIST_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise HardwareError(f"cannot run {aplay} (install alsa-utils): {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise HardwareError(f"{aplay} -L did not answer within {LIST_TIMEOUT_S:g} s") from exc
    # Names start a line; their descriptions follow, indented.
    return [line.strip() for line in result.stdout.splitlines() if line and not line[0].isspace()]


def _last_line(file) -> str:
    """The last line written to (and then closes) aplay's stderr file."""
    with file:
        file.seek(0)
        lines = file.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _shrink_pipe(stdin) -> None:
    try:
        fcntl.fcntl(stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):
        pass  # not Linux, or not allowed: a bigger pipe only delays a stop a little
