#!/usr/bin/env python3
"""sipreplay.py -- replay SIP test messages over UDP to a running server and check its replies.

Used by scripts/replay-conformance.sh and scripts/replay-protos.sh, which run it inside a
network namespace that has only loopback (unshare -n), so nothing can leave the machine.

  sipreplay.py conformance --target 127.0.0.1:5099 DIR [DIR...]
      DIR holds index.tsv and messages/. Every message is sent unchanged as one datagram; the
      replies that arrive within --wait seconds are checked against the index verdict. Then
      OPTIONS to the server itself must get 200. Prints a table and "N passed, M failed";
      exit status 1 when anything failed.

  sipreplay.py protos --target 127.0.0.1:5060 --bind-port 5061 DIR
      DIR holds the rendered PROTOS c07-sip suite (invite/NNNNNNN.sip, teardown/NNNNNNN.sip).
      Each INVITE is sent, then its teardown, a few ms apart. Case 0 must get a reply; every
      --probe-every cases and at the end the server must answer OPTIONS with 200 (and case 0
      again), and --pid must still be alive. A case passes when the probe after it succeeds.

Only the standard library is used. Replies are received on UDP sockets bound to 0.0.0.0 on
every port the messages name in their top Via (default 5060) and on the sending socket;
IP_PKTINFO tells the address a reply was sent to, so a reply that does not go back to the
source address (127.0.0.1) is reported.
"""

import argparse
import os
import re
import select
import socket
import struct
import sys
import time

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
MAX_DGRAM = 65507


# ----------------------------------------------------------------------------- helpers

def status_of(data):
    """Status code of a SIP response, or None when the start line is not a status line."""
    m = re.match(rb"SIP/2\.0 (\d{3}) [^\r\n]*\r\n", data)
    return int(m.group(1)) if m else None


def header_names(data):
    """Lower-case header names of a message (compact forms expanded for the ones we check)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    compact = {b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id", b"l": b"content-length"}
    names = set()
    for line in head.split(b"\r\n")[1:]:
        if b":" in line and line[:1] not in (b" ", b"\t"):
            n = line.split(b":", 1)[0].strip().lower()
            names.add(compact.get(n, n))
    return names


def well_formed(data):
    """A reply that a UAC can match: status line, end of headers, the five mandatory headers."""
    if status_of(data) is None or b"\r\n\r\n" not in data:
        return False
    return {b"via", b"from", b"to", b"call-id", b"cseq"} <= header_names(data)


def top_via_port(data):
    """Port of the top Via's sent-by (5060 when absent), or None when there is no Via."""
    m = re.search(rb"(?im)^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*[A-Za-z]+[ \t]+"
                  rb"(\[[0-9A-Fa-f:.]+\]|[^ \t;:,\r\n]+)(?:[ \t]*:[ \t]*(\d+))?", data)
    if not m:
        return None
    if m.group(2):
        p = int(m.group(2))
        return p if 0 < p < 65536 else None
    return 5060


def method_of(data):
    m = re.match(rb"([^ \r\n]+) ", data)
    return m.group(1) if m and not data.startswith(b"SIP/") else None


