# nxt-sandbox worker harness (trusted code, shipped inside the nxt binary).
#
# The Rust pool starts one CPython per worker with this file as `-c` source. The worker is PID 1
# of its own PID namespace (set up by the pool) and is a fork server: it reads one job at a time
# on fd 0, compiles the job's tests (cached: the same tests come back for every sample of a
# task), makes the job directory, forks one child, waits for it, kills every process left under
# the job's uid, removes the directory and answers on fd 1 with the child's exit status.
#
# The child becomes a session leader, drops to the worker's unprivileged uid, sets rlimits,
# installs an audit hook against in-process tampering, runs the program and the tests, and
# reports records authenticated by a per-job secret on fd 3. The pool (Rust) reads those
# records, the job's stdout and stderr and the answers directly, enforces the wall-clock limits
# (it kills the job process when a limit is hit) and builds the result. Program and tests are
# compiled here, before the fork (work done here is cheaper than in the child, whose every
# touched page is a copy-on-write fault).
#
# Descriptors the pool hands over: 0 job frames in, 1 answers out, 3 result records (write
# end), 4 job stdout (write end), 5 job stderr (write end), 6 acknowledgements (read end).
# Frames: u32 big-endian length + JSON header, u32 length + raw blob.
# Must run on CPython 3.8+.
import builtins as _builtins_module
# A private copy of the builtins for the harness's own functions: job code gets the real
# `builtins` module (as any script does), so whatever it rewrites there never reaches the harness.
__builtins__ = dict(vars(_builtins_module))
import os
import sys
import json
import struct
import signal
import ast
import gc
import errno
import resource
import warnings
import fcntl

# Warm imports: the modules programs under test import most often (MBPP, HumanEval). Kept
# short on purpose: every module makes each fork a little dearer, and `random` (which reseeds
# itself after every fork) is left out.
for _m in ("math", "itertools", "collections", "functools", "re", "heapq", "bisect", "string",
           "operator", "typing", "copy", "array", "cmath", "collections.abc", "opcode"):
    try:
        __import__(_m)
    except Exception:
        pass

RES_FD, OUT_W, ERR_W, ACK_R = 3, 4, 5, 6
FIONREAD = 0x541B
IN_FD = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 10)
OUT_FD = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 10)
_devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(_devnull, 0)
os.dup2(_devnull, 1)
os.close(_devnull)

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
    if header is None or h2 is None:
        return None, None
    blob = read_exact(IN_FD, struct.unpack(">I", h2)[0])
    if blob is None:
        return None, None
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


def drop_uid():
    os.setresgid(CFG.gid, CFG.gid, CFG.gid)
    os.setresuid(CFG.uid, CFG.uid, CFG.uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise OSError(errno.EPERM, "still root")


def set_rlimits(limits):
    mem, job_timeout, fs, np_ = limits
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(job_timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fs, fs))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_NPROC, (np_, np_))


def sandbox_child(job_dir, limits, probe):
    """Runs in the forked child (a session leader in the worker's PID namespace) as root;
    returns the list of (layer, ok, detail) (with the active layers too when `probe`). Raises
    when a required layer fails."""
    os.setsid()
    # fds: 0 = /dev/null (already), 1/2 = capture pipes, 3 = result records (already),
    # 4 = acknowledgements, the rest closed.
    os.dup2(OUT_W, 1)
    os.dup2(ERR_W, 2)
    os.dup2(ACK_R, 4)
    os.chdir(job_dir)  # HOME and TMPDIR point here already (set by the worker)
    layers = []
    for name, step, arg in (("unprivileged_uid", drop_uid, None), ("rlimits", set_rlimits, limits)):
        try:
            if arg is None:
                step()
                os.closerange(5, 65536)
            else:
                step(arg)
            if probe:
                layers.append((name, True, LAYER_DETAILS[name].replace("UID", str(CFG.uid))))
        except Exception as e:  # noqa
            layers.append((name, False, "%s: %s" % (type(e).__name__, e)))
            if CFG.strict_layers:
                raise RuntimeError("isolation layer %s failed: %s" % (name, e))
    return layers


