//! JSON a socket keeps for its whole life (`socket.handshake.auth`, `socket.data`),
//! stored as its text.
//!
//! Why text: a parsed `serde_json::Value` object costs its index table, its entry
//! vector and every string separately — the auth payload `{"token": "…"}` took about
//! 380 bytes of an idle connection and `{"userId": "…"}` about 200, even built at their
//! exact sizes (heaptrack at 2,000 connections). Both are read rarely (a middleware at
//! connect, `fetchSockets`, the Admin UI), so parsing on read costs less than keeping
//! the tree: the text is one allocation the size of the JSON.

use serde_json::Value;

/// Values nested deeper than this are kept parsed: serde_json refuses to parse text
/// nested past 128 levels, and a value built in code could be.
const MAX_TEXT_DEPTH: usize = 100;

/// A JSON value kept at the size of its text.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptJson {
    Text(Box<str>),
    Deep(Box<Value>),
}

impl KeptJson {
    pub fn new(value: &Value) -> Self {
        if depth(value) > MAX_TEXT_DEPTH {
            return KeptJson::Deep(Box::new(value.clone()));
        }
        KeptJson::Text(value.to_string().into_boxed_str())
    }

    /// The value, parsed again (key order is kept: objects keep insertion order).
    pub fn value(&self) -> Value {
        match self {
            KeptJson::Text(text) => serde_json::from_str(text)
                .expect("the text was written by serde_json from a value of bounded depth"),
            KeptJson::Deep(value) => (**value).clone(),
        }
    }
}

impl Default for KeptJson {
    fn default() -> Self {
        KeptJson::Text("{}".into())
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_kept_value_reads_back_equal_with_its_key_order() {
        let raw = r#"{"z":1,"a":{"y":[1,2,{"b":"x","a":null}],"x":"s"},"m":[],"f":0.1,"n":-7,"u":18446744073709551615}"#;
        let v: Value = serde_json::from_str(raw).unwrap();
        let kept = KeptJson::new(&v);
        assert_eq!(
            kept,
            KeptJson::Text(raw.into()),
            "stored as its compact text"
        );
        assert_eq!(kept.value(), v);
        assert_eq!(kept.value().to_string(), raw);
    }

    #[test]
    fn a_value_too_deep_to_parse_again_is_kept_parsed() {
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let kept = KeptJson::new(&deep);
        assert!(matches!(kept, KeptJson::Deep(_)));
        assert_eq!(kept.value(), deep);
        assert_eq!(KeptJson::default().value(), json!({}));
    }
}