def udp_socket(port, addr="0.0.0.0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((addr, port))
    s.setblocking(False)
    return s


class Receiver:
    """A set of UDP sockets; collects (dst_addr, local_port, data) of everything received."""

    def __init__(self, ports, addr="0.0.0.0"):
        self.socks = {}
        for p in sorted(set(ports)):
            try:
                self.socks[p] = udp_socket(p, addr)
            except OSError as e:
                print(f"note: cannot bind {addr}:{p}: {e}", file=sys.stderr)
        self.eph = udp_socket(0, addr)
        self.socks[self.eph.getsockname()[1]] = self.eph

    def sock_for(self, port):
        return self.socks.get(port, self.eph)

    def _read(self, s):
        out = []
        while True:
            try:
                data, anc, _flags, _src = s.recvmsg(MAX_DGRAM + 1, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:  # e.g. ECONNREFUSED reported by an ICMP error
                continue
            dst = None
            for level, typ, cdata in anc:
                if level == socket.IPPROTO_IP and typ == IP_PKTINFO and len(cdata) >= 12:
                    dst = socket.inet_ntoa(cdata[8:12])
            out.append((dst, s.getsockname()[1], data))

    def drain(self):
        got = []
        for s in self.socks.values():
            got += self._read(s)
        return got

    def collect(self, wait, stop=None):
        """Replies until `wait` seconds pass, or until stop(replies) is true (+20 ms grace)."""
        got = []
        end = time.monotonic() + wait
        grace_set = False
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return got
            r, _, _ = select.select(list(self.socks.values()), [], [], left)
            for s in r:
                got += self._read(s)
            if stop and not grace_set and stop(got):
                end = min(end, time.monotonic() + 0.02)
                grace_set = True


def options_probe(rx, target, sock, tag, wait=1.0):
    """OPTIONS to the server itself; returns the final status (or None)."""
    lport = sock.getsockname()[1]
    tag = re.sub(r"[^A-Za-z0-9]", "", str(tag)) or "x"
    callid = f"probe-{tag}-{os.getpid()}@127.0.0.1"
    msg = (f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe-{tag};rport\r\n"
           f"Max-Forwards: 70\r\n"
           f"From: <sip:probe@127.0.0.1>;tag=p{tag}\r\n"
           f"To: <sip:{target[0]}:{target[1]}>\r\n"
           f"Call-ID: {callid}\r\n"
           f"CSeq: 1 OPTIONS\r\n"
           f"Content-Length: 0\r\n\r\n").encode()
    rx.drain()
    sock.sendto(msg, target)

    def mine(got):
        return [d for _, _, d in got if callid.encode() in d and (status_of(d) or 0) >= 200]
    got = rx.collect(wait, lambda g: bool(mine(g)))
    finals = mine(got)
    if not finals:
        return None, None
    return status_of(finals[-1]), finals[-1]


# ----------------------------------------------------------------------------- conformance

def expected(verdict, msg):
    """A function (replies -> (ok, note)) for an index verdict."""
    is_resp = msg.startswith(b"SIP/")
    meth = method_of(msg)
    parts = verdict.split(";")

    def final(replies):
        sts = [status_of(d) for d in replies]
        finals = [s for s in sts if s is not None and s >= 200]
        return finals[-1] if finals else (sts[-1] if sts else None)

    def want_status(codes):
        def f(replies):
            st = final(replies)
            return (st in codes, f"want {'|'.join(map(str, codes))}")
        return f

    for p in parts:
        if p.startswith("reject:") or p.startswith("reply:") or p.startswith("proxy:"):
            codes = [int(c) for c in p.split(":", 1)[1].split("|") if c.isdigit()]
            return want_status(codes)
    if parts[0] == "drop":
        return lambda r: (not r, "want silence")
    if "register-ok" in parts:
        def reg(replies):
            st = final(replies)
            if st is None:
                return False, "want a reply"
            if not well_formed(replies[-1]):
                return False, "reply not well-formed"
            return st != 400, "want a well-formed reply other than 400"
        return reg
    if parts[0] in ("accept", "accept-parse"):
        if is_resp or meth == b"ACK":
            return lambda r: (not r, "response/ACK: want silence")

        def acc(replies):
            st = final(replies)
            if st is None:
                return False, "want a reply"
            if st == 400 and parts[0] == "accept-parse" and meth == b"REGISTER":
                return True, "400 allowed (registrar role)"
            return st not in (400, 500), "want a reply other than 400/500"
        return acc
    # reject-or-tolerate, tolerate, unspecified: anything, as long as the server survives
    return lambda r: (True, "anything (must not crash)")


def load_index(d):
    rows = []
    with open(os.path.join(d, "index.tsv"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if i == 0 or len(cols) < 4:
                continue
            rows.append((cols[0], cols[3]))
    return rows


def cmd_conformance(a):
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    cases = []
    for d in a.dirs:
        listed = set()
        for name, verdict in load_index(d):
            path = os.path.join(d, "messages", name)
            listed.add(name)
            if not os.path.exists(path):
                print(f"note: {path} listed in index.tsv but missing", file=sys.stderr)
                continue
            with open(path, "rb") as f:
                cases.append((os.path.basename(d.rstrip("/")), name, verdict, f.read()))
        for name in sorted(os.listdir(os.path.join(d, "messages"))):
            if name not in listed:
                print(f"note: {name} has no index row; sent with verdict 'unspecified'",
                      file=sys.stderr)
                with open(os.path.join(d, "messages", name), "rb") as f:
                    cases.append((os.path.basename(d.rstrip("/")), name, "unspecified", f.read()))

    ports = {p for p in (top_via_port(c[3]) for c in cases) if p and p != target[1]}
    ports.add(5060 if target[1] != 5060 else 5061)
    rx = Receiver(ports)
    passed = failed = 0
    rows = []
    for suite, name, verdict, msg in cases:
        vp = top_via_port(msg)
        sock = rx.sock_for(vp if vp else -1)
        check = expected(verdict, msg)
        rx.drain()
        try:
            sock.sendto(msg, target)
        except OSError as e:
            rows.append((suite, name, verdict, "-", "FAIL", f"send failed: {e}"))
            failed += 1
            continue
        got = rx.collect(a.wait, lambda g: any((status_of(d) or 0) >= 200 for _, _, d in g))
        replies = [d for _, _, d in got]
        ok, note = check(replies)
        misaddressed = sorted({dst for dst, _, _ in got if dst and dst != "127.0.0.1"})
        if misaddressed:
            ok = False
            note = f"reply sent to {','.join(misaddressed)}, not to the source 127.0.0.1"
        if name == "dblreq.dat" and any(re.search(rb"(?im)^cseq:[^\r\n]*INVITE", d) for d in replies):
            ok, note = False, "the trailing octets were handled as a second request"
        sts = ",".join(str(status_of(d)) for d in replies) if replies else "silence"
        rows.append((suite, name, verdict, sts, "pass" if ok else "FAIL", note))
        if ok:
            passed += 1
        else:
            failed += 1

    st, reply = options_probe(rx, target, rx.eph, "final")
    ok = st == 200 and well_formed(reply)
    rows.append(("-", "OPTIONS-to-self", "reply:200", str(st) if st else "silence",
                 "pass" if ok else "FAIL", "the node still answers OPTIONS afterwards"))
    passed += ok
    failed += not ok

    w = max(len(r[1]) for r in rows)
    vw = max(len(r[2]) for r in rows)
    print(f"{'suite':8} {'message':{w}} {'verdict':{vw}} {'reply':10} result  note")
    for suite, name, verdict, sts, res, note in rows:
        print(f"{suite:8} {name:{w}} {verdict:{vw}} {sts:10} {res:6}  {note if res != 'pass' else ''}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- protos

def cmd_protos(a):
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    inv_dir = os.path.join(a.dir, "invite")
    td_dir = os.path.join(a.dir, "teardown")
    names = sorted(n for n in os.listdir(inv_dir) if n.endswith(".sip"))
    if a.limit:
        names = names[: a.limit]
    rx = Receiver([a.bind_port])
    sock = rx.sock_for(a.bind_port)
    by_status = {}
    unsendable = 0
    replied_cases = 0
    checks_failed = []
    passed = failed = 0
    pending = 0  # cases sent since the last successful probe
    deadline = time.monotonic() + a.max_seconds

    def count(got):
        for _, _, d in got:
            st = status_of(d)
            key = str(st) if st else "non-status"
            by_status[key] = by_status.get(key, 0) + 1

    def read(name, sub):
        with open(os.path.join(a.dir, sub, name), "rb") as f:
            return f.read()

    def alive():
        return a.pid is None or os.path.exists(f"/proc/{a.pid}")

    def case0(tag):
        m = read("0000000.sip", "invite")
        rx.drain()
        sock.sendto(m, target)
        got = rx.collect(0.5, lambda g: any((status_of(d) or 0) >= 200 for _, _, d in g))
        count(got)
        try:
            sock.sendto(read("0000000.sip", "teardown"), target)
        except (OSError, FileNotFoundError):
            pass
        sts = [status_of(d) for _, _, d in got]
        return [s for s in sts if s]

    def probe(tag):
        """True when the server is alive, answers OPTIONS 200 and replies to case 0."""
        time.sleep(0.05)
        count(rx.drain())
        if not alive():
            checks_failed.append(f"{tag}: server process gone")
            return False
        st, _ = options_probe(rx, target, sock, tag)
        if st != 200:
            checks_failed.append(f"{tag}: OPTIONS got {st if st else 'no reply'}")
            return False
        c0 = case0(tag)
        if not c0:
            checks_failed.append(f"{tag}: case 0 got no reply")
            return False
        return True

    first = case0("start")
    if not first:
        checks_failed.append("start: case 0 got no reply")
    print(f"case 0 at start: replies {first if first else 'none'}")
    stopped = None
    for i, name in enumerate(names):
        if time.monotonic() > deadline:
            stopped = f"time bound {a.max_seconds}s reached at case {name}"
            break
        inv = read(name, "invite")
        try:
            sock.sendto(inv, target)
        except OSError:
            unsendable += 1  # larger than a UDP datagram can carry
        time.sleep(a.gap)
        got = rx.drain()
        if got:
            replied_cases += 1
        count(got)
        try:
            sock.sendto(read(name, "teardown"), target)
        except (OSError, FileNotFoundError):
            pass
        time.sleep(a.gap)
        pending += 1
        if (i + 1) % a.probe_every == 0 or i + 1 == len(names):
            ok = probe(f"after case {name[:-4]}")
            if ok:
                passed += pending
            else:
                failed += pending
                pending = 0
                if not alive():
                    stopped = "server died"
                    break
            pending = 0
            print(f"  {i + 1}/{len(names)} cases sent; probe {'ok' if ok else 'FAILED'}",
                  flush=True)
    if pending and stopped != "server died":
        ok = probe("at the end")
        passed, failed = (passed + pending, failed) if ok else (passed, failed + pending)
    elif pending:
        failed += pending
    not_run = len(names) - passed - failed
    failed += not_run
    if stopped:
        print(f"stopped: {stopped}; {not_run} cases not run (counted failed)")
    if not first:
        failed += 1
    print(f"cases: {len(names)} (unsendable as one datagram: {unsendable}); "
          f"cases with a reply in their window: {replied_cases}")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
    print(f"replies by status (to INVITEs and teardowns): {counts}")
    for c in checks_failed:
        print(f"check failed: {c}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or checks_failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("conformance")
    c.add_argument("--target", required=True)
    c.add_argument("--wait", type=float, default=0.3)
    c.add_argument("dirs", nargs="+")
    r = sub.add_parser("protos")
    r.add_argument("--target", default="127.0.0.1:5060")
    r.add_argument("--bind-port", type=int, default=5061)
    r.add_argument("--gap", type=float, default=0.002)
    r.add_argument("--probe-every", type=int, default=500)
    r.add_argument("--pid", type=int)
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--max-seconds", type=float, default=600)
    r.add_argument("dir")
    a = p.parse_args()
    return cmd_conformance(a) if a.cmd == "conformance" else cmd_protos(a)


if __name__ == "__main__":
    sys.exit(main())
