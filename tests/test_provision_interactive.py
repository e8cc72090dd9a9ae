"""`loaxa provision`, interactive, driven through a real pty: wrong answers first, then right ones.

In Vietnamese by default (the locale says nothing: LANG=C.UTF-8), in English with --lang en.
Each wrong answer must be refused at once, with the reason, and the question asked again.
"""

import base64
import os

import pytest

from provisioning import load_config, read_password
from tests.support.pty_session import PtySession

PUB = base64.b64encode(bytes(range(32))).decode()
UNIT = "dl-lak-bongkrang-01"
pytestmark = pytest.mark.timeout(120)


def environ(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LOAXA_LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE")}
    env.update({"LANG": "C.UTF-8", "TERM": "dumb"}, **extra)
    return env


def accept_defaults(session, prompt: str, until: str) -> None:
    """Press Enter at each `prompt` until `until` shows (the schema may gain GPIO roles)."""
    while session.expect(f"(?P<prompt>{prompt})|(?P<until>{until})")["prompt"]:
        session.send("")


@pytest.fixture
def pub_file(tmp_path):
    path = tmp_path / "dak-lak-2026.pub"
    path.write_text(PUB + "\n")
    return path


def test_vietnamese_by_default_with_wrong_answers_first(tmp_path, pub_file, broker):
    out = tmp_path / "etc"
    s = PtySession("provision", "--out", str(out), "--no-selftest", env=environ())
    try:
        s.expect("cài đặt cụm loa này")
        s.answer(r"Chế độ phần cứng \(pi hoặc mock\) \[\w+\]: ", "loa")
        s.expect("Không hợp lệ: phải là một trong 'pi', 'mock', nhưng là 'loa'")
        s.answer(r"Chế độ phần cứng .*: ", "mock")
        s.answer("Mã thiết bị: .*: ", "Loa Xa 1")
        s.expect(r"Không hợp lệ: phải dài 3-64 ký tự")
        s.answer("Mã thiết bị: .*: ", UNIT)
        s.answer("Tỉnh/thành phố, ví dụ Đắk Lắk: ", "")
        s.expect("Không hợp lệ: bắt buộc phải có")
        s.answer("Tỉnh/thành phố, ví dụ Đắk Lắk: ", "Đắk Lắk")
        s.answer(r"Huyện \(để trống hoặc gõ '-' nếu không còn cấp huyện\): ", "Lắk")
        s.answer("Xã/phường/thị trấn: ", "Bông Krang")
        s.expect("Nhóm: dak-lak/lak/bong-krang")
        s.answer("Thêm đường dẫn nhóm khác.*: ", "Dak Lak/x")
        s.expect("Không hợp lệ: phải gồm các đoạn a-z")
        s.answer("Thêm đường dẫn nhóm khác.*: ", "dak-lak/doi-tin-1")
        s.answer("Thêm đường dẫn nhóm khác.*: ", "")
        s.answer(r"Múi giờ \[Asia/Ho_Chi_Minh\]: ", "Asia/Hanoi")
        s.expect("Không hợp lệ: múi giờ IANA không tồn tại 'Asia/Hanoi'")
        s.answer(r"Múi giờ \[Asia/Ho_Chi_Minh\]: ", "")
        s.answer("Máy chủ MQTT của tỉnh.*: ", "http://mqtt.daklak.gov.vn")
        s.expect("Không hợp lệ: 'http://mqtt.daklak.gov.vn': phải bắt đầu bằng mqtt:// hoặc mqtts://")
        s.answer("Máy chủ MQTT của tỉnh.*: ", broker.url)
        s.answer(rf"Tên đăng nhập máy chủ MQTT \[{UNIT}\]: ", "")
        s.answer(r"Lựa chọn \[1\]: ", "7")
        s.expect("Không hợp lệ: hãy trả lời 1, 2, 3")
        s.answer(r"Lựa chọn \[1\]: ", "2")
        s.answer(r"Mật khẩu \(không hiện khi gõ\): ", "mật-khẩu-1")
        s.answer("Nhập lại mật khẩu: ", "mật-khẩu-2")
        s.expect("Không hợp lệ: hai lần nhập mật khẩu không khớp")
        s.answer(r"Mật khẩu \(không hiện khi gõ\): ", "mật-khẩu-1")
        s.answer("Nhập lại mật khẩu: ", "mật-khẩu-1")
        s.answer(r"Kiểm tra kết nối tới máy chủ MQTT ngay bây giờ\? \(c/k\) \[c\]: ", "")
        s.expect("Tốt: máy chủ đã chấp nhận đăng nhập của thiết bị.")   # an anonymous test broker
        s.answer(r"Khoá tin cậy \(để trống: không thêm\): ", "tinh=khong-phai-khoa")
        s.expect(r"Không hợp lệ: không phải base64")
        s.answer(r"Khoá tin cậy \(để trống: không thêm\): ", str(pub_file))
        s.expect("Đã thêm khoá dak-lak-2026.")
        s.answer(r"Khoá tin cậy \(để trống: không thêm\): ", "")
        s.answer(r"Chân rơ-le nguồn ampli \[17\]: ", "30")
        s.expect("Không hợp lệ: phải nằm trong khoảng 0 đến 27, nhưng là 30")
        s.answer(r"Chân rơ-le nguồn ampli \[17\]: ", "")
        s.answer(r"Chân rơ-le tắt tiếng \[27\]: ", "17")
        s.expect("Không hợp lệ: chân 17 đã được dùng cho rơ-le nguồn ampli")
        s.answer(r"Chân rơ-le tắt tiếng \[27\]: ", "")
        s.answer(r"Các chân rơ-le vùng loa.*\[22, 23\]: ", "22, 22")
        s.expect("Không hợp lệ: chân 22 đã được dùng")
        s.answer(r"Các chân rơ-le vùng loa.*\[22, 23\]: ", "22 23 5")
        s.answer(r"Chân đầu vào báo lỗi của ampli \[24\]: ", "")
        s.answer(r"Chân đèn LED trạng thái \[25\]: ", "")
        accept_defaults(s, r"Chân .*\]: ", "Các cổng nối tiếp trên máy này")   # any further pins
        s.answer(r"Cổng nối tiếp của ampli \(để trống: dùng bộ giả lập\): ", "")
        s.answer(r"Cổng nối tiếp của GPS .*: ", "")
        s.answer(r"Cổng nối tiếp của modem .*: ", "")
        s.expect("Tóm tắt:")
        s.expect("Nhóm +dak-lak/lak/bong-krang, dak-lak/doi-tin-1")
        s.expect("Mật khẩu +đã nhập")
        s.answer(r"1 = ghi các tệp này, 2 = sửa câu trả lời, 3 = huỷ \[1\]: ", "g")
        s.expect("Không hợp lệ: hãy trả lời 1, 2, 3")
        s.answer(r"1 = ghi các tệp này.*\[1\]: ", "1")
        s.expect(f"Đã cài đặt cấu hình cho thiết bị {UNIT}")
        s.expect("Các bước tiếp theo:")
        assert s.wait() == 0
    finally:
        s.close()
    cfg = load_config(out / "config.toml")
    assert cfg.unit.id == UNIT and cfg.unit.groups == ("dak-lak/lak/bong-krang", "dak-lak/doi-tin-1")
    assert cfg.broker.url == broker.url and read_password(cfg) == "mật-khẩu-1"
    assert cfg.trust.keys == {"dak-lak-2026": PUB}
    assert cfg.gpio.zones == (22, 23, 5) and cfg.hardware.mode == "mock"
    assert "mật-khẩu-1" not in s.transcript   # never echoed


def test_english_change_answers_then_write(tmp_path, pub_file):
    out = tmp_path / "etc"
    s = PtySession("provision", "--lang", "en", "--out", str(out), "--no-selftest",
                   "--trust-key", str(pub_file), env=environ())
    try:
        s.answer(r"Hardware mode \(pi or mock\) \[\w+\]: ", "pi")
        s.answer("Unit id: .*: ", "pi-unit-01")
        s.answer("Province, e.g. Đắk Lắk: ", "Quảng Nam")
        s.answer(r"District \(empty or '-' where there is none\): ", "")
        s.answer("Commune or ward: ", "Tam Kỳ")
        s.expect("Group: quang-nam/tam-ky")
        s.answer("Another group path.*: ", "")
        s.answer(r"Time zone \[Asia/Ho_Chi_Minh\]: ", "")
        s.answer("Province MQTT broker.*: ", "mqtts://mqtt.example.vn")
        s.answer(r"Broker username \[pi-unit-01\]: ", "")
        s.answer(r"Choice \[1\]: ", "")
        s.answer(r"CA certificate file.*: ", str(tmp_path / "missing.crt"))
        s.expect(r"Not accepted: .*missing.crt: no such file")
        s.answer(r"CA certificate file.*: ", "")
        s.answer(r"Check the connection to the broker now\? \(y/n\) \[y\]: ", "n")
        s.expect("Keys so far: dak-lak-2026")
        s.answer(r"Keep them\? \(y/n\) \[y\]: ", "")
        s.answer(r"Trusted key \(empty: no more\): ", "")
        accept_defaults(s, r"Pins? of .*\]: ", "Serial ports on this machine")
        s.answer(r"Amplifier serial port \(empty: relays only, no serial control\): ", "/dev/ttyNOPE9")
        s.expect(r"Not accepted: /dev/ttyNOPE9 does not exist on this unit \(serial ports found: ")
        s.answer(r"Amplifier serial port .*: ", "")
        s.answer(r"GPS serial port \(empty: no GPS\): ", "")
        s.answer(r"Modem serial port \(empty: no modem\): ", "")
        s.expect("Summary:")
        s.expect(r"State folder +/var/lib/loaxa")
        s.answer(r"1 = write these files, 2 = change answers, 3 = cancel \[1\]: ", "2")
        # Every question again, the answers so far as defaults; change only the mode and id.
        s.answer(r"Hardware mode \(pi or mock\) \[pi\]: ", "mock")
        s.answer(r"Unit id: .*\[pi-unit-01\]: ", "qn-tamky-02")
        s.answer(r"Province, e.g. Đắk Lắk \[quang-nam\]: ", "")
        s.answer(r"District .*: ", "")
        s.answer(r"Commune or ward \[tam-ky\]: ", "")
        s.answer("Another group path.*: ", "")
        s.answer(r"Time zone \[Asia/Ho_Chi_Minh\]: ", "")
        s.answer(r"Province MQTT broker.*\[mqtts://mqtt.example.vn\]: ", "")
        s.answer(r"Broker username \[qn-tamky-02\]: ", "")
        s.answer(r"Choice \[1\]: ", "")
        s.answer(r"CA certificate file.*: ", "")
        s.answer(r"Check the connection .*: ", "n")
        s.answer(r"Keep them\? .*: ", "")
        s.answer(r"Trusted key \(empty: no more\): ", "")
        accept_defaults(s, r"Pins? of .*\]: ", "Serial ports on this machine")
        for _ in range(3):
            s.answer(r"serial port \(empty: the simulator\): ", "")
        s.expect(r"Unit id +qn-tamky-02")
        s.answer(r"1 = write these files.*\[1\]: ", "")
        s.expect("Unit qn-tamky-02 is provisioned. Files written:")
        assert s.wait() == 0
    finally:
        s.close()
    cfg = load_config(out / "config.toml")
    assert (cfg.unit.id, cfg.hardware.mode, cfg.unit.groups) == ("qn-tamky-02", "mock", ("quang-nam/tam-ky",))
    assert cfg.broker.url == "mqtts://mqtt.example.vn" and cfg.broker.username == "qn-tamky-02"
    assert len(read_password(cfg)) >= 32


def test_cancel_and_end_of_input_write_nothing(tmp_path, pub_file):
    out = tmp_path / "etc"
    s = PtySession("provision", "--lang", "en", "--out", str(out), "--no-selftest", env=environ())
    try:
        s.answer(r"Hardware mode .*: ", "mock")
        s.answer("Unit id: .*: ", UNIT)
        os.write(s.fd, b"\x04")   # Ctrl-D at the next question
        s.expect("loaxa: error: no more answers: provisioning cancelled, nothing written")
        assert s.wait() == 1
    finally:
        s.close()
    assert not out.exists()
