//! The trainer's exit codes.

/// How `dae-train` ends. The runner decides retries and the plan's words
/// from these; the trainer returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    Success = 0,
    /// Anything else (an I/O error, a tensor error, a bug).
    Other = 1,
    /// The config was refused (before any training).
    BadConfig = 2,
    /// The data could not be loaded or split.
    DataError = 3,
    /// A loss became NaN or infinite.
    Diverged = 4,
    /// SIGINT or SIGTERM: the run stays incomplete and resumes next time.
    Interrupted = 5,
}

impl ExitCode {
    pub const ALL: [ExitCode; 6] =
        [ExitCode::Success, ExitCode::Other, ExitCode::BadConfig, ExitCode::DataError, ExitCode::Diverged, ExitCode::Interrupted];

    /// One line for help texts: `0 success, 1 other error, ...`.
    pub const SUMMARY: &'static str = "0 success, 1 other error, 2 bad config, 3 data error, 4 diverged, 5 interrupted";

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The code of a process exit status, where it is one of ours.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() as i32 == code)
    }

    /// `bad config`, `diverged`, ...
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::Other => "error",
            ExitCode::BadConfig => "bad config",
            ExitCode::DataError => "data error",
            ExitCode::Diverged => "diverged",
            ExitCode::Interrupted => "interrupted",
        }
    }

    /// Whether another attempt of the same job would end the same way (a
    /// refused config, a diverged run): such failures are not retried.
    pub fn repeats_exactly(self) -> bool {
        matches!(self, ExitCode::BadConfig | ExitCode::Diverged)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_the_summary_lists_each() {
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code() as i32), Some(c));
            assert!(ExitCode::SUMMARY.contains(&format!("{} ", c.code())));
        }
        assert_eq!(ExitCode::from_code(7), None);
        assert_eq!(ExitCode::ALL.iter().filter(|c| c.repeats_exactly()).count(), 2);
    }
}