LAYER_DETAILS = {
    "unprivileged_uid": "jobs run as uid/gid UID, no groups",
    "rlimits": "address space, CPU, file size, 64 open files, processes, no core",
}



# ---------------------------------------------------------------------------------------------
# Strict comparison (EvalPlus-like): evaluated by trusted functions that are bound into the test
# code objects as constants (no name lookup a program could redirect). They live in their own
# globals with empty builtins and read everything through default arguments, which the audit
# hook protects from reassignment.
# The source is python/strict.py, handed over by the pool in NXT_SANDBOX_STRICT (taken out of
# the environment here, so job code never sees it).
STRICT_SRC = os.environ.pop("NXT_SANDBOX_STRICT")


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


class StrictRewriter:
    """Rewrites the test of every `assert` statement so comparisons and truth tests go through
    the strict functions (placeholders here, bound to the functions after compiling). Only
    statement lists are walked (an `assert` is always a statement), and the new nodes take the
    location of the expression they replace, so no whole-tree pass is needed."""

    BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")

    def __init__(self, tag):
        self.tag = tag
        self.tmp = 0

    def at(self, node, like):
        node.lineno = like.lineno
        node.col_offset = like.col_offset
        node.end_lineno = getattr(like, "end_lineno", like.lineno)
        node.end_col_offset = getattr(like, "end_col_offset", like.col_offset)
        return node

    def ph(self, name, like):
        return self.at(ast.Constant(value="\x00nxt:%s:%s" % (self.tag, name)), like)

    def call(self, name, args, like):
        return self.at(ast.Call(func=self.ph(name, like), args=args, keywords=[]), like)

    def judge(self, e):
        if isinstance(e, ast.BoolOp):
            return self.at(ast.BoolOp(op=e.op, values=[self.judge(v) for v in e.values]), e)
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            return self.at(ast.UnaryOp(op=ast.Not(), operand=self.judge(e.operand)), e)
        if isinstance(e, ast.Compare):
            parts = []
            left = e.left
            n = len(e.ops)
            for i, (op, right) in enumerate(zip(e.ops, e.comparators)):
                name = self.at(ast.Constant(value=OPNAMES.get(type(op))), e)
                if i < n - 1:
                    self.tmp += 1
                    tname = "_nxt_t%d" % self.tmp
                    r_eval = self.at(ast.NamedExpr(
                        target=self.at(ast.Name(id=tname, ctx=ast.Store()), right),
                        value=right), right)
                    parts.append(self.call("cmp", [name, left, r_eval], e))
                    left = self.at(ast.Name(id=tname, ctx=ast.Load()), right)
                else:
                    parts.append(self.call("cmp", [name, left, right], e))
            if len(parts) == 1:
                return parts[0]
            return self.at(ast.BoolOp(op=ast.And(), values=parts), e)
        return self.call("truth", [e], e)

    def rewrite(self, stmts):
        for st in stmts:
            if type(st) is ast.Assert:
                st.test = self.judge(st.test)
                continue
            for field in self.BLOCKS:
                block = getattr(st, field, None)
                if block:
                    self.rewrite(block)


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
    """Compiles one test; in strict mode its asserts call placeholder constants, which
    `bind_placeholders` (with `strict_mapping`) replaces by the strict functions."""
    tree = ast.parse(src, filename, "exec")
    if not strict:
        return compile(tree, filename, "exec")
    StrictRewriter(tag).rewrite(tree.body)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile(tree, filename, "exec")


def strict_mapping(tag):
    """Placeholder constant -> strict function."""
    return {"\x00nxt:%s:cmp" % tag: STRICT_CMP, "\x00nxt:%s:truth" % tag: STRICT_TRUTH}


# ---------------------------------------------------------------------------------------------
# Child side: runs the job and writes authenticated records on fd 3.

