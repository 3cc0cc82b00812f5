"""A seccomp filter read as the kernel runs it: classic BPF over struct seccomp_data (nr at
offset 0, arch at 4, instruction_pointer at 8, args[i] at 16 + 8*i; 64 bytes), evaluated for
every system call of the host's own architecture.

The call's number and architecture are known; its arguments and instruction pointer are not,
so a jump that depends on them is explored both ways. A value loaded straight from a word of
seccomp_data keeps its provenance: what a path has learned of that word (equal to k, not k,
within a range) decides which later jumps on it are possible, and it carries from one filter
into the next (they see the same call). Arithmetic loses it: both ways stay open. An
impossible path kept open can only make a call look conditional, never allowed or denied
wrongly.

The kernel runs every filter attached to the thread and keeps the most restrictive action
(KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW). A call is
`allowed` when every path ends in ALLOW or LOG, `denied` when none does, `conditional` else.

The calls and their numbers are the installed libseccomp's, for the architecture it was built
for (seccomp_arch_native, seccomp_syscall_resolve_num_arch), never a table written here;
32-bit compat calls (int 0x80, another AUDIT_ARCH) and the x32 ABI are not counted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace

ALLOWED, CONDITIONAL, DENIED = "allowed", "conditional", "denied"
CLASSES = (ALLOWED, CONDITIONAL, DENIED)
SECCOMP_DATA_BYTES = 64
NR_OFFSET, ARCH_OFFSET = 0, 4
ACTION_MASK = 0xFFFF0000  # SECCOMP_RET_ACTION_FULL
KILL_PROCESS, KILL_THREAD, ALLOW, LOG = 0x80000000, 0x00000000, 0x7FFF0000, 0x7FFC0000
LET_THROUGH = frozenset({ALLOW, LOG})
STRICT_CALLS = frozenset({"read", "write", "exit", "rt_sigreturn"})  # SECCOMP_MODE_STRICT's four
MAX_NUMBER = 1024  # numbers tried; the x32 bit (0x40000000) is another ABI
STEP_BUDGET = 500_000  # instructions per call before a filter is called too branchy to evaluate
INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k (host byte order)
MASK32 = 0xFFFFFFFF


class FilterError(ValueError):
    """A program explorer cannot evaluate: not one the kernel would load, or too branchy."""


@dataclass(frozen=True)
class Word:
    """What a path knows of one unknown 32-bit word of seccomp_data."""

    lo: int = 0
    hi: int = MASK32
    not_eq: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Field:
    """A register holding the word at `offset`, as loaded (its provenance)."""

    offset: int


Value = int | Field | None  # known; a word as loaded; unknown (derived from an unknown word)
Known = dict[int, Word]


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    """The program's instructions, (code, jt, jf, k) each."""
    if not program or len(program) % INSTRUCTION.size:
        raise FilterError(f"a BPF program is a whole number of 8-byte instructions, not {len(program)} bytes")
    return [INSTRUCTION.unpack_from(program, i) for i in range(0, len(program), INSTRUCTION.size)]


def rank(ret: int) -> int:
    """The kernel's order of actions: as a signed 32-bit action, lower is more restrictive."""
    action = ret & ACTION_MASK
    return action - (1 << 32) if action & 0x80000000 else action


def _concrete(value: Value, known: Known) -> Value:
    if isinstance(value, Field):
        word = known.get(value.offset, Word())
        return word.lo if word.lo == word.hi else value
    return value


def _load(offset: int, nr: int, arch: int, known: Known) -> Value:
    if offset % 4 or offset >= SECCOMP_DATA_BYTES:
        raise FilterError(f"a load from offset {offset} of seccomp_data, which the kernel refuses")
    if offset == NR_OFFSET:
        return nr
    if offset == ARCH_OFFSET:
        return arch
    return _concrete(Field(offset), known)


