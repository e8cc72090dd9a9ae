"""A cellular modem on a pty, answering the AT commands loaxa uses, chatty like a real one.

It echoes commands until `ATE0`, and drops unsolicited result codes (RING,
+CMTI, +CREG, ^SYSSTART) between the lines of its answers when `chatty` is set,
so the driver must pick its answer out of them.

    sim = ModemSimulator(operator="Viettel", signal_dbm=-73).start()
    sim.fail("no_signal")   # out of coverage: CSQ 99, searching, no operator
    sim.fail("silent"); sim.fail("unplugged"); sim.clear()
"""

from ._pty import PtySimulator

URCS = (b"RING", b'+CMTI: "SM",3', b"+CREG: 1", b"^SYSSTART", b'+CREG: 1,"1A2B","00C3F01",7')


class ModemSimulator(PtySimulator):
    name = "modem"

    def __init__(self, *, operator: str = "Viettel", signal_dbm: int = -73, act: int = 7,
                 chatty: bool = True, link_path=None):
        super().__init__(link_path=link_path)
        self.operator, self.act = operator, act
        self.signal_dbm = signal_dbm
        self.chatty = chatty
        self.echo = True
        self.no_signal = self.silent = False
        self.commands: list[str] = []
        self._urc = 0

    def fail(self, what: str) -> None:
        """"no_signal", "silent" or "unplugged"."""
        if what == "no_signal":
            self.no_signal = True
        elif what == "silent":
            self.silent = True
        elif what == "unplugged":
            self.unplug()
        else:
            raise ValueError(f"unknown modem failure {what!r}")

    def clear(self) -> None:
        self.no_signal = self.silent = False
        self.replug()

    def urc(self, text: bytes | None = None) -> None:
        """Send one unsolicited result code now."""
        if text is None:
            text = URCS[self._urc % len(URCS)]
            self._urc += 1
        self.send(b"\r\n" + text + b"\r\n")

    def on_line(self, line: bytes) -> None:
        command = line.decode("ascii", "replace").strip()
        if self.silent or not command:
            return
        self.commands.append(command)
        if self.echo:
            self.send(line + b"\r")
        lines, final = self._answer(command.upper())
        out = b""
        for text in lines:
            out += b"\r\n" + text.encode() + b"\r\n"
            if self.chatty:
                out += b"\r\n" + URCS[self._urc % len(URCS)] + b"\r\n"
                self._urc += 1
        self.send(out + b"\r\n" + final.encode() + b"\r\n")

    def _answer(self, command: str) -> tuple[list[str], str]:
        if command in ("AT", "AT+CREG=0", "AT+CEREG=0", "AT+CMEE=1"):
            return [], "OK"
        if command in ("ATE0", "ATE1"):
            self.echo = command == "ATE1"
            return [], "OK"
        if command == "ATI":
            return ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"], "OK"
        if command == "AT+CSQ":
            return [f"+CSQ: {self._rssi()},99"], "OK"
        if command in ("AT+CREG?", "AT+CEREG?"):
            return [f"+{command[3:-1]}: 0,{2 if self.no_signal else 1}"], "OK"
        if command == "AT+COPS?":
            if self.no_signal:
                return ["+COPS: 0"], "OK"
            return [f'+COPS: 0,0,"{self.operator}",{self.act}'], "OK"
        if command == "AT+CPIN?":
            return ["+CPIN: READY"], "OK"
        return [], "ERROR"

    def _rssi(self) -> int:
        if self.no_signal:
            return 99
        return max(0, min(31, round((self.signal_dbm + 113) / 2)))
