"""The ALSA sink: PCM piped into `aplay`, one process per playback.

Why aplay rather than an ALSA binding (pyalsaaudio, sounddevice):
- no compiled dependency: nothing to build on the Pi, and a pip install of loaxa
  never fails for want of libasound headers;
- alsa-utils (which ships aplay) is on every Raspberry Pi OS image, Lite included;
- a player in its own process cannot take the daemon down: a driver bug or a
  crash in libasound kills aplay, and the daemon reports a HardwareError and
  carries on with the next item.
The cost is one fork per playback, nothing at the scale of a bulletin.

The pipe to aplay is shrunk so that `write` blocks close to real time: a stop
then fades out within a fraction of a second instead of after a 64 KiB pipe
(0.7 s of audio) has drained.
"""

import fcntl
import subprocess
import tempfile
import threading

from loaxa.errors import HardwareError

from ._api import OUTPUT_FORMAT, AudioSink, PcmFormat

PIPE_BYTES = 16384  # ~0.17 s at 48 kHz s16 mono
DRAIN_TIMEOUT_S = 10.0  # pipe + ALSA buffer hold well under a second; beyond this it is hung
_SAMPLE_FORMATS = {1: "U8", 2: "S16_LE", 3: "S24_3LE", 4: "S32_LE"}


class AlsaSink(AudioSink):
    """Plays through `aplay -q -D DEVICE -t raw -f S16_LE -r 48000 -c 1` fed on stdin."""

    def __init__(self, device: str = "default", fmt: PcmFormat = OUTPUT_FORMAT,
                 *, aplay: str = "aplay"):
        if fmt.width not in _SAMPLE_FORMATS:
            raise HardwareError(f"aplay cannot play {fmt.width}-byte samples")
        self.device, self.fmt, self.aplay = device, fmt, aplay
        self.label = None
        self._lock = threading.Lock()
        self._proc = None
        self._stderr = None

    def command(self) -> list[str]:
        """The aplay argv for this device and format."""
        fmt = self.fmt
        return [self.aplay, "-q", "-D", self.device, "-t", "raw", "-f", _SAMPLE_FORMATS[fmt.width],
                "-r", str(fmt.rate), "-c", str(fmt.channels)]

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
            raise HardwareError(f"cannot start {self.aplay} (install alsa-utils): "
                                f"{exc.strerror}") from exc
        _shrink_pipe(self._proc.stdin)

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
        """One line: which device, what happened, and aplay's own last word."""
        return f"aplay on {self.device} {what}" + (f": {said}" if said else "")


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