def child_run(job, blob, nonce, compiled):
    """Entered in the forked child after isolation. Never returns. `compiled` holds, for test
    jobs, (the tests' code objects, the program's from `compile_program`), for driver jobs the
    driver's code object; an exception in place of a code object is what compiling it raised."""
    _write = os.write
    _exit = os._exit
    _pack = struct.pack
    _unpack = struct.unpack
    _ioctl = fcntl.ioctl
    _type = type
    _str = str
    _isinstance = isinstance
    _BaseException = BaseException
    _AssertionError = AssertionError
    _MemoryError = MemoryError
    _syntax_errors = (SyntaxError, IndentationError, TabError)
    _int = int
    _exec = exec
    _range = range
    _len = len
    _read = os.read
    _memoryview = memoryview
    _bytes = bytes
    stdout = sys.stdout
    stderr = sys.stderr
    fd = 3
    zero4 = b"\0\0\0\0"

    held = [b""]

    def rec(kind, idx, payload=b"", hold=False):
        # Records the pool need not see at once (a result, "loaded") are held and sent with the
        # next one: one write, and one wake-up of the pool, per test instead of two.
        msg = held[0] + nonce + kind + _pack(">II", idx, _len(payload)) + payload
        if hold:
            held[0] = msg
            return
        held[0] = b""
        view = _memoryview(msg)
        while view:
            n = _write(fd, view)
            view = view[n:]

    def pending(f):
        try:
            return _unpack("i", _ioctl(f, FIONREAD, zero4))[0] > 0
        except _BaseException:
            return False

    def start(idx):
        # Output still unread in the capture pipes belongs to the previous phase: then wait
        # until the pool has taken it, so each test's output is told apart from the previous
        # one's. With empty pipes (the usual case) there is nothing to wait for.
        if pending(1) or pending(2):
            rec(b"S", idx, b"w")
            _read(4, 1)
        else:
            rec(b"S", idx)

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

    trusted_mode = TRUSTED_MODE
    audit_hook = AUDIT_HOOK
    # Nothing of the harness may stay reachable through a function's __globals__.
    _harness_globals = globals()
    del _harness_globals["TRUSTED_MODE"], _harness_globals["AUDIT_HOOK"]

    def outcome_of(e):
        if _isinstance(e, _MemoryError):
            return b"memory"
        if _isinstance(e, _AssertionError):
            return b"failed\x00" + bounded(e).encode("utf-8", "replace")
        name = bounded(_type(e).__name__, 200)
        msg = bounded(e)
        line = -1
        if _type(e) in _syntax_errors and e.filename == "<program>" \
                and _type(e.lineno) is _int:
            # The program did not compile: the error's own line (an exact builtin type, so
            # reading its attributes runs no program code).
            line = e.lineno
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
    if kind == "driver":
        payload = blob
        emitted = [False]
        max_emit = job["max_emit_bytes"]

        def nxt_payload():
            return payload

        def nxt_emit(data):
            if emitted[0]:
                raise RuntimeError("nxt_emit may be called once")
            if not _isinstance(data, (_bytes, bytearray, _memoryview)):
                raise TypeError("nxt_emit takes bytes")
            data = _bytes(data)
            if _len(data) > max_emit:
                raise ValueError("nxt_emit: %d bytes exceed the limit of %d" % (_len(data), max_emit))
            emitted[0] = True
            rec(b"P", 0, data)

        g = {"__name__": "__main__", "__builtins__": _builtins_module,
             "nxt_payload": nxt_payload, "nxt_emit": nxt_emit}
        rec(b"L", 0, hold=True)
        rec(b"S", 0)
        try:
            if _isinstance(compiled, _BaseException):
                raise compiled
            _exec(compiled, g)
            flush()
            rec(b"R", 0, b"passed", hold=True)
        except _BaseException as e:
            flush()
            if _isinstance(e, SystemExit) and (e.code is None or e.code == 0):
                rec(b"R", 0, b"passed", hold=True)
            else:
                rec(b"R", 0, outcome_of(e), hold=True)
        flush()
        rec(b"D", 0)
        _exit(0)

    # Test job: the tests (and usually the program) are compiled already; else compile the
    # program before any of it runs.
    compiled, program_compiled = compiled
    setup_after = job["setup_after"]
    n_tests = _len(compiled)
    first = job["start"]
    try:
        if program_compiled is None:
            setup = job.get("setup")
            prog_code = compile(job["program"], "<program>", "exec")
            setup_code = compile(setup, "<setup>", "exec") if setup else None
        else:
            prog_code, setup_code, compile_warnings = program_compiled
            if compile_warnings:
                _write(2, compile_warnings.encode("utf-8", "replace"))
            if _isinstance(prog_code, _BaseException):
                raise prog_code
            if _isinstance(setup_code, _BaseException):
                raise setup_code
    except _BaseException as e:
        rec(b"l", 0, outcome_of(e), hold=True)
        flush()
        rec(b"D", 0)
        _exit(0)

    # The harness's own module must not be reachable as __main__ by the program.
    sys.modules["__main__"] = FRESH_MAIN

    # Tracing hooks would hand harness frames to the program (CPython 3.8 has no audit event
    # for them; 3.9+ is also blocked by the audit hook).
    sys.settrace = NO_TRACING
    sys.setprofile = NO_TRACING
    sys.addaudithook(audit_hook)
    g = {"__name__": "__nxt_program__", "__builtins__": _builtins_module}
    try:
        if setup_code is not None and not setup_after:
            _exec(setup_code, g)
        _exec(prog_code, g)
        if setup_code is not None and setup_after:
            _exec(setup_code, g)
    except _BaseException as e:
        flush()
        rec(b"l", 0, outcome_of(e), hold=True)
        flush()
        rec(b"D", 0)
        _exit(0)
    flush()
    rec(b"L", 0, hold=True)
    for i in _range(first, n_tests):
        c = compiled[i]
        start(i)
        if _isinstance(c, _BaseException):
            rec(b"R", i, outcome_of(c), hold=True)
            continue
        try:
            _exec(c, g)
            flush()
            rec(b"R", i, b"passed", hold=True)
        except _BaseException as e:
            flush()
            rec(b"R", i, outcome_of(e), hold=True)
    flush()
    rec(b"D", 0)
    _exit(0)


