//! Finds the line of a field in a YAML or JSON text. serde's `Value` forgets positions, so
//! when validation rejects a field we walk the text again with a seed that stops at that
//! field; the parser stamps its own position on the error the seed raises there. Only error
//! paths pay for this.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::error::Segment;

/// The source syntax of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Yaml,
    Json,
}

const FOUND: &str = "\u{0}field found";

/// The 1-based line where the value at `path` starts, if the text has it.
pub fn line_of(text: &str, syntax: Syntax, path: &[Segment]) -> Option<usize> {
    match syntax {
        Syntax::Yaml => {
            let error = Walk(path)
                .deserialize(serde_yaml::Deserializer::from_str(text))
                .err()?;
            found(&error.to_string()).then(|| error.location().map(|l| l.line()))?
        }
        Syntax::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let error = Walk(path).deserialize(&mut deserializer).err()?;
            found(&error.to_string()).then_some(error.line())
        }
    }
}

fn found(message: &str) -> bool {
    message.contains(FOUND)
}

struct Walk<'p>(&'p [Segment]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Walk<'_> {
    fn arrived<E: de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            // The path goes deeper than the document: nothing to point at.
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(wanted), rest)) = self.0.split_first() else {
            return self.arrived();
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(wanted.as_str()) {
                return map.next_value_seed(Walk(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(wanted), rest)) = self.0.split_first() else {
            return self.arrived();
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk(rest)).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.arrived()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.arrived()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.arrived()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.arrived()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.arrived()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.arrived()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.arrived()
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // YAML tags (`!foo value`) arrive here; look through them as the readers do
        // (`document::untagged`). The tagged value must be consumed even when the path does
        // not go into it: serde_yaml panics on a visitor that leaves it half read.
        let (_tag, value) = data.variant::<IgnoredAny>()?;
        value.newtype_variant_seed(self)
    }
}

/// A mapping key as text when it is a scalar (YAML allows `200:` or `true:` keys).
struct KeyText(Option<String>);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(deserializer)?;
        Ok(KeyText(super::document::scalar_key(&value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> Vec<Segment> {
        keys.iter()
            .map(|k| match k.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key((*k).to_owned()),
            })
            .collect()
    }

    const YAML: &str = "openapi: 3.0.0\npaths:\n  /pet:\n    get:\n      x-wso2-production-endpoints:\n        urls:\n          - http://a\n          - 'http:..host/v2'\n  200: {a: 1}\n";

    #[test]
    fn finds_line_of_a_sequence_element_in_yaml() {
        let p = path(&[
            "paths",
            "/pet",
            "get",
            "x-wso2-production-endpoints",
            "urls",
            "1",
        ]);
        assert_eq!(line_of(YAML, Syntax::Yaml, &p), Some(8));
    }

    #[test]
    fn finds_line_of_a_mapping_value_in_yaml() {
        assert_eq!(
            line_of(YAML, Syntax::Yaml, &path(&["paths", "/pet", "get"])),
            Some(5)
        );
    }

    #[test]
    fn finds_numeric_keys_by_their_text() {
        let p = [Segment::Key("paths".into()), Segment::Key("200".into())];
        assert_eq!(line_of(YAML, Syntax::Yaml, &p), Some(9));
    }

    #[test]
    fn missing_field_has_no_line() {
        assert_eq!(
            line_of(YAML, Syntax::Yaml, &path(&["paths", "/nope"])),
            None
        );
        assert_eq!(
            line_of(YAML, Syntax::Yaml, &path(&["openapi", "deeper"])),
            None
        );
    }

    #[test]
    fn finds_line_in_json() {
        let json = "{\n  \"paths\": {\n    \"/pet\": {\n      \"get\": {\"urls\": [\"a\",\n        \"b\"]}\n    }\n  }\n}\n";
        let p = path(&["paths", "/pet", "get", "urls", "1"]);
        assert_eq!(line_of(json, Syntax::Json, &p), Some(5));
    }
}
