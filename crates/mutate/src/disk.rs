//! A full disk for a child process, as `ulimit -f` makes one.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Lets `cmd` (and its children) write at most `bytes` per file, with
/// SIGXFSZ ignored so that a write past the limit fails with an error
/// (EFBIG), as a full file system fails one (ENOSPC), instead of killing
/// the process.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
