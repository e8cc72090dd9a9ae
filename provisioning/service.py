"""`loaxa provision --install-service`: the unit daemon as a hardened systemd service.

The unit file is packaging/loaxa.service (shipped as provisioning/data/loaxa.service);
`render_unit()` fills in this machine's paths. `install_service()` then:

1. writes /etc/systemd/system/loaxa.service and /etc/sysusers.d/loaxa.conf (the `loaxa`
   system user, in the gpio, dialout and audio groups);
2. creates that user with systemd-sysusers;
3. gives it the state folder (0750) and lets it read the broker password file
   (root:loaxa 0640: it reads the password, it cannot change it);
4. enables the service (and starts it, unless `start=False`).

When the config's `[update].prefix` holds an installed version (`current`), the service
runs the update launcher instead of the pip-installed `loaxa` (docs/design.md, "Software
updates"): the launcher is copied to `<prefix>/launcher.py` and run by the system's
python3 with `--once` (systemd's Restart= does the restarting), `NotifyAccess=all` (the
daemon that sends READY and WATCHDOG is the launcher's child), the prefix is writable and
belongs to the service user (updates install there without root).

With `root` other than "/", every file goes under that folder and systemd's own tools
work on it offline (`systemd-sysusers --root`, `systemctl --root`): how the tests, or
an image builder, install without touching the running system.
"""

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loaxa.errors import LoaxaError
from loaxa.fsio import atomic_write_text
from loaxa.i18n import _
from provisioning.config import load_config

UNIT_NAME = "loaxa.service"
SERVICE_USER = "loaxa"
SERVICE_GROUPS = ("gpio", "dialout", "audio")
TEMPLATE = Path(__file__).resolve().parent / "data" / UNIT_NAME
TEMPLATE_EXEC = "/opt/loaxa/venv/bin/loaxa"
TEMPLATE_CONFIG = "/etc/loaxa/config.toml"
TEMPLATE_STATE = "/var/lib/loaxa"
UNIT_DIR = Path("etc/systemd/system")
SYSUSERS_FILE = Path("etc/sysusers.d/loaxa.conf")


class ServiceError(LoaxaError):
    """The service could not be installed; the message says which step and why."""


@dataclass
class Step:
    text: str
    done: bool = True


def loaxa_executable() -> Path:
    """The `loaxa` program of this installation (the virtualenv's, when run from one)."""
    beside = Path(sys.prefix) / "bin" / "loaxa"
    if beside.exists():
        return beside
    found = shutil.which("loaxa")
    if found:
        return Path(found).absolute()
    raise ServiceError(_("cannot find the 'loaxa' program to start; install loaxa first"))


def _unit_path(path) -> str:
    text = str(path)
    if any(c.isspace() for c in text) or '"' in text or "\\" in text:
        raise ServiceError(_("{path}: a path for the service must not contain spaces or quotes").format(path=text))
    return text


def render_unit(executable, config_path, state_dir=TEMPLATE_STATE, launcher=None) -> str:
    """The unit file with this machine's program, config and state folder (also its
    working directory: lgpio writes there, and nothing else is writable).

    `launcher` = (python3, prefix): run the update launcher of that prefix instead."""
    text = TEMPLATE.read_text(encoding="utf-8")
    program = f"{_unit_path(executable)} run"
    if launcher is not None:
        python, prefix = (_unit_path(p) for p in launcher)
        program = f"{python} {prefix}/launcher.py --prefix {prefix} --once -- run"
        text = text.replace("NotifyAccess=main", "NotifyAccess=all")
    text = text.replace(f"ExecStart={TEMPLATE_EXEC} run --config {TEMPLATE_CONFIG}",
                        f"ExecStart={program} --config {_unit_path(config_path)}")
    state_dir = _unit_path(state_dir)
    # The state folder is also the working directory, where lgpio makes its pipes.
    for setting in ("WorkingDirectory={}", "Environment=LG_WD={}"):
        text = text.replace(setting.format(TEMPLATE_STATE), setting.format(state_dir))
    writable = state_dir
    if launcher is not None and not Path(launcher[1]).is_relative_to(state_dir):
        writable += f" {_unit_path(launcher[1])}"
    return text.replace(f"ReadWritePaths={TEMPLATE_STATE}", f"ReadWritePaths={writable}")


def sysusers_text(state_dir=TEMPLATE_STATE) -> str:
    lines = ["# loaxa: the unit daemon's own user (systemd-sysusers; see sysusers.d(5))",
             f'u {SERVICE_USER} - "loaxa loudspeaker unit" {_unit_path(state_dir)}']
    lines += [f"m {SERVICE_USER} {group}" for group in SERVICE_GROUPS]
    return "\n".join(lines) + "\n"


