"""Private keys encrypted at rest: standard PKCS#8 with scrypt, readable by cryptography and openssl."""

import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from loaxa.errors import KeyFileError
from scheduler.keys import (SCRYPT_COST, encrypted_private_pem, generate_key, load_private_key, public_key_b64,
                            read_passphrase_file, write_keypair)

FAST = (2**10, 8, 1)  # tests only; the real cost is SCRYPT_COST


def test_an_encrypted_keypair_round_trips_with_its_passphrase(tmp_path):
    key_path, pub_path = write_keypair(tmp_path, "so-approver", b"m\xe1t kh\xe1u", kdf=FAST)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    name, key = load_private_key(key_path, b"m\xe1t kh\xe1u")
    assert name == "so-approver" and public_key_b64(key) == pub_path.read_text().strip()


def test_without_the_passphrase_the_refusal_says_what_to_give(tmp_path):
    key_path, _ = write_keypair(tmp_path, "op", b"secret", kdf=FAST)
    with pytest.raises(KeyFileError, match="password-protected .*--passphrase-file"):
        load_private_key(key_path)


def test_a_wrong_passphrase_is_one_clear_line(tmp_path):
    key_path, _ = write_keypair(tmp_path, "op", b"secret", kdf=FAST)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(key_path, b"guess")


def test_a_plain_key_loads_with_or_without_a_passphrase(tmp_path):
    key_path, _ = write_keypair(tmp_path, "demo")
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key(key_path)[0] == load_private_key(key_path, b"unused")[0] == "demo"


def test_the_real_cost_is_scrypt_and_the_file_is_standard_pbes2():
    key = generate_key()
    pem = encrypted_private_pem(key, b"pw")
    loaded = serialization.load_pem_private_key(pem, password=b"pw")  # cryptography alone
    assert public_key_b64(loaded) == public_key_b64(key)
    n, r, p = SCRYPT_COST
    assert n * r * p >= 2**14 * 8 * 5  # OWASP's floor for scrypt


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_reads_the_file_and_sees_scrypt(tmp_path):
    key = generate_key()
    path = tmp_path / "k.key"
    path.write_bytes(encrypted_private_pem(key, b"pw", kdf=FAST))
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True, check=True)
    assert ":PBES2" in parsed.stdout and ":scrypt" in parsed.stdout and ":aes-256-cbc" in parsed.stdout
    pub = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", "pass:pw", "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert pub.endswith(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def test_an_empty_passphrase_is_refused(tmp_path):
    with pytest.raises(KeyFileError, match="empty passphrase"):
        write_keypair(tmp_path, "op", b"", kdf=FAST)
    assert not (tmp_path / "op.key").exists()


def test_passphrase_file_first_line(tmp_path):
    path = tmp_path / "pass"
    path.write_bytes(b"hai buoc\r\nignored\n")
    assert read_passphrase_file(path) == b"hai buoc"
    path.write_bytes(b"\n")
    with pytest.raises(KeyFileError, match="first line is empty"):
        read_passphrase_file(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        read_passphrase_file(tmp_path / "missing")
