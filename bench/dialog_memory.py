#!/usr/bin/env python3
"""Memory per dialog of voxgate as a stateful proxy (issue 4), on loopback only.

Usage: dialog_memory.py uac NODE_ADDR N        (internal: drives N calls, prints counts)
       dialog_memory.py uas PORT               (internal: answers INVITE 200, BYE 200)

bench/dialog-memory.sh starts the node and both sides and reads the node's RSS from /proc.
The UAC keeps every call up (INVITE -> 200 -> ACK, no BYE), so the node ends holding N
confirmed dialogs. Nothing is retransmitted: a lost datagram leaves a call unconfirmed, and
the script reports the dialog count the node itself gives in /stats.
"""
import select
import socket
import sys
import time


def hdr(msg, name):
    for line in msg.split("\r\n")[1:]:
        if ":" in line:
            n, v = line.split(":", 1)
            if n.strip().lower() == name.lower():
                return v.strip()
    return None


def lines(msg, name):
    return [l for l in msg.split("\r\n")[1:] if l.split(":", 1)[0].strip().lower() == name.lower()]


def uas(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", port))
    me = "127.0.0.1:%d" % port
    while True:
        data, src = s.recvfrom(65535)
        m = data.decode("latin-1")
        if not (m.startswith("INVITE ") or m.startswith("BYE ") or m.startswith("OPTIONS ")):
            continue
        r = ["SIP/2.0 200 OK"] + lines(m, "Via")
        if m.startswith("INVITE "):
            r += lines(m, "Record-Route")
        to = hdr(m, "To") or ""
        if "tag=" not in to:
            to += ";tag=u" + str(abs(hash(hdr(m, "Call-ID"))) % 100000000)
        r += ["From: " + (hdr(m, "From") or ""), "To: " + to, "Call-ID: " + (hdr(m, "Call-ID") or ""),
              "CSeq: " + (hdr(m, "CSeq") or ""), "Contact: <sip:uas@%s>" % me, "Content-Length: 0", "", ""]
        s.sendto("\r\n".join(r).encode("latin-1"), src)


def uac(node, n):
    host, port = node.rsplit(":", 1)
    dst = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    me = "127.0.0.1:%d" % s.getsockname()[1]
    sent = acked = 0
    window = 200
    last = time.time()
    while acked < n and time.time() - last < 10:
        while sent < n and sent - acked < window:
            i = sent
            inv = ("INVITE sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKm%d;rport\r\n"
                   "Max-Forwards: 70\r\nFrom: <sip:alice@mem.test>;tag=a%d\r\nTo: <sip:bob@mem.test>\r\n"
                   "Call-ID: mem-%d@mem.test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\n"
                   "Content-Length: 0\r\n\r\n") % (node, me, i, i, i, me)
            try:
                s.sendto(inv.encode(), dst)
            except BlockingIOError:
                break
            sent += 1
        r, _, _ = select.select([s], [], [], 0.5)
        if not r:
            continue
        while True:
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                break
            m = data.decode("latin-1")
            if not m.startswith("SIP/2.0 200") or not (hdr(m, "CSeq") or "").endswith("INVITE"):
                continue
            last = time.time()
            routes = [("Route:" + l.split(":", 1)[1]) for l in lines(m, "Record-Route")]
            contact = (hdr(m, "Contact") or "").strip("<>")
            cid = hdr(m, "Call-ID")
            ack = ["ACK %s SIP/2.0" % contact,
                   "Via: SIP/2.0/UDP %s;branch=z9hG4bKk%s;rport" % (me, cid.split("@")[0]),
                   "Max-Forwards: 70"] + routes + [
                   "From: " + hdr(m, "From"), "To: " + hdr(m, "To"), "Call-ID: " + cid,
                   "CSeq: 1 ACK", "Content-Length: 0", "", ""]
            s.sendto("\r\n".join(ack).encode("latin-1"), dst)
            acked += 1
    print("sent=%d acked=%d" % (sent, acked))


if __name__ == "__main__":
    if sys.argv[1] == "uas":
        uas(int(sys.argv[2]))
    else:
        uac(sys.argv[2], int(sys.argv[3]))
