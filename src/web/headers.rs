//! `http_server_config.headers`: the security headers added to every
//! response.
//!
//! exporter-toolkit allows only five headers, and for two of them only the
//! values browsers define, so that every Prometheus-ecosystem server means
//! the same thing by the same file; we accept exactly the same set. The
//! names are matched as written (`X-Frame-Options`, not `x-frame-options`),
//! as exporter-toolkit does, so a file valid here is valid there.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::values::{unknown, ParseStr};

/// A header a web config may set.
struct Allowed {
    /// As written in the file.
    name: &'static str,
    /// As `HeaderName` keeps it.
    lower: &'static str,
    /// The values allowed (empty: any valid header value).
    values: &'static [&'static str],
}

const ALLOWED: [Allowed; 5] = [
    Allowed {
        name: "Content-Security-Policy",
        lower: "content-security-policy",
        values: &[],
    },
    Allowed {
        name: "Strict-Transport-Security",
        lower: "strict-transport-security",
        values: &[],
    },
    Allowed {
        name: "X-Content-Type-Options",
        lower: "x-content-type-options",
        values: &["nosniff"],
    },
    Allowed {
        name: "X-Frame-Options",
        lower: "x-frame-options",
        values: &["deny", "sameorigin"],
    },
    Allowed {
        name: "X-XSS-Protection",
        lower: "x-xss-protection",
        values: &[],
    },
];

/// The headers to add to every response, in the order the file gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseHeaders(Vec<(HeaderName, HeaderValue)>);

impl ResponseHeaders {
    /// Set every configured header on `headers`, replacing a value a route
    /// set: the operator's policy wins.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Name and value of each header, for the redacted config view (none is
    /// a secret).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(n, v)| (allowed_spelling(n), v.to_str().unwrap_or("")))
    }
}

/// The spelling exporter-toolkit uses for an allowed header (`HeaderName`
/// keeps names lower-case).
fn allowed_spelling(name: &HeaderName) -> &'static str {
    ALLOWED
        .iter()
        .find(|a| a.lower == name.as_str())
        .map_or("", |a| a.name)
}

/// An allowed header, named as written in the file.
struct AllowedName(&'static Allowed);

impl std::str::FromStr for AllowedName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match ALLOWED.iter().find(|a| a.name == s) {
            Some(a) => Ok(AllowedName(a)),
            None => {
                let names: Vec<&str> = ALLOWED.iter().map(|a| a.name).collect();
                Err(format!(
                    "{}; exporter-toolkit's web config allows only these headers",
                    unknown("header", s, &names)
                ))
            }
        }
    }
}

impl<'de> Deserialize<'de> for AllowedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParseStr::<AllowedName>::new("a header name"))
    }
}

impl<'de> Deserialize<'de> for ResponseHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = ResponseHeaders;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of header names to values")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ResponseHeaders, E> {
        Ok(ResponseHeaders::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResponseHeaders, A::Error> {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        while let Some(AllowedName(header)) = map.next_key()? {
            let value = map.next_value_seed(ValueSeed {
                name: header.name,
                allowed: header.values,
                duplicate: seen.contains(&header.name),
            })?;
            seen.push(header.name);
            // exporter-toolkit's documentation: a blank header is not set.
            if let Some(value) = value {
                out.push((HeaderName::from_static(header.lower), value));
            }
        }
        Ok(ResponseHeaders(out))
    }
}

/// One header's value, checked against that header's allowed values while
/// it is read (so the error has the value's position).
struct ValueSeed {
    name: &'static str,
    allowed: &'static [&'static str],
    duplicate: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Option<HeaderValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed {
    fn check<E: de::Error>(self, v: &str) -> Result<Option<HeaderValue>, E> {
        if self.duplicate {
            return Err(E::custom(format!("header {} is set twice", self.name)));
        }
        if !self.allowed.is_empty() && !self.allowed.contains(&v) {
            return Err(E::custom(format!(
                "invalid value \"{v}\" for {}; allowed: {}",
                self.name,
                self.allowed.join(", ")
            )));
        }
        if v.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(v).map(Some).map_err(|_| {
            E::custom(format!(
                "invalid value for {}: a header value is visible ASCII without line breaks",
                self.name
            ))
        })
    }
}

// Values such as `X-XSS-Protection: 1` are YAML numbers; Go's YAML reads
// them into the string they are written as, and so do we.
impl Visitor<'_> for ValueSeed {
    type Value = Option<HeaderValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value for {}", self.name)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.check(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.check(&v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.check(&v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.check("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ResponseHeaders, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn allowed_headers_are_set_on_a_response() {
        let h = parse(
            "X-Frame-Options: deny\nX-XSS-Protection: 1\nStrict-Transport-Security: max-age=31536000\nContent-Security-Policy: ''\n",
        )
        .unwrap();
        let mut out = HeaderMap::new();
        out.insert("x-frame-options", HeaderValue::from_static("sameorigin"));
        h.apply(&mut out);
        assert_eq!(out["x-frame-options"], "deny");
        assert_eq!(out["x-xss-protection"], "1");
        assert_eq!(out["strict-transport-security"], "max-age=31536000");
        // Blank: not set.
        assert!(!out.contains_key("content-security-policy"));
        let listed: Vec<_> = h.iter().collect();
        assert_eq!(listed[0], ("X-Frame-Options", "deny"));
    }

    #[test]
    fn other_headers_and_values_are_refused_where_written() {
        let e = parse("X-Frame-Options: deny\nServer: me\n").unwrap_err();
        assert!(e.contains("unknown header \"Server\""), "{e}");
        assert!(e.contains("line 2 column 1"), "{e}");
        let e = parse("x-frame-options: deny\n").unwrap_err();
        assert!(e.contains("did you mean \"X-Frame-Options\""), "{e}");
        let e = parse("X-Frame-Options: allow\n").unwrap_err();
        assert!(e.contains("allowed: deny, sameorigin"), "{e}");
        assert!(e.contains("line 1 column 18"), "{e}");
        let e = parse("X-Content-Type-Options: nosniff\nX-Content-Type-Options: nosniff\n")
            .unwrap_err();
        assert!(e.contains("set twice"), "{e}");
        let e = parse("X-XSS-Protection: \"1\\nSet-Cookie: a\"\n").unwrap_err();
        assert!(e.contains("invalid value for X-XSS-Protection"), "{e}");
    }
}
