# nxt-sandbox worker harness (trusted code, shipped inside the nxt binary).
#
# The Rust pool starts one CPython per worker with this file as `-c` source. The worker reads
# jobs on fd 0, and for each job forks one child that becomes PID 1 of a fresh PID namespace,
# drops privileges, applies rlimits / no_new_privs / landlock / seccomp, installs an audit hook
# against in-process tampering, runs the program and the tests, and reports authenticated
# records on a dedicated pipe. The worker monitors wall-clock limits, kills the child's whole
# namespace on timeout, captures bounded stdout/stderr, and answers the Rust side on fd 1.
#
# Frames both ways: u32 big-endian length + JSON header, u32 length + raw blob.
# Must run on CPython 3.8+.
import builtins as _builtins_module
# A private copy of the builtins: a program that rewrites `builtins` cannot reach the harness.
__builtins__ = dict(vars(_builtins_module))
import os
import sys
import json
import struct
import select
import signal
import time
import ast
import shutil
import gc
import errno
import resource
import warnings
import fcntl
import socket
import array

_b = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)
# Warm imports: programs under test usually need a few of these; load them once here.
for _m in ("math", "itertools", "collections", "functools", "re", "heapq", "bisect", "string",
           "operator", "random", "typing", "copy", "fractions", "decimal", "statistics",
           "hashlib", "datetime", "io", "traceback", "array", "numbers", "enum",
           "dataclasses", "cmath", "textwrap", "unicodedata", "string", "struct", "sys",
           "json", "queue", "threading", "time", "collections.abc", "keyword"):
    try:
        __import__(_m)
    except Exception:
        pass

IN_FD = os.dup(0)
OUT_FD = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(_devnull, 0)
os.dup2(_devnull, 1)
os.close(_devnull)
os.set_inheritable(IN_FD, False)
os.set_inheritable(OUT_FD, False)

REC_MAGIC_LEN = 16
# The Rust pool starts each worker as PID 1 of a fresh PID namespace.
IS_PID1 = os.getpid() == 1


def read_exact(fd, n):
    chunks = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_frame():
    h = read_exact(IN_FD, 4)
    if h is None:
        return None, None
    header = read_exact(IN_FD, struct.unpack(">I", h)[0])
    h2 = read_exact(IN_FD, 4)
    blob = read_exact(IN_FD, struct.unpack(">I", h2)[0])
    return json.loads(header.decode("utf-8")), blob


def write_frame(obj, blob=b""):
    data = json.dumps(obj).encode("utf-8")
    msg = struct.pack(">I", len(data)) + data + struct.pack(">I", len(blob)) + blob
    view = memoryview(msg)
    while view:
        n = os.write(OUT_FD, view)
        view = view[n:]


class Config:
    uid = 65534
    gid = 65534
    strict_layers = True


CFG = Config()


