//! The wire types of `dae-train --resolve`: the runner sends a JSON array of
//! job configs (TOML texts) on stdin; the trainer checks each exactly as a
//! job file and answers one [`Response`] on stdout.

use serde::{Deserialize, Serialize};

/// The trainer's answer for a batch of configs, in their order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub code_version: String,
    pub results: Vec<Answer>,
}

/// One config's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Ok(Resolved),
    Error(Refusal),
}

/// A config as the trainer resolved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Canonical TOML with every default filled in: what a job id hashes and
    /// what the run folder's `config.toml` holds.
    pub config: String,
    /// The data's source fingerprint.
    pub data: String,
    /// The CUDA device index the job asks for (`device = "cuda:N"`; `cuda`
    /// is 0); `None` for the CPU.
    pub gpu: Option<usize>,
}

/// Why the trainer refused a config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The dotted job-config key at fault (`model.tau`), where one is.
    pub key: Option<String>,
    /// The whole message, as the trainer prints it for a job file.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_tagged_in_lowercase() {
        let r = Response {
            code_version: "v".into(),
            results: vec![
                Answer::Ok(Resolved { config: "seed = 0\n".into(), data: "d".into(), gpu: None }),
                Answer::Error(Refusal { key: Some("model.tau".into()), message: "model.tau: 2 is outside (0, 1)".into() }),
            ],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#"{"ok":{"config""#) && text.contains(r#"{"error":{"key":"model.tau""#), "{text}");
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), r);
    }
}