def make_audit_hook(trusted_mode, protected):
    """The audit hook every job installs: blocks the introspection that would let a program
    reach or rewrite harness objects. Built once in the worker (each child only installs it);
    it lets everything through while `trusted_mode[0]` is set."""
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
    return hook




# ---------------------------------------------------------------------------------------------
# The compiler: a process of its own that never forks (so none of its work pays copy-on-write
# faults). It compiles a job's tests (strict rewrite, with placeholders the child binds) and its
# program, and answers with them marshalled; the fork server never parses or compiles anything.

# Compiled tests and drivers, shared by every job (samples of one task share their tests).
# Keyed by (kind, index, source, strict); cleared when it grows past CACHE_MAX entries.
CACHE = {}
CACHE_MAX = 4096


def error_entry(e):
    """A compile failure in marshallable form."""
    try:
        text = str(e)
    except BaseException:
        text = "<unprintable>"
    if type(e) in (SyntaxError, IndentationError, TabError):
        # Kept apart so the rebuilt error has its file and line (and prints the same).
        msg = e.msg if type(e.msg) is str else text
        lineno = e.lineno if type(e.lineno) is int else None
        filename = e.filename if type(e.filename) is str else None
        return ("!", type(e).__name__, text, msg, filename, lineno)
    return ("!", type(e).__name__, text)


def cached(key, make):
    hit = CACHE.get(key)
    if hit is not None:
        return hit
    try:
        value = make()
    except BaseException as e:  # a broken test is an error of that test
        value = error_entry(e)
    if len(CACHE) >= CACHE_MAX:
        CACHE.clear()
    CACHE[key] = value
    return value


