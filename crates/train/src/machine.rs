//! The machine a run finishes on, for `metrics.json` (`MachineRecord`):
//! read from the system where it says (Linux's `/proc`, `nvidia-smi` on a
//! CUDA run), with the compiler and candle versions built in by `build.rs`.

use crate::job::Device;
use dae_runfolder::MachineRecord;

/// `rustc --version` of the compiler that built this binary.
pub const RUSTC_VERSION: &str = env!("DAE_RUSTC_VERSION");
/// The candle-core version in the workspace's `Cargo.lock`.
pub const CANDLE_VERSION: &str = env!("DAE_CANDLE_VERSION");

/// This machine as a run on `device` uses it; what cannot be read is
/// `unknown`, never an error (provenance must not fail a finished run).
pub fn this_machine(device: &Device) -> MachineRecord {
    MachineRecord {
        hostname: read_trimmed("/proc/sys/kernel/hostname").or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(unknown),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| cpu_model(&t)).unwrap_or_else(unknown),
        threads: candle_core::utils::get_num_threads(),
        gpu: match device {
            Device::Cpu => None,
            Device::Cuda(n) => Some(gpu_name(*n).unwrap_or_else(|| "unknown (nvidia-smi did not answer)".into())),
        },
        os: os_name(),
        rustc: RUSTC_VERSION.into(),
        candle: CANDLE_VERSION.into(),
    }
}

fn unknown() -> String {
    "unknown".into()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// `PRETTY_NAME` of `/etc/os-release` and the kernel, or the OS family.
fn os_name() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())));
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").map(|k| format!("{} {k}", std::env::consts::OS));
    match (pretty, kernel) {
        (Some(p), Some(k)) => format!("{p}, {k}"),
        (p, k) => p.or(k).unwrap_or_else(|| std::env::consts::OS.to_string()),
    }
}

/// `NVIDIA H200, driver 550.54.15` for CUDA device `n`, as the job sees
/// it: `n` counts within `CUDA_VISIBLE_DEVICES` where that is set.
fn gpu_name(n: usize) -> Option<String> {
    let physical = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').nth(n)?.trim().to_string(),
        _ => n.to_string(),
    };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader", "-i", &physical])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (name, driver) = text.lines().next()?.split_once(',')?;
    Some(format!("{}, driver {}", name.trim(), driver.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_model_is_the_first_model_name() {
        let info =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Intel(R) Xeon(R) Gold 6338"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn a_cpu_run_records_this_machine_and_the_build() {
        let m = this_machine(&Device::Cpu);
        assert!(m.gpu.is_none() && m.threads >= 1 && !m.hostname.is_empty() && !m.os.is_empty());
        assert!(m.rustc.starts_with("rustc 1."), "{}", m.rustc);
        // The version Cargo.lock pins, as the workspace's Cargo.toml asks for it.
        let manifest = include_str!("../../../Cargo.toml");
        assert!(manifest.contains(&format!("candle-core = \"={}\"", m.candle)), "{}", m.candle);
    }
}
