"""lwperf: throughput and integrity end to end, on the host kernel's loopback (and on lwswitch
between two lwstack processes once lwstack has TCP).

Peers that break the control protocol on purpose (a wrong digest, corrupted data, a stream cut
short) are small fakes in this process, written with lwperf's own message layouts.
"""
import errno
import hashlib
import json
import re
import socket
import struct
import subprocess
import sys
import threading

import pytest

import lwperf
from support import read_line

SUMMARY = re.compile(r"lwperf: (\d+) bytes in (\d+\.\d\d) s = (\d+\.\d\d) MB/s "
                     r"\((sender|receiver)\), sha256 (ok|MISMATCH)")
STREAM = re.compile(r"lwperf: stream (\d+)/(\d+): (\d+) bytes in \d+\.\d\d s = \d+\.\d\d MB/s, "
                    r"sha256 (ok|MISMATCH)")


def run(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def start_server(processes, *extra):
    """A kernel-socket lwperf server on 127.0.0.1 and a port of the kernel's choosing."""
    proc = processes.python("lwperf", "--net", "kernel", "-s", "-B", "127.0.0.1", "-p", "0",
                            *extra)
    line = read_line(proc)
    match = re.fullmatch(r"lwperf: server listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, int(match.group(1))


def client(port, *extra):
    return run("lwperf", "--net", "kernel", "-c", "127.0.0.1", "-p", str(port), *extra)


def finish(proc):
    """Wait for a --once server; return (status, stdout lines, stderr)."""
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out.splitlines(), err


def summary(lines):
    match = SUMMARY.fullmatch(lines[-1])
    assert match, lines
    return int(match.group(1)), match.group(4), match.group(5)


# -- kernel to kernel -----------------------------------------------------------------------

def test_bytes_arrive_intact_and_both_ends_agree(processes):
    server, port = start_server(processes, "--once")
    result = client(port, "-n", "3M")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert summary(lines) == (3 * 1024 * 1024, "sender", "ok")
    assert STREAM.fullmatch(lines[-2]).groups() == ("1", "1", str(3 * 1024 * 1024), "ok")
    status, lines, err = finish(server)
    assert status == 0, err
    assert re.fullmatch(r"lwperf: test from 127\.0\.0\.1:\d+: 1 stream\(s\), 3145728 bytes "
                        r"each, client sends", lines[0]), lines
    assert summary(lines) == (3 * 1024 * 1024, "receiver", "ok")


def test_timed_test_stops_and_counts_the_same_on_both_ends(processes):
    server, port = start_server(processes, "--once", "--json")
    result = client(port, "-t", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    mine = json.loads(result.stdout.splitlines()[-1])
    status, lines, err = finish(server)
    assert status == 0, err
    theirs = json.loads(lines[-1])
    assert mine["bytes"] > 0 and mine["sha256_ok"] is True
    assert theirs["bytes"] == mine["bytes"] and theirs["seconds"] == mine["seconds"]


def test_reverse_the_server_sends(processes):
    server, port = start_server(processes, "--once")
    result = client(port, "-n", "2M", "-R", "-l", "10000")
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout.splitlines()) == (2 * 1024 * 1024, "receiver", "ok")
    status, lines, err = finish(server)
    assert status == 0, err
    assert "server sends" in lines[0]
    assert summary(lines) == (2 * 1024 * 1024, "sender", "ok")


@pytest.mark.parametrize("reverse", [False, True])
def test_parallel_streams_split_the_bytes_and_sum(processes, reverse):
    server, port = start_server(processes, "--once")
    result = client(port, "-n", "1000000", "-P", "3", *(["-R"] if reverse else []))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    streams = [STREAM.fullmatch(line).groups() for line in lines[:3]]
    assert streams == [("1", "3", "333334", "ok"), ("2", "3", "333333", "ok"),
                       ("3", "3", "333333", "ok")]
    assert summary(lines)[0] == 1000000
    status, lines, err = finish(server)
    assert status == 0, err
    assert sorted(STREAM.fullmatch(line).group(3) for line in lines[1:4]) == \
        ["333333", "333333", "333334"]
    assert summary(lines)[0] == 1000000


def test_json_is_the_last_line(processes):
    server, port = start_server(processes, "--once", "--json")
    result = client(port, "-n", "1M", "-P", "2", "-R", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert set(report) == {"bytes", "seconds", "mbps", "streams", "reverse", "sha256_ok", "role"}
    assert report["bytes"] == 1024 * 1024
    assert report["streams"] == 2 and report["reverse"] is True
    assert report["sha256_ok"] is True and report["role"] == "client"
    assert report["seconds"] >= 0 and report["mbps"] >= 0
    status, lines, err = finish(server)
    assert status == 0, err
    served = json.loads(lines[-1])
    assert served["role"] == "server" and served["bytes"] == report["bytes"]
    assert served["mbps"] == report["mbps"]     # both print the receiver's measurement


def test_server_without_once_serves_test_after_test(processes):
    server, port = start_server(processes)
    for amount in ("100K", "200K"):
        result = client(port, "-n", amount)
        assert result.returncode == 0, result.stderr
        assert summary(result.stdout.splitlines())[0] == lwperf.parse_size(amount)
    assert server.poll() is None


def test_refused_connection_is_one_line_and_status_1():
    with socket.socket() as reserved:     # bound, not listening: the kernel answers RST
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        result = client(port, "-n", "1M")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"lwperf: connect to 127.0.0.1:{port}: "
                                          "Connection refused"]
    assert result.stdout == ""


def test_help():
    result = run("lwperf", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: lwperf")
    assert "sha-256" in result.stdout.lower()


@pytest.mark.parametrize("argv", [
    [],
    ["-s", "-c", "127.0.0.1"],
    ["-c", "127.0.0.1", "-n", "12X"],
    ["-c", "127.0.0.1", "-n", "-5"],
    ["-c", "127.0.0.1", "-n", "0"],
    ["-c", "127.0.0.1", "-n", "1M", "-t", "3"],
    ["-c", "127.0.0.1", "-t", "0"],
    ["-c", "127.0.0.1", "-P", "0"],
    ["-c", "127.0.0.1", "-l", "0"],
    ["-c", "127.0.0.1", "-p", "70000"],
    ["-c", "127.0.0.1", "--once"],
    ["-c", "127.0.0.1", "--connect-timeout", "nan"],
    ["-s", "-R"],
    ["-s", "-n", "1M"],
    ["--net", "vde:///tmp/sw", "-s"],        # an lwstack needs --conf
])
def test_bad_arguments_give_one_line(argv):
    if "--net" not in argv:
        argv = ["--net", "kernel", *argv]
    result = run("lwperf", *argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lwperf: "), result.stderr
    assert "Traceback" not in result.stderr


def test_sizes_use_iperf_suffixes():
    assert lwperf.parse_size("1000") == 1000
    assert lwperf.parse_size("64K") == 65536
    assert lwperf.parse_size("2m") == 2 * 1024 ** 2
    assert lwperf.parse_size("1G") == 1024 ** 3
    for bad in ("", "K", "1.5M", "-1", "10KB"):
        with pytest.raises(ValueError):
            lwperf.parse_size(bad)


def test_header_round_trip_and_validation():
    params = lwperf.Params(True, False, 2, 3, 65536, 0x1234, 999, 0.0)
    again = lwperf.Params.unpack(params.pack())
    assert (again.reverse, again.timed, again.index, again.streams, again.block, again.test_id,
            again.nbytes) == (True, False, 2, 3, 65536, 0x1234, 999)
    with pytest.raises(lwperf.ProtocolError):
        lwperf.Params.unpack(b"HTTP" + params.pack()[4:])
    with pytest.raises(lwperf.ProtocolError):
        lwperf.Params.unpack(lwperf.Params(False, False, 3, 3, 1, 0, 0, 0.0).pack())


# -- fake peers that break the protocol ------------------------------------------------------

class FakePeer:
    """One connection's worth of a misbehaving lwperf peer, run in a thread of the test."""

    def __init__(self, behaviour):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.behaviour = behaviour
        self.seen = {}
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(20)
                self.behaviour(conn, self.seen)
        except Exception as exc:  # reported by join()
            self.error = exc
        finally:
            self.listener.close()

    def join(self):
        self.thread.join(20)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error


def read_to_eof(conn):
    data = bytearray()
    while chunk := conn.recv(1 << 16):
        data += chunk
    return bytes(data)


def test_client_fails_when_the_receiver_reports_another_digest():
    def wrong_digest(conn, seen):
        lwperf.Params.unpack(lwperf.recv_exact(conn, lwperf.HEADER.size, "header"))
        conn.sendall(lwperf.ACK)
        data = read_to_eof(conn)
        body, trailer = data[:-lwperf.TRAILER.size], data[-lwperf.TRAILER.size:]
        seen["trailer"] = lwperf.TRAILER.unpack(trailer)
        seen["digest"] = hashlib.sha256(body).digest()
        conn.sendall(lwperf.REPORT.pack(lwperf.REPORT_MAGIC, len(body), b"\x00" * 32, 1.0, 2.0))

    peer = FakePeer(wrong_digest)
    result = client(peer.port, "-n", "300K")
    peer.join()
    # What the client sent was right: the trailer matches the bytes before it.
    assert peer.seen["trailer"] == (lwperf.TRAILER_MAGIC, 300 * 1024, peer.seen["digest"])
    assert result.returncode == 1
    [error] = result.stderr.splitlines()
    assert error.startswith("lwperf: stream 1/1: sha256 mismatch: the sender sent 307200 bytes")
    assert summary(result.stdout.splitlines()) == (300 * 1024, "sender", "MISMATCH")


def test_client_detects_corrupted_data_and_reports_what_it_got():
    payload = bytes(range(256)) * 1000

    def corrupting_sender(conn, seen):
        params = lwperf.Params.unpack(lwperf.recv_exact(conn, lwperf.HEADER.size, "header"))
        seen["reverse"] = params.reverse
        conn.sendall(lwperf.ACK)
        damaged = bytearray(payload)
        damaged[70000] ^= 0x01                         # one flipped bit
        conn.sendall(damaged)
        conn.sendall(lwperf.TRAILER.pack(lwperf.TRAILER_MAGIC, len(payload),
                                         hashlib.sha256(payload).digest()))
        conn.shutdown(socket.SHUT_WR)
        seen["report"] = lwperf.REPORT.unpack(lwperf.recv_exact(conn, lwperf.REPORT.size, "report"))
        seen["damaged"] = hashlib.sha256(damaged).digest()

    peer = FakePeer(corrupting_sender)
    result = client(peer.port, "-n", str(len(payload)), "-R", "--json")
    peer.join()
    assert peer.seen["reverse"] is True
    magic, count, digest, first, last = peer.seen["report"]
    assert (magic, count, digest) == (lwperf.REPORT_MAGIC, len(payload), peer.seen["damaged"])
    assert last >= first
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["sha256_ok"] is False


def test_server_detects_a_lying_client_and_exits_1(processes):
    server, port = start_server(processes, "--once")
    params = lwperf.Params(False, False, 0, 1, 4096, 77, 5000, 0.0)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(params.pack())
        assert lwperf.recv_exact(conn, 4, "ack") == lwperf.ACK
        conn.sendall(b"x" * 5000)
        conn.sendall(lwperf.TRAILER.pack(lwperf.TRAILER_MAGIC, 5000, hashlib.sha256(b"y").digest()))
        conn.shutdown(socket.SHUT_WR)
        magic, count, digest, _, _ = lwperf.REPORT.unpack(
            lwperf.recv_exact(conn, lwperf.REPORT.size, "report"))
    assert (magic, count) == (lwperf.REPORT_MAGIC, 5000)
    assert digest == hashlib.sha256(b"x" * 5000).digest()   # the server reports what it got
    status, lines, err = finish(server)
    assert status == 1
    assert "lwperf: stream 1/1: sha256 mismatch" in err
    assert summary(lines) == (5000, "receiver", "MISMATCH")


def _cut_short(conn, seen):
    lwperf.recv_exact(conn, lwperf.HEADER.size, "header")
    conn.sendall(lwperf.ACK)
    conn.sendall(b"z" * 10000)          # then a clean FIN, and no trailer


def _reset(conn, seen):
    lwperf.recv_exact(conn, lwperf.HEADER.size, "header")
    conn.sendall(lwperf.ACK)
    conn.sendall(b"z" * 10000)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: RST


def _not_lwperf(conn, seen):
    conn.recv(100)
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


@pytest.mark.parametrize("behaviour, message", [
    (_cut_short, "lwperf: stream 1/1: the data ended without the sender's trailer "
                 "(10000 bytes received; did the sender stop early?)"),
    (_reset, "lwperf: stream 1/1: Connection reset by peer"),
    (_not_lwperf, "lwperf: 127.0.0.1:{port}: not an lwperf server (bad answer)"),
])
def test_broken_streams_give_one_line_and_status_1(behaviour, message):
    peer = FakePeer(behaviour)
    result = client(peer.port, "-n", "1M", "-R")
    peer.join()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [message.format(port=peer.port)]


# -- lwstack to lwstack ----------------------------------------------------------------------

def _lwstack_has_tcp():
    import lwstack
    from lwstack import socket as lws
    from vde.memory import MemorySwitch

    with lwstack.Stack(MemorySwitch(), "ip=10.0.0.9/24") as stack:
        try:
            lws.socket(lws.AF_INET, lws.SOCK_STREAM, stack=stack).close()
        except OSError as exc:
            if exc.errno == errno.EPROTONOSUPPORT:
                return False
            raise
    return True


@pytest.mark.skipif(not _lwstack_has_tcp(), reason="lwstack has no TCP yet (EPROTONOSUPPORT)")
@pytest.mark.parametrize("reverse", [False, True], ids=["client-sends", "server-sends"])
def test_lwstack_to_lwstack_on_lwswitch(processes, lwswitch, reverse):
    server = processes.python("lwperf", "--net", lwswitch, "--conf", "ip=10.0.0.1/24", "-s",
                              "--once")
    assert read_line(server, timeout=20) == "lwperf: server listening on 10.0.0.1:5201\n"
    result = run("lwperf", "--net", lwswitch, "--conf", "ip=10.0.0.2/24", "-c", "10.0.0.1",
                 "-n", "2M", *(["-R"] if reverse else []), timeout=120)
    assert result.returncode == 0, result.stderr
    side = "receiver" if reverse else "sender"
    assert summary(result.stdout.splitlines()) == (2 * 1024 * 1024, side, "ok")
    status, lines, err = finish(server)
    assert status == 0, err
    assert summary(lines)[::2] == (2 * 1024 * 1024, "ok")