def _alu(op: int, a: Value, b: Value) -> Value:
    """A 32-bit ALU result; unknown when an operand is (division by a known zero is handled by the caller)."""
    if not isinstance(a, int) or (op != 0x80 and not isinstance(b, int)):
        return None
    if op == 0x80:  # NEG, the one operation without an operand
        return -a & MASK32
    assert isinstance(b, int)  # every other operation returned None above when b is unknown
    results = {
        0x00: lambda: a + b,
        0x10: lambda: a - b,
        0x20: lambda: a * b,
        0x30: lambda: a // b,
        0x40: lambda: a | b,
        0x50: lambda: a & b,
        0x60: lambda: a << (b & 31),
        0x70: lambda: a >> (b & 31),
        0x90: lambda: a % b,
        0xA0: lambda: a ^ b,
    }
    if op not in results:
        raise FilterError(f"ALU operation {op:#x}, which seccomp does not allow")
    return results[op]() & MASK32


def _compare(op: int, a: int, b: int) -> bool:
    return {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b)}[op]


def _narrowed(op: int, word: Word, k: int) -> list[tuple[bool, Word]]:
    """The ways a jump on an unknown word against k can go, each with what it teaches of the word."""
    ways: list[tuple[bool, Word]] = []
    if op == 0x10:  # JEQ
        if word.lo <= k <= word.hi and k not in word.not_eq:
            ways.append((True, Word(k, k)))
        if not word.lo == word.hi == k:
            lo, hi = word.lo + (k == word.lo), word.hi - (k == word.hi)
            ways.append((False, Word(lo, hi, word.not_eq if k in (word.lo, word.hi) else word.not_eq | {k})))
    elif op in (0x20, 0x30):  # JGT, JGE: true means the word > k (>= k)
        edge = k + 1 if op == 0x20 else k
        if word.hi >= edge:
            ways.append((True, replace(word, lo=max(word.lo, edge))))
        if word.lo < edge:
            ways.append((False, replace(word, hi=min(word.hi, edge - 1))))
    else:  # JSET: both ways, nothing learnt
        ways = [(True, word), (False, word)]
    return ways


def _jumps(op: int, a: Value, b: Value, known: Known) -> list[tuple[bool, Known]]:
    """Which ways a conditional jump may go on this path, each with the path's knowledge after it."""
    a, b = _concrete(a, known), _concrete(b, known)
    if isinstance(a, int) and isinstance(b, int):
        return [(_compare(op, a, b), known)]
    if isinstance(a, Field) and isinstance(b, int):
        word = known.get(a.offset, Word())
        return [(taken, {**known, a.offset: w}) for taken, w in _narrowed(op, word, b)]
    return [(True, known), (False, known)]


@dataclass
class _Path:
    pc: int
    known: Known
    a: Value = 0
    x: Value = 0
    mem: tuple[Value, ...] = (0,) * 16


def _step(insn: tuple[int, int, int, int], p: _Path, nr: int, arch: int) -> list[_Path] | int | None:
    """One instruction on one path (changed in place; a jump both ways adds a copy): the paths
    it continues as, or the value a RET returns (None: a value the path does not know)."""
    code, jt, jf, k = insn
    cls, mode, op = code & 0x07, code & 0xE0, code & 0xF0
    operand = p.x if code & 0x08 else k
    p.pc += 1
    if cls == 0x00:  # LD: IMM, ABS, MEM, LEN
        p.a = k if mode == 0x00 else _load(k, nr, arch, p.known) if mode == 0x20 else _memory_or_len(p, mode, k)
    elif cls == 0x01:  # LDX: IMM, MEM, LEN
        p.x = k if mode == 0x00 else _memory_or_len(p, mode, k)
    elif cls in (0x02, 0x03):  # ST, STX
        p.mem = p.mem[:k] + (p.a if cls == 0x02 else p.x,) + p.mem[k + 1 :]
    elif cls == 0x04:  # ALU
        if op in (0x30, 0x90) and _concrete(operand, p.known) == 0:
            return KILL_THREAD  # a division by zero ends the program with 0
        p.a = _alu(op, _concrete(p.a, p.known), _concrete(operand, p.known))
    elif cls == 0x05 and op == 0x00:  # JA
        p.pc += k
    elif cls == 0x05:  # JEQ, JGT, JGE, JSET
        ways = _jumps(op, p.a, operand, p.known)
        return [replace(p, pc=p.pc + (jt if taken else jf), known=known) for taken, known in ways]
    elif cls == 0x06:  # RET: K or A
        value = _concrete(p.a, p.known) if code & 0x18 == 0x10 else k
        return value if isinstance(value, int) else None
    else:  # MISC: TAX, TXA
        p.a, p.x = (p.a, p.a) if code & 0xF8 == 0x00 else (p.x, p.x)
    return [p]


