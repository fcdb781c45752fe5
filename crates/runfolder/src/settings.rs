//! Dotted-key settings of a TOML config: `KEY=VALUE` on a command line
//! (`dae-train --set`, `dae-sweep --set`), and setting or reading a dotted
//! key in a table. One syntax for the trainer and the runner.

use toml::{Table, Value};

/// One `--set KEY=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct SetArg {
    pub key: String,
    pub value: Value,
}

impl std::str::FromStr for SetArg {
    type Err = String;
    /// `KEY=VALUE`: VALUE is a TOML value (`0.3`, `true`, `[0.1, 0.2]`,
    /// `"resnet18"`); a bare word that is not one is taken as a string
    /// (`model.encoder=resnet18`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (key, raw) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected KEY=VALUE, e.g. model.tau=0.3"))?;
        let key = key.trim();
        let valid_part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !key.split('.').all(valid_part) {
            return Err(format!("`{s}`: `{key}` is not a dotted key (letters, digits, `_`, `-`, separated by `.`)"));
        }
        Ok(SetArg { key: key.to_string(), value: parse_value(raw.trim()) })
    }
}

/// A TOML value, or the text as a string when it is a bare word.
pub fn parse_value(raw: &str) -> Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        _ => Value::String(raw.to_string()),
    }
}

/// Sets a dotted key, creating tables on the way.
pub fn set_path(t: &mut Table, key: &str, v: Value) {
    let mut parts = key.split('.').peekable();
    let mut cur = t;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v);
            return;
        }
        let entry = cur.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        cur = entry.as_table_mut().expect("just made a table");
    }
}

/// Reads a dotted key.
pub fn get_path<'a>(t: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut cur = t.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_and_bare_words_are_strings() {
        let a: SetArg = "model.tau=0.3".parse().unwrap();
        assert_eq!((a.key.as_str(), a.value), ("model.tau", Value::Float(0.3)));
        assert_eq!("optim.epochs=4".parse::<SetArg>().unwrap().value, Value::Integer(4));
        assert_eq!("model.rec=false".parse::<SetArg>().unwrap().value, Value::Boolean(false));
        assert_eq!("model.encoder=resnet18".parse::<SetArg>().unwrap().value, Value::String("resnet18".into()));
        assert_eq!("model.encoder=\"small-cnn\"".parse::<SetArg>().unwrap().value, Value::String("small-cnn".into()));
        let list = "model.tau=[0.1, 0.5]".parse::<SetArg>().unwrap().value;
        assert_eq!(list, Value::Array(vec![Value::Float(0.1), Value::Float(0.5)]));
        assert!("model.tau".parse::<SetArg>().unwrap_err().contains("expected KEY=VALUE"));
        assert!("model..tau=1".parse::<SetArg>().unwrap_err().contains("not a dotted key"));
    }

    #[test]
    fn dotted_keys_set_and_read_nested_tables() {
        let mut t = Table::new();
        set_path(&mut t, "model.tau", Value::Float(0.3));
        set_path(&mut t, "seed", Value::Integer(2));
        assert_eq!(get_path(&t, "model.tau"), Some(&Value::Float(0.3)));
        assert_eq!(get_path(&t, "seed"), Some(&Value::Integer(2)));
        assert_eq!(get_path(&t, "model.p"), None);
        assert_eq!(get_path(&t, "seed.x"), None);
    }
}
