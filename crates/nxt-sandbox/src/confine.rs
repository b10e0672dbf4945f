//! Confinement applied to each worker process between fork and exec (inherited by everything
//! it forks): namespaces, PID 1, a private tmpfs for job directories, `no_new_privs`, landlock
//! and seccomp. Doing this in Rust keeps `ctypes` out of every Python process of the sandbox.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::SandboxError;

/// Names of the layers set up here, in the order of their status bytes.
pub(crate) const LAYERS: [&str; 8] = [
    "net_namespace",
    "ipc_namespace",
    "uts_namespace",
    "mnt_namespace",
    "pid_namespace",
    "private_tmpfs",
    "landlock",
    "seccomp",
];

const LL_EXECUTE: u64 = 1 << 0;
const LL_WRITE_FILE: u64 = 1 << 1;
const LL_READ_FILE: u64 = 1 << 2;
const LL_READ_DIR: u64 = 1 << 3;
/// REMOVE_DIR .. MAKE_SYM (bits 4-12).
const LL_WRITE_DIR_RIGHTS: u64 = 0x1ff0;
const LL_REFER: u64 = 1 << 13;
const LL_TRUNCATE: u64 = 1 << 14;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Everything prepared before fork (no allocation may happen after it).
pub(crate) struct Plan {
    seccomp: Vec<Vec<libc::sock_filter>>,
    /// Paths a job may read (and for `/dev/null`, write), with their landlock rights.
    reads: Vec<(CString, u64)>,
    /// The worker's directory: tmpfs mount point, the only writable place.
    dir: CString,
    tmpfs_opts: CString,
    /// Write end of the status pipe.
    status_fd: libc::c_int,
}

impl Plan {
    pub(crate) fn new(
        dir: &Path,
        tmpfs_mb: u64,
        seccomp: &[Vec<u8>],
        status_fd: libc::c_int,
    ) -> Result<Plan, SandboxError> {
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Worker(format!("path with NUL: {}", p.display())))
        };
        let mut reads = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir("/")?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            if matches!(name.as_deref(), Some("proc" | "sys" | "dev")) {
                continue;
            }
            let access = if p.is_dir() {
                LL_READ_FILE | LL_READ_DIR | LL_EXECUTE
            } else {
                LL_READ_FILE | LL_EXECUTE
            };
            reads.push((cstr(&p)?, access));
        }
        for dev in [
            "/dev/null",
            "/dev/zero",
            "/dev/urandom",
            "/dev/random",
            "/dev/full",
        ] {
            let p = Path::new(dev);
            if p.exists() {
                let w = if dev == "/dev/null" || dev == "/dev/full" {
                    LL_WRITE_FILE
                } else {
                    0
                };
                reads.push((cstr(p)?, LL_READ_FILE | w));
            }
        }
        let seccomp = seccomp
            .iter()
            .map(|bytes| {
                bytes
                    .chunks_exact(8)
                    .map(|c| libc::sock_filter {
                        code: u16::from_ne_bytes([c[0], c[1]]),
                        jt: c[2],
                        jf: c[3],
                        k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                    })
                    .collect()
            })
            .collect();
        Ok(Plan {
            seccomp,
            reads,
            dir: cstr(dir)?,
            tmpfs_opts: CString::new(format!("size={tmpfs_mb}m,mode=0711"))
                .map_err(|_| SandboxError::Worker("tmpfs options".into()))?,
            status_fd,
        })
    }

    /// Runs in the child between fork and exec. Only async-signal-safe calls.
    ///
    /// # Safety
    /// Must be called from a `pre_exec` hook.
    pub(crate) unsafe fn apply(&self) -> std::io::Result<()> {
        let mut status = [0u8; LAYERS.len()];
        let err = || (*libc::__errno_location()).clamp(1, 255) as u8;
        for (i, flag) in [
            libc::CLONE_NEWNET,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWNS,
        ]
        .into_iter()
        .enumerate()
        {
            if libc::unshare(flag) != 0 {
                status[i] = err();
            }
        }
        if libc::unshare(libc::CLONE_NEWPID) == 0 {
            // The worker must be PID 1 of the new namespace: fork once more. This middle
            // process only waits for the worker and mirrors its end; the worker dies with it
            // (parent-death signal), so killing the spawned process kills the worker.
            let pid = libc::fork();
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pid > 0 {
                for fd in 0..1024 {
                    libc::close(fd);
                }
                let mut st = 0;
                loop {
                    let r = libc::waitpid(pid, &mut st, 0);
                    if r == pid || (r < 0 && *libc::__errno_location() != libc::EINTR) {
                        break;
                    }
                }
                let code = if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                };
                libc::_exit(code);
            }
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        } else {
            status[4] = err();
        }
        // Job directories on a tmpfs private to this mount namespace.
        if status[3] != 0 {
            status[5] = libc::EPERM as u8;
        } else if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
            || libc::mount(
                c"tmpfs".as_ptr(),
                self.dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.tmpfs_opts.as_ptr().cast(),
            ) != 0
        {
            status[5] = err();
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            status[6] = err();
            status[7] = err();
        } else {
            status[6] = self.landlock();
            for prog in &self.seccomp {
                let fprog = libc::sock_fprog {
                    len: prog.len() as u16,
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog as libc::c_ulong,
                    0,
                    0,
                ) != 0
                {
                    status[7] = err();
                }
            }
        }
        libc::write(self.status_fd, status.as_ptr().cast(), status.len());
        Ok(())
    }

    /// Write access only below the worker's directory (and to /dev/null); read access to
    /// everything but /proc, /sys and most of /dev. Returns 0 or an errno.
    unsafe fn landlock(&self) -> u8 {
        let abi = libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            1u32,
        );
        if abi < 1 {
            return (*libc::__errno_location()).clamp(1, 255) as u8;
        }
        let mut writes = LL_WRITE_FILE | LL_WRITE_DIR_RIGHTS;
        if abi >= 2 {
            writes |= LL_REFER;
        }
        if abi >= 3 {
            writes |= LL_TRUNCATE;
        }
        let handled = writes | LL_READ_FILE | LL_READ_DIR | LL_EXECUTE;
        let attr = RulesetAttr {
            handled_access_fs: handled,
        };
        let rfd = libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        ) as libc::c_int;
        if rfd < 0 {
            return (*libc::__errno_location()).clamp(1, 255) as u8;
        }
        let add = |path: &CString, mut access: u64| -> bool {
            if access & LL_WRITE_FILE != 0 && abi >= 3 {
                access |= LL_TRUNCATE;
            }
            let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                return true; // vanished or unreadable: nothing to allow
            }
            let rule = PathBeneathAttr {
                allowed_access: access,
                parent_fd: fd,
            };
            let r = libc::syscall(
                libc::SYS_landlock_add_rule,
                rfd,
                1 as libc::c_int,
                &rule as *const PathBeneathAttr,
                0u32,
            );
            libc::close(fd);
            r == 0
        };
        let mut ok = true;
        for (p, access) in &self.reads {
            ok &= add(p, *access);
        }
        ok &= add(&self.dir, handled);
        let r = if ok {
            libc::syscall(libc::SYS_landlock_restrict_self, rfd, 0u32)
        } else {
            -1
        };
        let e = *libc::__errno_location();
        libc::close(rfd);
        if r == 0 {
            0
        } else {
            e.clamp(1, 255) as u8
        }
    }
}