class Installer:
    def __init__(self, config_path, root="/", *, start=True, executable=None, run=subprocess.run):
        self.root = Path(root).absolute()
        self.host_config = Path(config_path).absolute()
        self.start = start
        self.executable = Path(executable) if executable else None
        self.run_command = run
        self.steps: list[Step] = []

    @property
    def real_system(self) -> bool:
        return self.root == Path("/")

    def inside(self, path: Path) -> tuple[Path, Path]:
        """(where the file is on this machine, its path as the installed system sees it)."""
        path = Path(path)
        if self.real_system:
            return path, path
        if path.is_relative_to(self.root):
            return path, Path("/") / path.relative_to(self.root)
        return self.root / path.relative_to("/"), path

    def install(self) -> list[Step]:
        if self.real_system and os.geteuid() != 0:
            raise ServiceError(_("installing the service needs root: run it with sudo"))
        cfg = load_config(self.host_config)
        executable = self.executable or loaxa_executable()
        config_seen = self.inside(self.host_config)[1]
        state_seen = self.inside(cfg.unit.state_dir)[1]
        launcher = self.launcher(cfg)
        self.write(UNIT_DIR / UNIT_NAME, render_unit(executable, config_seen, state_seen, launcher))
        self.write(SYSUSERS_FILE, sysusers_text(state_seen))
        self.create_user()
        self.hand_over(cfg)
        if launcher is not None:
            self.hand_over_tree(self.inside(cfg.update.prefix)[0])
        self.enable()
        return self.steps

    def launcher(self, cfg):
        """(python3, prefix as the system sees it) when the update prefix holds an
        installed version; the launcher is copied there. None: run loaxa directly."""
        from updater.install import Installer as Versions, install_launcher
        prefix, prefix_seen = self.inside(cfg.update.prefix)
        if Versions(prefix).current_version() is None:
            return None
        self.steps.append(Step(_("wrote {path}").format(path=install_launcher(prefix))))
        return Path(sys.base_prefix) / "bin" / "python3", prefix_seen

    def hand_over_tree(self, folder: Path) -> None:
        """The update prefix, all of it, to the service user: updates install there."""
        ids = self.ids()
        if ids is None or os.geteuid() != 0:
            return  # hand_over said so already
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, *ids, follow_symlinks=False)
        self.steps.append(Step(_("{path} now belongs to {user}").format(path=folder, user=SERVICE_USER)))

    def write(self, relative: Path, text: str) -> None:
        path = self.root / relative
        atomic_write_text(path, text, mode=0o644)
        self.steps.append(Step(_("wrote {path}").format(path=path)))

    def command(self, *args: str) -> None:
        try:
            result = self.run_command(list(args), capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(_("{command} failed: {reason}").format(command=" ".join(args), reason=exc)) from exc
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise ServiceError(_("{command} failed: {reason}").format(command=" ".join(args), reason=reason[0]))
        self.steps.append(Step(_("ran {command}").format(command=" ".join(args))))

    def create_user(self) -> None:
        if shutil.which("systemd-sysusers") is None:
            raise ServiceError(_("systemd-sysusers not found: this needs a systemd system "
                                 "(Raspberry Pi OS Bookworm)"))
        if self.real_system:
            self.command("systemd-sysusers", str(Path("/") / SYSUSERS_FILE))
        else:
            self.command("systemd-sysusers", f"--root={self.root}", str(self.root / SYSUSERS_FILE))

    def ids(self) -> tuple[int, int] | None:
        """uid and gid of the service user on the installed system."""
        if self.real_system:
            try:
                entry = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                return None
            return entry.pw_uid, entry.pw_gid
        uid = _field(self.root / "etc/passwd", SERVICE_USER, 2)
        gid = _field(self.root / "etc/group", SERVICE_USER, 2)
        return (int(uid), int(gid)) if uid and gid else None

    def hand_over(self, cfg) -> None:
        """The state folder to the service user; the password readable by it, not writable."""
        ids = self.ids()
        state_dir, _seen = self.inside(cfg.unit.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if ids is None or os.geteuid() != 0:
            self.steps.append(Step(_("not changing owners (not root, or no user {user})").format(
                user=SERVICE_USER), done=False))
            return
        uid, gid = ids
        os.chown(state_dir, uid, gid)
        os.chmod(state_dir, 0o750)
        self.steps.append(Step(_("{path} now belongs to {user}").format(path=state_dir, user=SERVICE_USER)))
        if cfg.broker.password_file is not None:
            secret, _seen = self.inside(cfg.broker.password_file)
            if secret.exists():
                os.chown(secret, 0, gid)
                os.chmod(secret, 0o640)
                self.steps.append(Step(_("{path} readable by {user}").format(path=secret, user=SERVICE_USER)))

    def enable(self) -> None:
        if not self.real_system:
            self.enable_offline()
            return
        self.command("systemctl", "daemon-reload")
        self.command("systemctl", "enable", *(["--now"] if self.start else []), UNIT_NAME)

    def enable_offline(self) -> None:
        if shutil.which("systemctl"):
            self.command("systemctl", f"--root={self.root}", "enable", UNIT_NAME)
            return
        # What `systemctl enable` does for WantedBy=multi-user.target.
        link = self.root / UNIT_DIR / "multi-user.target.wants" / UNIT_NAME
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(Path("/") / UNIT_DIR / UNIT_NAME)
        self.steps.append(Step(_("enabled {unit}").format(unit=UNIT_NAME)))


def _field(path: Path, name: str, index: int) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":")
        if parts[0] == name and len(parts) > index:
            return parts[index]
    return None


def install_service(config_path, root="/", *, start=True, executable=None) -> list[Step]:
    return Installer(config_path, root, start=start, executable=executable).install()