def compile_request(req, tag):
    """What the compiler answers to one request, before marshalling."""
    if "driver" in req:
        src = req["driver"]
        return (cached(("d", 0, src, False), lambda: compile(src, "<driver>", "exec")),)
    strict = bool(req.get("strict", True))
    tests = []
    for i, t in enumerate(req["tests"]):
        tests.append(cached(("t", i, t, strict),
                            lambda: compile_test(t, strict, tag, "<test %d>" % (i + 1))))
    program = req["program"]
    setup = req.get("setup")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            prog = compile(program, "<program>", "exec")
        except BaseException as e:
            prog = error_entry(e)
        try:
            setup_code = compile(setup, "<setup>", "exec") if setup else None
        except BaseException as e:
            setup_code = error_entry(e)
    text = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                   for w in caught)
    return (tuple(tests), prog, setup_code, text)


def compiler_main():
    import marshal
    init, _ = read_frame()
    if init is None:
        return
    tag = init["tag"]
    sys.dont_write_bytecode = True
    write_frame({"python": sys.version.split()[0]})
    while True:
        req, _ = read_frame()
        if req is None:
            return
        try:
            blob = marshal.dumps(compile_request(req, tag))
        except Exception as e:
            write_frame({"error": "%s: %s" % (type(e).__name__, e)})
            continue
        write_frame({"ok": True}, blob)


# ---------------------------------------------------------------------------------------------
# The fork server (the worker proper).

