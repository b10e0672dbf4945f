//! The seccomp filters installed in every job process, compiled to BPF in Rust.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::SandboxError;

/// Namespace-creating clone flags a job may not use.
const NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Syscalls a job never needs and that widen the attack surface; they fail with `EPERM`.
fn denied_syscalls() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_quotactl,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_fanotify_init,
        libc::SYS_move_pages,
        libc::SYS_migrate_pages,
        libc::SYS_mbind,
        libc::SYS_personality,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_mount_setattr,
        libc::SYS_pidfd_getfd,
        libc::SYS_process_madvise,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_lookup_dcookie,
    ]);
    v
}

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Worker(format!("seccomp: unsupported architecture: {e}")))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SandboxError::Worker(format!("seccomp condition: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Worker(format!("seccomp rule: {e}")))
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: u32) -> Result<Vec<u8>, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch()?,
    )
    .map_err(|e| SandboxError::Worker(format!("seccomp filter: {e}")))?;
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Worker(format!("seccomp: {e}")))?;
    Ok(to_bytes(&prog))
}

fn to_bytes(prog: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for ins in prog {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Builds the BPF programs (raw `struct sock_filter` arrays, native endianness) that every job
/// installs, in order:
///
/// 1. `EPERM` for the syscalls in the deny list, for `socket()` of any family but `AF_UNIX`,
///    for `clone()` with namespace flags, and for `prctl` options that would undo
///    the parent-death signal or make the process dumpable again;
/// 2. `ENOSYS` for `clone3` (its flags live in memory, out of seccomp's reach; libc falls back
///    to `clone`, which the first filter checks);
/// 3. on x86-64, `EPERM` for every x32-ABI syscall number (they would bypass the numbers above).
pub fn build_programs() -> Result<Vec<Vec<u8>>, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        rules.insert(nr, vec![]);
    }
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?],
    );
    let mut clone_rules = Vec::new();
    for flag in NS_FLAGS {
        clone_rules.push(rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    rules.insert(
        libc::SYS_prctl,
        vec![
            rule(vec![cond(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_PDEATHSIG as u64,
            )?])?,
            rule(vec![cond(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_DUMPABLE as u64,
            )?])?,
            rule(vec![cond(
                0,
                SeccompCmpOp::Eq,
                libc::PR_SET_PTRACER as u64,
            )?])?,
        ],
    );
    let mut progs = vec![compile(rules, libc::EPERM as u32)?];
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, vec![]);
    progs.push(compile(clone3, libc::ENOSYS as u32)?);
    #[cfg(target_arch = "x86_64")]
    progs.push(x32_filter());
    Ok(progs)
}

/// Hand-written: deny every syscall number with the x32 bit set.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> Vec<u8> {
    const X32_BIT: u32 = 0x4000_0000;
    let ins: [(u16, u8, u8, u32); 6] = [
        // A = arch; if not x86-64, allow (the first filter kills foreign arches anyway).
        (0x20, 0, 0, 4),
        (0x15, 0, 3, 0xC000_003E),
        // A = nr; if nr >= X32_BIT, EPERM.
        (0x20, 0, 0, 0),
        (0x35, 0, 1, X32_BIT),
        (0x06, 0, 0, 0x0005_0000 | libc::EPERM as u32),
        (0x06, 0, 0, 0x7fff_0000),
    ];
    let mut out = Vec::new();
    for (code, jt, jf, k) in ins {
        out.extend_from_slice(&code.to_ne_bytes());
        out.push(jt);
        out.push(jf);
        out.extend_from_slice(&k.to_ne_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile() {
        let progs = build_programs().expect("compiles");
        assert!(progs.len() >= 2);
        for p in progs {
            assert!(!p.is_empty() && p.len() % 8 == 0);
        }
    }
}
