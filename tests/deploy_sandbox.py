"""Run a command under a systemd unit's seccomp rules, without systemd: `deploy_sandbox.py UNIT -- ARGV`.

The tests cannot start units (no systemd manager in a test container), but the
rules that can break Python, uvloop or gRPC at run time are seccomp filters,
which any process can install on itself before exec. This module reads the
unit's SystemCallFilter= (groups expanded by `systemd-analyze syscall-filter`),
SystemCallErrorNumber=, SystemCallArchitectures=native, MemoryDenyWriteExecute=
and RestrictAddressFamilies=, builds the same rules as systemd 252 does
(seccomp-util.c: W+X mmap, PROT_EXEC mprotect/pkey_mprotect and SHM_EXEC shmat
refused with EPERM; socket() of another family refused with EAFNOSUPPORT;
the syscall allow list; anything else refused with the error number), installs
them as one classic-BPF filter and execs ARGV. x86_64 only (the syscall numbers
come from linux-libc-dev's asm/unistd_64.h).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["UNISTD", "UnitRules", "available", "filter_program", "read_unit"]

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_LD_W_ABS, _JEQ, _JGE, _JSET, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x54, 0x06
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
# systemd always allows what a process needs to start and to end (systemd.exec(5), SystemCallFilter=)
_ALWAYS = ("execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn")


def available() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if platform.machine() != "x86_64":
        return f"seccomp numbers are read for x86_64, this is {platform.machine()}"
    if not UNISTD.exists():
        return f"{UNISTD} missing (Debian: linux-libc-dev)"
    if subprocess.run(["systemd-analyze", "--version"], capture_output=True, check=False).returncode != 0:
        return "systemd-analyze missing"
    return None


@dataclass
class UnitRules:
    """The seccomp-related settings of a unit's [Service] section."""

    allow: set[str] | None = None  # None: no allow list
    deny: set[str] = field(default_factory=set)
    error: int = errno.EPERM
    native_only: bool = False
    deny_write_execute: bool = False
    families: set[int] | None = None


def read_unit(path: Path) -> UnitRules:
    """Settings as systemd merges them: SystemCallFilter= lines accumulate, `~` lines deny."""
    rules = UnitRules()
    groups = _groups()
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            names = value.removeprefix("~").split()
            expanded = {call for name in names for call in _expand(name, groups)}
            if value.startswith("~"):
                if rules.allow is None:
                    rules.deny |= expanded
                else:
                    rules.allow -= expanded
            else:
                rules.allow = (rules.allow or set()) | expanded
        elif key == "SystemCallErrorNumber":
            rules.error = getattr(errno, value)
        elif key == "SystemCallArchitectures":
            rules.native_only = value == "native"
        elif key == "MemoryDenyWriteExecute":
            rules.deny_write_execute = value == "yes"
        elif key == "RestrictAddressFamilies":
            rules.families = {int(getattr(socket, family)) for family in value.split()}
    if rules.allow is not None:
        rules.allow |= set(_ALWAYS)
    return rules


def _groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: every @group and what it lists (names and @groups)."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def _expand(name: str, groups: dict[str, list[str]]) -> set[str]:
    if not name.startswith("@"):
        return {name}
    return {call for member in groups[name] for call in _expand(member, groups)}


def _numbers() -> dict[str, int]:
    return {
        m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", UNISTD.read_text())
    }


def filter_program(rules: UnitRules) -> list[tuple[int, int, int, int]]:
    """The classic-BPF program (code, jt, jf, k) of `rules`, in blocks that each reload the syscall number."""
    nr = _numbers()
    errno_ret = _RET_ERRNO | rules.error
    prog = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH_X86_64), (_RET, 0, 0, _RET_KILL_PROCESS)]
    if rules.native_only:
        prog += [(_LD_W_ABS, 0, 0, 0), (_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, errno_ret)]
    arg = [16 + 8 * i for i in range(6)]  # low 32 bits of args[i] (little endian)
    if rules.deny_write_execute:
        eperm = _RET_ERRNO | errno.EPERM
        prog += [
            (_LD_W_ABS, 0, 0, 0), (_JEQ, 0, 4, nr["mmap"]),
            (_LD_W_ABS, 0, 0, arg[2]), (_AND, 0, 0, _PROT_WRITE | _PROT_EXEC),
            (_JEQ, 0, 1, _PROT_WRITE | _PROT_EXEC), (_RET, 0, 0, eperm),
        ]  # fmt: skip
        for call, flag in (("mprotect", _PROT_EXEC), ("pkey_mprotect", _PROT_EXEC), ("shmat", _SHM_EXEC)):
            prog += [
                (_LD_W_ABS, 0, 0, 0), (_JEQ, 0, 3, nr[call]),
                (_LD_W_ABS, 0, 0, arg[2]), (_JSET, 0, 1, flag), (_RET, 0, 0, eperm),
            ]  # fmt: skip
    if rules.families is not None:
        families = sorted(rules.families)
        prog += [(_LD_W_ABS, 0, 0, 0), (_JEQ, 0, len(families) + 2, nr["socket"]), (_LD_W_ABS, 0, 0, arg[0])]
        prog += [(_JEQ, len(families) - i, 0, family) for i, family in enumerate(families)]
        prog += [(_RET, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT)]
    prog.append((_LD_W_ABS, 0, 0, 0))
    for call in sorted(rules.deny & nr.keys()):
        prog += [(_JEQ, 0, 1, nr[call]), (_RET, 0, 0, errno_ret)]
    if rules.allow is None:
        prog.append((_RET, 0, 0, _RET_ALLOW))
    else:
        for call in sorted(rules.allow & nr.keys()):
            prog += [(_JEQ, 0, 1, nr[call]), (_RET, 0, 0, _RET_ALLOW)]
        prog.append((_RET, 0, 0, errno_ret))
    return prog


def _install(prog: list[tuple[int, int, int, int]]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2  # as NoNewPrivileges=yes
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def main(argv: list[str]) -> None:
    unit, sep, command = argv[0], argv[1], argv[2:]
    assert sep == "--" and command, "usage: deploy_sandbox.py UNIT -- ARGV"
    _install(filter_program(read_unit(Path(unit))))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