def rebuilt_error(entry):
    """The exception a compile-failure entry describes (type looked up among the builtins)."""
    cls = getattr(_builtins_module, entry[1], None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = RuntimeError
    try:
        if len(entry) == 6 and issubclass(cls, SyntaxError):
            return cls(entry[3], (entry[4], entry[5], None, None))
        return cls(entry[2])
    except BaseException:
        return RuntimeError(entry[2])


# The fixed job header the pool sends: secret, kind, first test, setup after the program,
# strict comparison, address-space limit, job time limit, file-size limit, process limit,
# most bytes a driver may emit.
JOB_HEADER = struct.Struct(">16sBI??QdQIQ")
KINDS = ("probe", "tests", "driver")


def split_frame(frame):
    """(job, nonce, compiled blob, payload) of a job frame: four parts (fixed header, what the
    compiler made, the driver's payload, and JSON sources when the child must compile)."""
    view = memoryview(frame)
    parts = []
    pos = 0
    for _ in range(4):
        n = FRAME_LEN.unpack_from(frame, pos)[0]
        parts.append(view[pos + 4:pos + 4 + n])
        pos += 4 + n
    (nonce, kind, start, setup_after, strict, memory, job_timeout, file_bytes, processes,
     max_emit) = JOB_HEADER.unpack(parts[0])
    job = {"kind": KINDS[kind], "start": start, "setup_after": setup_after, "strict": strict,
           "max_emit_bytes": max_emit, "limits": (memory, job_timeout, file_bytes, processes)}
    if len(parts[3]):
        job.update(json.loads(bytes(parts[3]).decode("utf-8")))
    return job, nonce, parts[1], bytes(parts[2])


def prepare(job, code_blob):
    """What the child runs (see child_run), from the compiler's code; without it (empty
    `code_blob`) compiles the job's sources, which only the child may do (under its limits)."""
    import marshal
    kind = job["kind"]
    mapping = strict_mapping(TAG[0])
    start = job["start"]
    if kind == "driver":
        if code_blob:
            entry = marshal.loads(code_blob)[0]
            return rebuilt_error(entry) if type(entry) is tuple else entry
        try:
            return compile(job["driver"], "<driver>", "exec")
        except BaseException as e:
            return e
    if kind != "tests":
        return None
    if code_blob:
        tests, prog, setup_code, text = marshal.loads(code_blob)
        out = []
        for i, c in enumerate(tests):
            if i < start:
                out.append(None)
            elif type(c) is tuple:
                out.append(rebuilt_error(c))
            else:
                out.append(bind_placeholders(c, mapping))
        prog = rebuilt_error(prog) if type(prog) is tuple else prog
        if type(setup_code) is tuple:
            setup_code = rebuilt_error(setup_code)
        return out, (prog, setup_code, text)
    strict = job["strict"]
    out = []
    for i, t in enumerate(job["tests"]):
        if i < start:
            out.append(None)
            continue
        try:
            out.append(bind_placeholders(compile_test(t, strict, TAG[0], "<test %d>" % (i + 1)),
                                         mapping))
        except BaseException as e:
            out.append(e)
    return out, None


def child_main(job, nonce, payload, compiled, job_dir):
    try:
        probe = job["kind"] == "probe"
        layers = sandbox_child(job_dir, job["limits"], probe)
        if compiled is None and not probe:
            # The compiler did not compile this job: do it here, under the job's limits.
            compiled = prepare(job, b"")
        if probe:
            layers = [("stray_process_sweep", IS_PID1,
                       "after each job every process left in the worker's namespace is killed "
                       "and reaped" if IS_PID1 else "the worker is not PID 1 of a PID namespace")] \
                + layers \
                + [("audit_hook", hasattr(sys, "addaudithook"),
                    "blocks frame/gc introspection, ctypes, process creation, /proc")]
            text = "\n".join("%s\t%d\t%s" % l for l in layers).encode()
            os.write(3, nonce + b"I" + struct.pack(">II", 0, len(text)) + text)
            os._exit(0)
        child_run(job, payload, nonce, compiled)
    except BaseException as e:  # isolation failure: report as infrastructure error
        try:
            text = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")
            os.write(3, nonce + b"X" + struct.pack(">II", 0, len(text)) + text)
        except BaseException:
            pass
    os._exit(71)


# What jobs see as the __main__ module (made here once; each child has its own copy-on-write
# copy, so nothing a job puts there reaches another job).
FRESH_MAIN = type(sys)("__main__")

# Placeholder tag of the strict rewrite (set by the pool; shared with the compiler).
TAG = [""]

# Stands in for sys.settrace/sys.setprofile in jobs (tracing hooks would hand harness frames to
# the program; CPython 3.8 has no audit event for them). Defined in a namespace of its own so its
# __globals__ lead nowhere.
_NO_TRACING_NS = {"__builtins__": {}, "_error": RuntimeError}
exec("def no_tracing(*_a, **_k):\n    raise _error('nxt-sandbox: tracing is disabled')\n",
     _NO_TRACING_NS)
NO_TRACING = _NO_TRACING_NS.pop("no_tracing")

# Set while the child's own trusted code inspects a traceback (the hook then lets it through).
# The child takes both out of this module's globals before any job code runs.
TRUSTED_MODE = [False]
AUDIT_HOOK = make_audit_hook(TRUSTED_MODE, (STRICT_EQ, STRICT_TRUTH, STRICT_CMP, STRICT_TRUSTED,
                                            STRICT_FAMILY))

# Answer to a job: "E" and the child's exit code (< 128) or 128 + signal. Anything else is a
# JSON frame describing a failure of the worker itself.
ANSWER = struct.Struct(">ci")
FRAME_LEN = struct.Struct(">I")

# gc.freeze where the interpreter has it (3.7+).
FREEZE = getattr(gc, "freeze", None)


def kill_leftovers():
    """Kills every process left in this worker's PID namespace (e.g. a grandchild that escaped
    the job's process group): as PID 1, kill(-1) reaches all of them and never this process.
    No uid switch is needed, so the worker keeps its parent-death signal. Returns whether any
    process (zombies included) was there."""
    try:
        os.kill(-1, signal.SIGKILL)
        return True
    except OSError:
        return False


def sweep():
    """Reaps orphans of the job that were reparented to this worker (PID 1)."""
    while True:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            break


def drain_acks():
    """Drops acknowledgements a killed job never read."""
    try:
        n = struct.unpack("i", fcntl.ioctl(ACK_R, FIONREAD, b"\0\0\0\0"))[0]
        if n > 0:
            os.read(ACK_R, n)
    except OSError:
        pass


# The job directory's path: the same while jobs leave nothing behind, a fresh one after a job
# whose leftovers could not be removed.
JOB_DIR = [None, 0]


def make_job_dir(base):
    d = JOB_DIR[0]
    if d is None:
        JOB_DIR[1] += 1
        d = JOB_DIR[0] = "%s/j%d" % (base, JOB_DIR[1])
        os.environ["HOME"] = d
        os.environ["TMPDIR"] = d
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        remove_tree(d)
        d = JOB_DIR[0]
        if d is None:
            return make_job_dir(base)
        os.mkdir(d, 0o700)
    os.chown(d, CFG.uid, CFG.gid)
    return d


def remove_tree(d):
    try:
        os.rmdir(d)  # the usual case: the job left nothing behind
        return
    except OSError:
        pass
    JOB_DIR[0] = None
    import shutil
    shutil.rmtree(d, ignore_errors=True)
    if os.path.lexists(d):
        # The job's uid may have made directories unsearchable: open them up and retry.
        for root, dirs, _files in os.walk(d):
            for x in dirs:
                try:
                    os.chmod(os.path.join(root, x), 0o700)
                except OSError:
                    pass
        shutil.rmtree(d, ignore_errors=True)


def run_job(frame, base):
    """Forks one child for the job, waits for it and cleans up; returns the child's end. The
    frame is read and the compiler's code loaded here, before the fork: work done here costs
    less than in the child, whose every first write to a page is a copy-on-write fault."""
    job, nonce, code_blob, payload = split_frame(frame)
    compiled = prepare(job, code_blob) if len(code_blob) else None
    d = make_job_dir(base)
    try:
        drain_acks()
        if FREEZE is not None:
            # Everything this process allocated so far leaves the collector's view, so the
            # child's collections never walk (and copy) this process's pages.
            FREEZE()
        pid = os.fork()
        if pid == 0:
            child_main(job, nonce, payload, compiled, d)
            os._exit(71)
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = 128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else min(os.WEXITSTATUS(st), 127)
        if IS_PID1 and kill_leftovers():
            sweep()
    finally:
        remove_tree(d)
    return code


def main():
    init, _ = read_frame()
    if init is None:
        return
    CFG.uid = int(init["uid"])
    CFG.gid = int(init["gid"])
    CFG.strict_layers = not bool(init.get("allow_weak", False))
    TAG[0] = init["tag"]
    sys.dont_write_bytecode = True
    base = init["dir"]
    # Settings every job shares, made once here and inherited by each fork.
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})
    try:
        os.setgroups([])
    except OSError:
        pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Warm the strict rewrite and binding once so their code paths are shared by every job.
    bind_placeholders(compile_test("assert 1 == 1", True, TAG[0], "<warm-up>"),
                      strict_mapping(TAG[0]))
    import marshal  # noqa: F401 (loaded here, used by every child)
    gc.collect()
    if FREEZE is not None:
        FREEZE()
    write_frame({"python": sys.version.split()[0], "pid": os.getpid()})
    served = 0
    while True:
        # A job is one frame: u32 length, then the bytes the child parses.
        head = read_exact(IN_FD, 4)
        if head is None:
            return
        frame = read_exact(IN_FD, FRAME_LEN.unpack(head)[0])
        if frame is None:
            return
        try:
            os.write(OUT_FD, ANSWER.pack(b"E", run_job(frame, base)))
        except Exception as e:
            write_frame({"infra": "%s: %s" % (type(e).__name__, e)})
        del frame
        served += 1
        if served % 256 == 0 and FREEZE is not None:
            # Objects are frozen before each fork; collect this process's own cyclic garbage
            # now and then.
            gc.unfreeze()
            gc.collect()
            gc.freeze()


if sys.argv[1:] == ["compile"]:
    compiler_main()
else:
    main()