def sandbox_child(job_dir, limits, result_fd, out_w, err_w):
    """Runs in the forked child (PID 1 of a fresh PID namespace) as root; returns the list of
    (layer, ok, detail). Raises when a required layer fails."""
    layers = []
    strict = CFG.strict_layers

    def layer(name, fn, detail=""):
        try:
            fn()
            layers.append((name, True, detail))
        except Exception as e:  # noqa
            layers.append((name, False, "%s: %s" % (type(e).__name__, e)))
            if strict:
                raise RuntimeError("isolation layer %s failed: %s" % (name, e))

    os.setsid()
    # fds: 0 = /dev/null, 1/2 = capture pipes, 3 = result records (already), the rest closed.
    nul = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nul, 0)
    os.close(nul)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.chdir(job_dir)
    os.environ.clear()
    os.environ.update({"HOME": job_dir, "TMPDIR": job_dir, "PATH": "/usr/bin:/bin",
                       "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})

    def rlimits():
        mem = int(limits["memory"])
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(float(limits["job_timeout"])) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        fs = int(limits.get("file_bytes", 64 << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fs, fs))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        np_ = int(limits.get("processes", 32))
        resource.setrlimit(resource.RLIMIT_NPROC, (np_, np_))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def drop_uid():
        os.setgroups([])
        os.setresgid(CFG.gid, CFG.gid, CFG.gid)
        os.setresuid(CFG.uid, CFG.uid, CFG.uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError(errno.EPERM, "still root")

    layer("unprivileged_uid", drop_uid, "jobs run as uid/gid %d, no groups" % CFG.uid)
    os.closerange(5, 65536)
    layer("rlimits", rlimits, "address space, CPU, file size, 64 open files, processes, no core")
    return layers


# ---------------------------------------------------------------------------------------------
# Strict comparison (EvalPlus-like): evaluated by trusted functions that are bound into the test
# code objects as constants (no name lookup a program could redirect). They live in their own
# globals with empty builtins and read everything through default arguments, which the audit
# hook protects from reassignment.
STRICT_SRC = r'''
def _family(t, _issub=None, _bool=None, _int=None, _float=None, _complex=None, _str=None,
            _bytes=None, _list=None, _tuple=None, _dict=None, _set=None, _frozenset=None,
            _none=None, _deque=None):
    if t is _bool or t is _int or t is _float or _issub(t, _int) or _issub(t, _float):
        return "num"
    if t is _complex:
        return "num"
    if _issub(t, _str):
        return "str"
    if t is _bytes:
        return "bytes"
    if t is _none:
        return "none"
    if _issub(t, _list):
        return "list"
    if _issub(t, _tuple):
        return "tuple"
    if _issub(t, _dict):
        return "dict"
    if _issub(t, _set) or _issub(t, _frozenset):
        return "set"
    if t is _deque:
        return "deque"
    return "other"

def _strict_eq(a, b, _type=None, _family=None, _self=None, _trusted=None, _bool=None,
               _int=None, _float=None, _str=None, _range=None, _issub=None,
               _llen=None, _lget=None, _tlen=None, _tget=None, _dlen=None, _dkeys=None,
               _dhas=None, _dget=None, _siter=None, _fsiter=None, _frozenset=None,
               _list=None, _set=None, _intv=None, _floatv=None, _strv=None):
    """Equality on the data itself: values stored in builtin types are compared through the
    builtin types' own C methods (overridden methods are ignored); numbers compare by value
    (bool, int and float alike, as Python and EvalPlus do); other objects must have the same
    type and their __eq__ must return a real True."""
    ta = _type(a)
    tb = _type(b)
    fa = _family(ta)
    fb = _family(tb)
    if fa != fb:
        return False
    if fa == "num":
        if ta is not _bool and _issub(ta, _int):
            a = _intv(a)
        elif _issub(ta, _float):
            a = _floatv(a)
        if tb is not _bool and _issub(tb, _int):
            b = _intv(b)
        elif _issub(tb, _float):
            b = _floatv(b)
        return a == b
    if fa == "str":
        return _strv(a) == _strv(b)
    if fa == "bytes" or fa == "none":
        return a == b
    if fa == "list" or fa == "tuple":
        ln, gt = (_llen, _lget) if fa == "list" else (_tlen, _tget)
        n = ln(a)
        if n != ln(b):
            return False
        for i in _range(n):
            if not _self(gt(a, i), gt(b, i)):
                return False
        return True
    if fa == "deque":
        return _self(_list(a), _list(b))
    if fa == "dict":
        if _dlen(a) != _dlen(b):
            return False
        for k in _list(_dkeys(a)):
            if not _trusted(k) or not _dhas(b, k):
                return False
            if not _self(_dget(a, k), _dget(b, k)):
                return False
        return True
    if fa == "set":
        xa = _frozenset(_siter(a) if _issub(ta, _set) else _fsiter(a))
        xb = _frozenset(_siter(b) if _issub(tb, _set) else _fsiter(b))
        if not (_trusted(xa) and _trusted(xb)):
            return False
        return xa == xb
    if ta is not tb:
        return False
    r = a == b
    return _type(r) is _bool and r

def _trusted(v, _type=None, _scalars=None, _self=None, _list=None, _tuple=None,
             _dict=None, _set=None, _frozenset=None, _flags=None):
    t = _type(v)
    if t in _scalars:
        return True
    if t is _tuple or t is _list or t is _frozenset or t is _set:
        for x in v:  # exact builtin containers: their iteration is their own
            if not _self(x):
                return False
        return True
    if t is _dict:
        for k in v:
            if not _self(k) or not _self(v[k]):
                return False
        return True
    f = _flags(t)
    # A type implemented in C (static, or an immutable heap type): the program cannot replace
    # any of its methods, so its comparisons and truth value are its own.
    return not (f & 512) or (f & 256) != 0

def _truth(v, _trusted=None, _bool=None):
    if _trusted(v):
        return _bool(v)
    return False

def _cmp(op, a, b, _eq=None, _trusted=None, _lt=None, _le=None, _gt=None, _ge=None,
         _contains=None, _type=None, _bool=None):
    if op == "==":
        return _eq(a, b)
    if op == "!=":
        return not _eq(a, b)
    if op == "is":
        return a is b
    if op == "is not":
        return a is not b
    if not (_trusted(a) and _trusted(b)):
        return False
    if op == "<":
        r = _lt(a, b)
    elif op == "<=":
        r = _le(a, b)
    elif op == ">":
        r = _gt(a, b)
    elif op == ">=":
        r = _ge(a, b)
    elif op == "in":
        r = _contains(b, a)
    elif op == "not in":
        r = not _contains(b, a)
    else:
        return False
    return _type(r) is _bool and r
'''


def build_strict():
    import operator
    import collections
    g = {"__builtins__": {}}
    exec(compile(STRICT_SRC, "<nxt-strict>", "exec"), g)
    scalars = frozenset([type(None), bool, int, float, complex, str, bytes, type(Ellipsis),
                         range])
    family, eq, trusted, truth, cmp_ = (g["_family"], g["_strict_eq"], g["_trusted"],
                                        g["_truth"], g["_cmp"])
    family.__defaults__ = (issubclass, bool, int, float, complex, str, bytes, list, tuple, dict,
                           set, frozenset, type(None), collections.deque)
    eq.__defaults__ = (type, family, eq, trusted, bool, int, float, str, range, issubclass,
                       list.__len__, list.__getitem__, tuple.__len__, tuple.__getitem__,
                       dict.__len__, dict.keys, dict.__contains__, dict.__getitem__,
                       set.__iter__, frozenset.__iter__, frozenset, list, set, int.__int__,
                       float.__float__, str.__str__)
    flags = type.__dict__["__flags__"].__get__
    trusted.__defaults__ = (type, scalars, trusted, list, tuple, dict, set, frozenset, flags)
    truth.__defaults__ = (trusted, bool)
    cmp_.__defaults__ = (eq, trusted, operator.lt, operator.le, operator.gt, operator.ge,
                         operator.contains, type, bool)
    return eq, truth, cmp_, trusted, family


STRICT_EQ, STRICT_TRUTH, STRICT_CMP, STRICT_TRUSTED, STRICT_FAMILY = build_strict()

OPNAMES = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


class StrictRewriter(ast.NodeTransformer):
    def __init__(self, tag):
        self.tag = tag
        self.tmp = 0

    def ph(self, name):
        return ast.Constant(value="\x00nxt:%s:%s" % (self.tag, name))

    def call(self, name, args):
        return ast.Call(func=self.ph(name), args=args, keywords=[])

    def judge(self, e):
        if isinstance(e, ast.BoolOp):
            return ast.BoolOp(op=e.op, values=[self.judge(v) for v in e.values])
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            return ast.UnaryOp(op=ast.Not(), operand=self.judge(e.operand))
        if isinstance(e, ast.Compare):
            parts = []
            left = e.left
            n = len(e.ops)
            for i, (op, right) in enumerate(zip(e.ops, e.comparators)):
                name = OPNAMES.get(type(op))
                if i < n - 1:
                    self.tmp += 1
                    tname = "_nxt_t%d" % self.tmp
                    r_eval = ast.NamedExpr(target=ast.Name(id=tname, ctx=ast.Store()),
                                           value=right)
                    parts.append(self.call("cmp", [ast.Constant(value=name), left, r_eval]))
                    left = ast.Name(id=tname, ctx=ast.Load())
                else:
                    parts.append(self.call("cmp", [ast.Constant(value=name), left, right]))
            if len(parts) == 1:
                return parts[0]
            return ast.BoolOp(op=ast.And(), values=parts)
        return self.call("truth", [e])

    def visit_Assert(self, node):
        self.generic_visit(node)
        node.test = self.judge(node.test)
        return node


def bind_placeholders(code, mapping):
    consts = []
    for c in code.co_consts:
        if type(c) is str and c in mapping:
            consts.append(mapping[c])
        elif isinstance(c, type(code)):
            consts.append(bind_placeholders(c, mapping))
        else:
            consts.append(c)
    return code.replace(co_consts=tuple(consts))


def compile_test(src, strict, tag, filename):
    tree = ast.parse(src, filename, "exec")
    if not strict:
        return compile(tree, filename, "exec")
    tree = StrictRewriter(tag).visit(tree)
    ast.fix_missing_locations(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = compile(tree, filename, "exec")
    mapping = {"\x00nxt:%s:cmp" % tag: STRICT_CMP, "\x00nxt:%s:truth" % tag: STRICT_TRUTH}
    return bind_placeholders(code, mapping)


# ---------------------------------------------------------------------------------------------
# Child side: runs the job and writes authenticated records on fd 3.

def child_run(job, nonce, setup_layers):
    """Entered in the forked child after isolation. Never returns."""
    _write = os.write
    _exit = os._exit
    _pack = struct.pack
    _type = type
    _str = str
    _isinstance = isinstance
    _BaseException = BaseException
    _AssertionError = AssertionError
    _MemoryError = MemoryError
    _exec = exec
    _perf = time.perf_counter
    _range = range
    _len = len
    stdout = sys.stdout
    stderr = sys.stderr
    fd = 3

    _read = os.read

    def rec(kind, idx, payload=b""):
        msg = nonce + kind + _pack(">II", idx, _len(payload)) + payload
        view = memoryview(msg)
        while view:
            n = _write(fd, view)
            view = view[n:]
        if kind == b"S":
            # Wait until the monitor has attributed all earlier output, so this test's output
            # is told apart from the previous one's.
            _read(4, 1)

    def flush():
        for s in (stdout, stderr):
            try:
                s.flush()
            except _BaseException:
                pass

    def bounded(s, n=2000):
        try:
            s = _str(s)
        except _BaseException:
            s = "<unprintable>"
        if _type(s) is not _str:
            s = "<unprintable>"
        if _len(s) > n:
            s = s[:n] + "..."
        return s

    trusted_mode = [False]

    def outcome_of(e, filename):
        if _isinstance(e, _MemoryError):
            return b"memory"
        if _isinstance(e, _AssertionError):
            return b"failed\x00" + bounded(e).encode("utf-8", "replace")
        name = bounded(_type(e).__name__, 200)
        msg = bounded(e)
        line = -1
        trusted_mode[0] = True
        try:
            tb = e.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == "<program>":
                    line = tb.tb_lineno
                tb = tb.tb_next
        except _BaseException:
            pass
        finally:
            trusted_mode[0] = False
        return b"error\x00" + name.encode("utf-8", "replace") + b"\x00" + \
            msg.encode("utf-8", "replace") + b"\x00" + _str(line).encode()

    kind = job["kind"]
    strict = job.get("strict", True)
    if kind == "driver":
        payload = job["_blob"]
        emitted = [False]
        max_emit = int(job.get("max_emit_bytes", 1 << 26))

        def nxt_payload():
            return payload

        def nxt_emit(data):
            if emitted[0]:
                raise RuntimeError("nxt_emit may be called once")
            if not _isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError("nxt_emit takes bytes")
            data = bytes(data)
            if len(data) > max_emit:
                raise ValueError("nxt_emit: %d bytes exceed the limit of %d" % (len(data), max_emit))
            emitted[0] = True
            rec(b"P", 0, data)

        g = {"__name__": "__main__", "__builtins__": __builtins__,
             "nxt_payload": nxt_payload, "nxt_emit": nxt_emit}
        try:
            code = compile(job["driver"], "<driver>", "exec")
            rec(b"S", 0)
            _exec(code, g)
            flush()
            rec(b"R", 0, b"passed")
        except _BaseException as e:
            flush()
            if _isinstance(e, SystemExit) and (e.code is None or e.code == 0):
                rec(b"R", 0, b"passed")
            else:
                rec(b"R", 0, outcome_of(e, "<driver>"))
        flush()
        rec(b"D", 0)
        _exit(0)

    # Test job. Compile everything before any untrusted code runs.
    tag = nonce.hex()
    program = job["program"]
    setup = job.get("setup")
    setup_after = job.get("setup_after", True)
    tests = job["tests"]
    start = int(job.get("start", 0))
    compiled = []
    for i, t in enumerate(tests):
        if i < start:
            compiled.append(None)
            continue
        try:
            compiled.append(compile_test(t, strict, tag, "<test %d>" % i))
        except _BaseException as e:  # a broken test is an error of that test
            compiled.append(e)
    try:
        prog_code = compile(program, "<program>", "exec")
        setup_code = compile(setup, "<setup>", "exec") if setup else None
    except _BaseException as e:
        rec(b"l", 0, outcome_of(e, "<program>"))
        flush()
        rec(b"D", 0)
        _exit(0)

    # The harness's own module must not be reachable as __main__ by the program.
    sys.modules["__main__"] = type(sys)("__main__")

    # Tracing hooks would hand harness frames to the program (CPython 3.8 has no audit event
    # for them; 3.9+ is also blocked by the audit hook).
    def _no_tracing(*_a, **_k):
        raise RuntimeError("nxt-sandbox: tracing is disabled")
    sys.settrace = _no_tracing
    sys.setprofile = _no_tracing
    install_audit_hook(trusted_mode, (STRICT_EQ, STRICT_TRUTH, STRICT_CMP, STRICT_TRUSTED, STRICT_FAMILY))
    g = {"__name__": "__nxt_program__", "__builtins__": __builtins__}
    try:
        if setup_code is not None and not setup_after:
            _exec(setup_code, g)
        _exec(prog_code, g)
        if setup_code is not None and setup_after:
            _exec(setup_code, g)
    except _BaseException as e:
        flush()
        rec(b"l", 0, outcome_of(e, "<program>"))
        flush()
        rec(b"D", 0)
        _exit(0)
    flush()
    rec(b"L", 0)
    for i in _range(start, _len(tests)):
        c = compiled[i]
        rec(b"S", i)
        if _isinstance(c, _BaseException):
            rec(b"R", i, outcome_of(c, "<test>"))
            continue
        try:
            _exec(c, g)
            flush()
            rec(b"R", i, b"passed")
        except _BaseException as e:
            flush()
            rec(b"R", i, outcome_of(e, "<test>"))
    flush()
    rec(b"D", 0)
    _exit(0)


def install_audit_hook(trusted_mode, protected):
    """Blocks the introspection that would let a program reach or rewrite harness objects."""
    prot_ids = frozenset(id(p) for p in protected)
    blocked_modules = frozenset(["ctypes", "_ctypes", "ctypes.util", "_posixsubprocess",
                                 "subprocess", "multiprocessing", "pty"])
    frame_attrs = frozenset(["tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back",
                             "gi_code", "cr_code", "ag_code"])
    deny_prefixes = ("/proc", "/sys", "/dev/mem", "/dev/kmem", "/dev/port")
    _RuntimeError = RuntimeError
    _ValueError = ValueError
    _AttributeError = AttributeError
    _ImportError = ImportError
    _PermissionError = PermissionError
    _isinstance = isinstance
    _str = str
    _bytes = bytes
    _fspath = os.fspath
    _id = id
    for m in list(sys.modules):
        if m in blocked_modules or m.startswith("ctypes."):
            del sys.modules[m]

    def hook(event, args):
        if trusted_mode[0]:
            return
        if event == "sys._getframe" or event == "sys._current_frames":
            raise _ValueError("nxt-sandbox: stack frame introspection is disabled")
        if event == "object.__getattr__":
            if args[1] in frame_attrs:
                raise _AttributeError("nxt-sandbox: frame access is disabled")
            return
        if event == "object.__setattr__" or event == "object.__delattr__":
            if _id(args[0]) in prot_ids:
                raise _RuntimeError("nxt-sandbox: harness objects are read-only")
            return
        if event == "import":
            name = args[0]
            if name in blocked_modules or name.startswith("ctypes."):
                raise _ImportError("nxt-sandbox: module %s is disabled" % name)
            return
        if event == "open":
            p = args[0]
            if _isinstance(p, int):
                return
            try:
                p = _fspath(p)
                if _isinstance(p, _bytes):
                    p = p.decode("utf-8", "replace")
            except _BaseExceptionT:
                raise _PermissionError("nxt-sandbox: unreadable path")
            for d in deny_prefixes:
                if p.startswith(d):
                    raise _PermissionError("nxt-sandbox: access to %s is disabled" % p)
            return
        if event in ("gc.get_objects", "gc.get_referrers", "gc.get_referents",
                     "sys.settrace", "sys.setprofile", "os.fork", "os.forkpty", "os.system",
                     "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "pty.spawn",
                     "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof",
                     "os.startfile", "code.__new__", "function.__new__", "sys.monitoring"):
            raise _RuntimeError("nxt-sandbox: %s is disabled" % event)

    _BaseExceptionT = BaseException
    sys.addaudithook(hook)


# ---------------------------------------------------------------------------------------------
# Worker side.

class Reader:
    """Parses authenticated records from the result pipe."""

    def __init__(self, nonce):
        self.buf = b""
        self.nonce = nonce
        self.tampered = False

    def feed(self, data):
        self.buf += data

    def records(self):
        out = []
        hl = REC_MAGIC_LEN + 1 + 8
        while len(self.buf) >= hl:
            if self.buf[:REC_MAGIC_LEN] != self.nonce:
                self.tampered = True
                self.buf = b""
                break
            kind = self.buf[REC_MAGIC_LEN:REC_MAGIC_LEN + 1]
            idx, n = struct.unpack(">II", self.buf[REC_MAGIC_LEN + 1:hl])
            if len(self.buf) < hl + n:
                break
            out.append((kind, idx, self.buf[hl:hl + n]))
            self.buf = self.buf[hl + n:]
        return out


def decode_outcome(p):
    parts = p.split(b"\x00")
    k = parts[0]
    if k == b"passed":
        return {"status": "passed"}
    if k == b"memory":
        return {"status": "memory_exceeded"}
    if k == b"failed":
        return {"status": "failed", "message": parts[1].decode("utf-8", "replace") if len(parts) > 1 else ""}
    if k == b"error" and len(parts) >= 4:
        try:
            line = int(parts[3])
        except ValueError:
            line = -1
        ex = parts[1].decode("utf-8", "replace")
        if ex == "MemoryError":
            return {"status": "memory_exceeded"}
        return {"status": "error", "exc_type": ex,
                "message": parts[2].decode("utf-8", "replace"),
                "line": line if line >= 0 else None}
    return {"status": "error", "exc_type": "HarnessProtocolError",
            "message": "unreadable outcome record", "line": None}


class Capture:
    def __init__(self, cap):
        self.cap = cap
        self.parts = []
        self.n = 0
        self.truncated = False

    def add(self, data):
        room = self.cap - self.n
        if room > 0:
            piece = data[:room]
            self.parts.append(piece)
            self.n += len(piece)
        if len(data) > max(room, 0):
            self.truncated = True

    def text(self):
        return b"".join(self.parts).decode("utf-8", "replace")


JOB_COUNTER = [0]


def run_child(job, job_dir, start):
    """Has the zygote fork one sandboxed child running tests from `start`; monitors it.
    Returns a dict with the events observed."""
    nonce = os.urandom(REC_MAGIC_LEN)
    r_res, w_res = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    r_ack, w_ack = os.pipe()
    spec = dict(job)
    spec.pop("_deadline", None)
    blob = spec.pop("_blob", b"") or b""
    spec["start"] = start
    spec["job_dir"] = job_dir
    spec["nonce"] = nonce.hex()
    try:
        pid = ZYGOTE.start(json.dumps(spec).encode("utf-8"), blob, [w_res, w_out, w_err, r_ack])
    finally:
        for f in (w_res, w_out, w_err, r_ack):
            os.close(f)
    if pid <= 0:
        for f in (r_res, r_out, r_err, w_ack):
            os.close(f)
        raise OSError(errno.ECHILD, "the zygote could not fork a job process")
    try:
        return monitor(pid, job, nonce, r_res, r_out, r_err, start, w_ack)
    finally:
        os.close(w_ack)


def kill_uid(uid):
    """Kills every process running under the job uid (e.g. a grandchild that escaped the job's
    process group). Runs in the zygote: the uid switch clears a process's parent-death signal,
    which the worker must keep."""
    try:
        os.setresuid(uid, uid, 0)
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    finally:
        os.setresuid(0, 0, 0)


def sweep(uid):
    """Reaps orphans of the job that were reparented to this worker (PID 1)."""
    if IS_PID1:
        while True:
            try:
                p, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if p == 0:
                break
            if p == ZYGOTE.pid:
                ZYGOTE.pid = -1


def kill_job(pid):
    """Kills the job process and its process group (it is a session leader)."""
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass


class Zygote:
    """A small fork server: a copy of the warm worker that does nothing but fork job processes,
    so neither it nor the monitoring worker pays copy-on-write faults on every job."""

    def __init__(self):
        self.pid = -1
        self.sock = None

    def spawn(self):
        import socket
        if self.sock is not None:
            self.sock.close()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            a.close()
            try:
                os.close(IN_FD)
                os.close(OUT_FD)
                zygote_loop(b)
            except BaseException:
                pass
            os._exit(0)
        b.close()
        self.sock = a
        self.pid = pid

    def start(self, spec, blob, fds):
        """Sends a job; returns the pid of the job process (-1 if the zygote is gone)."""
        import array
        import socket
        for attempt in (0, 1):
            if self.pid <= 0:
                self.spawn()
            try:
                head = struct.pack(">II", len(spec), len(blob))
                self.sock.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", fds))])
                self.sock.sendall(spec + blob)
                raw = recv_exact(self.sock, 5)
                if raw is None or raw[:1] != b"P":
                    raise OSError(errno.EPIPE, "zygote gone")
                return struct.unpack(">i", raw[1:])[0]
            except OSError:
                self.kill()
        return -1

    def wait(self, pid):
        """Waits until the zygote has reaped the job; returns its end (exit code < 128, or
        128 + signal)."""
        raw = recv_exact(self.sock, 5) if self.sock is not None else None
        if raw is None or raw[:1] != b"E":
            self.kill()
            return 72
        return struct.unpack(">i", raw[1:])[0]

    def kill(self):
        if self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        self.pid = -1


ZYGOTE = Zygote()


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        b = sock.recv(n)
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def zygote_loop(sock):
    import array
    import socket
    while True:
        fds = array.array("i")
        msg, anc, _flags, _addr = sock.recvmsg(8, socket.CMSG_SPACE(4 * fds.itemsize))
        if not msg:
            os._exit(0)
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
        if len(msg) < 8:
            msg += recv_exact(sock, 8 - len(msg)) or b""
        n_spec, n_blob = struct.unpack(">II", msg)
        body = recv_exact(sock, n_spec + n_blob)
        if body is None or len(fds) != 4:
            os._exit(0)
        spec = json.loads(body[:n_spec].decode("utf-8"))
        spec["_blob"] = body[n_spec:]
        w_res, w_out, w_err, r_ack = list(fds)
        pid = os.fork()
        if pid == 0:
            sock.close()
            child_main(spec, spec["job_dir"], bytes.fromhex(spec["nonce"]), spec["limits"],
                       w_res, w_out, w_err, r_ack)
            os._exit(71)
        for f in fds:
            os.close(f)
        sock.sendall(b"P" + struct.pack(">i", pid))
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = 128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else min(os.WEXITSTATUS(st), 127)
        if IS_PID1:
            kill_uid(CFG.uid)
        sock.sendall(b"E" + struct.pack(">i", code))


def child_main(job, job_dir, nonce, limits, w_res, w_out, w_err, r_ack):
    try:
        for f in (w_res, w_out, w_err, r_ack):
            os.set_inheritable(f, False)
        # Move the four descriptors out of the way of 0-4 first, then into place.
        import fcntl
        w_res, w_out, w_err, r_ack = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 10)
                                      for f in (w_res, w_out, w_err, r_ack)]
        os.dup2(w_res, 3)
        os.dup2(r_ack, 4)
        os.set_inheritable(3, False)
        os.set_inheritable(4, False)
        layers = [("stray_process_sweep", IS_PID1,
                   "after each job every process left under the job's uid is killed and reaped"
                   if IS_PID1 else "the worker is not PID 1 of a PID namespace")]
        layers += sandbox_child(job_dir, limits, 3, w_out, w_err)
        if job["kind"] == "probe":
            text = "\n".join("%s\t%d\t%s" % l for l in layers).encode()
            os.write(3, nonce + b"I" + struct.pack(">II", 0, len(text)) + text)
            os._exit(0)
        child_run(job, nonce, layers)
    except BaseException as e:  # isolation failure: report as infrastructure error
        try:
            text = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")
            os.write(3, nonce + b"X" + struct.pack(">II", 0, len(text)) + text)
        except BaseException:
            pass
    os._exit(71)


def monitor(pid, job, nonce, r_res, r_out, r_err, start, w_ack):
    limits = job["limits"]
    cap = int(limits["output_bytes"])
    test_timeout = float(limits["test_timeout"])
    job_deadline = job["_deadline"]
    reader = Reader(nonce)
    ev = {"loaded": False, "load_error": None, "results": {}, "durations": {}, "out": {},
          "current": None, "done": False, "emitted": None, "info": None, "infra": None,
          "killed_for": None, "status": None, "load_out": None}
    caps = {}  # index -> (Capture, Capture); key "load" before tests

    def cur_caps():
        key = ev["current"] if ev["current"] is not None else "load"
        if key not in caps:
            caps[key] = (Capture(cap), Capture(cap))
        return caps[key]

    test_started = None
    poller = select.poll()
    open_fds = {r_res: "res", r_out: "out", r_err: "err"}
    for f in open_fds:
        poller.register(f, select.POLLIN | select.POLLHUP)

    def drain(which_fd, stream):
        while True:
            try:
                data = os.read(which_fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                return False
            c = cur_caps()
            (c[0] if stream == "out" else c[1]).add(data)
            if len(data) < 65536:
                return True

    for f in (r_out, r_err):
        os.set_blocking(f, False)

    def process_records():
        nonlocal test_started
        for kind, idx, payload in reader.records():
            if kind == b"S":
                # Output written before the start record belongs to the previous phase.
                for f, s in ((r_out, "out"), (r_err, "err")):
                    if f in open_fds:
                        drain(f, s)
                ev["current"] = idx
                test_started = time.monotonic()
                try:
                    os.write(w_ack, b"k")
                except OSError:
                    pass
            elif kind == b"R":
                for f, s in ((r_out, "out"), (r_err, "err")):
                    if f in open_fds:
                        drain(f, s)
                ev["results"][idx] = decode_outcome(payload)
                ev["durations"][idx] = time.monotonic() - (test_started or time.monotonic())
                ev["current"] = None
                test_started = None
            elif kind == b"L":
                ev["loaded"] = True
            elif kind == b"l":
                for f, s in ((r_out, "out"), (r_err, "err")):
                    if f in open_fds:
                        drain(f, s)
                ev["load_error"] = decode_outcome(payload)
            elif kind == b"D":
                ev["done"] = True
            elif kind == b"P":
                ev["emitted"] = payload
            elif kind == b"I":
                ev["info"] = payload.decode("utf-8", "replace")
            elif kind == b"X":
                ev["infra"] = payload.decode("utf-8", "replace")
            else:
                reader.tampered = True

    killed = False
    while open_fds:
        now = time.monotonic()
        deadline = job_deadline
        if test_started is not None and job["kind"] == "tests":
            deadline = min(deadline, test_started + test_timeout)
        if not killed and now >= deadline:
            kill_job(pid)
            killed = True
            ev["killed_for"] = "job" if deadline == job_deadline else "test"
            deadline = now + 5.0
        wait_ms = max(0, int((deadline - now) * 1000)) + 1 if not killed else 200
        for f, mask in poller.poll(wait_ms):
            which = open_fds.get(f)
            if which is None:
                continue
            if which == "res":
                try:
                    data = os.read(f, 65536)
                except OSError:
                    data = b""
                if data:
                    reader.feed(data)
                    process_records()
                    if reader.tampered:
                        ev["tampered"] = True
                        if not killed:
                            kill_job(pid)
                            killed = True
                            ev["killed_for"] = "tamper"
                else:
                    poller.unregister(f)
                    del open_fds[f]
            else:
                if not drain(f, which):
                    poller.unregister(f)
                    del open_fds[f]
        if killed and time.monotonic() > deadline + 10:
            break
        if ev["done"] and r_res not in open_fds:
            # The child may keep pipes open through leftover threads: it exits right after "D".
            break
    for f in list(open_fds):
        poller.unregister(f)
    for f in (r_res, r_out, r_err):
        try:
            os.close(f)
        except OSError:
            pass
    if not killed and not ev["done"]:
        # Child closed the result pipe without finishing: wait briefly, then make sure.
        pass
    kill_job(pid)
    ev["status"] = ZYGOTE.wait(pid)
    sweep(CFG.uid)
    ev["killed"] = killed
    if test_started is not None and ev["current"] is not None:
        ev["durations"][ev["current"]] = time.monotonic() - test_started
    ev["caps"] = {k: (v[0].text(), v[1].text(), v[0].truncated or v[1].truncated)
                  for k, v in caps.items()}
    return ev


def died_outcome(ev):
    """Outcome of the test that was running when the child ended without reporting it."""
    status = ev["status"]
    if ev.get("tampered"):
        return {"status": "error", "exc_type": "ResultChannelTampered",
                "message": "the program wrote on the harness's result channel", "line": None}
    if ev["killed"] and ev["killed_for"] in ("test", "job"):
        return {"status": "timeout"}
    if status >= 128:
        sig = status - 128
        if sig == signal.SIGXCPU:
            return {"status": "timeout"}
        return {"status": "crashed", "signal": sig}
    code = status
    return {"status": "error", "exc_type": "ProcessExit",
            "message": "the process exited with status %d before reporting" % code,
            "line": None}


def run_tests_job(job, job_dir):
    tests = job["tests"]
    n = len(tests)
    results = [None] * n
    durations = [0.0] * n
    outs = [("", "", False)] * n
    load_error = None
    load_out = ("", "", False)
    start = 0
    restarts = 0
    while start < n or (n == 0 and restarts == 0):
        restarts += 1
        if time.monotonic() >= job["_deadline"]:
            break
        ev = run_child(job, job_dir, start)
        if ev["infra"] is not None:
            return {"infra_error": ev["infra"]}
        if "load" in ev["caps"] and start == 0:
            load_out = ev["caps"]["load"]
        for i, r in ev["results"].items():
            results[i] = r
            durations[i] = ev["durations"].get(i, 0.0)
        for k, v in ev["caps"].items():
            if k != "load":
                outs[k] = v
        if ev["load_error"] is not None:
            load_error = ev["load_error"]
            break
        if not ev["loaded"]:
            load_error = died_outcome(ev)
            break
        if ev["done"] and not ev.get("tampered"):
            break
        # The child died mid-way: the running test gets the cause, the rest run in a new child.
        cur = ev["current"]
        if cur is None:
            # Died between tests (e.g. a leftover thread called os._exit).
            cur = start
            while cur < n and results[cur] is not None:
                cur += 1
            if cur >= n:
                break
        results[cur] = died_outcome(ev)
        durations[cur] = ev["durations"].get(cur, 0.0)
        if ev.get("tampered"):
            break
        start = cur + 1
        if n == 0:
            break
    for i in range(n):
        if results[i] is None:
            results[i] = {"status": "not_run"}
    return {"tests": [{"outcome": results[i], "duration": durations[i], "stdout": outs[i][0],
                       "stderr": outs[i][1], "output_truncated": outs[i][2]} for i in range(n)],
            "load_error": load_error, "load_stdout": load_out[0], "load_stderr": load_out[1]}


def run_driver_job(job, job_dir):
    ev = run_child(job, job_dir, 0)
    if ev["infra"] is not None:
        return {"infra_error": ev["infra"]}, b""
    r = ev["results"].get(0)
    if r is None:
        r = died_outcome(ev)
        if not ev["loaded"] and r["status"] == "error" and ev["current"] is None:
            r = died_outcome(ev)
    out = ev["caps"].get(0, ("", "", False))
    load = ev["caps"].get("load", ("", "", False))
    emitted = ev["emitted"]
    res = {"outcome": r, "stdout": load[0] + out[0], "stderr": load[1] + out[1],
           "output_truncated": out[2] or load[2], "emitted": emitted is not None}
    return res, (emitted or b"")


def make_job_dir(base):
    JOB_COUNTER[0] += 1
    d = os.path.join(base, "j%d" % JOB_COUNTER[0])
    if os.path.lexists(d):
        shutil.rmtree(d, ignore_errors=True)
    os.mkdir(d, 0o700)
    os.chown(d, CFG.uid, CFG.gid)
    return d


def remove_tree(d):
    # The job's uid could have made directories unreadable to... root ignores modes; just rm.
    shutil.rmtree(d, ignore_errors=True)
    if os.path.lexists(d):
        for root, dirs, files in os.walk(d):
            for x in dirs:
                try:
                    os.chmod(os.path.join(root, x), 0o700)
                except OSError:
                    pass
        shutil.rmtree(d, ignore_errors=True)


def main():
    init, _ = read_frame()
    if init is None:
        return
    CFG.uid = int(init["uid"])
    CFG.gid = int(init["gid"])
    CFG.strict_layers = not bool(init.get("allow_weak", False))
    sys.dont_write_bytecode = True
    base = init["dir"]
    # Layers set up by the pool between fork and exec (namespaces, tmpfs, landlock, seccomp).
    layers = list(init.get("layers", []))
    # Probe: run the full per-job setup once and report which layers took.
    probe = {"kind": "probe", "limits": {"memory": 1 << 30, "job_timeout": 10, "test_timeout": 10,
                                         "output_bytes": 4096}, "_deadline": time.monotonic() + 10}
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    ZYGOTE.spawn()
    d = make_job_dir(base)
    saved = CFG.strict_layers
    CFG.strict_layers = False
    try:
        ev = run_child(probe, d, 0)
    finally:
        CFG.strict_layers = saved
        remove_tree(d)
    for line in (ev.get("info") or "").splitlines():
        name, ok, detail = line.split("\t", 2)
        layers.append({"name": name, "active": ok == "1", "detail": detail})
    if ev.get("info") is None:
        layers.append({"name": "probe", "active": False,
                       "detail": ev.get("infra") or "probe child produced no report"})
    layers.append({"name": "audit_hook", "active": hasattr(sys, "addaudithook"),
                   "detail": "blocks frame/gc introspection, ctypes, process creation, /proc"})
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    write_frame({"layers": layers, "python": sys.version.split()[0], "pid": os.getpid()})
    while True:
        job, blob = read_frame()
        if job is None:
            # Let the zygote finish (so its and its jobs' resource usage is accounted).
            if ZYGOTE.sock is not None:
                ZYGOTE.sock.close()
                ZYGOTE.sock = None
            if ZYGOTE.pid > 0:
                try:
                    os.waitpid(ZYGOTE.pid, 0)
                except OSError:
                    pass
            return
        t0 = time.monotonic()
        job["_deadline"] = t0 + float(job["limits"]["job_timeout"])
        job["_blob"] = blob
        d = make_job_dir(base)
        try:
            if job["kind"] == "driver":
                res, out_blob = run_driver_job(job, d)
            else:
                res, out_blob = run_tests_job(job, d), b""
        except Exception as e:
            res, out_blob = {"infra_error": "%s: %s" % (type(e).__name__, e)}, b""
        finally:
            remove_tree(d)
        res["duration"] = time.monotonic() - t0
        write_frame(res, out_blob)


main()