def _memory_or_len(p: _Path, mode: int, k: int) -> Value:
    if mode == 0x80:
        return SECCOMP_DATA_BYTES
    if mode != 0x60 or k >= len(p.mem):
        raise FilterError(f"a load of mode {mode:#x} (k={k}), which seccomp does not allow")
    return p.mem[k]


def run(program: list[tuple[int, int, int, int]], nr: int, arch: int, known: Known) -> Iterator[tuple[int, Known]]:
    """Every (value returned, what the path knows) of one program for one call. A path that
    returns a value it does not know is both ways: ALLOW and KILL_PROCESS."""
    todo, steps = [_Path(0, known)], 0
    while todo:
        path = todo.pop()
        while True:
            steps += 1
            if steps > STEP_BUDGET or path.pc >= len(program):
                raise FilterError("the filter runs off its end" if steps <= STEP_BUDGET else "too many paths")
            out = _step(program[path.pc], path, nr, arch)
            if not isinstance(out, list):
                yield from ((ret, path.known) for ret in ((ALLOW, KILL_PROCESS) if out is None else (out,)))
                break
            path = out[0]
            todo.extend(out[1:])


def outcomes(programs: tuple[list[tuple[int, int, int, int]], ...], nr: int, arch: int) -> set[int]:
    """Every action the stack of filters (oldest first, as ptrace numbers them) may take for
    the call: the kernel runs the newest first and keeps the most restrictive."""
    found: set[int] = set()

    def chain(i: int, known: Known, worst: int) -> None:
        if i < 0:
            found.add(worst & ACTION_MASK)
            return
        for ret, after in run(programs[i], nr, arch, known):
            chain(i - 1, after, ret if rank(ret) < rank(worst) else worst)

    chain(len(programs) - 1, {}, ALLOW)
    return found


def class_of(actions: set[int]) -> str:
    let = {a in LET_THROUGH for a in actions}
    return ALLOWED if let == {True} else DENIED if let == {False} else CONDITIONAL


@functools.lru_cache(maxsize=64)
def _classes(programs: tuple[bytes, ...], only: frozenset[str] | None) -> tuple[tuple[str, str], ...]:
    arch, calls = native_calls()
    decoded = tuple(decode(p) for p in programs)
    wanted = calls.items() if only is None else ((nr, name) for nr, name in calls.items() if name in only)
    return tuple((name, class_of(outcomes(decoded, nr, arch))) for nr, name in wanted)


def classes(programs: tuple[bytes, ...], only: frozenset[str] | None = None) -> dict[str, str]:
    """{call name: allowed | conditional | denied} for every call of the host's architecture
    (or those named in `only`: a call libseccomp does not name is left out), under the stack of
    filters `programs` (oldest first). Remembered per stack: the processes of one container
    share theirs."""
    return dict(_classes(programs, only))


@functools.lru_cache(maxsize=1)
def native_calls() -> tuple[int, dict[int, str]]:
    """(the AUDIT_ARCH value of the host's ABI, {number: name} of its system calls), from the
    installed libseccomp (numbers 0..1023 it can name, the x32 range excluded). OSError where
    libseccomp cannot be loaded."""
    path = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(path)
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p  # a malloc'd name, freed below
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    arch = lib.seccomp_arch_native()
    calls = {}
    for nr in range(MAX_NUMBER):
        name = lib.seccomp_syscall_resolve_num_arch(arch, nr)
        if name:
            calls[nr] = ctypes.string_at(name).decode()
            libc.free(name)
    if not calls:
        raise OSError(f"{path} names no system call of architecture {arch:#x}")
    return arch, calls


def arch_name() -> str:
    """The host's architecture as uname names it (x86_64): the ABI libseccomp's native calls are of."""
    return os.uname().machine
