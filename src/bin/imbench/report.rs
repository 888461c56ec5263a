//! One run's results as ordered key/value pairs, printed either as an aligned table for
//! people or as one JSON object on one line for scripts. Same keys in both.

use std::fmt::Write as _;

/// One value of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A count.
    Uint(u64),
    /// A signed amount (a memory difference can be negative).
    Int(i64),
    /// A measurement, printed with this many decimals.
    Float(f64, usize),
    /// A yes/no fact.
    Bool(bool),
    /// Text (mode, address, error).
    Text(String),
    /// Counts, one per process or server: a JSON array, `1,2,3` in the table.
    List(Vec<u64>),
}

/// The results of one run, in the order they are printed.
#[derive(Debug, Default)]
pub struct Report {
    items: Vec<(&'static str, Value)>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Report {
        Report::default()
    }

    /// Appends `key` (replacing an earlier value of the same key in place).
    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some(item) => item.1 = value,
            None => self.items.push((key, value)),
        }
    }

    /// Appends a count.
    pub fn uint(&mut self, key: &'static str, v: u64) {
        self.set(key, Value::Uint(v));
    }

    /// Appends a measurement with `decimals` decimals.
    pub fn float(&mut self, key: &'static str, v: f64, decimals: usize) {
        self.set(key, Value::Float(v, decimals));
    }

    /// The value of `key`, if set.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// One JSON object on one line, keys in insertion order.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, key);
            out.push(':');
            match value {
                Value::Text(s) => push_json_string(&mut out, s),
                Value::List(_) => {
                    out.push('[');
                    out.push_str(&plain(value));
                    out.push(']');
                }
                other => out.push_str(&plain(other)),
            }
        }
        out.push('}');
        out
    }

    /// One `key  value` line per item, values aligned.
    pub fn to_table(&self) -> String {
        let width = self.items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.items {
            let _ = writeln!(out, "{key:<width$}  {}", plain(value));
        }
        out
    }
}

/// A value as text; numbers are always finite JSON numbers.
fn plain(v: &Value) -> String {
    match v {
        Value::Uint(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(f, decimals) if f.is_finite() => format!("{f:.decimals$}"),
        Value::Float(..) => "0".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Text(s) => s.clone(),
        Value::List(items) => items
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new();
        r.set("mode", Value::Text("fanout".into()));
        r.uint("conns", 20);
        r.float("elapsed_s", 1.23456, 3);
        r.set("complete", Value::Bool(true));
        r.set("rss_per_conn_bytes", Value::Int(-12));
        r
    }

    #[test]
    fn json_is_one_line_in_insertion_order() {
        assert_eq!(
            sample().to_json(),
            r#"{"mode":"fanout","conns":20,"elapsed_s":1.235,"complete":true,"rss_per_conn_bytes":-12}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut r = Report::new();
        r.set("error", Value::Text("a \"b\"\\\n\u{1}对".into()));
        assert_eq!(r.to_json(), r#"{"error":"a \"b\"\\\n\u0001对"}"#);
    }

    #[test]
    fn lists_are_json_arrays_and_commas_in_the_table() {
        let mut r = Report::new();
        r.set("pids", Value::List(vec![7, 8]));
        r.set("none", Value::List(Vec::new()));
        assert_eq!(r.to_json(), r#"{"pids":[7,8],"none":[]}"#);
        assert_eq!(r.to_table(), "pids  7,8\nnone  \n");
    }

    #[test]
    fn non_finite_floats_stay_valid_json() {
        let mut r = Report::new();
        r.float("x", f64::NAN, 1);
        assert_eq!(r.to_json(), r#"{"x":0}"#);
    }

    #[test]
    fn setting_a_key_again_replaces_it_in_place() {
        let mut r = sample();
        r.uint("conns", 21);
        assert_eq!(r.get("conns"), Some(&Value::Uint(21)));
        assert!(r.to_json().starts_with(r#"{"mode":"fanout","conns":21,"#));
    }

    #[test]
    fn table_aligns_values() {
        let t = sample().to_table();
        assert!(t.contains("mode                fanout\n"), "{t}");
        assert!(t.contains("conns               20\n"), "{t}");
        assert_eq!(t.lines().count(), 5);
    }
}
