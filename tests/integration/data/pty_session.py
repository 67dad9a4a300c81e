#!/usr/bin/env python3
"""Drives `srun --pty ... bash` through a pseudo-terminal, as a person at a terminal would.

    pty_session.py SRUN_ARGS...

Runs `srun SRUN_ARGS` on a terminal of 24 rows and 80 columns and checks, printing one line per
check ("ok NAME" or "FAIL NAME: what was seen"): the shell's stdin is a terminal (`tty`), its
size (`stty size`), a resize of the terminal (40 x 100) seen by `stty size`, ^C ending a
foreground `sleep` (status 130, the shell alive), and `exit 7` ending srun with status 7.
Exit status: 0 when every check passed, 1 otherwise.
"""
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

TIMEOUT = 240  # a VM's boot under TCG is in it


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Session:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvp(argv[0], argv)
        set_size(self.fd, 24, 80)
        self.seen = b""
        self.failed = False

    def read_until(self, pattern, timeout):
        """The output up to a match of `pattern` (bytes regex), or None on timeout or end."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            m = regex.search(self.seen)
            if m:
                out, self.seen = self.seen[: m.end()], self.seen[m.end():]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                return None
            if not data:
                return None
            self.seen += data

    def send(self, text):
        os.write(self.fd, text.encode())

    def check(self, name, command, pattern, timeout=30):
        if command is not None:
            self.send(command)
        out = self.read_until(pattern, timeout)
        if out is None:
            print(f"FAIL {name}: {self.seen[-300:]!r}", flush=True)
            self.failed = True
            return False
        print(f"ok {name}", flush=True)
        return True


def main():
    s = Session(["srun"] + sys.argv[1:])
    # A prompt of our own, easy to find and not echoed as typed.
    if not s.check("shell", "export PS1='svm''prompt> '\r", rb"svmprompt> ", TIMEOUT):
        return 1
    s.check("tty", "tty\r", rb"/dev/pts/\d+\r\n.*svmprompt> ")
    s.check("size", "stty size\r", rb"[\r\n]24 80\r\n.*svmprompt> ")
    set_size(s.fd, 40, 100)  # the kernel tells srun (SIGWINCH), srun tells the task
    time.sleep(1)
    s.check("resize", "stty size\r", rb"[\r\n]40 100\r\n.*svmprompt> ")
    s.send("sleep 60\r")
    time.sleep(2)
    s.check("interrupt", "\x03", rb"svmprompt> ", 10)
    s.check("status after ^C", "echo rc=$?\r", rb"rc=130\r\n.*svmprompt> ")
    s.send("exit 7\r")
    _, status = os.waitpid(s.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 7:
        print("ok exit status", flush=True)
    else:
        print(f"FAIL exit status: {code}", flush=True)
        s.failed = True
    return 1 if s.failed else 0


if __name__ == "__main__":
    sys.exit(main())
